package e2e

// The fault matrix (issue 9): what Coral does when a part of the cluster, the
// registry or the plugin itself fails mid-run. Every case checks the outcome
// per node, the exit code, and that no Job, pod or Lease of the run is left
// (after the garbage collector had a bounded time to act). docs/reliability.md
// holds the table of results.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/report"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// orphanBound is how long the garbage collector gets to remove pods after
// their Jobs were deleted.
const orphanBound = 90 * time.Second

// TestFaultAPIServerRestartMidRun: kube-apiserver goes away after every Job
// was created, while the workers pull, and comes back on the same port. The
// run's watch resumes: every node is reported exactly once, Pulled.
func TestFaultAPIServerRestartMidRun(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	img, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "apiserver", nil)
	t.Cleanup(func() {
		if err := nodeShErr("start-apiserver"); err != nil {
			t.Error(err)
		}
	})

	p := c.startPlugin(t, "prefetch", "images", img, "-n", ns, "--progress=plain", "-o", "json", "--timeout=5m")
	for _, n := range c.nodes {
		p.waitLine(t, n+": job created", 2*time.Minute)
	}
	start := time.Now()
	nodeSh(t, "restart-apiserver")
	t.Logf("kube-apiserver restarted in %s", time.Since(start).Round(100*time.Millisecond))

	res := p.wait(t, 5*time.Minute)
	if res.code != 0 {
		t.Errorf("exit %d, want 0", res.code)
	}
	expectRows(t, res.report, c.nodes, img)
	for _, n := range c.nodes {
		if r := expectStatus(t, res.report, n, img, report.StatusPulled); r.Status == report.StatusPulled {
			if has, _ := c.nodeHas(t, n, img); !has {
				t.Errorf("%s: reported Pulled but its runtime does not hold %s", n, img)
			}
		}
	}
	c.expectNothingLeft(t, ns, orphanBound)
}

// TestFaultKubeletStoppedMidRun: one node's kubelet dies as its Job is
// created. That node fails at its --timeout with what is known of it; the
// others finish. When the kubelet is back, nothing of the run is left.
func TestFaultKubeletStoppedMidRun(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	victim := "coral-node-2"
	img, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "kubelet", nil)
	t.Cleanup(func() {
		if err := nodeShErr("start-kubelet", victim); err != nil {
			t.Error(err)
		}
	})

	p := c.startPlugin(t, "prefetch", "images", img, "-n", ns, "--progress=plain", "-o", "json", "--timeout=30s")
	p.waitLine(t, victim+": job created", 2*time.Minute)
	nodeSh(t, "stop-kubelet", victim)

	res := p.wait(t, 3*time.Minute)
	if res.code != 1 {
		t.Errorf("exit %d, want 1", res.code)
	}
	expectRows(t, res.report, c.nodes, img)
	r := expectStatus(t, res.report, victim, img, report.StatusFailed)
	if !strings.Contains(r.Message, "--timeout=30s") {
		t.Errorf("%s: message %q does not name --timeout=30s", victim, r.Message)
	}
	if !strings.Contains(strings.ToLower(r.Message), "kubelet") {
		t.Errorf("%s: message %q does not say the node's kubelet is the problem (kubelet's last word)", victim, r.Message)
	}
	for _, n := range c.nodes {
		if n != victim {
			expectStatus(t, res.report, n, img, report.StatusPulled)
		}
	}

	// The victim's pod can only be removed once its kubelet confirms.
	nodeSh(t, "start-kubelet", victim)
	c.expectNothingLeft(t, ns, orphanBound)
}

// TestFaultNodeDeletedMidRun: the Node object of one node is deleted while
// its worker pulls (its pull is held by the registry proxy so it cannot
// finish first). The pod garbage collector deletes the pod of the vanished
// node; Coral reports that node Failed and says why; the others finish. The
// Node is restored (its kubelet restarted re-registers it) after.
func TestFaultNodeDeletedMidRun(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	victim := "coral-node-1"
	proxy := c.startRegistryProxy(t)
	proxy.set(fault{Kind: stall, Match: "/blobs/"}, victim)
	plain, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "nodedel", nil)
	img := proxy.ref(plain)
	t.Cleanup(func() {
		if err := nodeShErr("restart-kubelet", victim); err != nil {
			t.Error(err)
		}
	})

	p := c.startPlugin(t, "prefetch", "images", img, "-n", ns, "--progress=plain", "-o", "json", "--timeout=4m")
	p.waitLine(t, victim+": job created", 2*time.Minute)
	// Wait until its worker is really pulling (the proxy holds a blob).
	waitFor(t, 2*time.Minute, "the victim's worker to reach the registry", func() bool {
		for _, h := range proxy.hits(victim) {
			if h.Faulted == -1 {
				return true
			}
		}
		return false
	})
	if err := c.client.CoreV1().Nodes().Delete(context.Background(), victim, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting node %s: %v", victim, err)
	}
	deleted := time.Now()
	t.Logf("deleted Node %s", victim)

	res := p.wait(t, 5*time.Minute)
	t.Logf("the run ended %s after the Node was deleted", time.Since(deleted).Round(time.Second))
	if res.code != 1 {
		t.Errorf("exit %d, want 1", res.code)
	}
	expectRows(t, res.report, c.nodes, img)
	r := expectStatus(t, res.report, victim, img, report.StatusFailed)
	if strings.Contains(r.Message, "--timeout") {
		t.Errorf("%s failed at its timeout (%q), not when its pod was deleted with its Node", victim, r.Message)
	}
	// The pod garbage collector says why on the pod (condition
	// DisruptionTarget, "PodGC: node no longer exists"): the user should
	// learn that the node went away, not that the container never ran.
	if !strings.Contains(strings.ToLower(r.Message), "node") || strings.Contains(r.Message, "before its container ran") {
		t.Errorf("%s: message %q does not say that its node went away", victim, r.Message)
	}
	for _, n := range c.nodes {
		if n != victim {
			expectStatus(t, res.report, n, img, report.StatusPulled)
		}
	}

	nodeSh(t, "restart-kubelet", victim)
	c.waitNodeReady(t, victim, 2*time.Minute)
	c.expectNothingLeft(t, ns, orphanBound)
}

// TestFaultRegistry5xxThenRecovers: the registry answers 503 to each node's
// first two manifest requests, then serves. The pull is retried (by the
// runtime itself, or by the worker when the runtime gives up) and every node
// ends Pulled.
func TestFaultRegistry5xxThenRecovers(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	proxy := c.startRegistryProxy(t)
	proxy.set(fault{Kind: failStatus, Match: "/manifests/", Status: 503, Times: 2})
	plain, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "flaky", nil)
	img := proxy.ref(plain)

	res := c.startPlugin(t, "prefetch", "images", img, "-n", ns, "--progress=plain", "-o", "json", "--timeout=3m").wait(t, 4*time.Minute)
	if res.code != 0 {
		t.Errorf("exit %d, want 0", res.code)
	}
	expectRows(t, res.report, c.nodes, img)
	for _, n := range c.nodes {
		r := expectStatus(t, res.report, n, img, report.StatusPulled)
		expectRecovered(t, n, proxy.hits(n), 503, 2, r.Attempts)
		if has, _ := c.nodeHas(t, n, img); !has {
			t.Errorf("%s: its runtime does not hold %s", n, img)
		}
	}
	c.expectNothingLeft(t, ns, orphanBound)
}

// expectRecovered checks a node met the fault `times` times and then was
// served a manifest: the pull was retried. It logs who retried.
func expectRecovered(t *testing.T, node string, hits []hit, status, times, attempts int) {
	t.Helper()
	if f := faulted(hits, status); f != times {
		t.Errorf("%s: the proxy answered %d %d times, want %d", node, status, f, times)
	}
	served := 0
	for _, h := range hits {
		if h.Faulted == 0 && strings.Contains(h.Path, "/manifests/") {
			served++
		}
	}
	if served == 0 {
		t.Errorf("%s: no manifest request after the faults: the pull was not retried", node)
	}
	who := "the node's runtime retried within one pull"
	if attempts > 1 {
		who = fmt.Sprintf("the worker retried (%d attempts)", attempts)
	}
	t.Logf("%s: %s; requests: %s", node, who, describeHits(hits))
}

// TestFaultRegistryStalls: the registry accepts blob requests and never
// answers. Each node gives up at --image-timeout and says so.
func TestFaultRegistryStalls(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	proxy := c.startRegistryProxy(t)
	proxy.set(fault{Kind: stall, Match: "/blobs/"})
	plain, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "stall", nil)
	img := proxy.ref(plain)

	res := c.startPlugin(t, "prefetch", "images", img, "-n", ns, "--progress=plain", "-o", "json",
		"--image-timeout=15s", "--timeout=2m").wait(t, 3*time.Minute)
	if res.code != 1 {
		t.Errorf("exit %d, want 1", res.code)
	}
	expectRows(t, res.report, c.nodes, img)
	for _, n := range c.nodes {
		r := expectStatus(t, res.report, n, img, report.StatusFailed)
		if !strings.Contains(r.Message, "timed out after 15s (--image-timeout)") {
			t.Errorf("%s: message %q, want it to say the image timed out after --image-timeout", n, r.Message)
		}
		if has, _ := c.nodeHas(t, n, img); has {
			t.Errorf("%s holds %s though every blob request stalled", n, img)
		}
	}
	c.expectNothingLeft(t, ns, orphanBound)
}

// TestFaultRegistry429RetryAfter: the registry answers 429 Too Many Requests
// with Retry-After: 2 to each node's first two manifest requests. The pull is
// retried and every node ends Pulled. (CRI passes no headers, so the worker
// cannot read Retry-After; the gaps the runtime left are logged.)
func TestFaultRegistry429RetryAfter(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	proxy := c.startRegistryProxy(t)
	proxy.set(fault{Kind: tooMany, Match: "/manifests/", Times: 2, RetryAfter: 2})
	plain, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "ratelimited", nil)
	img := proxy.ref(plain)

	res := c.startPlugin(t, "prefetch", "images", img, "-n", ns, "--progress=plain", "-o", "json", "--timeout=3m").wait(t, 4*time.Minute)
	if res.code != 0 {
		t.Errorf("exit %d, want 0", res.code)
	}
	expectRows(t, res.report, c.nodes, img)
	for _, n := range c.nodes {
		r := expectStatus(t, res.report, n, img, report.StatusPulled)
		hits := proxy.hits(n)
		expectRecovered(t, n, hits, 429, 2, r.Attempts)
		t.Logf("%s: gaps after each 429 (Retry-After: 2s): %v", n, gapsAfter(hits, 429))
	}
	c.expectNothingLeft(t, ns, orphanBound)
}

// TestFaultPluginKilledThenGC: the plugin is killed with SIGKILL while its
// workers pull (held by the registry proxy). Its Jobs stay. kubectl coral gc
// leaves them while the run's Lease is fresh, and removes the run once the
// Lease expired: the garbage collector takes its Jobs and pods.
func TestFaultPluginKilledThenGC(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	proxy := c.startRegistryProxy(t)
	proxy.set(fault{Kind: stall, Match: "/blobs/"})
	plain, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "killed", nil)
	img := proxy.ref(plain)

	p := c.startPlugin(t, "prefetch", "images", img, "-n", ns, "--progress=plain", "-o", "json", "--timeout=10m")
	for _, n := range c.nodes {
		p.waitLine(t, n+": job created", 2*time.Minute)
	}
	runID := p.runID
	if runID == "" {
		t.Fatalf("no run id on stderr:\n%s", p.stderr())
	}

	// While the plugin lives, gc (even --min-age=0) takes nothing.
	gc := c.coral(t, nil, "gc", "-n", ns, "--min-age=0s", "-o", "name")
	if gc.code != 0 || strings.TrimSpace(gc.stdout) != "" {
		t.Fatalf("gc during a live run: exit %d, deleted %q", gc.code, gc.stdout)
	}

	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 30*time.Second)
	left := c.runObjects(t, ns)
	t.Logf("left by the killed plugin: %s", strings.Join(left, "; "))
	if c.jobsNow(t, ns) != len(c.nodes) {
		t.Fatalf("want the %d Jobs of the killed run still there, got: %v", len(c.nodes), left)
	}
	leaseName := "coral-run-" + runID
	lease, err := c.client.CoordinationV1().Leases(ns).Get(context.Background(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the run's Lease %s: %v (the engine creates one per run; gc relies on it)", leaseName, err)
	}

	// Right after the kill the Lease is fresh: gc keeps the run.
	gc = c.coral(t, nil, "gc", "-n", ns, "-o", "name")
	if gc.code != 0 || strings.TrimSpace(gc.stdout) != "" || !strings.Contains(gc.stderr, "kept run "+runID) {
		t.Fatalf("gc right after the kill: exit %d, deleted %q; want the run kept as live", gc.code, gc.stdout)
	}

	// Wait until the Lease has expired by its own fields, then gc.
	renew := lease.CreationTimestamp.Time
	if lease.Spec.RenewTime != nil {
		renew = lease.Spec.RenewTime.Time
	}
	dur := 90 * time.Second
	if lease.Spec.LeaseDurationSeconds != nil {
		dur = time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	}
	if wait := time.Until(renew.Add(dur)) + time.Second; wait > 0 {
		t.Logf("waiting %s for the Lease (renewed %s, %s) to expire", wait.Round(time.Second), renew.Format(time.RFC3339), dur)
		time.Sleep(wait)
	}
	gc = c.coral(t, nil, "gc", "-n", ns, "-o", "name")
	if gc.code != 0 || !strings.Contains(gc.stdout, "lease.coordination.k8s.io/"+leaseName) {
		t.Fatalf("gc after the Lease expired: exit %d, stdout %q; want it to delete the Lease", gc.code, gc.stdout)
	}
	c.expectNothingLeft(t, ns, orphanBound)
}

// TestFaultGCOlderPluginLeftovers: Jobs without a Lease (plugins from before
// it) are kept while young and taken past --min-age; what the controller
// manages (managed-by=coral-controller) is never touched.
func TestFaultGCOlderPluginLeftovers(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	node := c.nodes[0]
	older := leftoverJob(c, ns, "legacy1", "kubectl-coral", node)
	ctrl := leftoverJob(c, ns, "ctrl1", "coral-controller", node)
	for _, j := range []*batchv1.Job{older, ctrl} {
		if _, err := c.client.BatchV1().Jobs(ns).Create(context.Background(), j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 2*time.Minute, "both Jobs to complete", func() bool {
		for _, name := range []string{older.Name, ctrl.Name} {
			j, err := c.client.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
			if err != nil || j.Status.Succeeded == 0 {
				return false
			}
		}
		return true
	})

	// Young: kept under the default --min-age.
	gc := c.coral(t, nil, "gc", "-n", ns, "-o", "name")
	if gc.code != 0 || strings.TrimSpace(gc.stdout) != "" {
		t.Fatalf("gc with the default --min-age: exit %d, deleted %q", gc.code, gc.stdout)
	}
	gc = c.coral(t, nil, "gc", "-n", ns, "--min-age=0s", "--dry-run", "-o", "name")
	if gc.code != 0 || strings.TrimSpace(gc.stdout) != "job.batch/"+older.Name {
		t.Fatalf("gc --dry-run: exit %d, stdout %q; want only %s", gc.code, gc.stdout, older.Name)
	}
	if c.jobsNow(t, ns) != 2 {
		t.Fatal("--dry-run deleted something")
	}
	gc = c.coral(t, nil, "gc", "-n", ns, "--min-age=0s", "-o", "name")
	if gc.code != 0 || strings.TrimSpace(gc.stdout) != "job.batch/"+older.Name {
		t.Fatalf("gc --min-age=0s: exit %d, stdout %q; want only %s", gc.code, gc.stdout, older.Name)
	}
	c.expectNothingLeft(t, ns, orphanBound)
	if _, err := c.client.BatchV1().Jobs(ns).Get(context.Background(), ctrl.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the controller's Job: %v (gc must never touch it)", err)
	}
	pods, _ := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "coral.dev/run-id=ctrl1"})
	if len(pods.Items) != 1 {
		t.Errorf("the controller's Job has %d pods, want its 1", len(pods.Items))
	}
}

// leftoverJob is a finished-in-a-second Job labelled as a run's.
func leftoverJob(c *cluster, ns, runID, managedBy, node string) *batchv1.Job {
	labels := map[string]string{
		"app.kubernetes.io/name": "coral", "app.kubernetes.io/component": "prefetch-worker",
		"app.kubernetes.io/managed-by": managedBy, "coral.dev/run-id": runID,
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "coral-" + runID, Namespace: ns, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeName: node, RestartPolicy: corev1.RestartPolicyNever, HostNetwork: true,
					Tolerations:                  []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					AutomountServiceAccountToken: ptr.To(false),
					Containers: []corev1.Container{{
						Name: "pause", Image: c.env["CORAL_PAUSE_IMAGE"], Args: []string{"-exit-after", "1s"},
					}},
				},
			},
		},
	}
}

// TestFaultWorkerImageUnpullableOnOneNode: one node cannot pull the worker
// image (its registry says the manifest is unknown). That node fails with a
// message naming the image and --worker-image; the others finish.
func TestFaultWorkerImageUnpullableOnOneNode(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	victim := "coral-node-2"
	proxy := c.startRegistryProxy(t)
	proxy.set(fault{Kind: notFound, Match: "/manifests/"}, victim)
	worker := proxy.ref(c.env["CORAL_WORKER_IMAGE"])
	if worker == c.env["CORAL_WORKER_IMAGE"] {
		t.Fatalf("the worker image %s is not in the local registry %s", worker, c.env["CORAL_REGISTRY"])
	}
	img, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "workerimg", nil)

	res := c.startPlugin(t, "prefetch", "images", img, "-n", ns, "--progress=plain", "-o", "json",
		"--worker-image="+worker, "--timeout=60s").wait(t, 3*time.Minute)
	if res.code != 1 {
		t.Errorf("exit %d, want 1", res.code)
	}
	expectRows(t, res.report, c.nodes, img)
	r := expectStatus(t, res.report, victim, img, report.StatusFailed)
	for _, want := range []string{worker, "--worker-image"} {
		if !strings.Contains(r.Message, want) {
			t.Errorf("%s: message %q does not name %s", victim, r.Message, want)
		}
	}
	for _, n := range c.nodes {
		if n != victim {
			expectStatus(t, res.report, n, img, report.StatusPulled)
		}
	}
	c.expectNothingLeft(t, ns, orphanBound)
}

// ---- small helpers ----------------------------------------------------------

func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", bound, what)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// describeHits shows a listener's requests: method, path tail, answer, time.
func describeHits(hits []hit) string {
	var out []string
	for _, h := range hits {
		ans := "forwarded"
		switch {
		case h.Faulted == -1:
			ans = "held"
		case h.Faulted != 0:
			ans = fmt.Sprint(h.Faulted)
		}
		parts := strings.Split(h.Path, "/")
		out = append(out, fmt.Sprintf("%s %s/%s→%s @%s", h.Method, parts[len(parts)-2], short(parts[len(parts)-1]), ans, h.At.Format("15:04:05.0")))
	}
	return strings.Join(out, ", ")
}

func short(s string) string {
	if len(s) > 19 {
		return s[:19]
	}
	return s
}

func faulted(hits []hit, status int) int {
	n := 0
	for _, h := range hits {
		if h.Faulted == status {
			n++
		}
	}
	return n
}

// gapsAfter returns, for each request answered status, the time until the
// listener's next request.
func gapsAfter(hits []hit, status int) []string {
	var gaps []string
	for i, h := range hits {
		if h.Faulted == status && i+1 < len(hits) {
			gaps = append(gaps, fmt.Sprintf("%s %s→%s", hits[i+1].At.Sub(h.At).Round(100*time.Millisecond), h.Method, hits[i+1].Method))
		}
	}
	return gaps
}

// TestFaultPluginKilledMidArtifactThenGC: the plugin is killed while a node
// downloads an artifact (the source sent a quarter of the file and holds the
// rest). gc removes the run once its Lease expired; the worker, stopped by
// its pod's deletion, leaves no partial file on the node.
func TestFaultPluginKilledMidArtifactThenGC(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	node := "coral-node-1"
	name := c.artifactName(t, "killed")
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	url := stallingFileServer(t, c, data, len(data)/4)

	p := c.startPlugin(t, "prefetch", "artifacts", url+"/weights.bin", "--name", name, "--sha256", hexSum(data),
		"--nodes", node, "-n", ns, "--progress=plain", "-o", "json", "--timeout=10m")
	p.waitLine(t, node+": job created", 2*time.Minute)
	dir := c.artifactDir(node, name)
	waitFor(t, 2*time.Minute, "a partial download on the node", func() bool { return len(tempFiles(dir)) > 0 })
	t.Logf("partial download on %s: %v", node, tempFiles(dir))
	runID := p.runID
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(t, 30*time.Second)

	lease, err := c.client.CoordinationV1().Leases(ns).Get(context.Background(), "coral-run-"+runID, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the run's Lease: %v (the engine creates one per run; gc relies on it)", err)
	}
	renew := lease.CreationTimestamp.Time
	if lease.Spec.RenewTime != nil {
		renew = lease.Spec.RenewTime.Time
	}
	dur := 90 * time.Second
	if lease.Spec.LeaseDurationSeconds != nil {
		dur = time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second
	}
	time.Sleep(time.Until(renew.Add(dur)) + time.Second)
	gc := c.coral(t, nil, "gc", "-n", ns, "-o", "name")
	if gc.code != 0 || !strings.Contains(gc.stdout, "lease.coordination.k8s.io/coral-run-"+runID) {
		t.Fatalf("gc: exit %d, stdout %q; want it to delete the run's Lease", gc.code, gc.stdout)
	}
	c.expectNothingLeft(t, ns, orphanBound)
	if left := tempFiles(dir); len(left) > 0 {
		t.Errorf("partial files left on %s: %v", node, left)
	}
	if _, err := os.Stat(filepath.Join(dir, "weights.bin")); err == nil {
		t.Errorf("%s holds weights.bin though its download never finished", node)
	}
}

// stallingFileServer serves data at /weights.bin on the nodes' address, but
// sends only its first `send` bytes and then holds the connection.
func stallingFileServer(t *testing.T, c *cluster, data []byte, send int) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(c.env["CORAL_NODE_IP"], "0"))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/weights.bin" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		if r.Method == http.MethodHead {
			return
		}
		w.Write(data[:send])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { close(release); srv.Close() })
	return "http://" + l.Addr().String()
}

// tempFiles lists the worker's files-in-progress in an artifact directory.
func tempFiles(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".coral-tmp-") {
			out = append(out, e.Name())
		}
	}
	return out
}
