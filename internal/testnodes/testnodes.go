// Package testnodes makes Nodes the size a real cluster's are, for tests
// and benchmarks of what Coral keeps of them.
package testnodes

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Real is node i as the kubelet of a cloud node reports it: labels,
// capacity, four conditions, node info and the 50 images a kubelet lists
// at most (node-status-max-images) — most of its bytes.
func Real(i int) corev1.Node {
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("128Gi"), corev1.ResourcePods: resource.MustParse("110")}
	n := corev1.Node{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%05d", i), Labels: map[string]string{
			"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": fmt.Sprintf("node-%05d", i),
			"node.kubernetes.io/instance-type": "m6i.4xlarge", "topology.kubernetes.io/zone": "eu-west-1a", "pool": "web",
		}},
		Status: corev1.NodeStatus{Capacity: res, Allocatable: res,
			NodeInfo: corev1.NodeSystemInfo{Architecture: "amd64", OperatingSystem: "linux", ContainerRuntimeVersion: "containerd://2.4.2", KubeletVersion: "v1.37.2"},
		},
	}
	for _, c := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: c, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficient", Message: "kubelet has sufficient resources available", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()})
	}
	for j := range 50 {
		repo := fmt.Sprintf("registry.example.com/team-%d/service-%03d", j%7, j)
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("%s@sha256:%064x", repo, i*100+j), fmt.Sprintf("%s:v1.%d", repo, j)},
			SizeBytes: int64(20_000_000 + j*3_000_000),
		})
	}
	return n
}
