package worker

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/registryauth"
	"github.com/coral-dev/coral/pkg/report"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeRuntime is a CRI image service served over a real gRPC unix socket:
// the worker's client, codec and error handling run as in production.
type fakeRuntime struct {
	runtimeapi.UnimplementedImageServiceServer
	runtimeapi.UnimplementedRuntimeServiceServer

	mu       sync.Mutex
	images   map[string]*runtimeapi.Image // by ref
	remote   map[string]string            // ref → digest the "registry" serves
	needAuth map[string]string            // ref → "user:pass" required
	// failures: ref → errors returned by the next PullImage calls, in order
	failures map[string][]error
	delay    time.Duration
	pulls    map[string]int
	onPull   func(ref string)
	pinned   func(ref string) bool
	extra    func(*grpcServer)
	inFlight atomic.Int32
	maxSeen  atomic.Int32
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{images: map[string]*runtimeapi.Image{}, remote: map[string]string{}, needAuth: map[string]string{}, failures: map[string][]error{}, pulls: map[string]int{}}
}

func (f *fakeRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "fake", RuntimeVersion: "1.0"}, nil
}

func (f *fakeRuntime) ImageStatus(_ context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img := f.images[req.Image.Image]
	if img != nil && f.pinned != nil {
		img.Pinned = f.pinned(req.Image.Image)
	}
	return &runtimeapi.ImageStatusResponse{Image: img}, nil
}

func (f *fakeRuntime) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.Image.Image
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxSeen.Load()
		if n <= m || f.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return nil, status.Error(codes.DeadlineExceeded, "pull cancelled")
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulls[ref]++
	if errs := f.failures[ref]; len(errs) > 0 {
		f.failures[ref] = errs[1:]
		return nil, errs[0]
	}
	if want, ok := f.needAuth[ref]; ok {
		if req.Auth == nil || req.Auth.Username+":"+req.Auth.Password != want {
			return nil, status.Errorf(codes.Unknown, `failed to pull and unpack image %q: failed to resolve reference %q: pulling from host 127.0.0.1:5001 failed with status code [manifests v1]: 401 Unauthorized`, ref, ref)
		}
	}
	d, ok := f.remote[ref]
	if !ok {
		return nil, status.Errorf(codes.NotFound, `failed to pull and unpack image %q: failed to resolve reference %q: %s: not found`, ref, ref, ref)
	}
	f.images[ref] = &runtimeapi.Image{Id: "sha256:img" + d[7:15], RepoTags: []string{ref}, RepoDigests: []string{repoOf(ref) + "@" + d}, Size: 1000}
	if f.onPull != nil {
		f.onPull(ref)
	}
	return &runtimeapi.PullImageResponse{ImageRef: f.images[ref].Id}, nil
}

type grpcServer = grpc.Server

func repoOf(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i]
	}
	return ref
}

// serve starts the fake on a unix socket and returns its endpoint.
func serve(t *testing.T, f *fakeRuntime) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "cri.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterImageServiceServer(srv, f)
	runtimeapi.RegisterRuntimeServiceServer(srv, f)
	if f.extra != nil {
		f.extra(srv)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return "unix://" + sock
}

func dial(t *testing.T, f *fakeRuntime) *CRIClient {
	t.Helper()
	c, err := Dial(context.Background(), serve(t, f))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dg(s string) string { return fmt.Sprintf("sha256:%064x", len(s)*7919+int(s[0])) }

func fastOpts() PullOptions {
	return PullOptions{MaxParallel: 3, ImageTimeout: 5 * time.Second, Retries: 3, Backoff: 10 * time.Millisecond}
}

func TestPullOutcomes(t *testing.T) {
	f := newFakeRuntime()
	f.remote["reg.local/app:v1"] = dg("app")
	f.remote["reg.local/flaky:v1"] = dg("flaky")
	f.remote["reg.local/private:v1"] = dg("private")
	f.remote["reg.local/moved:v1"] = dg("moved-now")
	f.needAuth["reg.local/private:v1"] = "alice:wonder"
	f.failures["reg.local/flaky:v1"] = []error{
		status.Error(codes.Unavailable, "connection refused"),
		status.Error(codes.Unknown, "failed to copy: httpReadSeeker: failed open: unexpected status code https://reg.local/v2/flaky/blobs/sha256:x: 503 Service Unavailable"),
	}
	f.images["reg.local/present:v1"] = &runtimeapi.Image{RepoDigests: []string{"reg.local/present@" + dg("present")}, Size: 42}
	f.images["reg.local/stale:v1"] = &runtimeapi.Image{RepoDigests: []string{"reg.local/stale@" + dg("old")}, Size: 42}
	f.remote["reg.local/stale:v1"] = dg("stale")
	c := dial(t, f)

	k := &registryauth.Keyring{}
	// a wrong, more specific credential first: the worker must go on to the right one
	k.Add("reg.local/private", registryauth.Credential{Username: "alice", Password: "wrong"})
	k.Add("reg.local", registryauth.Credential{Username: "alice", Password: "wonder"})
	o := fastOpts()
	o.Keyring = k

	items := []Item{
		{Image: "reg.local/app:v1", ExpectedDigest: dg("app")},
		{Image: "reg.local/present:v1", ExpectedDigest: dg("present")},
		{Image: "reg.local/missing:v1"},
		{Image: "reg.local/flaky:v1"},
		{Image: "reg.local/private:v1"},
		{Image: "reg.local/stale:v1", ExpectedDigest: dg("stale")},
	}
	r := Pull(context.Background(), c, items, o)
	want := []struct {
		st       report.Status
		msg      string
		attempts int
	}{
		{report.StatusPulled, "", 1},
		{report.StatusPresent, "", 0},
		{report.StatusFailed, "image not found", 1},
		{report.StatusPulled, "", 3},
		{report.StatusPulled, "", 2},
		{report.StatusPulled, "", 1},
	}
	for i, w := range want {
		got := r.Items[i]
		if got.Status != w.st || !strings.Contains(got.Message, w.msg) || got.Attempts != w.attempts {
			t.Errorf("%s: got %s %q attempts=%d, want %s %q attempts=%d", items[i].Image, got.Status, got.Message, got.Attempts, w.st, w.msg, w.attempts)
		}
	}
	if r.Items[0].Digest != dg("app") || r.Items[0].SizeBytes != 1000 {
		t.Errorf("pulled digest/size = %s/%d", r.Items[0].Digest, r.Items[0].SizeBytes)
	}
	if r.Items[1].Digest != dg("present") {
		t.Errorf("present digest = %s", r.Items[1].Digest)
	}
	if r.Items[5].Digest != dg("stale") {
		t.Errorf("a stale local copy must be replaced: digest %s", r.Items[5].Digest)
	}
	if f.pulls["reg.local/present:v1"] != 0 {
		t.Error("a present image was pulled again")
	}
	if f.pulls["reg.local/missing:v1"] != 1 {
		t.Errorf("not-found was retried: %d pulls", f.pulls["reg.local/missing:v1"])
	}
}

func TestPullUnauthorizedIsNotRetried(t *testing.T) {
	f := newFakeRuntime()
	f.remote["reg.local/private:v1"] = dg("private")
	f.needAuth["reg.local/private:v1"] = "alice:wonder"
	c := dial(t, f)
	r := Pull(context.Background(), c, []Item{{Image: "reg.local/private:v1"}}, fastOpts())
	it := r.Items[0]
	if it.Status != report.StatusFailed || !strings.Contains(it.Message, "unauthorized") || !strings.Contains(it.Message, "--pull-secret") {
		t.Fatalf("got %s %q", it.Status, it.Message)
	}
	if f.pulls["reg.local/private:v1"] != 1 {
		t.Fatalf("unauthorized retried: %d pulls", f.pulls["reg.local/private:v1"])
	}
}

func TestPullTransientGivesUp(t *testing.T) {
	f := newFakeRuntime()
	f.remote["r/x:1"] = dg("x")
	for i := 0; i < 10; i++ {
		f.failures["r/x:1"] = append(f.failures["r/x:1"], status.Error(codes.Unavailable, "connection refused"))
	}
	c := dial(t, f)
	o := fastOpts()
	o.Retries = 2
	r := Pull(context.Background(), c, []Item{{Image: "r/x:1"}}, o)
	if it := r.Items[0]; it.Status != report.StatusFailed || it.Attempts != 3 || !strings.Contains(it.Message, "unavailable") {
		t.Fatalf("got %+v", it)
	}
}

func TestPullTimeoutAndConcurrency(t *testing.T) {
	f := newFakeRuntime()
	f.delay = 300 * time.Millisecond
	var items []Item
	for i := 0; i < 6; i++ {
		ref := fmt.Sprintf("r/img%d:1", i)
		f.remote[ref] = dg(ref)
		items = append(items, Item{Image: ref})
	}
	c := dial(t, f)
	o := fastOpts()
	o.MaxParallel = 2
	r := Pull(context.Background(), c, items, o)
	for _, it := range r.Items {
		if it.Status != report.StatusPulled {
			t.Fatalf("%s: %s %s", it.Item, it.Status, it.Message)
		}
	}
	if m := f.maxSeen.Load(); m != 2 {
		t.Errorf("max concurrent pulls = %d, want 2 (--max-pulls-per-node)", m)
	}

	o.ImageTimeout = 100 * time.Millisecond
	f.delay = 2 * time.Second
	r = Pull(context.Background(), c, []Item{{Image: "r/slow:1"}}, o)
	if it := r.Items[0]; it.Status != report.StatusFailed || !strings.Contains(it.Message, "timed out after 100ms") {
		t.Fatalf("got %s %q", it.Status, it.Message)
	}
}

// Sixty images with long names and no expected digests cannot fit their
// digests in kubelet's 4 KiB termination message: the worker marks it
// overflowed (statuses only) and writes the full report to its log. Every
// fifth image is private: the worker must pass the mounted pull secret's
// credential to the runtime (the pulls succeed only with it) and never print it.
func TestMainSixtyImagesOverflowAndExitCode(t *testing.T) {
	const password = "wonder-0a9c3f" // distinctive: any appearance in output is a leak
	f := newFakeRuntime()
	ep := serve(t, f)
	authDir := t.TempDir()
	secret := `{"auths":{"registry.example.com:5000":{"username":"alice","password":"` + password + `"}}}`
	if err := os.WriteFile(filepath.Join(authDir, "0-regcred.json"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"pull", "--runtime-endpoint=" + ep, "--backoff=1ms", "--max-parallel=8", "--auth-dir=" + authDir}
	var images []string
	for i := 0; i < 60; i++ {
		ref := fmt.Sprintf("registry.example.com:5000/team/service-with-a-long-name-%02d:v1.2.3", i)
		images = append(images, ref)
		if i != 13 {
			f.remote[ref] = fmt.Sprintf("sha256:%064x", i+1)
		}
		if i%5 == 0 {
			f.needAuth[ref] = "alice:" + password
		}
		args = append(args, "--image="+ref)
	}
	// one private image whose registry wants another password: it fails with 401
	denied := "registry.example.com:5000/team/denied:v1"
	images = append(images, denied)
	f.remote[denied] = fmt.Sprintf("sha256:%064x", 999)
	f.needAuth[denied] = "alice:another"
	args = append(args, "--image="+denied)

	term := filepath.Join(t.TempDir(), "termination-log")
	var stdout, stderr strings.Builder
	code := Main(context.Background(), args, &stdout, &stderr, term)
	if code != 1 {
		t.Fatalf("exit code %d, want 1 (two images failed); stderr:\n%s", code, stderr.String())
	}
	msg, err := os.ReadFile(term)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) > report.TerminationMessageLimit {
		t.Fatalf("termination message %d bytes > 4096", len(msg))
	}
	dec, err := report.DecodeTermination(string(msg), images, make([]string, len(images)))
	if err != nil {
		t.Fatal(err)
	}
	if !dec.Overflow {
		t.Fatalf("61 full digests cannot fit in %d bytes, yet the termination message is not marked overflowed (%d bytes)", report.TerminationMessageLimit, len(msg))
	}
	full, err := report.DecodeFull(strings.NewReader(stdout.String()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range images {
		want := report.StatusPulled
		if i == 13 || images[i] == denied {
			want = report.StatusFailed
		}
		if dec.Items[i].Status != want || full.Items[i].Status != want {
			t.Fatalf("%s: termination %s, full %s (%s), want %s", images[i], dec.Items[i].Status, full.Items[i].Status, full.Items[i].Message, want)
		}
		if i < 60 && want == report.StatusPulled && full.Items[i].Digest != fmt.Sprintf("sha256:%064x", i+1) {
			t.Fatalf("item %d digest %s", i, full.Items[i].Digest)
		}
	}
	if m := full.Items[len(images)-1].Message; !strings.Contains(m, "401") {
		t.Errorf("the denied image's message does not say 401: %q", m)
	}
	for name, out := range map[string]string{"stdout": stdout.String(), "stderr": stderr.String(), "termination message": string(msg)} {
		if strings.Contains(out, password) {
			t.Errorf("the pull secret's password appears in the worker's %s", name)
		}
	}
}

func TestMainRuntimeDown(t *testing.T) {
	term := filepath.Join(t.TempDir(), "termination-log")
	var stdout, stderr strings.Builder
	code := Main(context.Background(), []string{"pull", "--runtime-endpoint=unix://" + filepath.Join(t.TempDir(), "none.sock"), "--image=a:1"}, &stdout, &stderr, term)
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	msg, _ := os.ReadFile(term)
	dec, err := report.DecodeTermination(string(msg), []string{"a:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Items[0].Status != report.StatusFailed || !strings.Contains(dec.Items[0].Message, "does not answer") {
		t.Fatalf("got %+v", dec.Items[0])
	}
	if code := Main(context.Background(), []string{"pull"}, &stdout, &stderr, term); code != 2 {
		t.Fatalf("no images: exit %d, want 2", code)
	}
}

func TestRepository(t *testing.T) {
	for in, want := range map[string]string{
		"nginx":                            "docker.io/library/nginx",
		"nginx:1.27":                       "docker.io/library/nginx",
		"docker.io/library/nginx@sha256:a": "docker.io/library/nginx",
		"127.0.0.1:5000/x/y:v1":            "127.0.0.1:5000/x/y",
		"localhost/x":                      "localhost/x",
	} {
		if got := repository(in); got != want {
			t.Errorf("repository(%q) = %q, want %q", in, got, want)
		}
	}
}
