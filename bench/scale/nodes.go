package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

func nodeName(i int) string { return fmt.Sprintf("sim-%05d", i) }

// simNode is a simulated node as a kubelet registers one: Nodes are the
// one kind whose status may be set on create, and a kubelet sends its
// conditions, capacity and runtime in its first request. kwok keeps it
// Ready (its lease; its node stage applies only to a node that is not
// Ready) and plays its pods. The API server's TaintNodesByCondition
// admission still gives every new node the not-ready taint, which
// kube-controller-manager's node lifecycle controller lifts at a few nodes
// a second (1000 nodes took 220–290 s to become usable); ensureNodes lifts
// it itself from nodes that are Ready.
//
// Like a kubelet it lists images in its status (kubelet reports up to 50,
// nodeStatusMaxImages): a real node's image list is most of its size, what
// Coral's node list decodes (~11 KB a node in memory).
func simNode(name, label string, images int) *corev1.Node {
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, st corev1.ConditionStatus, reason string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: st, Reason: reason, Message: "simulated by kwok", LastHeartbeatTime: now, LastTransitionTime: now}
	}
	res := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("128Gi"), corev1.ResourcePods: resource.MustParse("110"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			label: "true", corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64", corev1.LabelHostname: name,
		}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
			},
			Addresses:   []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}},
			Capacity:    res,
			Allocatable: res,
			NodeInfo: corev1.NodeSystemInfo{
				Architecture: "amd64", OperatingSystem: "linux", ContainerRuntimeVersion: "containerd://2.4.2",
				KubeletVersion: "v1.37.2-kwok", KernelVersion: "simulated", OSImage: "simulated",
			},
			Phase:  corev1.NodeRunning,
			Images: simImages(name, images),
		},
	}
}

// simImages is what a busy node lists: n images, each by digest and tag, of
// different sizes; digests differ from node to node as tags move.
func simImages(node string, n int) []corev1.ContainerImage {
	out := make([]corev1.ContainerImage, n)
	for i := range out {
		repo := fmt.Sprintf("registry.example.com/team-%d/service-%03d", i%7, i)
		out[i] = corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("%s@sha256:%x", repo, sha256.Sum256([]byte(node+repo))), fmt.Sprintf("%s:v1.%d.%d", repo, i, len(node)%10)},
			SizeBytes: int64(20_000_000 + i*3_000_000),
		}
	}
	return out
}

// ensureNodes creates the simulated nodes sim-00001 … sim-N that do not
// exist yet and waits until all N are Ready and free of the not-ready and
// unreachable taints. The nodes carry the label kwok manages them by, the
// usual os/arch labels, and no kwok annotation: Coral takes them for real
// nodes (pkg/plan skips nodes it recognises as virtual). kwok reports
// containerd 2.4.2 as their runtime, so Coral finds their socket the way it
// does on a real node without the kubeadm annotation.
func ensureNodes(ctx context.Context, client kubernetes.Interface, label string, n, images int, logf func(string, ...any)) error {
	t0 := time.Now()
	list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: label + "=true"})
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, nd := range list.Items {
		have[nd.Name] = true
	}
	if len(have) > n {
		return fmt.Errorf("%d simulated nodes exist, want %d: node counts must ascend (restart the control plane for a smaller N)", len(have), n)
	}
	var missing []string
	for i := 1; i <= n; i++ {
		if name := nodeName(i); !have[name] {
			missing = append(missing, name)
		}
	}
	err = forEach(missing, func(name string) error {
		node := simNode(name, label, images)
		node.Annotations = map[string]string{ttlAnnotation: ttlFor(n)}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Ready is not all: kube-controller-manager's TTL controller patches
	// every node's ttl annotation each time the cluster's size crosses one
	// of its steps (100, 500, 1000, 2000 nodes), up to 2 writes a node just
	// after they were created; measured during that, its load (9188 node
	// patches in the window of a 5000-node bound) counts against whoever
	// runs first. Nodes are created with the settled value, and
	// bench.waitNodesQuiet then waits until kcm writes to no node.
	deadline := time.Now().Add(5*time.Minute + time.Duration(n)*20*time.Millisecond)
	for {
		list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: label + "=true"})
		if err != nil {
			return err
		}
		ready := 0
		var untaint []string
		for i := range list.Items {
			switch nd := &list.Items[i]; {
			case nodeUsable(nd):
				ready++
			case nodeReady(nd) && onlyNotReadyTaint(nd):
				untaint = append(untaint, nd.Name)
			}
		}
		if err := liftNotReadyTaints(ctx, client, untaint); err != nil {
			return err
		}
		ready += len(untaint)
		if ready >= n {
			logf("%d simulated nodes Ready (%d created) in %.1fs", n, len(missing), time.Since(t0).Seconds())
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d simulated nodes Ready and untainted after %s (see the kwok log in _output/scale/logs)", ready, n, time.Since(t0).Round(time.Second))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(3 * time.Second):
		}
	}
}

// ttlAnnotation is kube-controller-manager's TTL controller's annotation.
const ttlAnnotation = "node.alpha.kubernetes.io/ttl"

// ttlFor is the TTL controller's value for a cluster of n nodes, which a
// node of a settled cluster carries (its steps: at most 100 nodes 0 s, 500
// 15 s, 1000 30 s, 2000 60 s, more 300 s). Nodes are created with it, so the
// controller has less to patch once they all exist.
func ttlFor(n int) string {
	for _, b := range []struct{ max, ttl int }{{100, 0}, {500, 15}, {1000, 30}, {2000, 60}} {
		if n <= b.max {
			return fmt.Sprint(b.ttl)
		}
	}
	return "300"
}

func nodeUsable(nd *corev1.Node) bool {
	for _, t := range nd.Spec.Taints {
		if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
			return false
		}
	}
	return nodeReady(nd)
}

func nodeReady(nd *corev1.Node) bool {
	for _, c := range nd.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// onlyNotReadyTaint: the node's one taint is the not-ready one admission
// gave it (a node with any other taint is left to the controllers).
func onlyNotReadyTaint(nd *corev1.Node) bool {
	return len(nd.Spec.Taints) == 1 && nd.Spec.Taints[0].Key == corev1.TaintNodeNotReady
}

// liftNotReadyTaints removes the not-ready taint from Ready nodes: what the
// node lifecycle controller would do, at the harness's QPS.
func liftNotReadyTaints(ctx context.Context, client kubernetes.Interface, names []string) error {
	return forEach(names, func(name string) error {
		_, err := client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"taints":null}}`), metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("lifting the not-ready taint of node %s: %w", name, err)
		}
		return nil
	})
}

// forEach calls f for every name, 32 at a time, and returns the first error.
func forEach(names []string, f func(name string) error) error {
	var g errgroup.Group
	g.SetLimit(32)
	for _, name := range names {
		g.Go(func() error { return f(name) })
	}
	return g.Wait()
}
