// Package inject adds a prefetched artifact to a pod template: a read-only
// hostPath volume for the artifact's directory, a mount in the chosen
// containers, and required node affinity to the nodes that hold it. It is
// pure and idempotent: injecting twice changes nothing.
package inject

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// Artifact says what to inject.
type Artifact struct {
	// Name of the artifact.
	Name string
	// HostPath is the artifact's directory on the nodes.
	HostPath string
	// MountPath is where containers see it.
	MountPath string
	// NodeLabel is the label key of nodes that hold it (affinity: Exists).
	NodeLabel string
	// Containers to mount into; empty means every regular container.
	// Init containers are mounted only when named.
	Containers []string
}

// VolumeName is the name of the injected volume.
func VolumeName(artifact string) string {
	n := "coral-artifact-" + artifact
	if len(n) > 63 {
		n = strings.TrimRight(n[:63], "-.")
	}
	return strings.ReplaceAll(n, ".", "-")
}

// PodSpec injects a into spec and reports whether anything changed. It fails
// when a named container does not exist, when another volume already uses
// the name, or when a container already mounts something else at MountPath.
func PodSpec(spec *corev1.PodSpec, a Artifact) (bool, error) {
	vol := corev1.Volume{
		Name: VolumeName(a.Name),
		VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: a.HostPath,
			Type: ptr.To(corev1.HostPathDirectory),
		}},
	}
	targets, err := containers(spec, a.Containers)
	if err != nil {
		return false, err
	}
	changed := false

	found := false
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		if v.Name != vol.Name {
			continue
		}
		found = true
		if v.HostPath == nil {
			return false, fmt.Errorf("the pod template already has a volume %q that is not this artifact's", vol.Name)
		}
		if v.HostPath.Path != a.HostPath {
			v.HostPath.Path = a.HostPath
			changed = true
		}
	}
	if !found {
		spec.Volumes = append(spec.Volumes, vol)
		changed = true
	}

	for _, c := range targets {
		has := false
		for i := range c.VolumeMounts {
			m := &c.VolumeMounts[i]
			if m.Name == vol.Name {
				has = true
				if m.MountPath != a.MountPath || !m.ReadOnly {
					m.MountPath, m.ReadOnly = a.MountPath, true
					changed = true
				}
			} else if m.MountPath == a.MountPath {
				return false, fmt.Errorf("container %q already mounts volume %q at %s: choose another --mount-path", c.Name, m.Name, a.MountPath)
			}
		}
		if !has {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: vol.Name, MountPath: a.MountPath, ReadOnly: true})
			changed = true
		}
	}

	if addAffinity(spec, a.NodeLabel) {
		changed = true
	}
	return changed, nil
}

func containers(spec *corev1.PodSpec, names []string) ([]*corev1.Container, error) {
	var out []*corev1.Container
	if len(names) == 0 {
		for i := range spec.Containers {
			out = append(out, &spec.Containers[i])
		}
		return out, nil
	}
	for _, n := range names {
		var c *corev1.Container
		for i := range spec.Containers {
			if spec.Containers[i].Name == n {
				c = &spec.Containers[i]
			}
		}
		for i := range spec.InitContainers {
			if spec.InitContainers[i].Name == n {
				c = &spec.InitContainers[i]
			}
		}
		if c == nil {
			var all []string
			for _, x := range spec.InitContainers {
				all = append(all, x.Name)
			}
			for _, x := range spec.Containers {
				all = append(all, x.Name)
			}
			return nil, fmt.Errorf("no container %q in the pod template (it has %s)", n, strings.Join(all, ", "))
		}
		out = append(out, c)
	}
	return out, nil
}

// addAffinity requires nodes with label key: it adds "key Exists" to every
// required node-selector term (terms are ORed, so each must carry it).
func addAffinity(spec *corev1.PodSpec, key string) bool {
	req := corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpExists}
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := spec.Affinity.NodeAffinity
	if na.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{}
	}
	sel := na.RequiredDuringSchedulingIgnoredDuringExecution
	if len(sel.NodeSelectorTerms) == 0 {
		sel.NodeSelectorTerms = []corev1.NodeSelectorTerm{{}}
	}
	changed := false
	for i := range sel.NodeSelectorTerms {
		t := &sel.NodeSelectorTerms[i]
		has := false
		for _, e := range t.MatchExpressions {
			if e.Key == key && e.Operator == corev1.NodeSelectorOpExists {
				has = true
			}
		}
		if !has {
			t.MatchExpressions = append(t.MatchExpressions, req)
			changed = true
		}
	}
	return changed
}
