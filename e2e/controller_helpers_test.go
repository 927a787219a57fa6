package e2e

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/controller"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// crClient is a controller-runtime client that knows Coral's types.
func (c *cluster) crClient(t *testing.T) client.Client {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.env["KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	ctrl.SetLogger(logr.Discard())
	cl, err := client.New(cfg, client.Options{Scheme: controller.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// installArgs are the arguments of `kubectl coral install` for the local
// cluster, or the test fails when the env file lacks the controller image.
func (c *cluster) installArgs(t *testing.T) []string {
	t.Helper()
	if c.env["CORAL_CONTROLLER_IMAGE"] == "" || c.env["CORAL_APISERVER"] == "" {
		t.Fatal("the env file has no CORAL_CONTROLLER_IMAGE / CORAL_APISERVER: run make cluster-up from this checkout")
	}
	return []string{"install",
		"--controller-image", c.env["CORAL_CONTROLLER_IMAGE"], "--worker-image", c.env["CORAL_WORKER_IMAGE"],
		// No kube-proxy on the local cluster: the controller uses the host
		// network and reaches the API server on loopback.
		"--host-network", "--api-server", c.env["CORAL_APISERVER"],
		"--metrics-port", strconv.Itoa(freePort(t)), "--health-port", strconv.Itoa(freePort(t)),
		"--timeout", "3m"}
}

// freePort returns a TCP port nothing listens on now (the controller runs in
// the host network on the local cluster, which other clusters share).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// scriptCmd is one of the harness scripts (e2e/cluster/NAME) for this cluster.
func (c *cluster) scriptCmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot(), "e2e", "cluster", name)}, args...)...)
	cmd.Env = append(cmd.Environ(), "CORAL_CLUSTER_DIR="+c.env["CORAL_CLUSTER_DIR"])
	return cmd
}

// script runs one of the harness scripts and fails the test if it fails.
func (c *cluster) script(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := c.scriptCmd(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// nodeHolds says whether the runtime behind a node's annotated socket holds
// ref with digest (any digest when digest is "").
func (c *cluster) nodeHolds(t *testing.T, node, ref, digest string) bool {
	t.Helper()
	ep := c.criEndpoint(node)
	if ep == "" {
		n, err := c.client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ep = n.Annotations["kubeadm.alpha.kubernetes.io/cri-socket"]
	}
	conn, err := grpc.NewClient(ep, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := runtimeapi.NewImageServiceClient(conn).ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("ImageStatus(%s) on %s: %v", ref, node, err)
	}
	if resp.Image == nil {
		return false
	}
	if digest == "" {
		return true
	}
	for _, rd := range resp.Image.RepoDigests {
		if strings.HasSuffix(rd, "@"+digest) {
			return true
		}
	}
	return false
}

// eventually polls cond every 250 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// getPrefetch reads an ImagePrefetch.
func getPrefetch(t *testing.T, cl client.Client, ns, name string) *coralv1.ImagePrefetch {
	t.Helper()
	var ip coralv1.ImagePrefetch
	if err := cl.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &ip); err != nil {
		t.Fatal(err)
	}
	return &ip
}

func condition(ip *coralv1.ImagePrefetch, typ string) *metav1.Condition {
	return meta.FindStatusCondition(ip.Status.Conditions, typ)
}

// isReady: the status describes the current spec and says Ready.
func isReady(ip *coralv1.ImagePrefetch) bool {
	c := condition(ip, coralv1.ConditionReady)
	return ip.Status.ObservedGeneration == ip.Generation && c != nil && c.Status == metav1.ConditionTrue
}

// jobRecorder records every controller Job created while it runs.
type jobRecorder struct {
	mu      sync.Mutex
	created []batchv1.Job
	stop    func()
}

func (c *cluster) recordJobs(t *testing.T) *jobRecorder {
	t.Helper()
	w, err := c.client.BatchV1().Jobs("").Watch(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=" + controller.ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	r := &jobRecorder{stop: w.Stop}
	seen := map[string]bool{}
	go func() {
		for ev := range w.ResultChan() {
			j, ok := ev.Object.(*batchv1.Job)
			if !ok || ev.Type != watch.Added || seen[j.Namespace+"/"+j.Name] {
				continue
			}
			seen[j.Namespace+"/"+j.Name] = true
			r.mu.Lock()
			r.created = append(r.created, *j)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(w.Stop)
	return r
}

// nodes returns the node of every Job recorded so far.
func (r *jobRecorder) nodes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, j := range r.created {
		out = append(out, j.Annotations["coral.dev/node"])
	}
	return out
}

// nodesIn returns the node of every Job recorded so far in namespace ns.
func (r *jobRecorder) nodesIn(ns string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, j := range r.created {
		if j.Namespace == ns {
			out = append(out, j.Annotations["coral.dev/node"])
		}
	}
	return out
}

// nodesWith returns the node of every Job recorded so far whose items
// include ref.
func (r *jobRecorder) nodesWith(ref string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, j := range r.created {
		if strings.Contains(j.Annotations["coral.dev/items"], `"`+ref+`"`) {
			out = append(out, j.Annotations["coral.dev/node"])
		}
	}
	return out
}

// controllerJobs lists the controller's Jobs in every namespace.
func (c *cluster) controllerJobs(t *testing.T) []batchv1.Job {
	t.Helper()
	l, err := c.client.BatchV1().Jobs("").List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=" + controller.ManagedBy})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// controllerPods lists the controller's pods.
func (c *cluster) controllerPods(t *testing.T, ns string) []corev1.Pod {
	t.Helper()
	l, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=coral-controller"})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// readySince is when the node's Ready condition last turned True.
func (c *cluster) readySince(t *testing.T, node string) time.Time {
	t.Helper()
	n, err := c.client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
			return cond.LastTransitionTime.Time
		}
	}
	t.Fatalf("node %s is not Ready", node)
	return time.Time{}
}

// dynamic is a dynamic client, for objects the typed clients would correct
// before sending (invalid specs).
func (c *cluster) dynamic(t *testing.T) dynamic.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.env["KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
