package controller

import (
	"context"
	"sort"
	"testing"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/plan"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// An object's plan is kept, against a real API server and the controller's
// own node cache, while the node updates are ones a plan cannot see (a
// heartbeat), and made again when a node is relabelled, joins or is
// cordoned, or when the object's own items change. The node events reach
// nodeChanged as the controller's node watch hands them over.
func TestPlanKeptUntilANodeChanges(t *testing.T) {
	cfg, cl := startAPIServer(t, "coral")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addNode(t, cl, "n1", "web")
	addNode(t, cl, "n2", "web")

	c, v := newCacheView(ctx, t, cfg)
	s := &shared{view: v, plans: map[types.UID]*cachedPlan{}}
	// The node watch: the predicate, then (here) a note of the last
	// resourceVersion it was handed, so the test knows an event went by.
	pred := s.nodeChanged()
	seen := make(chan string, 100)
	_, err := v.nodes.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			pred.Create(event.CreateEvent{Object: o.(client.Object)})
			seen <- o.(*corev1.Node).ResourceVersion
		},
		UpdateFunc: func(a, b any) {
			pred.Update(event.UpdateEvent{ObjectOld: a.(client.Object), ObjectNew: b.(client.Object)})
			seen <- b.(*corev1.Node).ResourceVersion
		},
		DeleteFunc: func(o any) { pred.Delete(event.DeleteEvent{Object: o.(client.Object)}); seen <- "deleted" },
	})
	must(t, err)
	startCache(ctx, t, c)
	// passed waits until the watch has handed over the node at rv.
	passed := func(rv string) {
		t.Helper()
		waitFor(t, "the node event at "+rv, func() bool {
			for {
				select {
				case got := <-seen:
					if got == rv {
						return true
					}
				default:
					return false
				}
			}
		})
	}
	update := func(name string, change func(n *corev1.Node), status bool) {
		t.Helper()
		var n corev1.Node
		must(t, cl.Get(ctx, client.ObjectKey{Name: name}, &n))
		before := n.ResourceVersion
		change(&n)
		if status {
			must(t, cl.Status().Update(ctx, &n))
		} else {
			must(t, cl.Update(ctx, &n))
		}
		if n.ResourceVersion == before {
			t.Fatalf("updating %s changed nothing: no event to test", name)
		}
		passed(n.ResourceVersion)
	}
	waitFor(t, "both nodes in the cache", func() bool { l, err := v.Nodes(); return err == nil && len(l) == 2 })

	obj := &coralv1.ImagePrefetch{ObjectMeta: metav1.ObjectMeta{Namespace: "coral", Name: "web", UID: "u1"}}
	tg := &target{obj: obj, nodes: coralv1.Nodes{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "web"}}},
		items: []plan.Item{{Ref: "reg.local/app:1"}}}
	planned := func(what string, want ...string) *plan.Plan {
		t.Helper()
		c, err := s.plan(tg)
		must(t, err)
		p := c.plan
		var got []string
		for _, task := range p.Tasks {
			got = append(got, task.Node)
		}
		sort.Strings(got) // the plan is in plan.Spread's order
		if len(got) != len(want) {
			t.Fatalf("%s: tasks for %v, want %v", what, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: tasks for %v, want %v", what, got, want)
			}
		}
		return p
	}

	first := planned("first", "n1", "n2")
	if again := planned("again", "n1", "n2"); again != first {
		t.Error("a second reconcile with nothing changed planned again")
	}
	update("n1", func(n *corev1.Node) { // a minute on: never the second addNode wrote
		n.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Minute))
	}, true)
	if p := planned("after a heartbeat", "n1", "n2"); p != first {
		t.Error("a heartbeat made a new plan: it cannot change one")
	}
	update("n2", func(n *corev1.Node) { n.Labels["pool"] = "batch" }, false)
	relabelled := planned("after n2 left the pool", "n1")
	addNode(t, cl, "n3", "web")
	waitFor(t, "n3 in the cache", func() bool { l, err := v.Nodes(); return err == nil && len(l) == 3 })
	var n3 corev1.Node
	must(t, cl.Get(ctx, client.ObjectKey{Name: "n3"}, &n3))
	passed(n3.ResourceVersion)
	planned("after n3 joined", "n1", "n3")
	update("n3", func(n *corev1.Node) { n.Spec.Unschedulable = true }, false)
	if p := planned("after n3 was cordoned", "n1"); p == relabelled {
		t.Error("the plan from before n3 joined was kept")
	}
	cordoned := planned("again", "n1")
	tg.items = []plan.Item{{Ref: "reg.local/app:2"}}
	if p := planned("with a new item", "n1"); p == cordoned || p.Tasks[0].Items[0].Ref != "reg.local/app:2" {
		t.Errorf("a new item kept the old plan: %+v", p.Tasks[0].Items)
	}
}
