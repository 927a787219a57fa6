package prefetch

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coral-dev/coral/internal/testnodes"
	"github.com/coral-dev/coral/pkg/diskcheck"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// benchNode is a node as a kubelet reports it: labels, four conditions,
// capacity, node info and 50 images (nodeStatusMaxImages).
func benchNode(i int) corev1.Node { return testnodes.Real(i) }

// BenchmarkNodePageDecode decodes one page of the plugin's node list (500
// nodes) as the API server sends it, in JSON (client-go's default) and in
// protobuf: the bytes and allocations a run pays per page, which set the
// plugin's peak memory while it lists a large cluster's nodes.
func BenchmarkNodePageDecode(b *testing.B) {
	list := &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}}
	for i := range nodePageSize {
		list.Items = append(list.Items, benchNode(i))
	}
	for _, tc := range []struct {
		name string
		s    runtime.Serializer
	}{
		{"json", json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{})},
		{"protobuf", protobuf.NewSerializer(scheme.Scheme, scheme.Scheme)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			data, err := runtime.Encode(tc.s, list)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				var out corev1.NodeList
				if _, _, err := tc.s.Decode(data, nil, &out); err != nil || len(out.Items) != nodePageSize {
					b.Fatalf("decoded %d nodes: %v", len(out.Items), err)
				}
			}
			b.ReportMetric(float64(len(data))/float64(nodePageSize), "wire-B/node")
		})
	}
}

// BenchmarkListNodesPeakHeap lists 1000 nodes the way a run does
// (listNodesPaged: each page streamed, each node slimmed as it is decoded)
// from an HTTP server answering in pages, and reports the most the heap grew
// (live and garbage) while it did, per page size. For comparison, "whole"
// lists the same pages with client-go's List, which reads and decodes a page
// whole before any node can be slimmed: what the plugin did before.
func BenchmarkListNodesPeakHeap(b *testing.B) {
	const total = 1000
	nodes := make([]corev1.Node, total)
	for i := range nodes {
		nodes[i] = benchNode(i)
	}
	// Every page is encoded to a file before measuring and served from it,
	// so the server side neither allocates nor holds pages in this heap
	// while the client lists.
	enc := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{})
	sizes := []int{500, 250, 100}
	dir := b.TempDir()
	for _, size := range sizes {
		for from := 0; from < total; from += size {
			to := min(from+size, total)
			list := &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}, Items: nodes[from:to]}
			if to < total {
				list.Continue = strconv.Itoa(to)
			}
			data, err := runtime.Encode(enc, list)
			if err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d-%d.json", size, from)), data, 0o600); err != nil {
				b.Fatal(err)
			}
		}
	}
	nodes = nil
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, _ := strconv.Atoi(r.URL.Query().Get("continue"))
		w.Header().Set("Content-Type", "application/json")
		http.ServeFile(w, r, filepath.Join(dir, r.URL.Query().Get("limit")+"-"+strconv.Itoa(from)+".json"))
	}))
	defer srv.Close()
	type way struct {
		name string
		size int
		list func(*RunOptions, int64) ([]*corev1.Node, error)
	}
	var ways []way
	for _, size := range sizes {
		ways = append(ways, way{"stream", size, func(o *RunOptions, n int64) ([]*corev1.Node, error) {
			return o.listNodesPaged(context.Background(), n)
		}})
	}
	ways = append(ways, way{"whole", 250, listNodesWhole})
	for _, w := range ways {
		size := w.size
		b.Run(fmt.Sprintf("%s/page=%d", w.name, size), func(b *testing.B) {
			var worst uint64
			for b.Loop() {
				o := &RunOptions{client: kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL, QPS: -1})}
				b.StopTimer()
				goruntime.GC()
				s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
				metrics.Read(s)
				base := s[0].Value.Uint64()
				var peak atomic.Uint64
				b.StartTimer()
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() { // sample the heap while the list runs
					defer close(done)
					s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
					for {
						metrics.Read(s)
						if v := s[0].Value.Uint64(); v > peak.Load() {
							peak.Store(v)
						}
						select {
						case <-stop:
							return
						case <-time.After(200 * time.Microsecond):
						}
					}
				}()
				got, err := w.list(o, int64(size))
				close(stop)
				<-done
				if err != nil || len(got) != total {
					b.Fatalf("listed %d nodes: %v", len(got), err)
				}
				worst = max(worst, peak.Load()-base)
			}
			b.ReportMetric(float64(worst)/(1<<20), "peak-heap-MB")
		})
	}
}

// listNodesWhole is the node list as the plugin read it before it
// streamed pages: client-go's List, a page read and decoded whole, then
// slimmed. Only BenchmarkListNodesPeakHeap uses it, as the comparison.
func listNodesWhole(o *RunOptions, pageSize int64) ([]*corev1.Node, error) {
	var out []*corev1.Node
	opts := metav1.ListOptions{Limit: pageSize}
	for {
		page, err := o.client.CoreV1().Nodes().List(context.Background(), opts)
		if err != nil {
			return nil, err
		}
		for i := range page.Items {
			s := slimNode(&page.Items[i], o.nodeImages)
			out = append(out, &s)
		}
		if opts.Continue = page.Continue; opts.Continue == "" {
			return out, nil
		}
	}
}

// The node list asks page after page with the continue token, keeps every
// node once, slimmed (the images of other repositories dropped), and
// starts over once when a token has expired.
func TestListNodesPages(t *testing.T) {
	const total = 7
	var calls []string
	expireOnce := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		calls = append(calls, q.Get("limit")+"/"+q.Get("continue"))
		from, _ := strconv.Atoi(q.Get("continue"))
		if from == 3 && expireOnce {
			expireOnce = false
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusGone)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","message":"The provided continue parameter is too old","code":410}`))
			return
		}
		limit, _ := strconv.Atoi(q.Get("limit"))
		to := min(from+limit, total)
		list := &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}}
		for i := from; i < to; i++ {
			list.Items = append(list.Items, benchNode(i))
		}
		if to < total {
			list.Continue = strconv.Itoa(to)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{}).Encode(list, w)
	}))
	defer srv.Close()
	o := &RunOptions{client: kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL, QPS: -1}),
		nodeImages: diskcheck.NewHeldFilter([]string{"registry.example.com/team-3/service-003:v1"})}
	got, err := o.listNodesPaged(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := "3/,3/3,3/,3/3,3/6"; strings.Join(calls, ",") != want {
		t.Errorf("requests %v, want %s (limit/continue; the expired token restarts the list)", calls, want)
	}
	if len(got) != total || len(o.nodes) != total {
		t.Fatalf("%d nodes listed (%d by name), want %d", len(got), len(o.nodes), total)
	}
	for i, n := range got {
		if n.Name != fmt.Sprintf("node-%05d", i) || len(n.Status.Conditions) != 4 || n.Labels["pool"] != "web" {
			t.Errorf("node %d: %s, %d conditions, labels %v", i, n.Name, len(n.Status.Conditions), n.Labels)
		}
		if len(n.Status.Images) != 1 || n.Status.Capacity != nil || n.ManagedFields != nil {
			t.Errorf("node %s not slimmed: %d images, capacity %v", n.Name, len(n.Status.Images), n.Status.Capacity)
		}
	}
}

// The streamed node list keeps client-go's API errors: a refusal is still
// Forbidden or Unauthorized, so the user is told what to fix (explainAPI).
func TestListNodesAPIErrors(t *testing.T) {
	for _, tc := range []struct {
		code   int
		reason string
		is     func(error) bool
		says   string
	}{
		{http.StatusForbidden, "Forbidden", apierrors.IsForbidden, "RBAC section of the README"},
		{http.StatusUnauthorized, "Unauthorized", apierrors.IsUnauthorized, "did not accept your credentials"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.code)
				fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"nodes is forbidden: User \"dev\" cannot list resource \"nodes\"","reason":%q,"code":%d}`, tc.reason, tc.code)
			}))
			defer srv.Close()
			o := &RunOptions{client: kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL, QPS: -1})}
			_, err := o.listNodes(context.Background())
			if !tc.is(err) {
				t.Fatalf("err = %v (%T), want a %s API error", err, err, tc.reason)
			}
			if msg := explainAPI(err, "listing nodes").Error(); !strings.Contains(msg, tc.says) {
				t.Errorf("explained as %q, want it to say %q", msg, tc.says)
			}
		})
	}
}
