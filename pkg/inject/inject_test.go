package inject

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func spec() *corev1.PodSpec {
	return &corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init"}},
		Containers:     []corev1.Container{{Name: "app"}, {Name: "sidecar"}},
	}
}

var bert = Artifact{Name: "bert", HostPath: "/var/lib/coral/artifacts/bert", MountPath: "/models/bert", NodeLabel: "artifacts.coral.dev/bert"}

func TestPodSpecInjectsAndIsIdempotent(t *testing.T) {
	s := spec()
	changed, err := PodSpec(s, bert)
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	v := s.Volumes[0]
	if v.Name != "coral-artifact-bert" || v.HostPath.Path != bert.HostPath || *v.HostPath.Type != corev1.HostPathDirectory {
		t.Errorf("volume %+v", v)
	}
	for _, c := range s.Containers {
		if len(c.VolumeMounts) != 1 || !c.VolumeMounts[0].ReadOnly || c.VolumeMounts[0].MountPath != "/models/bert" {
			t.Errorf("container %s mounts %+v", c.Name, c.VolumeMounts)
		}
	}
	if len(s.InitContainers[0].VolumeMounts) != 0 {
		t.Error("init containers are mounted only when named")
	}
	terms := s.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || terms[0].MatchExpressions[0].Key != bert.NodeLabel || terms[0].MatchExpressions[0].Operator != corev1.NodeSelectorOpExists {
		t.Errorf("affinity %+v", terms)
	}
	before := s.DeepCopy()
	changed, err = PodSpec(s, bert)
	if err != nil || changed || !reflect.DeepEqual(before, s) {
		t.Fatalf("second injection changed the spec (changed=%v, err=%v)", changed, err)
	}
}

func TestPodSpecKeepsExistingAffinityTerms(t *testing.T) {
	s := spec()
	s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}},
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}}}},
		},
	}}}
	if _, err := PodSpec(s, bert); err != nil {
		t.Fatal(err)
	}
	for i, term := range s.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if len(term.MatchExpressions) != 2 || term.MatchExpressions[0].Key != "zone" || term.MatchExpressions[1].Key != bert.NodeLabel {
			t.Errorf("term %d: %+v (each ORed term must also require the artifact)", i, term)
		}
	}
}

func TestPodSpecErrors(t *testing.T) {
	a := bert
	a.Containers = []string{"nope"}
	if _, err := PodSpec(spec(), a); err == nil || !strings.Contains(err.Error(), `no container "nope"`) || !strings.Contains(err.Error(), "app, sidecar") {
		t.Errorf("unknown container: %v", err)
	}
	a.Containers = []string{"init"}
	s := spec()
	if _, err := PodSpec(s, a); err != nil || len(s.InitContainers[0].VolumeMounts) != 1 || len(s.Containers[0].VolumeMounts) != 0 {
		t.Errorf("-c init: %v %+v", err, s)
	}
	s = spec()
	s.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/models/bert"}}
	if _, err := PodSpec(s, bert); err == nil || !strings.Contains(err.Error(), "--mount-path") {
		t.Errorf("mount path clash: %v", err)
	}
	s = spec()
	s.Volumes = []corev1.Volume{{Name: "coral-artifact-bert", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	if _, err := PodSpec(s, bert); err == nil {
		t.Error("a foreign volume with the same name must not be taken over")
	}
}
