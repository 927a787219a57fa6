package controller

import (
	"context"
	"errors"
	"fmt"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// view reads the informer caches a reconcile reads on every pass — the
// controller's Jobs and worker pods, the PrefetchNode records and the
// nodes — as the caches hold them: pointers, never copies. client.List
// copies each object of its answer into the list's Items by value, even
// with client.UnsafeDisableDeepCopy (a Pod is ~1 KiB before its maps), and
// a reconcile listed Jobs, pods and records of every node twice and every
// node once: at 1000 nodes, 48 % of the 3.2 GiB the controller allocated
// in a run (bench-scale --modes controller, an allocs profile), and the
// heap growth that made its RSS climb through the run.
//
// What view returns is the cache's: read it, never change it (copy
// first, as record does).
type view struct {
	jobs, pods, records, nodes toolscache.SharedIndexInformer
}

// byPrefetchUID indexes Jobs, pods and records by namespace and their
// object's UID (LabelPrefetchUID), so a reconcile reads its own and no
// other object's: the namespace too, as client.InNamespace did, so a
// labelled copy in another namespace is never taken for one.
const byPrefetchUID = "prefetchUID"

func prefetchUIDIndex(obj any) ([]string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, nil
	}
	if uid := m.GetLabels()[LabelPrefetchUID]; uid != "" {
		return []string{ownKey(m.GetNamespace(), uid)}, nil
	}
	return nil, nil
}

func ownKey(ns, uid string) string { return ns + "/" + uid }

// newView gets the cache's informers for the kinds it reads (creating
// them: call before the manager starts, so it waits for their first sync)
// and indexes the owned kinds by object UID.
func newView(ctx context.Context, c cache.Cache) (*view, error) {
	get := func(obj client.Object, index bool) (toolscache.SharedIndexInformer, error) {
		inf, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return nil, err
		}
		sii, ok := inf.(toolscache.SharedIndexInformer)
		if !ok {
			return nil, fmt.Errorf("the cache's %T informer is a %T, not a client-go SharedIndexInformer", obj, inf)
		}
		if index {
			if err := sii.AddIndexers(toolscache.Indexers{byPrefetchUID: prefetchUIDIndex}); err != nil {
				return nil, fmt.Errorf("indexing %T by %s: %w", obj, LabelPrefetchUID, err)
			}
		}
		return sii, nil
	}
	v := &view{}
	var err error
	if v.jobs, err = get(&batchv1.Job{}, true); err != nil {
		return nil, err
	}
	if v.pods, err = get(&corev1.Pod{}, true); err != nil {
		return nil, err
	}
	if v.records, err = get(&coralv1.PrefetchNode{}, true); err != nil {
		return nil, err
	}
	if v.nodes, err = get(&corev1.Node{}, false); err != nil {
		return nil, err
	}
	return v, nil
}

// errNotSynced: a read before the cache's first list (the manager starts
// reconciles after it; the reconcile is retried).
var errNotSynced = errors.New("the informer cache has not synced yet")

// read returns an informer's objects of type T: every one (ns and uid
// "") or those of one object. The Job and pod caches hold only the
// controller's own (CacheOptions).
func read[T any](inf toolscache.SharedIndexInformer, ns, uid string) ([]*T, error) {
	if !inf.HasSynced() {
		return nil, errNotSynced
	}
	var objs []any
	if ns == "" && uid == "" {
		objs = inf.GetIndexer().List()
	} else {
		var err error
		if objs, err = inf.GetIndexer().ByIndex(byPrefetchUID, ownKey(ns, uid)); err != nil {
			return nil, err
		}
	}
	out := make([]*T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(*T); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// Jobs are the controller's Jobs: every object's ("", "") or one's.
func (v *view) Jobs(ns, uid string) ([]*batchv1.Job, error) {
	return read[batchv1.Job](v.jobs, ns, uid)
}

// Pods are the controller's worker pods: every object's ("", "") or one's.
func (v *view) Pods(ns, uid string) ([]*corev1.Pod, error) {
	return read[corev1.Pod](v.pods, ns, uid)
}

// Records are PrefetchNodes: every object's ("", "") or one's.
func (v *view) Records(ns, uid string) ([]*coralv1.PrefetchNode, error) {
	return read[coralv1.PrefetchNode](v.records, ns, uid)
}

// Nodes are every node of the cluster, slimmed (CacheOptions).
func (v *view) Nodes() ([]*corev1.Node, error) { return read[corev1.Node](v.nodes, "", "") }
