package mirror

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestParseDestinationAndMap(t *testing.T) {
	tests := []struct {
		to, src, want, wantErr string
	}{
		{to: "registry.local:5000", src: "nginx:1.27", want: "registry.local:5000/library/nginx:1.27"},
		{to: "registry.local:5000/mirror/", src: "nginx", want: "registry.local:5000/mirror/library/nginx:latest"},
		{to: "localhost/m", src: "quay.io/org/app@sha256:" + strings.Repeat("a", 64), want: "localhost/m/org/app@sha256:" + strings.Repeat("a", 64)},
		{to: "r.example.com", src: "ghcr.io/org/app:v1@sha256:" + strings.Repeat("b", 64), want: "r.example.com/org/app:v1"},
		{to: "10.0.0.5:5000/a/b", src: "registry.k8s.io/pause:3.10", want: "10.0.0.5:5000/a/b/pause:3.10"},
		{to: "r.local/{registry}", src: "nginx:1.27", want: "r.local/docker.io/library/nginx:1.27"},
		{to: "r.local/m/{registry}", src: "quay.io/org/app:v1", want: "r.local/m/quay.io/org/app:v1"},
		{to: "r.local/{registry}", src: "Registry.Corp:5000/team/app:v1", want: "r.local/registry.corp_5000/team/app:v1"},
		{to: "r.local/{host}", wantErr: "the only placeholder is {registry}"},
		{to: "mirror", wantErr: "must start with a registry host"},
		{to: "myuser/repo", wantErr: "must start with a registry host"},
		{to: "https://r.example.com", wantErr: "drop the scheme"},
		{to: "r.example.com/app:v1", wantErr: "without tag or digest"},
		{to: "r.example.com/UPPER", wantErr: "invalid path"},
		{to: " ", wantErr: "empty destination"},
	}
	for _, tc := range tests {
		t.Run(tc.to+"<-"+tc.src, func(t *testing.T) {
			d, err := ParseDestination(tc.to)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.Map(ref, tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestCollisions(t *testing.T) {
	d, _ := ParseDestination("r.local:5000")
	mk := func(s string) *Item {
		ref, _ := name.ParseReference(s)
		dst, _ := d.Map(ref, s)
		return &Item{Original: s, Source: ref, Destination: dst}
	}
	err := collisions([]*Item{mk("quay.io/org/app:1"), mk("ghcr.io/org/app:1"), mk("ghcr.io/org/app:2")})
	if !errors.Is(err, ErrCollision) || !strings.Contains(err.Error(), "r.local:5000/org/app:1 ← quay.io/org/app:1, ghcr.io/org/app:1") {
		t.Fatalf("err = %v", err)
	}
	if err := collisions([]*Item{mk("quay.io/org/app:1"), mk("quay.io/org/app:2")}); err != nil {
		t.Fatal(err)
	}
}

func TestTagFilterSelect(t *testing.T) {
	tags := []string{"latest", "7.2.4", "7.0.15", "v7.4.0", "6.2.14", "7.2.4-alpine", "7.2", "8.0-rc1"}
	tests := []struct {
		all           bool
		regex, semver string
		want          string
		wantErr       string
	}{
		{regex: `^7\.`, want: "7.0.15 7.2 7.2.4 7.2.4-alpine"},
		{semver: "~7.2", want: "7.2 7.2.4"},
		{semver: ">=7", want: "7.0.15 7.2 7.2.4 v7.4.0"},
		{regex: `alpine$`, semver: ">=7.2.4-0", want: "7.2.4-alpine"},
		{all: true, want: "6.2.14 7.0.15 7.2 7.2.4 7.2.4-alpine 8.0-rc1 latest v7.4.0"},
		{regex: `(`, wantErr: "--tags"},
		{semver: "not a range", wantErr: "--semver"},
		{all: true, regex: "x", wantErr: "--all-tags"},
	}
	for _, tc := range tests {
		t.Run(tc.regex+"|"+tc.semver, func(t *testing.T) {
			f, err := NewTagFilter(tc.all, tc.regex, tc.semver)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(f.Select(tags), " "); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParsePlatforms(t *testing.T) {
	tests := []struct {
		in      []string
		want    string
		wantErr bool
	}{
		{in: []string{"linux/amd64"}, want: "linux/amd64"},
		{in: []string{"linux/amd64,linux/arm64", "linux/amd64"}, want: "linux/amd64,linux/arm64"},
		{in: []string{"linux/arm/v7"}, want: "linux/arm/v7"},
		{in: []string{"linux"}, wantErr: true},
		{in: []string{"a/b/c/d"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.in, ";"), func(t *testing.T) {
			ps, err := ParsePlatforms(tc.in)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "--platform") {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := platformList(ps); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"3", 3 * time.Second, true},
		{"-1", 0, false},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second, true},
		{now.Add(-5 * time.Second).Format(http.TimeFormat), 0, true},
		{"soon", 0, false},
	}
	for _, tc := range tests {
		got, ok := retryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("retryAfter(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestHostRouterRefusesPlainHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	router := &hostRouter{secure: http.DefaultTransport, insecure: http.DefaultTransport, hosts: []string{"insecure.example:5000"}}
	tests := []struct {
		url     string
		refused bool
	}{
		{url: "http://registry.example:5000/v2/", refused: true},
		{url: "http://10.1.2.3/v2/", refused: true},
		{url: "http://insecure.example:5000/v2/", refused: false},
		{url: srv.URL + "/v2/", refused: false}, // loopback
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		resp, err := router.RoundTrip(req)
		if resp != nil {
			resp.Body.Close()
		}
		if refused := errors.Is(err, ErrPlainHTTP); refused != tc.refused {
			t.Errorf("%s: err = %v, want refused=%v", tc.url, err, tc.refused)
		}
		if tc.refused && !strings.Contains(err.Error(), "--insecure-registry") {
			t.Errorf("%s: the error must name --insecure-registry: %v", tc.url, err)
		}
	}
}

func TestRetryTransport(t *testing.T) {
	var calls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		switch r.URL.Path {
		case "/429":
			if calls < 3 {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
		case "/500":
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	rt := &retryTransport{inner: http.DefaultTransport, attempts: 4, base: time.Millisecond, maxWait: 10 * time.Millisecond}
	tests := []struct {
		method, path string
		wantStatus   int
		wantCalls    int
	}{
		{http.MethodGet, "/429", 200, 3},
		{http.MethodGet, "/500", 500, 4},
		{http.MethodPost, "/500", 500, 1}, // not a read: never resent on 5xx
	}
	for _, tc := range tests {
		calls = 0
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.wantStatus || calls != tc.wantCalls {
			t.Errorf("%s %s: status %d after %d calls, want %d after %d", tc.method, tc.path, resp.StatusCode, calls, tc.wantStatus, tc.wantCalls)
		}
	}
}
