package diskcheck

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

func TestParseSummary(t *testing.T) {
	got, err := ParseSummary([]byte(`{"node":{"nodeName":"n1","runtime":{"imageFs":{"time":"2026-11-30T14:00:00Z","availableBytes":1000,"capacityBytes":4000,"usedBytes":300,"inodesFree":5},"containerFs":{"availableBytes":1,"capacityBytes":2}}},"pods":[]}`))
	if err != nil || got != (FsStats{AvailableBytes: 1000, CapacityBytes: 4000, UsedBytes: 300}) {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, raw := range []string{`{"node":{"nodeName":"n1"}}`, `{"node":{"runtime":{}}}`, `{"node":{"runtime":{"imageFs":{"usedBytes":3}}}}`} {
		if _, err := ParseSummary([]byte(raw)); !errors.Is(err, ErrNoImageFs) {
			t.Errorf("%s: %v, want ErrNoImageFs", raw, err)
		}
	}
	if _, err := ParseSummary([]byte(`<html>`)); err == nil || errors.Is(err, ErrNoImageFs) {
		t.Errorf("garbage: %v", err)
	}
}

func TestParseConfigz(t *testing.T) {
	for raw, want := range map[string]int{
		`{"kubeletconfig":{"imageGCHighThresholdPercent":70,"imageGCLowThresholdPercent":60}}`: 70,
		`{"kubeletconfig":{"imageGCHighThresholdPercent":100}}`:                                100,
		`{"kubeletconfig":{"cgroupDriver":"systemd"}}`:                                         DefaultImageGCHighThresholdPercent,
	} {
		got, err := ParseConfigz([]byte(raw))
		if err != nil || got != want {
			t.Errorf("%s: %d, %v; want %d", raw, got, err, want)
		}
	}
	if got, err := ParseConfigz([]byte(`{}`)); err == nil || got != DefaultImageGCHighThresholdPercent {
		t.Errorf("no kubeletconfig: %d, %v", got, err)
	}
}

// apiServer answers the node proxy's stats/summary and configz for every
// node, or 403 for all of them, and counts the requests.
func apiServer(t *testing.T, forbid bool) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/api/v1/nodes/"), "/proxy/", 2)
		w.Header().Set("Content-Type", "application/json")
		if forbid {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"nodes %q is forbidden: User \"dev\" cannot get resource \"nodes/proxy\"","reason":"Forbidden","code":403}`, parts[0])
			return
		}
		switch parts[1] {
		case "stats/summary":
			fmt.Fprintf(w, `{"node":{"nodeName":%q,"runtime":{"imageFs":{"availableBytes":%d,"capacityBytes":4000,"usedBytes":300}}}}`, parts[0], len(parts[0]))
		case "configz":
			fmt.Fprint(w, `{"kubeletconfig":{"imageGCHighThresholdPercent":70}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func restClient(t *testing.T, host string) rest.Interface {
	rc, err := rest.RESTClientFor(&rest.Config{Host: host, APIPath: "/api",
		ContentConfig: rest.ContentConfig{GroupVersion: &corev1.SchemeGroupVersion, NegotiatedSerializer: scheme.Codecs.WithoutConversion()},
		RateLimiter:   flowcontrol.NewFakeAlwaysRateLimiter()})
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func TestReadNodes(t *testing.T) {
	var nodes []string
	for i := range 50 {
		nodes = append(nodes, fmt.Sprintf("node-%d", i))
	}
	t.Run("every node, both reads", func(t *testing.T) {
		srv, n := apiServer(t, false)
		got := ReadNodes(context.Background(), restClient(t, srv.URL), nodes, ReadOptions{Concurrency: 4})
		for i, nd := range got {
			if nd.Node != nodes[i] || nd.Err != nil || nd.ThresholdErr != nil || nd.HighThresholdPercent != 70 || nd.ImageFs.AvailableBytes != int64(len(nodes[i])) {
				t.Errorf("%s: %+v", nodes[i], nd)
			}
		}
		if n.Load() != 100 {
			t.Errorf("%d requests, want 100", n.Load())
		}
	})
	t.Run("forbidden: the rest are not asked", func(t *testing.T) {
		srv, n := apiServer(t, true)
		got := ReadNodes(context.Background(), restClient(t, srv.URL), nodes, ReadOptions{Concurrency: 4})
		for i, nd := range got {
			if nd.Node != nodes[i] || !apierrors.IsForbidden(nd.Err) {
				t.Errorf("%s: %+v, want a forbidden error", nodes[i], nd)
			}
		}
		t.Logf("first: %v; last: %v", got[0].Err, got[len(got)-1].Err)
		if n.Load() > 8 { // two per node read, at most Concurrency nodes before the first answer
			t.Errorf("%d requests for 50 nodes, want at most 8", n.Load())
		}
	})
}
