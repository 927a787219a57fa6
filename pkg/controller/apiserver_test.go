package controller

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/go-logr/logr/funcr"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// apiServerAssets finds kube-apiserver (built by make cluster-up into
// /var/cache/coral) and etcd, or says why not.
func apiServerAssets(t *testing.T) string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	apis, _ := filepath.Glob("/var/cache/coral/k8s-*/kube-apiserver")
	etcd, err := exec.LookPath("etcd")
	if len(apis) == 0 || err != nil {
		msg := "needs kube-apiserver (bash e2e/cluster/build-components.sh, or make cluster-up, builds it into /var/cache/coral) and etcd (bash e2e/cluster/install-deps.sh), or KUBEBUILDER_ASSETS"
		if os.Getenv("CORAL_SKIP_ENVTEST") == "1" {
			t.Skip("skipped because CORAL_SKIP_ENVTEST=1: " + msg)
		}
		// A real-component test skips only when told to (issue 9, item 11).
		t.Fatal(msg + "; or set CORAL_SKIP_ENVTEST=1 to skip this test")
	}
	dir := t.TempDir()
	for name, target := range map[string]string{"kube-apiserver": apis[0], "etcd": etcd} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startController runs the controller against cfg until the returned stop.
func startController(t *testing.T, cfg *rest.Config, o Options) func() {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: Scheme(), Cache: CacheOptions(kubernetes.NewForConfigOrDie(cfg).CoreV1().RESTClient()), Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		// A restart in the same process registers the controllers again.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := Setup(mgr, o); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}
}

// startAPIServer starts etcd and kube-apiserver with Coral's CRDs (skipped
// with -short), and a namespace ns with its default ServiceAccount.
func startAPIServer(t *testing.T, ns string) (*rest.Config, client.Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: apiServerAssets(t),
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting etcd and kube-apiserver: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	cl, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	must(t, cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	must(t, cl.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}))
	return cfg, cl
}

// TestReconcileAgainstAPIServer runs the controller against a real API
// server and etcd (no kubelets: the test plays the Job controller and the
// worker by creating each Job's pod with the worker's termination message).
// It checks the global cap, one Job per node, records, status, a node that
// joins, and a restart that adopts the Job in flight instead of duplicating it.
func TestReconcileAgainstAPIServer(t *testing.T) {
	const ns = "coral"
	cfg, cl := startAPIServer(t, ns)
	ctx := context.Background()
	for _, n := range []string{"n1", "n2", "n3"} {
		addNode(t, cl, n, "web")
	}
	addNode(t, cl, "b1", "batch")

	ctrl.SetLogger(funcr.New(func(prefix, args string) { t.Log(prefix, args) }, funcr.Options{}))
	o := NewOptions()
	o.WorkerImage, o.MaxJobsInFlight = "reg.local/coral-worker:test", 2
	stop := startController(t, cfg, o)

	img := "reg.local/app@sha256:" + strings.Repeat("a", 64) // a digest: resolved without a registry
	ip := &coralv1.ImagePrefetch{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: coralv1.ImagePrefetchSpec{Images: []string{img}, Nodes: coralv1.Nodes{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "web"}}},
			RunSettings: coralv1.RunSettings{MaxNodesInFlight: 20}},
	}
	must(t, cl.Create(ctx, ip))

	// The global cap: 2 Jobs for 3 nodes, then the third when one finishes.
	waitFor(t, "2 Jobs (the global cap)", func() bool { return len(listJobs(t, cl, ns)) == 2 })
	time.Sleep(time.Second)
	js := listJobs(t, cl, ns)
	if len(js) != 2 {
		t.Fatalf("%d Jobs with a cap of 2", len(js))
	}
	j := js[0]
	if j.Labels[jobs.LabelManagedBy] != ManagedBy || j.Labels[LabelImagePrefetch] != "web" || j.Spec.Template.Spec.NodeName != j.Annotations[jobs.AnnotationNode] {
		t.Errorf("Job labels %v, node %s", j.Labels, j.Spec.Template.Spec.NodeName)
	}
	if args := strings.Join(j.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "--image="+img+"=sha256:") {
		t.Errorf("worker args %q lack the image with its digest", args)
	}
	finishJob(t, cl, &j, report.StatusPulled)
	waitFor(t, "the finished Job deleted and the third node's Job created", func() bool {
		nodes := jobNodes(listJobs(t, cl, ns))
		return len(nodes) == 2 && !contains(nodes, j.Annotations[jobs.AnnotationNode])
	})
	for _, j := range listJobs(t, cl, ns) {
		finishJob(t, cl, &j, report.StatusPulled)
	}
	waitFor(t, "Ready 3/3", func() bool {
		must(t, cl.Get(ctx, client.ObjectKeyFromObject(ip), ip))
		return meta.IsStatusConditionTrue(ip.Status.Conditions, coralv1.ConditionReady) && ip.Status.Ready == "3/3"
	})
	var recs coralv1.PrefetchNodeList
	must(t, cl.List(ctx, &recs, client.InNamespace(ns)))
	if len(recs.Items) != 3 {
		t.Fatalf("%d PrefetchNode records, want 3", len(recs.Items))
	}
	for _, r := range recs.Items {
		if r.State != coralv1.NodeStateReady || r.Results[0].Digest != "sha256:"+strings.Repeat("a", 64) || len(r.OwnerReferences) != 1 {
			t.Errorf("record %s: %+v", r.Name, r)
		}
	}
	waitFor(t, "no Job left, finished ones deleted too", func() bool {
		var l batchv1.JobList
		must(t, cl.List(ctx, &l, client.InNamespace(ns)))
		for _, j := range l.Items {
			if j.DeletionTimestamp == nil {
				return false
			}
		}
		return true
	})

	// A node joins: one Job, for it only.
	addNode(t, cl, "n4", "web")
	waitFor(t, "a Job for n4", func() bool { return len(listJobs(t, cl, ns)) == 1 })
	first := listJobs(t, cl, ns)[0]
	if first.Annotations[jobs.AnnotationNode] != "n4" {
		t.Fatalf("the Job is for %s", first.Annotations[jobs.AnnotationNode])
	}

	// Restart with the Job in flight: the new controller adopts it.
	stop()
	stop = startController(t, cfg, o)
	defer stop()
	time.Sleep(3 * time.Second)
	if js := listJobs(t, cl, ns); len(js) != 1 || js[0].UID != first.UID {
		t.Fatalf("after a restart: %d Jobs (want the one in flight, adopted)", len(js))
	}
	finishJob(t, cl, &first, report.StatusPresent)
	waitFor(t, "Ready 4/4", func() bool {
		must(t, cl.Get(ctx, client.ObjectKeyFromObject(ip), ip))
		return meta.IsStatusConditionTrue(ip.Status.Conditions, coralv1.ConditionReady) && ip.Status.Ready == "4/4"
	})

	// A new image: every node gets a Job for it alone, within the cap, without
	// waiting (a Job that came and went must not keep holding its node).
	img2 := "reg.local/tool@sha256:" + strings.Repeat("b", 64)
	must(t, cl.Get(ctx, client.ObjectKeyFromObject(ip), ip))
	ip.Spec.Images = append(ip.Spec.Images, img2)
	must(t, cl.Update(ctx, ip))
	done := map[string]bool{}
	waitFor(t, "a Job with only the new image on each of the 4 nodes", func() bool {
		for _, j := range listJobs(t, cl, ns) {
			node := j.Annotations[jobs.AnnotationNode]
			if done[node] {
				continue
			}
			if args := strings.Join(j.Spec.Template.Spec.Containers[0].Args, " "); strings.Contains(args, "reg.local/app@") || !strings.Contains(args, img2) {
				t.Fatalf("Job for %s: %s (want only the new image)", node, args)
			}
			finishJob(t, cl, &j, report.StatusPulled)
			done[node] = true
		}
		return len(done) == 4
	})
	waitFor(t, "Ready 4/4 with two images", func() bool {
		must(t, cl.Get(ctx, client.ObjectKeyFromObject(ip), ip))
		return meta.IsStatusConditionTrue(ip.Status.Conditions, coralv1.ConditionReady) && ip.Status.ObservedGeneration == ip.Generation && ip.Status.Ready == "4/4"
	})

	// A failing node: Degraded with the worker's message, retried later, not at once.
	addNode(t, cl, "n5", "web")
	waitFor(t, "a Job for n5", func() bool { return len(listJobs(t, cl, ns)) == 1 })
	j5 := listJobs(t, cl, ns)[0]
	finishJob(t, cl, &j5, report.StatusFailed)
	waitFor(t, "Degraded NodesFailed", func() bool {
		must(t, cl.Get(ctx, client.ObjectKeyFromObject(ip), ip))
		d := meta.FindStatusCondition(ip.Status.Conditions, coralv1.ConditionDegraded)
		return d != nil && d.Status == metav1.ConditionTrue && d.Reason == "NodesFailed" && strings.Contains(d.Message, "manifest unknown")
	})
	if len(ip.Status.FailingNodes) != 1 || ip.Status.FailingNodes[0].Node != "n5" {
		t.Errorf("failingNodes %+v", ip.Status.FailingNodes)
	}
	time.Sleep(2 * time.Second)
	if js := listJobs(t, cl, ns); len(js) != 0 {
		t.Errorf("%d Jobs right after a failure: the retry must wait for its backoff", len(js))
	}

	// Node changes reach a plan the controller keeps between reconciles: a
	// cordoned node is skipped and keeps its record; a node relabelled out
	// of the selection loses its record and its failure.
	setNode := func(name string, change func(n *corev1.Node)) {
		var n corev1.Node
		must(t, cl.Get(ctx, client.ObjectKey{Name: name}, &n))
		change(&n)
		must(t, cl.Update(ctx, &n))
	}
	setNode("n4", func(n *corev1.Node) { n.Spec.Unschedulable = true })
	setNode("n5", func(n *corev1.Node) { n.Labels["pool"] = "batch" })
	waitFor(t, "n4 skipped, n5 out of the selection", func() bool {
		must(t, cl.Get(ctx, client.ObjectKeyFromObject(ip), ip))
		return ip.Status.SkippedNodes == 1 && len(ip.Status.Skipped) == 1 && ip.Status.Skipped[0].Node == "n4" &&
			ip.Status.DesiredNodes == 3 && ip.Status.FailedNodes == 0 && ip.Status.Ready == "3/3"
	})
	waitFor(t, "n5's record deleted, n4's kept", func() bool {
		must(t, cl.List(ctx, &recs, client.InNamespace(ns)))
		var nodes []string
		for _, r := range recs.Items {
			nodes = append(nodes, r.Node)
		}
		sort.Strings(nodes)
		return strings.Join(nodes, " ") == "n1 n2 n3 n4"
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func addNode(t *testing.T, cl client.Client, name, pool string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{"pool": pool, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64"},
		Annotations: map[string]string{"kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/" + name + "/containerd.sock"},
	}}
	must(t, cl.Create(context.Background(), n))
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	must(t, cl.Status().Update(context.Background(), n))
}

func listJobs(t *testing.T, cl client.Client, ns string) []batchv1.Job {
	t.Helper()
	var l batchv1.JobList
	must(t, cl.List(context.Background(), &l, client.InNamespace(ns), client.MatchingLabels{jobs.LabelManagedBy: ManagedBy}))
	var out []batchv1.Job
	for _, j := range l.Items {
		// A finished Job whose result is recorded waits only for its delete.
		if j.DeletionTimestamp == nil && !jobFinished(&j) {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out
}

func jobNodes(js []batchv1.Job) []string {
	var out []string
	for _, j := range js {
		out = append(out, j.Annotations[jobs.AnnotationNode])
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// finishJob plays the Job controller and the worker: the Job's pod, its
// worker container terminated with the report the worker would write.
func finishJob(t *testing.T, cl client.Client, j *batchv1.Job, st report.Status) {
	t.Helper()
	finishJobPinned(t, cl, j, st, false)
}

// finishJobPinned is finishJob for a worker that reports pinned images.
func finishJobPinned(t *testing.T, cl client.Client, j *batchv1.Job, st report.Status, pinned bool) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{batchv1.JobNameLabel: j.Name}
	for k, v := range j.Spec.Template.Labels {
		labels[k] = v
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: j.Name + "-pod", Namespace: j.Namespace, Labels: labels},
		Spec:       j.Spec.Template.Spec,
	}
	must(t, cl.Create(ctx, pod))
	var wr report.WorkerReport
	var expected []string
	for _, a := range j.Spec.Template.Spec.Containers[0].Args {
		if ref, ok := strings.CutPrefix(a, "--image="); ok {
			item, digest, _ := strings.Cut(ref, "=") // unpin Jobs name no digest
			expected = append(expected, digest)
			it := report.ItemResult{Item: item, Status: st, Digest: digest, SizeBytes: 1000, Pinned: pinned}
			if st == report.StatusFailed {
				it.Digest, it.Message = "", "manifest unknown"
			}
			wr.Items = append(wr.Items, it)
		}
	}
	msg := report.EncodeTermination(&wr, expected, report.TerminationMessageLimit)
	code := int32(0)
	if st == report.StatusFailed {
		code = 1
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: jobs.ContainerName, Image: pod.Spec.Containers[0].Image,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Message: msg, Reason: "Completed", FinishedAt: metav1.Now()}},
	}}
	must(t, cl.Status().Update(ctx, pod))

	// The Job controller's bookkeeping: it finishes the Job (the controller
	// deletes a recorded Job once it is finished).
	var cur batchv1.Job
	must(t, cl.Get(ctx, client.ObjectKeyFromObject(j), &cur))
	now := metav1.Now()
	cur.Status.StartTime = &now
	if code == 0 {
		cur.Status.Succeeded, cur.Status.CompletionTime = 1, &now
		cur.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
	} else {
		cur.Status.Failed = 1
		cur.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastTransitionTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", LastTransitionTime: now},
		}
	}
	must(t, cl.Status().Update(ctx, &cur))
}

// TestAdmissionAskedOncePerObject: the server-side dry run that asks
// admission about an object's worker runs once for its first Job, not
// again for each later Job of the same object and generation (make
// bench-scale's controller mode found two dry runs per Job: 148 for 100
// nodes).
func TestAdmissionAskedOncePerObject(t *testing.T) {
	const ns = "coral"
	cfg, cl := startAPIServer(t, ns)
	ctx := context.Background()
	for _, n := range []string{"n1", "n2", "n3", "n4"} {
		addNode(t, cl, n, "web")
	}
	var dryRuns atomic.Int64
	counted := rest.CopyConfig(cfg)
	counted.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodPost && req.URL.Query().Get("dryRun") == "All" {
				dryRuns.Add(1)
			}
			return rt.RoundTrip(req)
		})
	})
	o := NewOptions()
	// One Job at a time: each node's Job is its own batch, started by its
	// own reconcile.
	o.WorkerImage, o.MaxJobsInFlight = "reg.local/coral-worker:test", 1
	stop := startController(t, counted, o)
	defer stop()

	img := "reg.local/app@sha256:" + strings.Repeat("a", 64)
	ip := &coralv1.ImagePrefetch{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec:       coralv1.ImagePrefetchSpec{Images: []string{img}, Nodes: coralv1.Nodes{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "web"}}}},
	}
	must(t, cl.Create(ctx, ip))
	done := map[string]bool{}
	waitFor(t, "a Job on each of the 4 nodes, one after another", func() bool {
		js := listJobs(t, cl, ns)
		if len(js) > 1 {
			t.Fatalf("%d Jobs with a cap of 1", len(js))
		}
		for _, j := range js {
			if node := j.Annotations[jobs.AnnotationNode]; !done[node] {
				done[node] = true
				finishJob(t, cl, &j, report.StatusPulled)
			}
		}
		return len(done) == 4
	})
	waitFor(t, "Ready 4/4", func() bool {
		must(t, cl.Get(ctx, client.ObjectKeyFromObject(ip), ip))
		return ip.Status.Ready == "4/4"
	})
	// One Job dry run and one pod dry run (run.Preflight in Job mode).
	if n := dryRuns.Load(); n != 2 {
		t.Errorf("%d dry-run requests for 4 Jobs of one object, want 2 (admission asked once)", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
