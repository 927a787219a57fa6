package prefetch

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// The plugin must tell "Coral's CRDs are not installed" (a path the API
// server does not serve: plain 404 page) from "no such object" or "no such
// namespace" (a 404 Status naming it): the first is the controller-missing
// error, the second creates the object. Real client-go against an HTTP
// server answering the way kube-apiserver does.
func TestPersistClientTellsMissingCRDsFromMissingObjects(t *testing.T) {
	var created string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/namespaces/nocrd/"):
			http.NotFound(w, r) // what kube-apiserver's last handler does
		case r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"imageprefetches.coral.dev \"web\" not found","reason":"NotFound","details":{"name":"web","group":"coral.dev","kind":"imageprefetches"},"code":404}`))
		case r.Method == http.MethodPost:
			created = r.URL.Path
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"apiVersion":"coral.dev/v1alpha1","kind":"ImagePrefetch","metadata":{"name":"web","namespace":"ok","generation":1,"resourceVersion":"7"},"spec":{"images":["a"]}}`))
		}
	}))
	defer srv.Close()
	cl, err := NewPersistClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	obj := &coralv1.ImagePrefetch{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "nocrd"}}
	err = upsert(ctx, cl, imagePrefetches, obj, func() { obj.Spec.Images = []string{"a"} })
	var noCRD *noCRDError
	if !errors.As(err, &noCRD) || !strings.Contains(err.Error(), "kubectl coral install") {
		t.Errorf("no CRDs: err = %v, want a noCRDError saying to install the controller", err)
	}
	if created != "" {
		t.Errorf("no CRDs: something was created at %s", created)
	}

	obj = &coralv1.ImagePrefetch{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ok"}}
	if err := upsert(ctx, cl, imagePrefetches, obj, func() { obj.Spec.Images = []string{"a"} }); err != nil {
		t.Fatalf("object not found yet: err = %v, want it created", err)
	}
	if created != "/apis/coral.dev/v1alpha1/namespaces/ok/imageprefetches" || obj.Generation != 1 || obj.ResourceVersion != "7" {
		t.Errorf("created at %q, object read back %+v", created, obj.ObjectMeta)
	}

	recs, err := cl.prefetchNodes(ctx, "nocrd", "")
	if !isNoResource(err) || recs != nil {
		t.Errorf("listing without CRDs: %v, %v; want isNoResource", recs, err)
	}
}
