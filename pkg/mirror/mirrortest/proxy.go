package mirrortest

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Proxy is a reverse proxy in front of a plain-http registry that counts
// requests and may answer some itself (to inject 429s, 5xx, …).
type Proxy struct {
	// Host is "127.0.0.1:PORT" of the proxy.
	Host string

	mu        sync.Mutex
	counts    map[string]int
	intercept func(r *http.Request) (status int, header http.Header, ok bool)
}

// NewProxy starts a proxy to target until the test ends. intercept may be
// nil; when it returns ok, its answer is sent instead of the registry's.
func NewProxy(t testing.TB, target *Registry, intercept func(r *http.Request) (int, http.Header, bool)) *Proxy {
	t.Helper()
	if target.TLS {
		t.Fatal("mirrortest.NewProxy supports plain-http registries only")
	}
	u, _ := url.Parse(target.URL())
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	p := &Proxy{counts: map[string]int{}, intercept: intercept}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.counts[Classify(r)]++
		icpt := p.intercept
		p.mu.Unlock()
		if icpt != nil {
			if status, h, ok := icpt(r); ok {
				for k, v := range h {
					w.Header()[k] = v
				}
				w.WriteHeader(status)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.Host = strings.TrimPrefix(srv.URL, "http://")
	return p
}

// Classify names a registry request: "METHOD KIND" with KIND one of ping,
// manifest, blob, upload, mount, tags, other. A blob upload is "POST upload"
// (start), "PATCH upload" (data), "PUT upload" (commit); "POST mount" asks
// to mount a blob from another repository (and starts an upload if refused).
func Classify(r *http.Request) string {
	p := r.URL.Path
	kind := "other"
	switch {
	case p == "/v2/" || p == "/v2":
		kind = "ping"
	case strings.Contains(p, "/blobs/uploads") && r.Method == http.MethodPost && r.URL.Query().Get("from") != "":
		kind = "mount"
	case strings.Contains(p, "/blobs/uploads"):
		kind = "upload"
	case strings.Contains(p, "/manifests/"):
		kind = "manifest"
	case strings.Contains(p, "/blobs/"):
		kind = "blob"
	case strings.HasSuffix(p, "/tags/list"):
		kind = "tags"
	}
	return r.Method + " " + kind
}

// Counts returns a copy of the request counts by Classify key.
func (p *Proxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// Reset zeroes the counts.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts = map[string]int{}
}

// Writes is the number of requests that could change the registry: every
// POST, PUT, PATCH and DELETE.
func (p *Proxy) Writes() int {
	n := 0
	for k, v := range p.Counts() {
		if strings.HasPrefix(k, "POST ") || strings.HasPrefix(k, "PUT ") || strings.HasPrefix(k, "PATCH ") || strings.HasPrefix(k, "DELETE ") {
			n += v
		}
	}
	return n
}
