package controller

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/jobs"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// A deleted object's pull Jobs go in one request (a deletecollection by
// label), its unpin Jobs stay, and its finalizer goes; while an unpin Job
// of an older controller (annotation, no label) exists, which that request
// would take too, the pull Jobs go one by one instead. Against a real API
// server, every request counted.
func TestFinalizeDeletesPullJobsAtOnce(t *testing.T) {
	cfg, cl := startAPIServer(t, "coral")
	for _, tc := range []struct {
		name            string
		labelledUnpin   bool
		wantCollections int
		wantSingles     int
	}{
		{"unpin Job labelled", true, 1, 0},
		{"unpin Job of an older controller", false, 0, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ns := strings.ReplaceAll(strings.ToLower(tc.name), " ", "-")
			must(t, cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
			ip := &coralv1.ImagePrefetch{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Finalizers: []string{Finalizer}},
				Spec:       coralv1.ImagePrefetchSpec{Images: []string{"registry.example.com/app:v1"}},
			}
			must(t, cl.Create(ctx, ip))
			job := func(name string, unpin, label bool) {
				j := &batchv1.Job{
					ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{},
						Labels: map[string]string{jobs.LabelManagedBy: ManagedBy, LabelPrefetchUID: string(ip.UID)}},
					Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
						RestartPolicy: corev1.RestartPolicyNever,
						Containers:    []corev1.Container{{Name: "w", Image: "worker:test"}},
					}}},
				}
				if unpin {
					j.Annotations[annotationUnpin] = "true"
					if label {
						j.Labels[labelUnpin] = "true"
					}
				}
				must(t, cl.Create(ctx, j))
			}
			for i := range 30 {
				job(fmt.Sprintf("pull-%02d", i), false, false)
			}
			job("unpin", true, tc.labelledUnpin)

			var mu sync.Mutex
			collections, singles := 0, 0
			counted := rest.CopyConfig(cfg)
			counted.Wrap(func(rt http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) {
					if r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/apis/batch/v1/namespaces/"+ns+"/jobs") {
						mu.Lock()
						if strings.HasSuffix(r.URL.Path, "/jobs") {
							collections++
						} else {
							singles++
						}
						mu.Unlock()
					}
					return rt.RoundTrip(r)
				})
			})
			c, v := newCacheView(ctx, t, counted)
			startCache(ctx, t, c)
			waitFor(t, "the cache holds the 31 Jobs", func() bool { l, err := v.Jobs(ns, string(ip.UID)); return err == nil && len(l) == 31 })
			w, err := client.New(counted, client.Options{Scheme: Scheme()})
			must(t, err)
			s := &shared{client: w, view: v, deleted: map[types.NamespacedName]time.Time{}, recorded: map[types.NamespacedName]time.Time{}}

			must(t, cl.Delete(ctx, ip))
			must(t, cl.Get(ctx, client.ObjectKeyFromObject(ip), ip))
			if ip.DeletionTimestamp == nil {
				t.Fatal("the object has no deletion timestamp: its finalizer did not hold it")
			}
			if _, err := s.finalize(ctx, ip); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			if collections != tc.wantCollections || singles != tc.wantSingles {
				t.Errorf("Job deletes: %d collections, %d by name; want %d and %d", collections, singles, tc.wantCollections, tc.wantSingles)
			}
			mu.Unlock()
			var left batchv1.JobList
			must(t, cl.List(ctx, &left, client.InNamespace(ns)))
			var names []string
			for _, j := range left.Items {
				if j.DeletionTimestamp == nil {
					names = append(names, j.Name)
				}
			}
			if strings.Join(names, " ") != "unpin" {
				t.Errorf("Jobs left: %v, want only the unpin Job", names)
			}
			err = cl.Get(ctx, client.ObjectKeyFromObject(ip), &coralv1.ImagePrefetch{})
			if !apierrors.IsNotFound(err) {
				t.Errorf("the object is still there after finalize (%v)", err)
			}
			if len(s.deleted) != 30 {
				t.Errorf("%d Jobs remembered as deleted, want the 30 pull Jobs (the cache still shows them)", len(s.deleted))
			}
		})
	}
}
