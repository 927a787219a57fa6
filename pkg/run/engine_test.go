package run

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/report"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const ns = "coral"

// kubelet stands in for the Job controller and kubelets in these unit
// tests: for every created Job it creates the pod and moves it to a final
// state chosen by behave. The real thing is exercised by the e2e suite.
type kubelet struct {
	client   *fake.Clientset
	behave   func(node string, pod *corev1.Pod) bool // mutate pod status; false = leave pending
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	delay    time.Duration
	// podsWatched is closed once the engine's pod watch is registered with
	// the fake tracker. The fake replays nothing: a pod created between the
	// informer's list and its watch would never be seen (a real API server
	// resumes the watch from the list's resourceVersion), so pods wait for it.
	podsWatched chan struct{}
}

func newClient() *fake.Clientset {
	c := fake.NewClientset()
	// The fake tracker has no DeleteCollection: implement it by label.
	c.PrependReactor("delete-collection", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		dc := a.(k8stesting.DeleteCollectionAction)
		sel, _ := labels.Parse(dc.GetListRestrictions().Labels.String())
		list, _ := c.Tracker().List(batchv1.SchemeGroupVersion.WithResource("jobs"), batchv1.SchemeGroupVersion.WithKind("Job"), dc.GetNamespace())
		for _, j := range list.(*batchv1.JobList).Items {
			if sel.Matches(labels.Set(j.Labels)) {
				c.Tracker().Delete(batchv1.SchemeGroupVersion.WithResource("jobs"), j.Namespace, j.Name)
			}
		}
		return true, nil, nil
	})
	return c
}

func (k *kubelet) start(t *testing.T, ctx context.Context) {
	k.trackPodWatch()
	w, err := k.client.BatchV1().Jobs(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added {
				continue
			}
			job := ev.Object.(*batchv1.Job)
			go k.runPod(ctx, job)
		}
	}()
}

// trackPodWatch closes podsWatched once a pod watch is registered.
func (k *kubelet) trackPodWatch() {
	k.podsWatched = make(chan struct{})
	var once sync.Once
	k.client.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
		var opts metav1.ListOptions
		if wa, ok := a.(k8stesting.WatchActionImpl); ok {
			opts = wa.ListOptions
		}
		w, err := k.client.Tracker().Watch(a.GetResource(), a.GetNamespace(), opts)
		if err != nil {
			return false, nil, err
		}
		once.Do(func() { close(k.podsWatched) })
		return true, w, nil
	})
}

func (k *kubelet) runPod(ctx context.Context, job *batchv1.Job) {
	n := k.inFlight.Add(1)
	defer k.inFlight.Add(-1)
	for {
		m := k.maxSeen.Load()
		if n <= m || k.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-k.podsWatched:
	case <-ctx.Done():
		return
	}
	node := job.Spec.Template.Spec.NodeName
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-x", Namespace: ns, Labels: job.Spec.Template.Labels, Annotations: job.Spec.Template.Annotations},
		Spec:       job.Spec.Template.Spec,
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	if _, err := k.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return
	}
	time.Sleep(k.delay)
	if !k.behave(node, pod) {
		return
	}
	k.client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
}

func succeed(pod *corev1.Pod, images []string, status report.Status) {
	wr := &report.WorkerReport{}
	for _, img := range images {
		wr.Items = append(wr.Items, report.ItemResult{Item: img, Status: status, Digest: "sha256:" + strings.Repeat("b", 64), SizeBytes: 10})
	}
	pod.Status.Phase = corev1.PodSucceeded
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: jobs.ContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 0, Message: report.EncodeTermination(wr, nil, report.TerminationMessageLimit),
	}}}}
}

// startPulling starts a kubelet on which every worker pulls its two images.
func startPulling(t *testing.T, ctx context.Context, c *fake.Clientset) {
	k := &kubelet{client: c, behave: func(node string, pod *corev1.Pod) bool {
		succeed(pod, []string{"a:1", "b:2"}, report.StatusPulled)
		return true
	}}
	k.start(t, ctx)
}

func nodeJobs(runID string, nodes ...string) []NodeJob {
	images := []string{"a:1", "b:2"}
	spec := jobs.Spec{RunID: runID, Namespace: ns, WorkerImage: "w:1", Deadline: time.Minute, TTL: time.Minute, MaxPullsPerNode: 1, ImageTimeout: time.Minute}
	var out []NodeJob
	for _, n := range nodes {
		t := plan.Task{Node: n, RuntimeSocket: "/run/c.sock", Items: []plan.Item{{Ref: "a:1"}, {Ref: "b:2"}}}
		out = append(out, NodeJob{Node: n, Job: jobs.ForTask(t, spec), Items: images, Expected: make([]string, 2)})
	}
	return out
}

func remainingJobs(t *testing.T, c *fake.Clientset) int {
	l, err := c.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Items)
}

func TestRunCollectsResultsCapsInFlightAndCleansUp(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &kubelet{client: c, delay: 50 * time.Millisecond, behave: func(node string, pod *corev1.Pod) bool {
		if node == "n3" {
			// a worker image the node cannot pull
			pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: jobs.ContainerName, Image: "w:1", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}}}}
			return true
		}
		succeed(pod, []string{"a:1", "b:2"}, report.StatusPulled)
		return true
	}}
	k.start(t, ctx)
	var mu sync.Mutex
	var events []Event
	e := &Engine{Client: c, Namespace: ns, RunID: "r1", MaxInFlight: 2, NodeTimeout: 10 * time.Second, WorkerStartGrace: 300 * time.Millisecond,
		OnEvent: func(ev Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }}
	res, _, err := e.Run(ctx, nodeJobs("r1", "n1", "n2", "n3", "n4", "n5"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 5 {
		t.Fatalf("%d results", len(res))
	}
	for _, r := range res {
		want := report.StatusPulled
		if r.Node == "n3" {
			want = report.StatusFailed
		}
		for _, it := range r.Items {
			if it.Status != want {
				t.Errorf("%s %s: %s %q, want %s", r.Node, it.Item, it.Status, it.Message, want)
			}
		}
	}
	if m := res[2].Items[0].Message; !strings.Contains(m, "cannot pull the worker image w:1") {
		t.Errorf("n3 message %q", m)
	}
	if m := k.maxSeen.Load(); m > 2 {
		t.Errorf("%d nodes in flight, cap is 2", m)
	}
	if n := remainingJobs(t, c); n != 0 {
		t.Errorf("%d Jobs left after the run", n)
	}
	finished := 0
	for _, ev := range events {
		if ev.Type == EventFinished {
			finished++
		}
	}
	if finished != 5 || events[len(events)-1].Done != 5 {
		t.Errorf("events: %d finished, last %+v", finished, events[len(events)-1])
	}
}

func TestRunInterruptDeletesEverything(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	k := &kubelet{client: c, behave: func(node string, pod *corev1.Pod) bool {
		if node == "n1" {
			succeed(pod, []string{"a:1", "b:2"}, report.StatusPresent)
			return true
		}
		return false // the others hang
	}}
	k.start(t, ctx)
	started := make(chan struct{})
	var once sync.Once
	// MaxInFlight 3: every worker starts, whatever the run's start order.
	e := &Engine{Client: c, Namespace: ns, RunID: "r2", MaxInFlight: 3, NodeTimeout: time.Minute,
		OnEvent: func(ev Event) {
			if ev.Type == EventFinished && ev.Node == "n1" {
				once.Do(func() { close(started) })
			}
		}}
	go func() { <-started; cancel() }()
	res, interrupted, err := e.Run(ctx, nodeJobs("r2", "n1", "n2", "n3"))
	if err != nil || !interrupted {
		t.Fatalf("interrupted = %v, err = %v; want an interrupted run without error", interrupted, err)
	}
	if n := remainingJobs(t, c); n != 0 {
		t.Fatalf("%d Jobs left after interrupt", n)
	}
	if res[0].Items[0].Status != report.StatusPresent {
		t.Errorf("n1 reported before the interrupt; its result must be kept: %+v", res[0].Items[0])
	}
	for _, r := range res[1:] {
		if r.Items[0].Status != report.StatusFailed || !strings.Contains(r.Items[0].Message, "interrupted") {
			t.Errorf("%s: %+v", r.Node, r.Items[0])
		}
	}
}

// Workers are created in plan.Spread's order for the run id, not in the
// NodeJobs' (name) order; results come back in the NodeJobs' order.
func TestRunStartsWorkersInSpreadOrder(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startPulling(t, ctx, c)
	var nodes []string
	for i := range 12 {
		nodes = append(nodes, fmt.Sprintf("node-%02d", i))
	}
	var mu sync.Mutex
	var created []string
	e := &Engine{Client: c, Namespace: ns, RunID: "r-order", MaxInFlight: 1, JobsAhead: -1, NodeTimeout: time.Minute,
		OnEvent: func(ev Event) {
			if ev.Type == EventCreated {
				mu.Lock()
				created = append(created, ev.Node)
				mu.Unlock()
			}
		}}
	res, _, err := e.Run(ctx, nodeJobs("r-order", nodes...))
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(nodes)
	plan.Spread(want, "r-order", func(n string) string { return n })
	if slices.Equal(want, nodes) {
		t.Fatal("the spread order is the name order: pick another run id")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(created, want) {
		t.Errorf("workers created in the order %v, want %v", created, want)
	}
	for i, r := range res {
		if r.Node != nodes[i] || r.Items[0].Status != report.StatusPulled {
			t.Errorf("result %d: %s %+v, want %s Pulled (the NodeJobs' order)", i, r.Node, r.Items[0], nodes[i])
		}
	}
}

func TestRunNodeTimeoutAndPodDeletion(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &kubelet{client: c, behave: func(node string, pod *corev1.Pod) bool {
		if node == "gone" {
			go c.CoreV1().Pods(ns).Delete(context.Background(), pod.Name, metav1.DeleteOptions{})
			return false
		}
		pod.Status.Phase = corev1.PodRunning
		c.Tracker().Add(&corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: pod.Name + ".1", Namespace: ns},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: pod.Name, Namespace: ns},
			Type:           corev1.EventTypeWarning, Reason: "FailedKillPod",
			Message: "rpc error: code = Unavailable desc = connection refused",
		})
		return true // runs forever
	}}
	k.start(t, ctx)
	e := &Engine{Client: c, Namespace: ns, RunID: "r3", MaxInFlight: 5, NodeTimeout: 1500 * time.Millisecond}
	res, _, err := e.Run(ctx, nodeJobs("r3", "gone", "stuck"))
	if err != nil {
		t.Fatal(err)
	}
	if m := res[0].Items[0].Message; !strings.Contains(m, "deleted before it reported") {
		t.Errorf("gone: %q", m)
	}
	if m := res[1].Items[0].Message; !strings.Contains(m, "--timeout=1.5s") || !strings.Contains(m, "still running") || !strings.Contains(m, "FailedKillPod: rpc error") {
		t.Errorf("stuck: %q", m)
	}
	if n := remainingJobs(t, c); n != 0 {
		t.Errorf("%d Jobs left", n)
	}
}

func TestRunExplainsJobWithoutPod(t *testing.T) {
	c := newClient()
	ctx := context.Background()
	// No kubelet: the Job controller could not create the pod; it said why in an event.
	c.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		job := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
		c.Tracker().Add(&corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: job.Name + ".1", Namespace: ns},
			InvolvedObject: corev1.ObjectReference{Kind: "Job", Name: job.Name, Namespace: ns},
			Type:           corev1.EventTypeWarning, // as the Job controller records it
			Reason:         "FailedCreate",
			Message:        `Error creating: pods "x" is forbidden: violates PodSecurity "baseline:latest": hostPath volumes (volume "cri-socket")`,
		})
		return false, nil, nil
	})
	e := &Engine{Client: c, Namespace: ns, RunID: "r4", MaxInFlight: 5, NodeTimeout: time.Minute, NoPodGrace: 200 * time.Millisecond}
	start := time.Now()
	res, _, err := e.Run(ctx, nodeJobs("r4", "n1"))
	if err != nil {
		t.Fatal(err)
	}
	m := res[0].Items[0].Message
	if !strings.Contains(m, "Pod Security") || !strings.Contains(m, "pod-security.kubernetes.io/enforce=privileged") {
		t.Errorf("message %q", m)
	}
	if time.Since(start) > 10*time.Second {
		t.Error("a Job that cannot create its pod must fail fast, not at --timeout")
	}
}

func TestRunOverflowReadsLog(t *testing.T) {
	// The fake clientset serves "fake logs" for every pod, which holds no
	// report: the engine must say the details could not be read, and keep
	// the statuses from the termination message.
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &kubelet{client: c, behave: func(node string, pod *corev1.Pod) bool {
		pod.Status.Phase = corev1.PodFailed
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: jobs.ContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Message: fmt.Sprintf(`{"v":%d,"s":"PF"}`, report.WireVersion),
		}}}}
		return true
	}}
	k.start(t, ctx)
	e := &Engine{Client: c, Namespace: ns, RunID: "r5", MaxInFlight: 1, NodeTimeout: time.Minute}
	res, _, err := e.Run(ctx, nodeJobs("r5", "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Items[0].Status != report.StatusPulled || res[0].Items[1].Status != report.StatusFailed {
		t.Fatalf("statuses %+v", res[0].Items)
	}
	if !strings.Contains(res[0].Items[1].Message, "worker log") {
		t.Errorf("message %q", res[0].Items[1].Message)
	}
}

// The report is read as soon as the worker container has terminated, while
// the pod phase is still Running (kubelet tears the pod down afterwards).
func TestRunReadsReportBeforePhaseSucceeded(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &kubelet{client: c, behave: func(node string, pod *corev1.Pod) bool {
		succeed(pod, []string{"a:1", "b:2"}, report.StatusPulled)
		pod.Status.Phase = corev1.PodRunning
		return true
	}}
	k.start(t, ctx)
	e := &Engine{Client: c, Namespace: ns, RunID: "r6", MaxInFlight: 1, NodeTimeout: 5 * time.Second}
	res, _, err := e.Run(ctx, nodeJobs("r6", "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Items[0].Status != report.StatusPulled {
		t.Fatalf("got %+v: the terminated container's report must count while the phase is Running", res[0].Items[0])
	}
}

// A create that reached the API server but was cut short by the interrupt
// (its answer lost) is still cleaned up.
func TestRunCleansUpACreateCutShort(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	c.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		job := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
		c.Tracker().Add(job) // the server has it…
		cancel()             // …but the user pressed Ctrl-C before the answer came
		return true, nil, context.Canceled
	})
	e := &Engine{Client: c, Namespace: ns, RunID: "r7", MaxInFlight: 1, NodeTimeout: time.Minute}
	_, interrupted, err := e.Run(ctx, nodeJobs("r7", "n1", "n2"))
	if !interrupted || err != nil {
		t.Fatalf("interrupted=%v err=%v", interrupted, err)
	}
	if n := remainingJobs(t, c); n != 0 {
		t.Fatalf("%d Jobs left behind", n)
	}
}

// A rejection that names hostNetwork says how to do without it; one that
// does not, does not.
func TestExplainAdmissionHostNetwork(t *testing.T) {
	psa := `pods "x" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true), hostPath volumes (volume "cri-socket")`
	if m := explainAdmission(psa, ns); !strings.Contains(m, "--host-network=false") || !strings.Contains(m, "enforce=privileged") {
		t.Errorf("PodSecurity on hostNetwork and hostPath: %q", m)
	}
	kyverno := `admission webhook "validate.kyverno.svc-fail" denied the request: policy Pod/coral/x for resource violation: disallow-host-namespaces: host-namespaces: validation error: Sharing the host namespaces is disallowed.`
	if m := explainAdmission(kyverno, ns); !strings.Contains(m, "--host-network=false") {
		t.Errorf("a policy engine on host namespaces: %q", m)
	}
	if m := explainAdmission(`violates PodSecurity "baseline:latest": hostPath volumes (volume "cri-socket")`, ns); strings.Contains(m, "--host-network") {
		t.Errorf("hostPath only, yet the advice names --host-network: %q", m)
	}
}

func TestTimeoutStart(t *testing.T) {
	t0 := time.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, c := range []struct {
		name               string
		created, pod, last time.Time
		want               time.Time
	}{
		{"a pod: from the pod", at(0), at(40), at(70), at(40)},
		{"no pod, none seen: from the creation", at(0), time.Time{}, time.Time{}, at(0)},
		{"no pod, newer pods seen: from the newest", at(0), time.Time{}, at(70), at(70)},
		{"no pod, only older pods seen: from the creation", at(30), time.Time{}, at(10), at(30)},
	} {
		if got := TimeoutStart(c.created, c.pod, c.last); !got.Equal(c.want) {
			t.Errorf("%s: %s, want %s", c.name, got.Sub(t0), c.want.Sub(t0))
		}
	}
}
