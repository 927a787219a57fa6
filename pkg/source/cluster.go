package source

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
)

// SecretRef names a secret.
type SecretRef struct{ Namespace, Name string }

// ClusterImages is what a live cluster's workloads run.
type ClusterImages struct {
	// Images in the order first seen, each once.
	Images []string
	// PullSecrets are the imagePullSecrets the workloads name, each once.
	PullSecrets []SecretRef
	// Warnings say what could not be read (a kind the user may not list).
	Warnings []string
}

// FromCluster lists the images of the live pods (not finished ones) and of
// the pod templates of every workload kind — Deployments, StatefulSets,
// DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs and
// PodTemplates — in namespace ns ("" for all namespaces). Every object is
// read through PodSpecOf, the same way as manifests. A kind the user may
// not list is skipped with a warning; any other error stops. Shared by
// `mirror --from-cluster` and `prefetch images --from-cluster`.
func FromCluster(ctx context.Context, c kubernetes.Interface, ns string) (*ClusterImages, error) {
	out := &ClusterImages{}
	var objs []runtime.Object
	opts := metav1.ListOptions{}
	for _, l := range []struct {
		kind string
		list func() (runtime.Object, error)
	}{
		{"pods", func() (runtime.Object, error) { return c.CoreV1().Pods(ns).List(ctx, opts) }},
		{"deployments", func() (runtime.Object, error) { return c.AppsV1().Deployments(ns).List(ctx, opts) }},
		{"statefulsets", func() (runtime.Object, error) { return c.AppsV1().StatefulSets(ns).List(ctx, opts) }},
		{"daemonsets", func() (runtime.Object, error) { return c.AppsV1().DaemonSets(ns).List(ctx, opts) }},
		{"replicasets", func() (runtime.Object, error) { return c.AppsV1().ReplicaSets(ns).List(ctx, opts) }},
		{"replicationcontrollers", func() (runtime.Object, error) { return c.CoreV1().ReplicationControllers(ns).List(ctx, opts) }},
		{"jobs", func() (runtime.Object, error) { return c.BatchV1().Jobs(ns).List(ctx, opts) }},
		{"cronjobs", func() (runtime.Object, error) { return c.BatchV1().CronJobs(ns).List(ctx, opts) }},
		{"podtemplates", func() (runtime.Object, error) { return c.CoreV1().PodTemplates(ns).List(ctx, opts) }},
	} {
		list, err := l.list()
		if apierrors.IsForbidden(err) {
			out.Warnings = append(out.Warnings, fmt.Sprintf("not allowed to list %s, skipping them", l.kind))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", l.kind, err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", l.kind, err)
		}
		for _, it := range items {
			if p, ok := it.(*corev1.Pod); ok && (p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed) {
				continue
			}
			objs = append(objs, it)
		}
	}
	out.Images = FromPodSpecs(objs)
	out.PullSecrets = pullSecretsOf(objs)
	return out, nil
}

// pullSecretsOf lists the imagePullSecrets of objs, each once, in order.
// Pods carry their service account's too (admission copies them in).
func pullSecretsOf(objs []runtime.Object) []SecretRef {
	var refs []SecretRef
	seen := map[SecretRef]bool{}
	for _, obj := range objs {
		spec := PodSpecOf(obj)
		acc, err := meta.Accessor(obj)
		if spec == nil || err != nil {
			continue
		}
		for _, s := range spec.ImagePullSecrets {
			r := SecretRef{acc.GetNamespace(), s.Name}
			if s.Name != "" && !seen[r] {
				seen[r] = true
				refs = append(refs, r)
			}
		}
	}
	return refs
}
