// Package e2e proves Coral on a real multi-node cluster: real API server,
// controller manager, kubelets and one containerd per node (make cluster-up).
// Every test asserts on what the nodes' runtimes really hold, over CRI.
//
// Run with `make e2e` (or CORAL_E2E=1 go test ./e2e/). Without CORAL_E2E the
// tests skip; with it, a missing cluster is a failure.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coral-dev/coral/e2e/provider"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cluster is what the provider (e2e/provider) says about the cluster: the
// env contract of e2e/cluster/README.md, a client and the built plugin.
type cluster struct {
	env    map[string]string
	nodes  []string
	client kubernetes.Interface
	plugin string // path of the built kubectl-coral
	binDir string
}

var (
	theCluster *cluster
	setupErr   error
	setupOnce  sync.Once
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// getCluster loads the cluster once, or skips/fails the test.
func getCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Getenv("CORAL_E2E") == "" {
		t.Skip("end-to-end test: run `make e2e` (or make cluster-up, then CORAL_E2E=1 go test ./e2e/)")
	}
	setupOnce.Do(func() { theCluster, setupErr = loadCluster() })
	if setupErr != nil {
		t.Fatalf("the e2e cluster is not usable: %v (local: run make cluster-up; kind: see docs/kind.md)", setupErr)
	}
	return theCluster
}

// loadCluster gets the cluster from the provider CORAL_E2E_PROVIDER names
// (local, the default: the env file of make cluster-up; kind: see
// docs/kind.md). The provider's CRI forwarders, if any, live as long as this
// test process.
func loadCluster() (*cluster, error) {
	p, err := provider.FromEnv(repoRoot())
	if err != nil {
		return nil, err
	}
	pc, err := p.Up(context.Background())
	if err != nil {
		return nil, fmt.Errorf("%s provider: %w", p.Name(), err)
	}
	env := pc.Env
	if err := provider.CheckRequired(env, p.Name()+" provider"); err != nil {
		return nil, err
	}
	c := &cluster{env: env, nodes: strings.Fields(env["CORAL_NODES"])}
	cfg, err := clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"])
	if err != nil {
		return nil, err
	}
	if c.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	// Build the plugin once, as a user would get it.
	c.binDir, err = os.MkdirTemp("", "coral-e2e-bin-")
	if err != nil {
		return nil, err
	}
	c.plugin = filepath.Join(c.binDir, "kubectl-coral")
	build := exec.Command("go", "build", "-o", c.plugin, "./cmd/kubectl-coral")
	build.Dir = repoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building the plugin: %v\n%s", err, out)
	}
	return c, nil
}

// criEndpoint is the node's runtime socket as the harness exported it.
func (c *cluster) criEndpoint(node string) string {
	return c.env[provider.CRIEnvKey(node)]
}

// images returns the CRI image service of a node.
func (c *cluster) imageService(t *testing.T, node string) runtimeapi.ImageServiceClient {
	t.Helper()
	ep := c.criEndpoint(node)
	if ep == "" {
		t.Fatalf("no CRI endpoint for node %s in the env file", node)
	}
	conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewImageServiceClient(conn)
}

// nodeHas reports whether the node's runtime holds ref, and under which digests.
func (c *cluster) nodeHas(t *testing.T, node, ref string) (bool, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.imageService(t, node).ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("ImageStatus(%s) on %s: %v", ref, node, err)
	}
	if resp.Image == nil {
		return false, nil
	}
	return true, resp.Image.RepoDigests
}

// pushRandomImage pushes a small random image and returns ref and digest.
func (c *cluster) pushRandomImage(t *testing.T, registry, repo string, auth authn.Authenticator) (string, string) {
	t.Helper()
	img, err := random.Image(64*1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref := fmt.Sprintf("%s/e2e/%s-%06d:v1", registry, repo, rand.IntN(1000000))
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	if err := remote.Write(r, img, remote.WithAuth(auth)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	d, _ := img.Digest()
	return ref, d.String()
}

type result struct {
	code   int
	stdout string
	stderr string
	report *report.PrefetchReport
}

// coral runs the plugin binary against the cluster.
func (c *cluster) coral(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	cmd := c.coralCmd(args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running kubectl-coral: %v", err)
	}
	if hasArg(args, "json") && strings.Contains(res.stdout, "PrefetchReport") {
		res.report = &report.PrefetchReport{}
		if err := json.Unmarshal(out.Bytes(), res.report); err != nil {
			t.Fatalf("the JSON report does not parse: %v\n%s", err, res.stdout)
		}
	}
	t.Logf("kubectl coral %s → exit %d\nstderr:\n%s", strings.Join(args, " "), res.code, res.stderr)
	return res
}

func (c *cluster) coralCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(c.plugin, append([]string{"--kubeconfig", c.env["KUBECONFIG"]}, args...)...)
	cmd.Env = append(os.Environ(), "CORAL_WORKER_IMAGE="+c.env["CORAL_WORKER_IMAGE"])
	return cmd
}

func hasArg(args []string, v string) bool {
	for _, a := range args {
		if a == v || strings.HasSuffix(a, "="+v) {
			return true
		}
	}
	return false
}

// namespace creates a fresh namespace for one test and deletes it after.
func (c *cluster) namespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	ns := fmt.Sprintf("e2e-%s-%04d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), rand.IntN(10000))
	if len(ns) > 63 {
		ns = ns[len(ns)-63:]
	}
	ns = strings.Trim(strings.ReplaceAll(ns, "_", "-"), "-")
	_, err := c.client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return ns
}

// orphanWait bounds how long a cleanup check waits: Coral deletes its Jobs
// with background propagation, so the garbage collector removes their pods a
// moment later, and a pod goes only once its kubelet has stopped it.
const orphanWait = 90 * time.Second

// coralObjects lists Coral's Jobs and pods in ns as "job/NAME" and
// "pod/NAME (phase)", whatever run made them.
func (c *cluster) coralObjects(t *testing.T, ns string) []string {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=coral"}
	jobs, err := c.client.BatchV1().Jobs(ns).List(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := c.client.CoreV1().Pods(ns).List(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, j := range jobs.Items {
		out = append(out, "job/"+j.Name)
	}
	for _, p := range pods.Items {
		s := fmt.Sprintf("pod/%s (%s on %s", p.Name, p.Status.Phase, p.Spec.NodeName)
		if p.DeletionTimestamp != nil {
			s += ", terminating"
		}
		out = append(out, s+")")
	}
	return out
}

// leftovers returns Coral's Jobs and pods still in ns once the garbage
// collector had up to orphanWait to remove them (nil when none are left).
func (c *cluster) leftovers(t *testing.T, ns string) []string {
	t.Helper()
	deadline := time.Now().Add(orphanWait)
	for {
		left := c.coralObjects(t, ns)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// expectNoOrphans fails the test when a run left Jobs or pods behind.
func (c *cluster) expectNoOrphans(t *testing.T, ns string) {
	t.Helper()
	if left := c.leftovers(t, ns); len(left) > 0 {
		t.Errorf("%d objects left %s after the run: %s", len(left), orphanWait, strings.Join(left, ", "))
	}
}

// jobsLeft counts Coral's Jobs and their pods left in ns after the garbage
// collector had its chance (see leftovers, expectNoOrphans).
func (c *cluster) jobsLeft(t *testing.T, ns string) int {
	t.Helper()
	left := c.leftovers(t, ns)
	if len(left) > 0 {
		t.Logf("left in %s: %s", ns, strings.Join(left, ", "))
	}
	return len(left)
}

// byNodeImage indexes a report.
func byNodeImage(r *report.PrefetchReport) map[string]map[string]report.Result {
	m := map[string]map[string]report.Result{}
	for _, res := range r.Results {
		if m[res.Node] == nil {
			m[res.Node] = map[string]report.Result{}
		}
		m[res.Node][res.Image] = res
	}
	return m
}
