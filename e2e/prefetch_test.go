package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/report"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

var webNodes = []string{"coral-node-1", "coral-node-2"}

const batchNode = "coral-node-3" // pool=batch, tainted dedicated=batch:NoSchedule, containerd 1.6

// Cases 1 and 2: two images onto a label-selected subset; then again.
func TestPrefetchSelectedNodesThenPresent(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	a, da := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "a", nil)
	b, db := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "b", nil)

	res := c.coral(t, nil, "prefetch", "images", a, b, "-l", "pool=web", "-n", ns, "-o", "json", "--progress=plain")
	if res.code != 0 || res.report == nil {
		t.Fatalf("exit %d, want 0\n%s", res.code, res.stdout)
	}
	got := byNodeImage(res.report)
	for _, n := range webNodes {
		for img, d := range map[string]string{a: da, b: db} {
			r := got[n][img]
			if r.Status != report.StatusPulled || r.Digest != d || r.ExpectedDigest != d || r.SizeBytes == 0 {
				t.Errorf("%s %s: %+v, want Pulled with digest %s", n, img, r, d)
			}
			if has, digests := c.nodeHas(t, n, img); !has || !strings.Contains(strings.Join(digests, " "), d) {
				t.Errorf("runtime of %s does not hold %s (digests %v)", n, img, digests)
			}
		}
	}
	if has, _ := c.nodeHas(t, batchNode, a); has {
		t.Errorf("%s is not in pool=web but holds %s", batchNode, a)
	}
	if _, ok := got[batchNode]; ok {
		t.Errorf("the report names %s, which the selector excludes", batchNode)
	}
	if s := res.report.Summary; s.Pulled != 4 || s.Nodes != 2 || s.Failed != 0 {
		t.Errorf("summary %+v", s)
	}
	c.expectNoOrphans(t, ns)

	// Again: everything is Present, nothing is pulled.
	res = c.coral(t, nil, "prefetch", "images", a, b, "-l", "pool=web", "-n", ns, "-o", "json")
	if res.code != 0 {
		t.Fatalf("second run: exit %d", res.code)
	}
	if s := res.report.Summary; s.Present != 4 || s.Pulled != 0 {
		t.Errorf("second run summary %+v, want 4 present and nothing pulled", s)
	}
}

// The images worker runs in the node's network namespace by default (it
// opens no connection: the runtime pulls) and in the pod network with
// --host-network=false; both pull, on a real kubelet and CNI.
func TestPrefetchHostNetwork(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	ctx := context.Background()
	for _, tt := range []struct {
		args []string
		host bool
	}{{nil, true}, {[]string{"--host-network=false"}, false}} {
		img, d := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "hostnet", nil)
		args := append([]string{"prefetch", "images", img, "--nodes", webNodes[0], "-n", ns, "--keep-jobs", "-o", "json"}, tt.args...)
		res := c.coral(t, nil, args...)
		if res.code != 0 || res.report == nil || res.report.Summary.Pulled != 1 || byNodeImage(res.report)[webNodes[0]][img].Digest != d {
			t.Fatalf("%v: exit %d, want 1 Pulled\n%s\n%s", tt.args, res.code, res.stdout, res.stderr)
		}
		pods, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=coral"})
		if err != nil || len(pods.Items) != 1 {
			t.Fatalf("%v: %d worker pods kept (%v)", tt.args, len(pods.Items), err)
		}
		p := pods.Items[0]
		if p.Spec.HostNetwork != tt.host || (p.Status.PodIP == p.Status.HostIP) != tt.host {
			t.Errorf("%v: hostNetwork %v, pod IP %s, host IP %s; want hostNetwork %v", tt.args, p.Spec.HostNetwork, p.Status.PodIP, p.Status.HostIP, tt.host)
		}
		if err := c.client.BatchV1().Jobs(ns).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=coral"}); err != nil {
			t.Fatal(err)
		}
		if left := c.leftovers(t, ns); len(left) > 0 { // the next run must find one pod
			t.Fatalf("after deleting the kept Job: %v", left)
		}
	}
}

// Case 3: an image that does not exist, among good ones.
func TestPrefetchMissingImageFailsOnEveryNode(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	good, goodDigest := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "good", nil)
	missing := c.env["CORAL_REGISTRY"] + "/e2e/does-not-exist:v404"
	// The registry says it does not exist: refused before anything is created.
	res := c.coral(t, nil, "prefetch", "images", good, missing, "-l", "pool=web", "-n", ns, "-o", "json")
	if res.code != 2 || !strings.Contains(res.stderr, "do not exist") || !strings.Contains(res.stderr, "--no-resolve") {
		t.Fatalf("exit %d, want 2 naming the missing image and --no-resolve\n%s", res.code, res.stderr)
	}
	if objs := c.coralObjects(t, ns); len(objs) != 0 {
		t.Fatalf("objects created before the refusal: %v", objs)
	}
	// With --no-resolve (nodes may pull through a mirror this machine cannot
	// see) every node asks for it and fails, and the good image still lands.
	res = c.coral(t, nil, "prefetch", "images", good, missing, "--no-resolve", "-l", "pool=web", "-n", ns, "-o", "json")
	if res.code != 1 {
		t.Fatalf("exit %d, want 1", res.code)
	}
	got := byNodeImage(res.report)
	for _, n := range webNodes {
		if r := got[n][good]; r.Status != report.StatusPulled {
			t.Errorf("%s %s: %s %q", n, good, r.Status, r.Message)
		}
		if has, digests := c.nodeHas(t, n, good); !has || !strings.Contains(strings.Join(digests, " "), goodDigest) {
			t.Errorf("the runtime of %s does not hold %s (digests %v)", n, good, digests)
		}
		if has, _ := c.nodeHas(t, n, missing); has {
			t.Errorf("the runtime of %s holds %s, which does not exist", n, missing)
		}
		r := got[n][missing]
		if r.Status != report.StatusFailed || !strings.Contains(strings.ToLower(r.Message), "not found") {
			t.Errorf("%s %s: %s %q, want Failed with a not-found message", n, missing, r.Status, r.Message)
		}
		if r.Attempts > 1 {
			t.Errorf("%s: not-found was retried (%d attempts)", n, r.Attempts)
		}
	}
	c.expectNoOrphans(t, ns)
}

// Without a resolved digest a moved tag is pulled anew, never reported
// Present because some old bytes sit under the tag (issue 9, defect 1).
func TestPrefetchNoResolveFollowsAMovedTag(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	ref, first := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "moving", nil)
	node := webNodes[0]
	run := func(want report.Status, digest string) {
		t.Helper()
		res := c.coral(t, nil, "prefetch", "images", ref, "--no-resolve", "--nodes", node, "-n", ns, "-o", "json")
		r := byNodeImage(res.report)[node][ref]
		if res.code != 0 || r.Status != want || r.Digest != digest {
			t.Fatalf("exit %d, %s %s %q; want %s %s", res.code, r.Status, r.Digest, r.Message, want, digest)
		}
		if has, digests := c.nodeHas(t, node, ref); !has || !strings.Contains(strings.Join(digests, " "), digest) {
			t.Fatalf("the runtime of %s holds %v under %s, want %s", node, digests, ref, digest)
		}
	}
	run(report.StatusPulled, first)
	run(report.StatusPresent, first)
	// The tag moves: push other bytes under the same name.
	img, err := random.Image(64*1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	run(report.StatusPulled, d.String())
	c.expectNoOrphans(t, ns)
}

// Case 4: a registry with htpasswd auth.
func TestPrefetchPullSecret(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	reg, user, pass := c.env["CORAL_AUTH_REGISTRY"], c.env["CORAL_AUTH_USER"], c.env["CORAL_AUTH_PASSWORD"]
	img, d := c.pushRandomImage(t, reg, "private", &authn.Basic{Username: user, Password: pass})
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{reg: map[string]string{
		"username": user, "password": pass, "auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)),
	}}})
	_, err := c.client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: cfg},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	res := c.coral(t, nil, "prefetch", "images", img, "--nodes", "coral-node-1", "-n", ns, "-o", "json")
	if res.code != 1 {
		t.Fatalf("without a pull secret: exit %d, want 1", res.code)
	}
	if r := byNodeImage(res.report)["coral-node-1"][img]; r.Status != report.StatusFailed || !strings.Contains(strings.ToLower(r.Message), "unauthorized") {
		t.Errorf("without a pull secret: %s %q, want Failed: unauthorized", r.Status, r.Message)
	}

	res = c.coral(t, nil, "prefetch", "images", img, "--nodes", "coral-node-1", "-n", ns, "-o", "json", "--pull-secret", "regcred")
	if res.code != 0 {
		t.Fatalf("with --pull-secret: exit %d", res.code)
	}
	r := byNodeImage(res.report)["coral-node-1"][img]
	if r.Status != report.StatusPulled || r.Digest != d || r.ExpectedDigest != d {
		t.Errorf("with --pull-secret: %+v", r)
	}
	if has, _ := c.nodeHas(t, "coral-node-1", img); !has {
		t.Error("the node does not hold the private image")
	}
	if strings.Contains(res.stdout+res.stderr, pass) {
		t.Error("the password appears in Coral's output")
	}
	c.expectNoOrphans(t, ns)
}

// Case 5: the tainted node gets its images (and runs the older containerd).
func TestPrefetchTaintedNode(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	img, d := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "tainted", nil)
	res := c.coral(t, nil, "prefetch", "images", img, "-l", "pool=batch", "-n", ns, "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d", res.code)
	}
	if r := byNodeImage(res.report)[batchNode][img]; r.Status != report.StatusPulled || r.Digest != d {
		t.Errorf("%+v", r)
	}
	if has, _ := c.nodeHas(t, batchNode, img); !has {
		t.Errorf("%s does not hold %s", batchNode, img)
	}
	c.expectNoOrphans(t, ns)
}

// Case 6: images read from a manifest file and from stdin.
func TestPrefetchFromManifests(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	app, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "app", nil)
	initImg, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "init", nil)
	manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers: [{name: init, image: %s}]
      containers: [{name: app, image: %s}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
`, initImg, app)
	file := filepath.Join(t.TempDir(), "deployment.yaml")
	if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	res := c.coral(t, nil, "prefetch", "images", "-f", file, "--nodes", "coral-node-2", "-n", ns, "-o", "json")
	if res.code != 0 || res.report.Summary.Pulled != 2 {
		t.Fatalf("-f file: exit %d, summary %+v", res.code, res.report)
	}
	for _, img := range []string{app, initImg} {
		if has, _ := c.nodeHas(t, "coral-node-2", img); !has {
			t.Errorf("coral-node-2 lacks %s", img)
		}
	}
	res = c.coral(t, strings.NewReader(manifest), "prefetch", "images", "-f", "-", "--nodes", "coral-node-1", "-n", ns, "-o", "json")
	if res.code != 0 || res.report.Summary.Pulled+res.report.Summary.Present != 2 {
		t.Fatalf("-f -: exit %d, report %+v", res.code, res.report)
	}
	if has, _ := c.nodeHas(t, "coral-node-1", app); !has {
		t.Errorf("coral-node-1 lacks %s", app)
	}
	c.expectNoOrphans(t, ns)
}

// Case 7: --dry-run=client -o yaml prints Jobs and creates nothing.
func TestPrefetchDryRun(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	// A dry run predicts the real run, refusals included: the image must exist.
	img, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "dry-run", nil)
	res := c.coral(t, nil, "prefetch", "images", img, "--dry-run=client", "-o", "yaml", "-n", ns)
	if res.code != 0 {
		t.Fatalf("exit %d", res.code)
	}
	var list struct {
		Kind  string `json:"kind"`
		Items []struct {
			Kind string `json:"kind"`
			Spec struct {
				Template struct {
					Spec corev1.PodSpec `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		} `json:"items"`
	}
	if err := yaml.Unmarshal([]byte(res.stdout), &list); err != nil {
		t.Fatalf("output is not YAML: %v\n%s", err, res.stdout)
	}
	if len(list.Items) != len(c.nodes) {
		t.Fatalf("%d Jobs printed, want one per node (%d)", len(list.Items), len(c.nodes))
	}
	seen := map[string]bool{}
	for _, j := range list.Items {
		ps := j.Spec.Template.Spec
		seen[ps.NodeName] = true
		if j.Kind != "Job" || ps.Volumes[0].HostPath == nil || !strings.HasSuffix(ps.Volumes[0].HostPath.Path, ".sock") {
			t.Errorf("unexpected Job: %+v", j)
		}
	}
	for _, n := range c.nodes {
		if !seen[n] {
			t.Errorf("no Job for %s", n)
		}
	}
	// each node's socket is its own (per-node discovery from the annotation)
	if list.Items[0].Spec.Template.Spec.Volumes[0].HostPath.Path == list.Items[1].Spec.Template.Spec.Volumes[0].HostPath.Path {
		t.Error("two nodes got the same runtime socket")
	}
	c.expectNoOrphans(t, ns)
}

// Case 8: SIGINT mid-run: every created Job and its pod is gone, exit 130.
func TestPrefetchInterrupt(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	img, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "interrupt", nil)
	cmd := c.coralCmd("prefetch", "images", img, "-n", ns, "--progress=plain", "-o", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A plugin that ignores SIGINT must not hang the suite.
	watchdog := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	defer watchdog.Stop()

	// One goroutine reads stderr to its end (the pipe closes when the plugin
	// exits) and hands its lines over on done; only then may Wait run.
	created := make(chan struct{})
	done := make(chan []string)
	go func() {
		var lines []string
		n := 0
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.Contains(sc.Text(), "job created") {
				if n++; n == len(c.nodes) {
					close(created)
				}
			}
		}
		done <- lines
	}()
	signalled := false
	select {
	case <-created:
		// Every Job exists; no worker has reported yet (pods take seconds to start).
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Errorf("sending SIGINT: %v", err)
		}
		signalled = true
	case lines := <-done:
		cmd.Wait()
		t.Fatalf("the plugin ended before all %d Jobs were created:\n%s", len(c.nodes), strings.Join(lines, "\n"))
	}
	lines := <-done // all of stderr is read: now Wait may close the pipe
	err = cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	t.Logf("stderr:\n%s", strings.Join(lines, "\n"))
	if !signalled || code != 130 {
		t.Fatalf("exit %d, want 130", code)
	}
	c.expectNoOrphans(t, ns)
	var rep report.PrefetchReport
	if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil || !rep.Interrupted {
		t.Errorf("want a partial report marked interrupted: %v\n%s", err, stdout.String())
	}
}

// Case 9: one node's containerd killed mid-run.
func TestPrefetchRuntimeKilledMidRun(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	victim := "coral-node-2"
	pidfile := c.env["CORAL_CONTAINERD_PIDFILE_"+strings.ToUpper(strings.ReplaceAll(victim, "-", "_"))]
	if pidfile == "" {
		t.Fatal("the env file names no containerd pidfile for " + victim)
	}
	img, digest := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "killed", nil)
	t.Cleanup(func() { restoreCluster(t, c, victim) })

	cmd := c.coralCmd("prefetch", "images", img, "-l", "pool=web", "-n", ns, "--progress=plain", "-o", "json", "--timeout=40s")
	stderr, _ := cmd.StderrPipe()
	var stdout strings.Builder
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	killed := false
	var lines []string
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if !killed && strings.Contains(line, victim+": job created") {
			b, err := os.ReadFile(pidfile)
			if err != nil {
				t.Fatal(err)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatalf("killing containerd of %s (pid %d): %v", victim, pid, err)
			}
			killed = true
		}
	}
	err := cmd.Wait()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	t.Logf("stderr:\n%s", strings.Join(lines, "\n"))
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	var rep report.PrefetchReport
	if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
		t.Fatal(err)
	}
	got := byNodeImage(&rep)
	if r := got[victim][img]; r.Status != report.StatusFailed || r.Message == "" {
		t.Errorf("%s: %+v, want Failed with a message", victim, r)
	} else {
		t.Logf("%s failed with: %s", victim, r.Message)
	}
	if r := got["coral-node-1"][img]; r.Status != report.StatusPulled || r.Digest != digest {
		t.Errorf("coral-node-1: %+v, want Pulled with digest %s", r, digest)
	}
	// The report is not proof: coral-node-1's runtime must hold the image.
	if has, digests := c.nodeHas(t, "coral-node-1", img); !has || !strings.Contains(strings.Join(digests, " "), digest) {
		t.Errorf("the runtime of coral-node-1 does not hold %s@%s (digests %v)", img, digest, digests)
	}
	// With its runtime back, the victim's kubelet can stop its pod: then
	// nothing of the run may be left.
	restoreCluster(t, c, victim)
	c.expectNoOrphans(t, ns)
}

// restoreCluster starts the node's containerd again and waits until the
// node is Ready and its runtime answers.
func restoreCluster(t *testing.T, c *cluster, node string) {
	cmd := exec.Command("bash", filepath.Join(repoRoot(), "e2e", "cluster", "node.sh"), "start-runtime", node)
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("restoring the cluster: %v\n%s", err, out)
		return
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		n, err := c.client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err == nil {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					if has, _ := c.runtimeAnswers(node); has {
						return
					}
				}
			}
		}
		time.Sleep(time.Second)
	}
	t.Errorf("%s did not come back Ready", node)
}

func (c *cluster) runtimeAnswers(node string) (bool, error) {
	out, err := exec.Command(c.env["CORAL_CRICTL"], "--runtime-endpoint", c.criEndpoint(node), "version").CombinedOutput()
	return err == nil && strings.Contains(string(out), "RuntimeName"), err
}

// Case 10: the plugin found by kubectl on PATH.
func TestPluginDiscoveryThroughKubectl(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	img, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "kubectl", nil)
	kubectl := c.env["CORAL_KUBECTL"]
	if kubectl == "" {
		kubectl = "kubectl"
	}
	cmd := exec.Command(kubectl, "coral", "prefetch", "images", img, "--nodes", "coral-node-1", "-n", ns, "--kubeconfig", c.env["KUBECONFIG"])
	cmd.Env = append(os.Environ(), "PATH="+c.binDir+":"+os.Getenv("PATH"), "CORAL_WORKER_IMAGE="+c.env["CORAL_WORKER_IMAGE"])
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl coral: %v\n%s", err, out)
	}
	for _, want := range []string{"NODE", "coral-node-1", "Pulled"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if has, _ := c.nodeHas(t, "coral-node-1", img); !has {
		t.Errorf("the runtime of coral-node-1 does not hold %s", img)
	}
	usage := exec.Command(kubectl, "coral", "prefetch", "images", "--help")
	usage.Env = cmd.Env
	h, err := usage.CombinedOutput()
	if err != nil || !strings.Contains(string(h), "kubectl coral prefetch images") {
		t.Errorf("--help through kubectl does not say `kubectl coral`: %v\n%s", err, h)
	}
}

// Bad input: a clear message, exit 2, nothing created.
func TestPrefetchBadInputCreatesNothing(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	c.client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "opaque"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"x": []byte("y")},
	}, metav1.CreateOptions{})
	img := c.env["CORAL_REGISTRY"] + "/e2e/unused:v1"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"selector matches no node", []string{img, "-l", "pool=gpu"}, "no node matched"},
		{"unknown node", []string{img, "--nodes", "coral-node-9"}, `unknown node "coral-node-9"`},
		{"missing pull secret", []string{img, "--pull-secret", "nope"}, "no such secret"},
		{"pull secret of the wrong type", []string{img, "--pull-secret", "opaque"}, "kubernetes.io/dockerconfigjson"},
		{"bad selector", []string{img, "-l", "pool in (web"}, "--selector"},
		{"bad timeout", []string{img, "--timeout", "-1s"}, "--timeout"},
		{"unknown context", []string{img, "--context", "nowhere"}, "nowhere"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := c.coral(t, nil, append([]string{"prefetch", "images", "-n", ns}, tt.args...)...)
			if res.code != 2 || !strings.Contains(res.stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", res.code, res.stderr, tt.want)
			}
			c.expectNoOrphans(t, ns)
		})
	}
}

// Pod Security: a namespace that enforces baseline rejects the worker; Coral
// says so and how to fix it before creating anything.
func TestPrefetchPodSecurityRejection(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "baseline"})
	img, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "psa", nil)
	res := c.coral(t, nil, "prefetch", "images", img, "-n", ns)
	if res.code != 2 {
		t.Fatalf("exit %d, want 2", res.code)
	}
	for _, want := range []string{"Pod Security", "pod-security.kubernetes.io/enforce=privileged", "hostPath"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("message lacks %q:\n%s", want, res.stderr)
		}
	}
	c.expectNoOrphans(t, ns)
}

// --pin: containerd 2.x nodes report the image pinned over CRI (kubelet's
// image GC spares it); the node on containerd 1.6.20 says it cannot pin.
func TestPrefetchPin(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	img, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "pinned", nil)
	// --pin promises "kept until unpinned": the node that cannot pin fails
	// the run (exit 1), the others are pinned for real.
	res := c.coral(t, nil, "prefetch", "images", img, "--pin", "-n", ns, "-o", "json")
	if res.code != 1 {
		t.Fatalf("--pin with a node that cannot pin: exit %d, want 1\n%s", res.code, res.stdout)
	}
	got := byNodeImage(res.report)
	for _, n := range webNodes {
		if r := got[n][img]; !r.Pinned || r.Message != "" || !r.Status.Succeeded() {
			t.Errorf("%s: %+v, want pinned", n, r)
		}
		if !c.criPinned(t, n, img) {
			t.Errorf("%s: the runtime does not report %s pinned", n, img)
		}
	}
	if r := got[batchNode][img]; r.Status != report.StatusFailed || r.Pinned || !strings.Contains(r.Message, "not pinned") || !strings.Contains(r.Message, "best-effort") {
		t.Errorf("%s (containerd 1.6.20): %+v, want Failed with a clear 'not pinned' and the way out", batchNode, r)
	}
	c.expectNoOrphans(t, ns)
	// --pin=best-effort: the same node is reported, the run succeeds.
	res = c.coral(t, nil, "prefetch", "images", img, "--pin=best-effort", "-n", ns, "-o", "json")
	if res.code != 0 {
		t.Fatalf("--pin=best-effort: exit %d, want 0\n%s", res.code, res.stdout)
	}
	if r := byNodeImage(res.report)[batchNode][img]; !r.Status.Succeeded() || r.Pinned || !strings.Contains(r.Message, "not pinned") {
		t.Errorf("%s with --pin=best-effort: %+v, want Present/Pulled with 'not pinned'", batchNode, r)
	}
	c.expectNoOrphans(t, ns)
}

func (c *cluster) criPinned(t *testing.T, node, ref string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.imageService(t, node).ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil || resp.Image == nil {
		t.Fatalf("ImageStatus(%s) on %s: %v", ref, node, err)
	}
	return resp.Image.Pinned
}
