package run

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/report"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// Kubelet retries pulling the worker image: one ErrImagePull must not fail
// the node when the next try works.
func TestRunWorkerImagePullHiccupIsRetried(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &kubelet{client: c, behave: func(node string, pod *corev1.Pod) bool {
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: jobs.ContainerName, Image: "w:1", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "503 Service Unavailable"}}}}
		if _, err := c.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			return false
		}
		time.Sleep(300 * time.Millisecond) // kubelet's back-off, then it works
		succeed(pod, []string{"a:1", "b:2"}, report.StatusPulled)
		return true
	}}
	k.start(t, ctx)
	e := &Engine{Client: c, Namespace: ns, RunID: "h1", MaxInFlight: 2, NodeTimeout: 10 * time.Second, WorkerStartGrace: 5 * time.Second}
	res, _, err := e.Run(ctx, nodeJobs("h1", "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if st := res[0].Items[0].Status; st != report.StatusPulled {
		t.Fatalf("got %s %q: a first ErrImagePull of the worker must not fail the node", st, res[0].Items[0].Message)
	}
}

// An invalid worker image name cannot get better by retrying: it fails at once.
func TestRunInvalidWorkerImageFailsAtOnce(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &kubelet{client: c, behave: func(node string, pod *corev1.Pod) bool {
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: jobs.ContainerName, Image: "w::1", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "InvalidImageName", Message: "bad"}}}}
		return true
	}}
	k.start(t, ctx)
	e := &Engine{Client: c, Namespace: ns, RunID: "h2", MaxInFlight: 2, NodeTimeout: time.Minute}
	start := time.Now()
	res, _, _ := e.Run(ctx, nodeJobs("h2", "n1"))
	if m := res[0].Items[0].Message; res[0].Items[0].Status != report.StatusFailed || !strings.Contains(m, "--worker-image") {
		t.Fatalf("got %+v", res[0].Items[0])
	}
	if time.Since(start) > 10*time.Second {
		t.Error("InvalidImageName waited for the grace period")
	}
}

// Nothing reaches OnEvent after Run returned (the progress printer is gone
// by then), even when pods keep changing.
func TestRunNoEventAfterReturn(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startPulling(t, ctx, c)
	var mu sync.Mutex
	returned := false
	late := 0
	e := &Engine{Client: c, Namespace: ns, RunID: "h3", MaxInFlight: 3, NodeTimeout: 10 * time.Second, KeepJobs: true,
		OnEvent: func(Event) {
			time.Sleep(20 * time.Millisecond) // a slow terminal
			mu.Lock()
			if returned {
				late++
			}
			mu.Unlock()
		}}
	if _, _, err := e.Run(ctx, nodeJobs("h3", "n1", "n2", "n3")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	returned = true
	mu.Unlock()
	pods, _ := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	for i := range pods.Items {
		p := &pods.Items[i]
		p.Status.Phase = corev1.PodSucceeded
		c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		c.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{})
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if late != 0 {
		t.Errorf("%d events delivered after Run returned", late)
	}
}

// Pods mode: the worker pods are created directly, owned by the run's
// Lease; the cleanup removes the pods and the Lease.
func TestRunPodsModeOwnedByLease(t *testing.T) {
	c := newClient()
	c.PrependReactor("delete-collection", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		dc := a.(k8stesting.DeleteCollectionAction)
		sel, _ := labels.Parse(dc.GetListRestrictions().Labels.String())
		list, _ := c.Tracker().List(corev1.SchemeGroupVersion.WithResource("pods"), corev1.SchemeGroupVersion.WithKind("Pod"), dc.GetNamespace())
		for _, p := range list.(*corev1.PodList).Items {
			if sel.Matches(labels.Set(p.Labels)) {
				c.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), p.Namespace, p.Name)
			}
		}
		return true, nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := c.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var owners sync.Map
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added {
				continue
			}
			pod := ev.Object.(*corev1.Pod).DeepCopy()
			owners.Store(pod.Name, pod.OwnerReferences)
			if pod.Spec.ActiveDeadlineSeconds == nil {
				t.Errorf("pod %s has no deadline", pod.Name)
			}
			succeed(pod, []string{"a:1", "b:2"}, report.StatusPulled)
			c.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		}
	}()
	e := &Engine{Client: c, Namespace: ns, RunID: "p1", Mode: ModePods, MaxInFlight: 2, NodeTimeout: 10 * time.Second}
	res, _, err := e.Run(ctx, nodeJobs("p1", "n1", "n2", "n3"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Items[0].Status != report.StatusPulled {
			t.Errorf("%s: %+v", r.Node, r.Items[0])
		}
	}
	if n := remainingJobs(t, c); n != 0 {
		t.Errorf("pods mode created %d Jobs", n)
	}
	n := 0
	owners.Range(func(k, v any) bool {
		n++
		refs := v.([]metav1.OwnerReference)
		if len(refs) != 1 || refs[0].Kind != "Lease" || refs[0].Name != LeaseName("p1") {
			t.Errorf("pod %s owners %+v, want the run's Lease", k, refs)
		}
		return true
	})
	if n != 3 {
		t.Errorf("%d pods created, want 3", n)
	}
	pods, _ := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	leases, _ := c.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{})
	if len(pods.Items) != 0 || len(leases.Items) != 0 {
		t.Errorf("left behind: %d pods, %d leases", len(pods.Items), len(leases.Items))
	}
}

// Jobs are owned by the run's Lease, which is labelled for gc and removed
// at the end.
func TestRunJobsOwnedByLease(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sawLease bool
	k := &kubelet{client: c, behave: func(node string, pod *corev1.Pod) bool {
		l, err := c.CoordinationV1().Leases(ns).Get(ctx, LeaseName("o1"), metav1.GetOptions{})
		sawLease = err == nil && l.Labels[jobs.LabelRunID] == "o1" && l.Labels[jobs.LabelManagedBy] == "kubectl-coral" && *l.Spec.HolderIdentity == "me"
		succeed(pod, []string{"a:1", "b:2"}, report.StatusPulled)
		return true
	}}
	k.start(t, ctx)
	c.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		refs := a.(k8stesting.CreateAction).GetObject().(metav1.Object).GetOwnerReferences()
		if len(refs) != 1 || refs[0].Name != LeaseName("o1") {
			t.Errorf("Job owners %+v", refs)
		}
		return false, nil, nil
	})
	e := &Engine{Client: c, Namespace: ns, RunID: "o1", MaxInFlight: 2, NodeTimeout: 10 * time.Second, Holder: "me"}
	if _, _, err := e.Run(ctx, nodeJobs("o1", "n1")); err != nil {
		t.Fatal(err)
	}
	if !sawLease {
		t.Error("no labelled Lease with the holder while the run went on")
	}
	if l, _ := c.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Error("the run's Lease is left behind")
	}
}

// A large run's cleanup is the Lease's deletion (the garbage collector
// follows the owner references); no DeleteCollection that would outlive the
// API server's request timeout.
func TestRunLargeCleanupDeletesTheLease(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startPulling(t, ctx, c)
	e := &Engine{Client: c, Namespace: ns, RunID: "big", MaxInFlight: 3, NodeTimeout: 10 * time.Second, SyncCleanupMax: 2}
	if _, _, err := e.Run(ctx, nodeJobs("big", "n1", "n2", "n3")); err != nil {
		t.Fatal(err)
	}
	var collections, leaseDeletes int
	for _, a := range c.Actions() {
		switch {
		case a.GetVerb() == "delete-collection":
			collections++
		case a.GetVerb() == "delete" && a.GetResource().Resource == "leases":
			leaseDeletes++
		}
	}
	if collections != 0 || leaseDeletes != 1 {
		t.Errorf("%d DeleteCollections, %d Lease deletes; want 0 and 1", collections, leaseDeletes)
	}
	// The fake has no garbage collector: the workers are still there, and
	// the run says so.
	if got := e.Cleaned; !got.Background || got.Workers != 3 || got.Kind != "jobs" || got.Selector != jobs.RunSelector("big") {
		t.Errorf("Cleaned = %+v, want 3 jobs left in the background", got)
	}

	// With WaitCleanup the run waits for them: a stand-in collector
	// removes them a little later.
	e = &Engine{Client: c, Namespace: ns, RunID: "big2", MaxInFlight: 3, NodeTimeout: 10 * time.Second, SyncCleanupMax: 2, WaitCleanup: 30 * time.Second}
	go func() {
		for ctx.Err() == nil {
			time.Sleep(300 * time.Millisecond)
			if l, _ := c.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{}); l != nil && len(l.Items) > 0 {
				continue // the run is not over
			}
			sel := metav1.ListOptions{LabelSelector: jobs.RunSelector("big2")}
			js, _ := c.BatchV1().Jobs(ns).List(ctx, sel)
			ps, _ := c.CoreV1().Pods(ns).List(ctx, sel)
			if js == nil || ps == nil || len(js.Items) == 0 {
				continue
			}
			for _, j := range js.Items {
				c.BatchV1().Jobs(ns).Delete(ctx, j.Name, metav1.DeleteOptions{})
			}
			for _, p := range ps.Items {
				c.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{})
			}
			return
		}
	}()
	if _, _, err := e.Run(ctx, nodeJobs("big2", "n1", "n2", "n3")); err != nil {
		t.Fatal(err)
	}
	if e.Cleaned.Background {
		t.Errorf("Cleaned = %+v after waiting for the collector", e.Cleaned)
	}
	if n := remainingJobs(t, c); n != 3 { // the first run's, never collected
		t.Errorf("%d Jobs left, want the first run's 3", n)
	}
}

func TestReadPodNodeDeletedSaysSo(t *testing.T) {
	pod := &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, Conditions: []corev1.PodCondition{{
		Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "DeletionByPodGC", Message: "PodGC: node no longer exists",
	}}}}
	out := readPod(pod, []string{"a:1"}, []string{""})
	if !out.final || !strings.Contains(out.failure, "node was deleted") || strings.Contains(out.failure, "before its container ran") {
		t.Errorf("got %+v", out)
	}
	slim, _ := slimPod(pod)
	if out2 := readPod(slim.(*corev1.Pod), []string{"a:1"}, []string{""}); out2.failure != out.failure {
		t.Errorf("the watch cache drops the disruption condition: %q", out2.failure)
	}
}

func TestNodeDownAtTheDeadline(t *testing.T) {
	old := metav1.NewMicroTime(time.Now().Add(-2 * time.Minute))
	c := newClient()
	c.Tracker().Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}})
	c.Tracker().Add(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "quiet", Namespace: corev1.NamespaceNodeLease}, Spec: coordinationv1.LeaseSpec{RenewTime: &old}})
	c.Tracker().Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "unknown"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown", Message: "Kubelet stopped posting node status."}}}})
	r := &runner{e: &Engine{Client: c}}
	ctx := context.Background()
	for node, want := range map[string]string{"quiet": "heartbeat", "unknown": "Kubelet stopped posting", "gone": "no longer exists"} {
		if got := r.nodeDown(ctx, node); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want it to mention %q", node, got, want)
		}
	}
}

// A Job controller that lags gets Jobs ahead of the cap (bounded by
// JobsAhead) instead of one per report, once workers have shown they are
// quick; with JobsAhead < 0 the cap is strict. The "controller" here serves
// the first two Jobs at once and makes no other pod until released.
func TestRunFeedsABackloggedJobController(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ahead int
		want  int // Jobs created before the release: 2 served + the queue
	}{
		{"ahead", 3, 2 + 5},
		{"strict", -1, 2 + 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			release := make(chan struct{})
			k := &kubelet{client: c, behave: func(_ string, pod *corev1.Pod) bool {
				succeed(pod, []string{"a:1", "b:2"}, report.StatusPulled)
				return true
			}}
			k.trackPodWatch()
			w, err := c.BatchV1().Jobs(ns).Watch(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var created atomic.Int32
			go func() {
				for ev := range w.ResultChan() {
					if ev.Type != watch.Added {
						continue
					}
					job := ev.Object.(*batchv1.Job)
					if created.Add(1) <= 2 {
						go k.runPod(ctx, job)
						continue
					}
					go func() {
						select {
						case <-release:
							k.runPod(ctx, job)
						case <-ctx.Done():
						}
					}()
				}
			}()
			e := &Engine{Client: c, Namespace: ns, RunID: "r1", MaxInFlight: 2, JobsAhead: tc.ahead, JobBacklogAfter: 50 * time.Millisecond, NodeTimeout: 20 * time.Second}
			nodes := []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10"}
			type out struct {
				res []NodeResult
				err error
			}
			done := make(chan out, 1)
			go func() {
				res, _, err := e.Run(ctx, nodeJobs("r1", nodes...))
				done <- out{res, err}
			}()
			// The queue grows to its bound (waited for, so a loaded machine
			// does not fail the test) and, several deadline checks later,
			// no further.
			for deadline := time.Now().Add(10 * time.Second); int(created.Load()) < tc.want && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(1000 * time.Millisecond)
			if got := int(created.Load()); got != tc.want {
				t.Errorf("%d Jobs created while the controller made no pod after the first 2, want %d (MaxInFlight 2, JobsAhead %d)", got, tc.want, tc.ahead)
			}
			close(release)
			o := <-done
			if o.err != nil {
				t.Fatal(o.err)
			}
			for _, r := range o.res {
				for _, it := range r.Items {
					if it.Status != report.StatusPulled {
						t.Errorf("%s %s: %s %q", r.Node, it.Item, it.Status, it.Message)
					}
				}
			}
			if got := int(created.Load()); got != len(nodes) {
				t.Errorf("%d Jobs created in all, want %d", got, len(nodes))
			}
		})
	}
}

// In a small run the report the worker prints to its log finishes the node
// before the container status carries it: here the status never does.
func TestRunFollowsTheWorkerLog(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &kubelet{client: c, behave: func(_ string, pod *corev1.Pod) bool {
		pod.Status.Phase = corev1.PodRunning // and it stays so
		return true
	}}
	k.start(t, ctx)
	var opened atomic.Int32
	e := &Engine{Client: c, Namespace: ns, RunID: "r1", MaxInFlight: 2, NodeTimeout: 10 * time.Second,
		openLog: func(ctx context.Context, pod string, follow bool) (io.ReadCloser, error) {
			if !follow {
				t.Errorf("log of %s read without follow", pod)
			}
			opened.Add(1)
			pr, pw := io.Pipe()
			go func() {
				fmt.Fprintln(pw, "pulling a:1 …")
				report.EncodeFull(pw, &report.WorkerReport{Items: []report.ItemResult{
					{Item: "a:1", Status: report.StatusPulled, Digest: "sha256:" + strings.Repeat("c", 64)},
					{Item: "b:2", Status: report.StatusPresent, Digest: "sha256:" + strings.Repeat("d", 64)},
				}})
				<-ctx.Done() // the stream stays open until the run lets go of it
				pw.CloseWithError(ctx.Err())
			}()
			return pr, nil
		}}
	res, _, err := e.Run(ctx, nodeJobs("r1", "n1", "n2", "n3"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if len(r.Items) != 2 || r.Items[0].Status != report.StatusPulled || r.Items[1].Status != report.StatusPresent {
			t.Errorf("%s: %+v", r.Node, r.Items)
		}
	}
	if n := opened.Load(); n != 3 {
		t.Errorf("%d logs followed, want 3", n)
	}

	// Above FollowLogsUpTo no log is opened: the run times out instead.
	opened.Store(0)
	e = &Engine{Client: c, Namespace: ns, RunID: "r2", MaxInFlight: 2, NodeTimeout: 700 * time.Millisecond, FollowLogsUpTo: 2, openLog: e.openLog}
	res, _, err = e.Run(ctx, nodeJobs("r2", "m1", "m2", "m3"))
	if err != nil {
		t.Fatal(err)
	}
	if n := opened.Load(); n != 0 {
		t.Errorf("%d logs followed in a run above FollowLogsUpTo", n)
	}
	if res[0].Items[0].Status != report.StatusFailed {
		t.Errorf("m1: %+v", res[0].Items[0])
	}
}

// A run that loses many nodes reads the Node of the first lateExplained
// only (its reads do not grow with the nodes it loses), and still tells
// every late node its pod's newest warning, from the one events watch.
func TestRunExplainsBoundedLateNodes(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &kubelet{client: c, behave: func(_ string, pod *corev1.Pod) bool {
		pod.Status.Phase = corev1.PodRunning // and never a report
		for i, reason := range []string{"FailedMount", "MissingClusterDNS", "Unhealthy"} {
			c.Tracker().Add(&corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%d", pod.Name, i), Namespace: ns},
				InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: pod.Name, Namespace: ns},
				Type:           corev1.EventTypeWarning, Reason: reason, Message: "said by " + pod.Name,
				LastTimestamp: metav1.NewTime(time.Now().Add(time.Duration(i) * time.Second)),
			})
		}
		return true
	}}
	k.start(t, ctx)
	var nodes []string
	for i := range lateExplained + 5 {
		nodes = append(nodes, fmt.Sprintf("late-%02d", i))
	}
	e := &Engine{Client: c, Namespace: ns, RunID: "late", MaxInFlight: len(nodes), NodeTimeout: 500 * time.Millisecond, FollowLogsUpTo: -1}
	res, _, err := e.Run(ctx, nodeJobs("late", nodes...))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		m := r.Items[0].Message
		if r.Items[0].Status != report.StatusFailed || !strings.Contains(m, "no report within --timeout") {
			t.Errorf("%s: %+v", r.Node, r.Items[0])
		}
		// The newest informative warning: Unhealthy, not the older
		// FailedMount, not the uninformative DNS one.
		if !strings.Contains(m, "Unhealthy: said by coral-late-late-") || strings.Contains(m, "FailedMount") {
			t.Errorf("%s: the pod's newest warning is missing from %q", r.Node, m)
		}
	}
	var nodeGets, eventLists int
	for _, a := range c.Actions() {
		switch {
		case a.GetVerb() == "get" && a.GetResource().Resource == "nodes":
			nodeGets++
		case a.GetVerb() == "list" && a.GetResource().Resource == "events":
			eventLists++
		}
	}
	if nodeGets != lateExplained || eventLists != 1 {
		t.Errorf("%d Node gets and %d events lists for %d late nodes, want %d and 1 (the watch's)", nodeGets, eventLists, len(nodes), lateExplained)
	}
}

// A run given NewJob builds each node's Job once, when it creates the
// worker (a large run keeps no Job per node in memory); a NodeJob with
// neither a Job nor a builder is refused before anything is created.
func TestRunBuildsJobsWhenItCreatesThem(t *testing.T) {
	c := newClient()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k := &kubelet{client: c, behave: func(_ string, pod *corev1.Pod) bool {
		succeed(pod, []string{"a:1", "b:2"}, report.StatusPulled)
		return true
	}}
	k.start(t, ctx)
	built := map[string]int{}
	var mu sync.Mutex
	var njs []NodeJob
	for _, nj := range nodeJobs("lazy", "n1", "n2", "n3") {
		job := nj.Job
		nj.Job, nj.JobName = nil, job.Name
		nj.NewJob = func() *batchv1.Job {
			mu.Lock()
			built[job.Name]++
			mu.Unlock()
			return job.DeepCopy()
		}
		njs = append(njs, nj)
	}
	e := &Engine{Client: c, Namespace: ns, RunID: "lazy", MaxInFlight: 1, NodeTimeout: 10 * time.Second}
	res, _, err := e.Run(ctx, njs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Items[0].Status != report.StatusPulled {
			t.Errorf("%s: %+v", r.Node, r.Items[0])
		}
	}
	var created []string
	for _, a := range c.Actions() {
		if a.GetVerb() == "create" && a.GetResource().Resource == "jobs" {
			created = append(created, a.(k8stesting.CreateAction).GetObject().(*batchv1.Job).Name)
		}
	}
	if len(created) != 3 {
		t.Fatalf("created %v, want the 3 Jobs", created)
	}
	for _, name := range created {
		if built[name] != 1 {
			t.Errorf("Job %s built %d times, want once", name, built[name])
		}
	}

	c2 := newClient()
	bad := nodeJobs("bad", "n1")
	bad[0].Job = nil
	if _, _, err := (&Engine{Client: c2, Namespace: ns, RunID: "bad"}).Run(ctx, bad); err == nil || !strings.Contains(err.Error(), "NewJob") {
		t.Fatalf("a NodeJob without a Job or builder: err = %v", err)
	}
	if n := len(c2.Actions()); n != 0 {
		t.Errorf("%d requests for a refused run", n)
	}
}

// slowJobController makes one pod at a time, every `every`, in the order
// the Jobs were created (a backlogged Job controller), for the first
// `upTo` Jobs; the pods report at once.
func slowJobController(t *testing.T, ctx context.Context, c *fake.Clientset, every time.Duration, upTo int) {
	w, err := c.BatchV1().Jobs(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	queue := make(chan *batchv1.Job, 100)
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type == watch.Added {
				queue <- ev.Object.(*batchv1.Job)
			}
		}
	}()
	go func() {
		for made := 0; made < upTo; made++ {
			var job *batchv1.Job
			select {
			case job = <-queue:
			case <-ctx.Done():
				return
			}
			time.Sleep(every)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-x", Namespace: ns, Labels: job.Spec.Template.Labels, Annotations: job.Spec.Template.Annotations},
				Spec:       job.Spec.Template.Spec,
			}
			succeed(pod, []string{"a:1", "b:2"}, report.StatusPulled)
			if _, err := c.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				return
			}
		}
	}()
}

// A node's --timeout runs from its pod's appearance: Jobs that wait in a
// backlogged Job controller's queue, longer than --timeout but while it
// keeps making the run's pods, are not failed. A Job the controller stops
// making pods for fails --timeout after the last pod it made.
func TestRunTimeoutStartsAtThePod(t *testing.T) {
	nodes := []string{"q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8"}
	t.Run("controller making progress", func(t *testing.T) {
		c := newClient()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		slowJobController(t, ctx, c, 200*time.Millisecond, len(nodes))
		e := &Engine{Client: c, Namespace: ns, RunID: "tq", MaxInFlight: len(nodes), NodeTimeout: 700 * time.Millisecond, FollowLogsUpTo: -1}
		start := time.Now()
		res, _, err := e.Run(ctx, nodeJobs("tq", nodes...))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Items[0].Status != report.StatusPulled {
				t.Errorf("%s: %+v", r.Node, r.Items[0])
			}
		}
		// The last pod came ~1.6 s after its Job: over --timeout, had the
		// clock started at the Job.
		if el := time.Since(start); el < time.Second {
			t.Fatalf("the run took %s: the controller was not slow enough to test anything", el)
		}
	})
	t.Run("controller stalled", func(t *testing.T) {
		c := newClient()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		slowJobController(t, ctx, c, 100*time.Millisecond, 3)
		e := &Engine{Client: c, Namespace: ns, RunID: "ts", MaxInFlight: len(nodes), NodeTimeout: 700 * time.Millisecond, FollowLogsUpTo: -1}
		res, _, err := e.Run(ctx, nodeJobs("ts", nodes...))
		if err != nil {
			t.Fatal(err)
		}
		// Which three Jobs get pods depends on the order their creates
		// reached the API server (up to createsAtOnce are in flight).
		pulled := 0
		for _, r := range res {
			m := r.Items[0].Message
			switch {
			case r.Items[0].Status == report.StatusPulled:
				pulled++
			case r.Items[0].Status != report.StatusFailed || !strings.Contains(m, "never got a pod (the Job controller made no pod for this run in 700ms)"):
				t.Errorf("%s never got a pod: %+v", r.Node, r.Items[0])
			case r.Duration < 900*time.Millisecond:
				t.Errorf("%s failed %s after its Job: its --timeout must run from the run's last pod (~300 ms in)", r.Node, r.Duration)
			}
		}
		if pulled != 3 {
			t.Errorf("%d nodes pulled, want the 3 the controller made pods for", pulled)
		}
	})
}

// A large run's Lease is valid 5 min and renewed every 2 min (a 5000-node
// run lasts minutes; renewing every 30 s cost it 24 writes); a small run's
// keeps 90 s, renewed every 30 s, so `kubectl coral gc` finds it soon.
func TestRunLeaseDurationFollowsTheRunsSize(t *testing.T) {
	for _, tc := range []struct {
		nodes []string
		want  int32
	}{{[]string{"l1", "l2"}, 90}, {[]string{"l1", "l2", "l3", "l4"}, 300}} {
		c := newClient()
		ctx, cancel := context.WithCancel(context.Background())
		k := &kubelet{client: c, behave: func(_ string, pod *corev1.Pod) bool {
			succeed(pod, []string{"a:1", "b:2"}, report.StatusPulled)
			return true
		}}
		k.start(t, ctx)
		e := &Engine{Client: c, Namespace: ns, RunID: "ld", MaxInFlight: 4, NodeTimeout: 10 * time.Second, SyncCleanupMax: 3}
		if _, _, err := e.Run(ctx, nodeJobs("ld", tc.nodes...)); err != nil {
			t.Fatal(err)
		}
		cancel()
		var got int32
		for _, a := range c.Actions() {
			if a.GetVerb() == "create" && a.GetResource().Resource == "leases" {
				got = *a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).Spec.LeaseDurationSeconds
			}
		}
		if got != tc.want {
			t.Errorf("%d nodes (sync cleanup up to 3): Lease valid %ds, want %ds", len(tc.nodes), got, tc.want)
		}
	}
}

// settled, which decodes nothing, agrees with readPod on whether a worker
// pod holds its node's outcome, in every state a worker pod can be in; and
// both say what they should.
func TestSettledAgreesWithReadPod(t *testing.T) {
	worker := func(st corev1.ContainerState) []corev1.ContainerStatus {
		return []corev1.ContainerStatus{{Name: jobs.ContainerName, Image: "w", State: st}}
	}
	waiting := func(reason string) corev1.PodStatus {
		return corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: worker(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}})}
	}
	type state struct {
		st   corev1.PodStatus
		want bool
	}
	states := map[string]state{
		"no status yet":      {corev1.PodStatus{}, false},
		"pending":            {corev1.PodStatus{Phase: corev1.PodPending}, false},
		"container creating": {waiting("ContainerCreating"), false},
		"running":            {corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: worker(corev1.ContainerState{Running: &corev1.ContainerStateRunning{}})}, false},
		"exited, a report":   {corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: worker(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Message: "garbage"}})}, true},
		"exited, no report":  {corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: worker(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}})}, true},
		"succeeded":          {corev1.PodStatus{Phase: corev1.PodSucceeded}, true},
		"failed":             {corev1.PodStatus{Phase: corev1.PodFailed}, true},
		"another container exited": {corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "sidecar", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}},
			{Name: jobs.ContainerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		}}, false},
	}
	for reason, final := range startFailures {
		states["waiting, "+reason] = state{waiting(reason), final}
	}
	for name, s := range states {
		pod := &corev1.Pod{Status: s.st}
		out := readPod(pod, []string{"a:1"}, []string{""})
		if read := out.final || out.waitingFinal; read != s.want {
			t.Errorf("%s: readPod final %v, waitingFinal %v; want an outcome: %v", name, out.final, out.waitingFinal, s.want)
		}
		if got := settled(pod); got != s.want {
			t.Errorf("%s: settled %v, want %v", name, got, s.want)
		}
	}
}
