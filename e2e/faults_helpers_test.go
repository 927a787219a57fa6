package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/report"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ---- the cluster harness ------------------------------------------------------

// nodeSh runs e2e/cluster/node.sh with args and fails the test if it fails.
func nodeSh(t *testing.T, args ...string) {
	t.Helper()
	if err := nodeShErr(args...); err != nil {
		t.Fatal(err)
	}
}

func nodeShErr(args ...string) error {
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot(), "e2e", "cluster", "node.sh")}, args...)...)
	cmd.Dir = repoRoot()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("node.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// waitNodeReady waits until node is Ready and its runtime answers.
func (c *cluster) waitNodeReady(t *testing.T, node string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) {
		n, err := c.client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err == nil {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					if ok, _ := c.runtimeAnswers(node); ok {
						return
					}
				}
			}
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("%s is not Ready after %s", node, bound)
}

// ---- running the plugin and watching it ----------------------------------------

// pluginRun is a kubectl-coral process started by startPlugin.
type pluginRun struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	stdout strings.Builder
	done   chan struct{}
	code   int
	runID  string
	// seen is signalled (closed) the first time a line matches a pattern.
	waiters []*lineWaiter
}

type lineWaiter struct {
	re *regexp.Regexp
	ch chan string
}

var runLine = regexp.MustCompile(`run ([a-z0-9]+): \d+ nodes in namespace`)

// startPlugin starts kubectl-coral with args; its stderr is read line by line.
func (c *cluster) startPlugin(t *testing.T, args ...string) *pluginRun {
	t.Helper()
	p := &pluginRun{cmd: c.coralCmd(args...), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = &p.stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started kubectl coral %s (pid %d)", strings.Join(args, " "), p.cmd.Process.Pid)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, line)
			if m := runLine.FindStringSubmatch(line); m != nil && p.runID == "" {
				p.runID = m[1]
			}
			for _, w := range p.waiters {
				if w.re.MatchString(line) {
					select {
					case w.ch <- line:
					default:
					}
				}
			}
			p.mu.Unlock()
		}
		err := p.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = 128 + int(ws.Signal())
			}
		} else if err != nil {
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitLine waits for a stderr line matching pattern (a regexp) and returns it.
func (p *pluginRun) waitLine(t *testing.T, pattern string, bound time.Duration) string {
	t.Helper()
	w := &lineWaiter{re: regexp.MustCompile(pattern), ch: make(chan string, 1)}
	p.mu.Lock()
	for _, l := range p.lines {
		if w.re.MatchString(l) {
			p.mu.Unlock()
			return l
		}
	}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	select {
	case l := <-w.ch:
		return l
	case <-p.done:
		// The line may have come with the last ones.
		select {
		case l := <-w.ch:
			return l
		default:
		}
		t.Fatalf("the plugin exited (%d) before printing a line matching %q:\n%s", p.code, pattern, p.stderr())
	case <-time.After(bound):
		t.Fatalf("no line matching %q within %s:\n%s", pattern, bound, p.stderr())
	}
	return ""
}

func (p *pluginRun) stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// wait waits for the plugin to exit (within bound) and returns its result,
// with the JSON report parsed when there is one.
func (p *pluginRun) wait(t *testing.T, bound time.Duration) result {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(bound):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("the plugin did not exit within %s:\n%s", bound, p.stderr())
	}
	res := result{code: p.code, stdout: p.stdout.String(), stderr: p.stderr()}
	t.Logf("kubectl coral → exit %d\nstderr:\n%s", res.code, res.stderr)
	if strings.Contains(res.stdout, "PrefetchReport") {
		res.report = &report.PrefetchReport{}
		if err := json.Unmarshal([]byte(res.stdout), res.report); err != nil {
			t.Fatalf("the JSON report does not parse: %v\n%s", err, res.stdout)
		}
	}
	return res
}

// ---- what a run leaves behind ---------------------------------------------------

// runObjects lists what is left of the plugin's runs in ns: Jobs, pods and
// run Leases (labelled app.kubernetes.io/managed-by=kubectl-coral).
func (c *cluster) runObjects(t *testing.T, ns string) []string {
	t.Helper()
	ctx := context.Background()
	opts := metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=kubectl-coral"}
	var left []string
	js, err := c.client.BatchV1().Jobs(ns).List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range js.Items {
		left = append(left, "job/"+j.Name)
	}
	ps, err := c.client.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps.Items {
		s := "pod/" + p.Name + " (" + string(p.Status.Phase)
		if p.DeletionTimestamp != nil {
			s += ", terminating"
		}
		left = append(left, s+", node "+p.Spec.NodeName+")")
	}
	ls, err := c.client.CoordinationV1().Leases(ns).List(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls.Items {
		left = append(left, "lease/"+l.Name)
	}
	return left
}

// expectNothingLeft waits (up to bound: the garbage collector deletes pods
// after their Job) until no Job, pod or Lease of the plugin is left in ns.
func (c *cluster) expectNothingLeft(t *testing.T, ns string, bound time.Duration) {
	t.Helper()
	start := time.Now()
	var left []string
	for {
		left = c.runObjects(t, ns)
		if len(left) == 0 {
			t.Logf("nothing of the run left in %s after %s", ns, time.Since(start).Round(100*time.Millisecond))
			return
		}
		if time.Since(start) > bound {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Errorf("orphans in %s %s after the run: %s", ns, bound, strings.Join(left, "; "))
}

// ---- reports ----------------------------------------------------------------------

// expectStatus checks one node × image row of a report.
func expectStatus(t *testing.T, rep *report.PrefetchReport, node, img string, want report.Status) report.Result {
	t.Helper()
	if rep == nil {
		t.Fatalf("no report")
	}
	r, ok := byNodeImage(rep)[node][img]
	if !ok {
		t.Errorf("%s × %s: no row in the report", node, img)
		return r
	}
	if r.Status != want {
		t.Errorf("%s × %s: %s (%s), want %s", node, img, r.Status, r.Message, want)
	} else {
		t.Logf("%s × %s: %s attempts=%d %s", node, img, r.Status, r.Attempts, r.Message)
	}
	return r
}

// expectRows checks the report has exactly one row per node × image (nothing
// lost, nothing counted twice).
func expectRows(t *testing.T, rep *report.PrefetchReport, nodes []string, imgs ...string) {
	t.Helper()
	if rep == nil {
		t.Fatalf("no report")
	}
	seen := map[string]int{}
	for _, r := range rep.Results {
		seen[r.Node+" "+r.Image]++
	}
	for _, n := range nodes {
		for _, i := range imgs {
			if seen[n+" "+i] != 1 {
				t.Errorf("%s × %s: %d rows, want 1", n, i, seen[n+" "+i])
			}
		}
	}
	if len(rep.Results) != len(nodes)*len(imgs) {
		t.Errorf("%d rows, want %d", len(rep.Results), len(nodes)*len(imgs))
	}
}

// removeImage deletes ref from a node's runtime (so the next pull is real).
func (c *cluster) removeImage(t *testing.T, node, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.imageService(t, node).RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("removing %s from %s: %v", ref, node, err)
	}
}

// ---- a registry that misbehaves -----------------------------------------------------

// faultKind is how a registry proxy listener misbehaves.
type faultKind int

const (
	// pass forwards every request to the registry.
	pass faultKind = iota
	// failStatus answers Status (5xx) to the first Times matching requests.
	failStatus
	// tooMany answers 429 with Retry-After to the first Times matching requests.
	tooMany
	// stall holds matching requests without an answer until the client gives
	// up (or the proxy closes).
	stall
	// notFound answers 404 MANIFEST_UNKNOWN to every matching request.
	notFound
)

// fault says what a listener does to requests whose path contains Match
// ("/manifests/" or "/blobs/"; "" means every /v2/<name>/ request).
type fault struct {
	Kind       faultKind
	Match      string
	Status     int
	Times      int
	RetryAfter int // seconds
}

// hit is one request a listener saw.
type hit struct {
	At      time.Time
	Method  string
	Path    string
	Faulted int // the status the proxy answered itself, or 0 when forwarded
}

// proxyListener is one port of the proxy: the plugin's (never faulted) or a
// node's.
type proxyListener struct {
	name  string
	addr  string
	srv   *http.Server
	mu    sync.Mutex
	fault fault
	done  int // faults served
	hits  []hit
}

// registryProxy stands in front of the local registry under its own host
// name, 127.0.0.1:<port>. The plugin (tag resolution) talks to that port,
// which always forwards. Each node's containerd is redirected (node.sh
// set-registry-host) to a port of its own, so a fault can hit one node, or
// every node, without touching the plugin's view of the registry.
type registryProxy struct {
	Host      string // the registry host name in image references
	upstream  *url.URL
	plugin    *proxyListener
	nodes     map[string]*proxyListener
	release   chan struct{}
	closeOnce sync.Once
}

// startRegistryProxy starts the proxy in front of CORAL_REGISTRY and points
// every node's containerd at its node port.
func (c *cluster) startRegistryProxy(t *testing.T) *registryProxy {
	t.Helper()
	p := newRegistryProxy(t, c.env["CORAL_REGISTRY"], c.nodes)
	for _, n := range c.nodes {
		nodeSh(t, "set-registry-host", n, p.Host, p.nodes[n].addr)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if err := nodeShErr("unset-registry-host", n, p.Host); err != nil {
				t.Error(err)
			}
		}
	})
	t.Logf("registry proxy %s in front of %s; nodes: %v", p.Host, p.upstream.Host, p.nodeAddrs())
	return p
}

// newRegistryProxy starts a proxy in front of the registry at upstream
// (host:port) with one listener per node; it closes when the test ends.
func newRegistryProxy(t *testing.T, upstream string, nodes []string) *registryProxy {
	t.Helper()
	up, err := url.Parse("http://" + upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &registryProxy{upstream: up, nodes: map[string]*proxyListener{}, release: make(chan struct{})}
	p.plugin = p.listen(t, "plugin")
	p.Host = p.plugin.addr
	for _, n := range nodes {
		p.nodes[n] = p.listen(t, n)
	}
	t.Cleanup(p.close)
	return p
}

func (p *registryProxy) nodeAddrs() map[string]string {
	m := map[string]string{}
	for n, l := range p.nodes {
		m[n] = l.addr
	}
	return m
}

func (p *registryProxy) listen(t *testing.T, name string) *proxyListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &proxyListener{name: name, addr: ln.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(p.upstream)
	rp.ErrorLog = nil
	l.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serve(l, rp, w, r) }), ReadHeaderTimeout: 10 * time.Second}
	go l.srv.Serve(ln)
	return l
}

func (p *registryProxy) close() {
	p.closeOnce.Do(func() {
		close(p.release)
		for _, l := range append([]*proxyListener{p.plugin}, p.nodeList()...) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			l.srv.Shutdown(ctx)
			cancel()
		}
	})
}

func (p *registryProxy) nodeList() []*proxyListener {
	var ls []*proxyListener
	for _, l := range p.nodes {
		ls = append(ls, l)
	}
	return ls
}

// set gives nodes (every node when none is named) a fault, and resets their
// counters and logs.
func (p *registryProxy) set(f fault, nodes ...string) {
	ls := p.nodeList()
	if len(nodes) > 0 {
		ls = nil
		for _, n := range nodes {
			ls = append(ls, p.nodes[n])
		}
	}
	for _, l := range ls {
		l.mu.Lock()
		l.fault, l.done, l.hits = f, 0, nil
		l.mu.Unlock()
	}
}

// hits returns what the node's listener saw.
func (p *registryProxy) hits(node string) []hit {
	l := p.nodes[node]
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]hit(nil), l.hits...)
}

// ref names repo:tag of the local registry through the proxy.
func (p *registryProxy) ref(plainRef string) string {
	return p.Host + strings.TrimPrefix(plainRef, p.upstream.Host)
}

func (p *registryProxy) serve(l *proxyListener, rp *httputil.ReverseProxy, w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	f := l.fault
	matches := f.Kind != pass && strings.HasPrefix(r.URL.Path, "/v2/") && r.URL.Path != "/v2/" && strings.Contains(r.URL.Path, f.Match)
	h := hit{At: time.Now(), Method: r.Method, Path: r.URL.Path}
	act := pass
	if matches {
		switch f.Kind {
		case failStatus, tooMany:
			if l.done < f.Times {
				l.done++
				act = f.Kind
			}
		default:
			l.done++
			act = f.Kind
		}
	}
	switch act {
	case failStatus:
		h.Faulted = f.Status
	case tooMany:
		h.Faulted = http.StatusTooManyRequests
	case notFound:
		h.Faulted = http.StatusNotFound
	case stall:
		h.Faulted = -1
	}
	l.hits = append(l.hits, h)
	l.mu.Unlock()

	switch act {
	case failStatus:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.Status)
		io.WriteString(w, `{"errors":[{"code":"UNAVAILABLE","message":"injected by the e2e fault proxy"}]}`)
	case tooMany:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", fmt.Sprint(f.RetryAfter))
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"injected by the e2e fault proxy"}]}`)
	case notFound:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown (injected by the e2e fault proxy)"}]}`)
	case stall:
		select {
		case <-r.Context().Done():
		case <-p.release:
		}
	default:
		rp.ServeHTTP(w, r)
	}
}

// TestRegistryProxy checks the fault proxy itself against an in-process
// registry (no cluster needed): each fault does what the matrix relies on.
func TestRegistryProxy(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	up := strings.TrimPrefix(reg.URL, "http://")
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(up + "/e2e/proxy:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(authn.Anonymous)); err != nil {
		t.Fatal(err)
	}
	p := newRegistryProxy(t, up, []string{"n1", "n2"})
	manifest := func(listener string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodHead, "http://"+listener+"/v2/e2e/proxy/manifests/v1", nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	status := func(listener string) int {
		resp, err := manifest(listener)
		if err != nil {
			return -1
		}
		return resp.StatusCode
	}

	p.set(fault{Kind: failStatus, Match: "/manifests/", Status: 503, Times: 2}, "n1")
	if got := []int{status(p.nodes["n1"].addr), status(p.nodes["n1"].addr), status(p.nodes["n1"].addr)}; fmt.Sprint(got) != "[503 503 200]" {
		t.Errorf("5xx twice then recover: %v", got)
	}
	if got := status(p.nodes["n2"].addr); got != 200 {
		t.Errorf("another node's listener: %d, want 200", got)
	}
	if got := status(p.Host); got != 200 {
		t.Errorf("the plugin's listener: %d, want 200", got)
	}
	if f := faulted(p.hits("n1"), 503); f != 2 {
		t.Errorf("%d faults logged, want 2", f)
	}

	p.set(fault{Kind: tooMany, Match: "/manifests/", Times: 1, RetryAfter: 7})
	resp, err := manifest(p.nodes["n2"].addr)
	if err != nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" {
		t.Errorf("429: %v %+v", err, resp)
	}
	if got := status(p.nodes["n2"].addr); got != 200 {
		t.Errorf("after the 429: %d", got)
	}

	p.set(fault{Kind: notFound, Match: "/manifests/"}, "n2")
	if got := []int{status(p.nodes["n2"].addr), status(p.nodes["n2"].addr)}; fmt.Sprint(got) != "[404 404]" {
		t.Errorf("not found: %v", got)
	}

	p.set(fault{Kind: stall, Match: "/manifests/"}, "n1")
	start := time.Now()
	if _, err := manifest(p.nodes["n1"].addr); err == nil || time.Since(start) < 2*time.Second {
		t.Errorf("stall: err %v after %s, want the client's 2s timeout", err, time.Since(start))
	}
	if got := status(p.nodes["n2"].addr); got != 404 {
		t.Errorf("n2 keeps its own fault: %d", got)
	}
}

// jobsNow counts Coral's Jobs in ns at once, without waiting for the
// garbage collector (jobsLeft waits, and counts pods too).
func (c *cluster) jobsNow(t *testing.T, ns string) int {
	t.Helper()
	l, err := c.client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=coral"})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Items)
}
