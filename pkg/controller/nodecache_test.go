package controller

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The Node cache, against a real API server, on the path of API servers
// without streaming lists (WatchList off in the client, as a reflector
// falls back to when the server refuses it): its lists go through
// nodelist.Slimmed — the nodes asked for as JSON and streamed — and the
// informer that results holds every node, slim, and follows the watch from
// the list's resource version (a node added and one relabelled after the
// first list both arrive).
func TestNodeCacheListsStreamed(t *testing.T) {
	clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, false)
	cfg, cl := startAPIServer(t, "coral")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const nodes = 40
	for i := range nodes {
		addNodeWithImages(t, cl, fmt.Sprintf("n%02d", i), 30)
	}

	var mu sync.Mutex
	var lists []string // the Accept header of every node list, not watch
	counted := rest.CopyConfig(cfg)
	counted.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Path == "/api/v1/nodes" && r.URL.Query().Get("watch") != "true" {
				mu.Lock()
				lists = append(lists, r.Header.Get("Accept"))
				mu.Unlock()
			}
			return rt.RoundTrip(r)
		})
	})
	core, err := kubernetes.NewForConfig(counted)
	if err != nil {
		t.Fatal(err)
	}
	opts := CacheOptions(core.CoreV1().RESTClient())
	opts.Scheme = Scheme()
	c, err := cache.New(counted, opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("the cache did not start")
	}
	var got corev1.NodeList
	must(t, c.List(ctx, &got)) // starts the Node informer and waits for its sync
	if len(got.Items) != nodes {
		t.Fatalf("the cache holds %d nodes, want %d", len(got.Items), nodes)
	}
	for _, n := range got.Items {
		if n.Status.Images != nil || n.ManagedFields != nil || n.Status.Capacity != nil || n.Labels["pool"] != "web" || len(n.Status.Conditions) != 1 {
			t.Fatalf("node %s not slim or incomplete: %d images, capacity %v, labels %v, %d conditions",
				n.Name, len(n.Status.Images), n.Status.Capacity, n.Labels, len(n.Status.Conditions))
		}
	}
	mu.Lock()
	if len(lists) == 0 {
		t.Error("the Node informer sent no list request")
	}
	for _, accept := range lists {
		if accept != "application/json" {
			t.Errorf("a node list asked for %q: not nodelist.Slimmed's streamed JSON", accept)
		}
	}
	mu.Unlock()

	// The watch runs on from the list's resource version.
	addNodeWithImages(t, cl, "late", 30)
	var first corev1.Node
	must(t, cl.Get(ctx, client.ObjectKey{Name: "n00"}, &first))
	first.Labels["pool"] = "batch"
	must(t, cl.Update(ctx, &first))
	deadline := time.Now().Add(30 * time.Second)
	for {
		var late, n00 corev1.Node
		errLate := c.Get(ctx, client.ObjectKey{Name: "late"}, &late)
		must(t, c.Get(ctx, client.ObjectKey{Name: "n00"}, &n00))
		if errLate == nil && n00.Labels["pool"] == "batch" {
			if late.Status.Images != nil {
				t.Errorf("a watched node kept %d images", len(late.Status.Images))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s the watch has not brought the new node (%v) or the relabelled one (pool %q)", errLate, n00.Labels["pool"])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// addNodeWithImages adds a Ready node of pool web that lists images images,
// as a kubelet would.
func addNodeWithImages(t *testing.T, cl client.Client, name string, images int) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": "web"}}}
	must(t, cl.Create(context.Background(), n))
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	n.Status.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}
	for i := range images {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{
			Names:     []string{fmt.Sprintf("registry.example.com/team/app-%03d@sha256:%064d", i, i), fmt.Sprintf("registry.example.com/team/app-%03d:v1", i)},
			SizeBytes: int64(10_000_000 + i),
		})
	}
	must(t, cl.Status().Update(context.Background(), n))
}
