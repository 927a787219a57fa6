package controller

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/jobs"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The view, against a real API server: an object's Jobs, pods and records
// are its own, in its namespace (a labelled copy elsewhere is not), the
// Job and pod caches hold only the controller's own, every node is there,
// and two reads hand out the same cached objects, not copies. Before the
// caches' first sync a read says so instead of answering empty.
func TestViewReadsTheCacheUncopied(t *testing.T) {
	cfg, cl := startAPIServer(t, "coral")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	must(t, cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}))
	for _, n := range []string{"n1", "n2", "n3"} {
		addNode(t, cl, n, "web")
	}

	c, v := newCacheView(ctx, t, cfg)
	if _, err := v.Jobs("coral", "u1"); !errors.Is(err, errNotSynced) {
		t.Fatalf("a read before the cache started: %v, want errNotSynced", err)
	}

	labelled := func(uid string, managed bool) map[string]string {
		l := map[string]string{LabelPrefetchUID: uid}
		if managed {
			l[jobs.LabelManagedBy] = ManagedBy
		}
		return l
	}
	job := func(ns, name, uid string, managed bool) {
		j := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labelled(uid, managed)},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "w", Image: "worker:test"}},
			}}},
		}
		must(t, cl.Create(ctx, j))
	}
	pod := func(ns, name, uid string, managed bool) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labelled(uid, managed)},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Image: "worker:test"}}},
		}
		must(t, cl.Create(ctx, p))
	}
	record := func(ns, name, uid, node string) {
		r := &coralv1.PrefetchNode{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labelled(uid, false)},
			Prefetch:   coralv1.PrefetchRef{Kind: "ImagePrefetch", Name: "p"},
			Node:       node,
		}
		must(t, cl.Create(ctx, r))
	}
	job("coral", "a", "u1", true)
	job("coral", "b", "u1", true)
	job("coral", "c", "u2", true)
	job("other", "d", "u1", true)  // another namespace, same label
	job("coral", "e", "u1", false) // not the controller's: not cached
	pod("coral", "a-x", "u1", true)
	pod("coral", "c-x", "u2", true)
	pod("coral", "f-x", "u1", false)
	record("coral", "r1", "u1", "n1")
	record("coral", "r2", "u2", "n1")
	record("other", "r3", "u1", "n1")

	startCache(ctx, t, c)
	names := func(objs []client.Object) string {
		var out []string
		for _, o := range objs {
			out = append(out, o.GetNamespace()+"/"+o.GetName())
		}
		sort.Strings(out)
		return strings.Join(out, " ")
	}
	objs := func(f func() ([]client.Object, error)) string {
		t.Helper()
		l, err := f()
		must(t, err)
		return names(l)
	}
	jobsOf := func(ns, uid string) func() ([]client.Object, error) {
		return func() ([]client.Object, error) { l, err := v.Jobs(ns, uid); return asObjects(l), err }
	}
	podsOf := func(ns, uid string) func() ([]client.Object, error) {
		return func() ([]client.Object, error) { l, err := v.Pods(ns, uid); return asObjects(l), err }
	}
	recordsOf := func(ns, uid string) func() ([]client.Object, error) {
		return func() ([]client.Object, error) { l, err := v.Records(ns, uid); return asObjects(l), err }
	}
	nodes := func() ([]client.Object, error) { l, err := v.Nodes(); return asObjects(l), err }
	// The informers sync before Start returns from WaitForCacheSync, but
	// the created objects may still be on their way.
	waitFor(t, "the cache holds every object", func() bool {
		return objs(jobsOf("", "")) == "coral/a coral/b coral/c other/d" && objs(podsOf("", "")) == "coral/a-x coral/c-x" &&
			objs(recordsOf("", "")) == "coral/r1 coral/r2 other/r3" && objs(nodes) == "/n1 /n2 /n3"
	})
	for _, tc := range []struct {
		what string
		got  string
		want string
	}{
		{"object u1's Jobs in coral", objs(jobsOf("coral", "u1")), "coral/a coral/b"},
		{"object u2's Jobs in coral", objs(jobsOf("coral", "u2")), "coral/c"},
		{"object u1's Jobs in other", objs(jobsOf("other", "u1")), "other/d"},
		{"object u1's pods in coral", objs(podsOf("coral", "u1")), "coral/a-x"},
		{"object u1's records in coral", objs(recordsOf("coral", "u1")), "coral/r1"},
		{"an object with nothing", objs(jobsOf("coral", "u9")), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %q, want %q", tc.what, tc.got, tc.want)
		}
	}

	first, err := v.Jobs("coral", "u2")
	must(t, err)
	again, err := v.Jobs("coral", "u2")
	must(t, err)
	if first[0] != again[0] {
		t.Error("two reads of one Job gave two copies: the view must hand out the cache's object")
	}
	if len(first[0].Spec.Template.Spec.Containers) != 0 {
		t.Error("the cached Job kept its pod template: the Job cache's transform (slimJob) did not run")
	}
	n1, err := v.Nodes()
	must(t, err)
	n2, err := v.Nodes()
	must(t, err)
	byName := map[string]*corev1.Node{}
	for _, n := range n1 {
		byName[n.Name] = n
	}
	for _, n := range n2 { // the indexer's order is a map's
		if byName[n.Name] != n {
			t.Errorf("two reads of node %s gave two copies", n.Name)
		}
	}
}

func asObjects[T any, P interface {
	*T
	client.Object
}](l []*T) []client.Object {
	out := make([]client.Object, len(l))
	for i, o := range l {
		out[i] = P(o)
	}
	return out
}

// newCacheView is the controller's cache (CacheOptions) for cfg, not yet
// started, and a view of it.
func newCacheView(ctx context.Context, t *testing.T, cfg *rest.Config) (cache.Cache, *view) {
	t.Helper()
	opts := CacheOptions(nil)
	opts.Scheme = Scheme()
	c, err := cache.New(cfg, opts)
	must(t, err)
	v, err := newView(ctx, c)
	must(t, err)
	return c, v
}

// startCache starts a cache and waits for its first sync.
func startCache(ctx context.Context, t *testing.T, c cache.Cache) {
	t.Helper()
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("the cache did not sync")
	}
}
