package nodelist

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coral-dev/coral/internal/testnodes"
	"github.com/coral-dev/coral/pkg/plan"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
)

// BenchmarkInformerFirstSync starts an informer of 1000 real-sized nodes
// (50 images each, internal/testnodes) that keeps plan.SlimNode of each, as
// the controller's Node cache does, and reports the most the heap grew
// (live and garbage) until it had synced. The server answers the first
// list whole, as an API server does from its watch cache (resourceVersion
// 0), and has streaming lists off, as an API server on etcd 3.4 or before
// Kubernetes 1.34.
//
//   - client-go: the ListWatch controller-runtime builds, protobuf, the
//     answer read and decoded whole before the transform slims each node;
//   - streamed: nodelist.Slimmed, each node decoded from the JSON stream
//     and slimmed before the next.
func BenchmarkInformerFirstSync(b *testing.B) {
	clientfeaturestesting.SetFeatureDuringTest(b, clientfeatures.WatchListClient, false)
	const total = 1000
	list := &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}, ListMeta: metav1.ListMeta{ResourceVersion: "1000"}}
	for i := range total {
		list.Items = append(list.Items, testnodes.Real(i))
	}
	// Both answers are encoded to files before measuring and served from
	// them, so the server holds neither objects nor bytes in this heap (nor
	// raises its GC goal) while the client lists.
	dir := b.TempDir()
	asJSON, asProto := filepath.Join(dir, "nodes.json"), filepath.Join(dir, "nodes.pb")
	jsonSize := encode(b, json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{}), list, asJSON)
	protoSize := encode(b, protobuf.NewSerializer(scheme.Scheme, scheme.Scheme), list, asProto)
	list = nil
	b.Logf("the node list: %.1f MB as JSON, %.1f MB as protobuf", float64(jsonSize)/1e6, float64(protoSize)/1e6)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto := strings.Contains(r.Header.Get("Accept"), "protobuf")
		if r.URL.Query().Get("watch") == "true" { // no change: hold the watch open
			if proto {
				w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf;stream=watch")
			} else {
				w.Header().Set("Content-Type", "application/json")
			}
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		if proto {
			w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf")
			http.ServeFile(w, r, asProto)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		http.ServeFile(w, r, asJSON)
	}))
	defer srv.Close()

	slim := func(obj any) (any, error) {
		if n, ok := obj.(*corev1.Node); ok {
			s := plan.SlimNode(n)
			return &s, nil
		}
		return obj, nil
	}
	jsonClient := kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL, QPS: -1})
	protoClient := kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL, QPS: -1, ContentConfig: rest.ContentConfig{
		AcceptContentTypes: runtime.ContentTypeProtobuf, ContentType: runtime.ContentTypeProtobuf}})
	for _, way := range []struct {
		name string
		lw   func() toolscache.ListerWatcher
	}{
		{"client-go", func() toolscache.ListerWatcher {
			return toolscache.NewListWatchFromClient(protoClient.CoreV1().RESTClient(), "nodes", "", fields.Everything())
		}},
		{"streamed", func() toolscache.ListerWatcher {
			watcher := toolscache.NewListWatchFromClient(jsonClient.CoreV1().RESTClient(), "nodes", "", fields.Everything())
			return &Slimmed{Client: jsonClient.CoreV1().RESTClient(), Watcher: watcher, Slim: plan.SlimNode}
		}},
	} {
		b.Run(way.name, func(b *testing.B) {
			var worst uint64
			for b.Loop() {
				b.StopTimer()
				inf := toolscache.NewSharedIndexInformer(way.lw(), &corev1.Node{}, 0, toolscache.Indexers{})
				if err := inf.SetTransform(slim); err != nil {
					b.Fatal(err)
				}
				goruntime.GC()
				base := heapObjects()
				var peak atomic.Uint64
				stopSampling, sampled := make(chan struct{}), make(chan struct{})
				go func() { // sample the heap while the informer syncs
					defer close(sampled)
					for {
						peak.Store(max(peak.Load(), heapObjects()))
						select {
						case <-stopSampling:
							return
						case <-time.After(200 * time.Microsecond):
						}
					}
				}()
				ctx, cancel := context.WithCancel(context.Background())
				b.StartTimer()
				go inf.RunWithContext(ctx)
				synced := toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
				b.StopTimer()
				close(stopSampling)
				<-sampled
				n := len(inf.GetStore().List())
				cancel()
				if !synced || n != total {
					b.Fatalf("synced %v with %d nodes, want %d", synced, n, total)
				}
				for _, obj := range inf.GetStore().List() {
					if len(obj.(*corev1.Node).Status.Images) != 0 {
						b.Fatal("a cached node kept its images")
					}
				}
				worst = max(worst, peak.Load()-base)
				b.StartTimer()
			}
			b.ReportMetric(float64(worst)/(1<<20), "peak-heap-MB")
		})
	}
}

// encode writes obj to the file path and returns its size.
func encode(b *testing.B, s runtime.Encoder, obj runtime.Object, path string) int {
	var buf bytes.Buffer
	if err := s.Encode(obj, &buf); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	return buf.Len()
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}
