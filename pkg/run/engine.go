// Package run is Coral's engine: it creates one worker per node (a Job, or
// the pod itself), keeps the control plane fed while bounding the workers
// that exist at once, follows every worker pod through one watch for the
// whole run, decodes the workers' reports, enforces a per-node deadline, and
// on the way out — finished, failed or interrupted — deletes everything it
// created. It does no terminal I/O: progress goes to OnEvent.
package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/report"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NodeJob is one node's Job and the items (image references or artifact
// source URLs) its worker was given, in order.
//
// The Job is either built up front (Job) or when the worker is created
// (NewJob, with its name in JobName): a Job is ~6 KB in memory, so a run of
// thousands of nodes builds each when it needs it and keeps none.
type NodeJob struct {
	Node     string
	Job      *batchv1.Job
	NewJob   func() *batchv1.Job
	JobName  string
	Items    []string
	Expected []string
}

// Worker returns the node's Job: Job, or a new one from NewJob.
func (nj NodeJob) Worker() *batchv1.Job {
	if nj.Job != nil {
		return nj.Job
	}
	return nj.NewJob()
}

// Name returns the node's Job name.
func (nj NodeJob) Name() string {
	if nj.Job != nil {
		return nj.Job.Name
	}
	return nj.JobName
}

// NodeResult is what came back from one node.
type NodeResult struct {
	Node string
	// Items holds one result per image, in NodeJob order. When the node failed
	// as a whole (no report), every item is Failed with the node's message.
	Items    []report.ItemResult
	Duration time.Duration
}

// EventType says what happened to a node.
type EventType string

const (
	EventCreated  EventType = "Created"
	EventRunning  EventType = "Running"
	EventFinished EventType = "Finished"
	// EventWarning is about the run, not one node (Node is empty).
	EventWarning EventType = "Warning"
)

// Event is a progress notice. Events are delivered in order, one at a time,
// on a goroutine of their own and never under the engine's lock; every
// event is delivered before Run returns, and none after.
type Event struct {
	Type     EventType
	Node     string
	Done     int
	Total    int
	Failed   int // items failed on this node (Finished only)
	Message  string
	Duration time.Duration
}

// Mode says how workers are launched.
type Mode string

const (
	// ModeJobs creates one batch/v1 Job per node; the Job controller creates its pod.
	ModeJobs Mode = "jobs"
	// ModePods creates the worker pod directly (same spec), owned by the
	// run's Lease: no Job controller on the path.
	ModePods Mode = "pods"
)

// Engine runs a set of NodeJobs.
type Engine struct {
	Client    kubernetes.Interface
	Namespace string
	RunID     string
	// Mode is ModeJobs (default) or ModePods.
	Mode Mode
	// MaxInFlight caps the workers that exist at once (a pod created, its
	// report not yet in): what a registry and the nodes feel.
	MaxInFlight int
	// JobsAhead (jobs mode) lets up to this many more Jobs than MaxInFlight
	// wait for a lagging Job controller, by the rule of Pacer (the
	// controller's too): only while a created Job has waited
	// JobBacklogAfter for its pod, fewer than MaxInFlight worker pods exist,
	// and by Little's law the workers stay under the cap at the pace the
	// controller makes pods. Default (0): no limit beyond that rule;
	// negative turns Jobs ahead off.
	JobsAhead int
	// JobBacklogAfter is how long a Job may wait for its pod before the
	// Job controller counts as backlogged. Default 1s.
	JobBacklogAfter time.Duration
	// NodeTimeout bounds one node from its worker pod's appearance to its
	// report. A Job's wait for the Job controller is the control plane's,
	// not the node's: a Job without a pod fails when the run has seen no new
	// pod for NodeTimeout since the Job was created (the controller made no
	// progress for this run).
	NodeTimeout time.Duration
	// WorkerStartGrace is how long kubelet may keep retrying to pull or
	// start the worker image (ErrImagePull, CreateContainerError, …) before
	// the node fails with kubelet's reason. Default 2m, at most NodeTimeout.
	WorkerStartGrace time.Duration
	// KeepJobs leaves the workers in place at the end (for debugging).
	KeepJobs bool
	// OnEvent receives progress; nil ignores it.
	OnEvent func(Event)
	// FollowLogsUpTo: in runs of at most this many nodes, each worker's log
	// is followed from the moment it runs, and the report it prints there
	// finishes the node — about a second before kubelet's next relist puts
	// the same report in the container's status. One log stream per node
	// (pods/log get, as for an overflowed report); larger runs skip it to
	// keep the reads per run constant. Default 8; negative turns it off.
	FollowLogsUpTo int
	// NoPodGrace is how long a created Job may have no pod before a
	// FailedCreate event for it fails the node (admission, quota). Default 10s.
	NoPodGrace time.Duration
	// CleanupTimeout bounds the final cleanup. Default 30s.
	CleanupTimeout time.Duration
	// Holder names who runs the run, on its Lease (e.g. kubectl-coral@host/pid).
	Holder string
	// LeaseRenew is how often the run's Lease is renewed. Default 30s (the
	// Lease valid LeaseDuration); in a run of more than SyncCleanupMax
	// workers 2m (valid LongLeaseDuration): such a run lasts minutes (a Job
	// controller makes ~7 pods a second), and renewing every 30 s was its
	// largest count of writes beyond one per node (24 in a 12-minute,
	// 5000-node run).
	LeaseRenew time.Duration
	// SyncCleanupMax is the largest run whose workers are deleted with one
	// DeleteCollection before Run returns. The API server deletes a
	// collection item by item inside one request, which outlives its 60 s
	// request timeout at about a thousand Jobs (measured by bench-scale);
	// larger runs that own a Lease leave the deletion to the garbage
	// collector. Default 200.
	SyncCleanupMax int

	// WaitCleanup, when set, makes Run wait up to this long for the garbage
	// collector to remove the workers of a run cleaned up by its Lease
	// (polling one name every 2s). Zero returns at once.
	WaitCleanup time.Duration
	// Cleaned says, once Run has returned, what the run left behind.
	Cleaned Cleanup

	// openLog opens a worker's log (follow: as it is written); tests replace it.
	openLog func(ctx context.Context, pod string, follow bool) (io.ReadCloser, error)
}

// Cleanup is what a run left behind when Run returned.
type Cleanup struct {
	// Workers is how many Jobs or pods the run created.
	Workers int
	// Kind is "jobs" or "pods".
	Kind string
	// Selector selects the run's workers.
	Selector string
	// Background: the workers were left to the garbage collector (the run's
	// Lease, their owner, was deleted) and were still there when Run
	// returned. False when they were deleted before Run returned, or were
	// kept (KeepJobs), or none was created.
	Background bool
}

type nodeState struct {
	node      string
	items     []string
	expected  []string
	newJob    func() *batchv1.Job // builds the worker's Job; dropped once created
	jobName   string
	created   time.Time
	podSeen   time.Time
	podName   string
	running   bool
	done      bool
	reading   bool      // the full report is being read from the log
	following bool      // the worker's log is being followed
	waiting   string    // kubelet's last reason it cannot start the worker
	waitSince time.Time // when that began
	createErr string    // a FailedCreate event's message (jobs mode)
	warning   string    // the pod's newest informative Warning event, "reason: message"
	warnAt    time.Time
	result    NodeResult
}

// Run creates the workers, waits for every node's report or deadline,
// cleans up and returns one NodeResult per NodeJob (in input order). When
// ctx is cancelled it stops creating workers, cleans up, marks unfinished
// nodes Failed and returns the partial results with interrupted set. err
// reports what went wrong with the run itself (the watch, the cleanup).
func (e *Engine) Run(ctx context.Context, njs []NodeJob) (results []NodeResult, interrupted bool, err error) {
	e.defaults()
	if len(njs) == 0 {
		return nil, false, nil
	}
	for _, nj := range njs {
		if nj.Job == nil && (nj.NewJob == nil || nj.JobName == "") {
			return nil, false, fmt.Errorf("node %s: a NodeJob needs a Job, or NewJob and JobName", nj.Node)
		}
	}
	r := &runner{e: e, states: make(map[string]*nodeState, len(njs)), allDone: make(chan struct{}), wake: make(chan struct{}, 1),
		evq: newEventQueue(e.OnEvent), logSem: make(chan struct{}, 4),
		byPod: map[string]*nodeState{}, pendingWarn: map[string]podWarning{},
		leaseFor: LeaseDuration, leaseEvery: e.LeaseRenew}
	ahead := e.JobsAhead
	if e.Mode == ModePods {
		ahead = -1 // a pod is created where it runs: nothing waits ahead
	}
	r.pace = NewPacer(e.MaxInFlight, ahead)
	switch {
	case e.LeaseRenew > 0: // the caller's
	case len(njs) > e.SyncCleanupMax:
		r.leaseFor, r.leaseEvery = LongLeaseDuration, 2*time.Minute
	default:
		r.leaseEvery = 30 * time.Second
	}
	for _, nj := range njs {
		newJob := nj.NewJob
		if job := nj.Job; job != nil {
			newJob = job.DeepCopy // the create sets owners on its copy
		}
		st := &nodeState{node: nj.Node, items: nj.Items, expected: nj.Expected, newJob: newJob, jobName: nj.Name()}
		r.states[nj.Node] = st
		r.order = append(r.order, st)
	}
	// Workers start in plan.Spread's order for the run id, not by name.
	r.starts = slices.Clone(r.order)
	plan.Spread(r.starts, e.RunID, func(st *nodeState) string { return st.node })
	defer r.evq.close()
	r.followCtx, r.stopFollow = context.WithCancel(ctx)
	defer r.stopFollow()

	// Everything the run creates hangs off one Lease: one delete collects
	// the run, and `kubectl coral gc` finds a run whose plugin died. It is
	// created while the pod watch starts: the first worker needs both.
	var owner *metav1.OwnerReference
	var warn string
	leased := make(chan struct{})
	go func() { defer close(leased); owner, warn = r.createLease(ctx) }()

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watchErr := r.watch(ctx, watchCtx)
	<-leased
	if warn != "" {
		r.emitLocked(Event{Type: EventWarning, Message: warn})
	}
	r.owner = owner
	if err := watchErr; err != nil {
		_ = r.deleteLease()
		if ctx.Err() != nil {
			return r.unfinished(), true, nil
		}
		return nil, false, err
	}

	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); r.dispatch(ctx) }()
	renewCtx, stopRenew := context.WithCancel(context.Background())
	defer stopRenew()
	go func() { defer bg.Done(); r.renewLease(renewCtx) }()

	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-r.allDone:
			break loop
		case <-ctx.Done():
			interrupted = true
			break loop
		case <-ticker.C:
			r.checkDeadlines(ctx)
		}
	}
	// No worker may be created after cleanup starts; reports being read
	// from logs are awaited (an interrupt cuts them short); after that no
	// result is taken and no event is sent.
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
	r.signal()
	stopRenew()
	bg.Wait()
	r.stopFollow()
	r.followers.Wait()
	r.readers.Wait()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	stopWatch()
	cleanupErr := r.cleanup()
	e.Cleaned = r.cleaned()
	return r.unfinished(), interrupted, cleanupErr
}

func (e *Engine) defaults() {
	if e.Mode == "" {
		e.Mode = ModeJobs
	}
	if e.MaxInFlight < 1 {
		e.MaxInFlight = 1
	}
	if e.JobBacklogAfter <= 0 {
		e.JobBacklogAfter = time.Second
	}
	if e.NoPodGrace <= 0 {
		e.NoPodGrace = 10 * time.Second
	}
	if e.CleanupTimeout <= 0 {
		e.CleanupTimeout = 30 * time.Second
	}
	if e.WorkerStartGrace <= 0 {
		e.WorkerStartGrace = 2 * time.Minute
	}
	if e.NodeTimeout > 0 && e.WorkerStartGrace > e.NodeTimeout {
		e.WorkerStartGrace = e.NodeTimeout
	}
	if e.openLog == nil {
		e.openLog = func(ctx context.Context, pod string, follow bool) (io.ReadCloser, error) {
			return e.Client.CoreV1().Pods(e.Namespace).GetLogs(pod, &corev1.PodLogOptions{Container: jobs.ContainerName, Follow: follow}).Stream(ctx)
		}
	}
	if e.FollowLogsUpTo == 0 {
		e.FollowLogsUpTo = 8
	}
	if e.SyncCleanupMax <= 0 {
		e.SyncCleanupMax = 200
	}
}

type runner struct {
	e        *Engine
	mu       sync.Mutex
	states   map[string]*nodeState
	order    []*nodeState // the NodeJobs' order: results are returned in it
	starts   []*nodeState // the order workers are created in (plan.Spread)
	done     int
	stopping bool // no more workers are created
	closed   bool // no more results are taken, no more events sent
	// attempted counts the workers a create was sent for (cleanup looks when > 0).
	attempted    int
	owner        *metav1.OwnerReference
	leaseFor     time.Duration // the Lease's duration
	leaseEvery   time.Duration // and how often it is renewed
	leaseCreated bool
	leaseDeleted bool
	allDone      chan struct{}
	wake         chan struct{} // a slot may have freed
	evq          *eventQueue
	logSem       chan struct{} // bounds concurrent log reads
	readers      sync.WaitGroup
	// followers are the log streams of FollowLogsUpTo, stopped by
	// stopFollow when the run stops taking results.
	followers  sync.WaitGroup
	followCtx  context.Context
	stopFollow context.CancelFunc
	// explained counts the late nodes whose Node was read.
	explained int
	// byPod finds a live node by its worker pod's name (the events watch
	// names pods); pendingWarn holds warnings of pods not seen yet, bounded.
	byPod       map[string]*nodeState
	pendingWarn map[string]podWarning
	// live counts workers created whose node has no result yet; podless
	// those of them whose pod has not been seen (jobs mode: waiting for the
	// Job controller).
	live    int
	podless int
	// pace decides when workers may be created (MaxInFlight, JobsAhead);
	// checkDeadlines tells it when the Job controller is backlogged (a live
	// Job has waited JobBacklogAfter for its pod).
	pace      *Pacer
	debugAt   time.Time
	createErr error // a watch error worth explaining (RBAC)
}

// emitLocked queues an event; the caller holds r.mu (or no one else runs).
func (r *runner) emitLocked(ev Event) {
	ev.Done, ev.Total = r.done, len(r.order)
	r.evq.push(ev)
}

func (r *runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// canCreate says whether another worker may be created now; r.mu held.
func (r *runner) canCreate() bool { return r.pace.Allows(r.live, r.podless) }

// createsAtOnce bounds the create calls in flight: a small run's workers
// are asked for in one round trip instead of one after another (the
// client's QPS limit still paces a large run).
const createsAtOnce = 8

// dispatch creates workers in r.starts' order within the flow-control limits,
// up to createsAtOnce calls at once; it returns when its calls have.
func (r *runner) dispatch(ctx context.Context) {
	var calls sync.WaitGroup
	defer calls.Wait()
	slots := make(chan struct{}, createsAtOnce)
	for _, st := range r.starts {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		for {
			r.mu.Lock()
			if r.stopping || ctx.Err() != nil {
				r.mu.Unlock()
				return
			}
			if r.canCreate() {
				// Counted before the call: a create cut short by an interrupt
				// may still have reached the API server, so cleanup must look.
				r.attempted++
				r.live++
				r.podless++
				st.created = time.Now()
				r.mu.Unlock()
				break
			}
			r.mu.Unlock()
			select {
			case <-r.wake:
			case <-ctx.Done():
				return
			}
		}
		calls.Add(1)
		go func() {
			defer calls.Done()
			defer func() { <-slots }()
			err := r.create(ctx, st)
			r.mu.Lock()
			defer r.mu.Unlock()
			st.newJob = nil
			switch {
			case err != nil && ctx.Err() != nil: // interrupted: the loop stops
				r.live--
				r.podless--
				st.created = time.Time{}
			case err != nil:
				r.finishLocked(st, failAll(st, "creating the worker: "+explainAPIError(err, r.e.Namespace)))
			default:
				r.emitLocked(Event{Type: EventCreated, Node: st.node})
			}
		}()
	}
}

func (r *runner) create(ctx context.Context, st *nodeState) error {
	job := st.newJob()
	if r.owner != nil {
		job.OwnerReferences = append(job.OwnerReferences, *r.owner)
	}
	if r.e.Mode == ModePods {
		_, err := r.e.Client.CoreV1().Pods(r.e.Namespace).Create(ctx, jobs.WorkerPod(job), metav1.CreateOptions{})
		return err
	}
	_, err := r.e.Client.BatchV1().Jobs(r.e.Namespace).Create(ctx, job, metav1.CreateOptions{})
	return err
}

// finishLocked records a node's result; r.mu held.
func (r *runner) finishLocked(st *nodeState, res NodeResult) {
	if st.done || r.closed {
		return
	}
	st.done = true
	delete(r.byPod, st.podName)
	if !st.created.IsZero() {
		res.Duration = time.Since(st.created)
		r.live--
		if st.podSeen.IsZero() {
			r.podless--
		} else {
			r.pace.Reported(time.Since(st.podSeen))
		}
	}
	st.result = res
	r.done++
	failed := 0
	var msg string
	for _, it := range res.Items {
		if it.Status == report.StatusFailed {
			failed++
			if msg == "" {
				msg = it.Message
			}
		}
	}
	r.emitLocked(Event{Type: EventFinished, Node: st.node, Failed: failed, Message: msg, Duration: res.Duration})
	r.signal()
	if r.done == len(r.order) {
		close(r.allDone)
	}
}

func (r *runner) unfinished() []NodeResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]NodeResult, 0, len(r.order))
	for _, st := range r.order {
		if !st.done {
			msg := "interrupted before the node reported"
			if st.created.IsZero() {
				msg = "interrupted before the node's worker was created"
			}
			st.result = failAll(st, msg)
		}
		out = append(out, st.result)
	}
	return out
}

// checkDeadlines fails nodes past --timeout, nodes whose worker kubelet
// could not start within WorkerStartGrace, and Jobs the Job controller
// cannot make a pod for. A late node's message carries its pod's newest
// Warning event (from the run's events watch); for the first lateExplained
// late nodes the Node is read once, at the deadline, outside the lock.
func (r *runner) checkDeadlines(ctx context.Context) {
	type late struct {
		st  *nodeState
		msg string
	}
	var timedOut []late
	now := time.Now()
	r.mu.Lock()
	backlogged := false
	for _, st := range r.order {
		// A Job the controller cannot make a pod for (FailedCreate: quota,
		// admission) is a failure on its way, not a backlog to feed.
		if !st.done && !st.created.IsZero() && st.podSeen.IsZero() && st.createErr == "" && now.Sub(st.created) > r.e.JobBacklogAfter {
			backlogged = true
		}
		if st.done || st.created.IsZero() || st.reading {
			continue
		}
		switch {
		case r.e.NodeTimeout > 0 && r.overdue(st, now):
			msg := fmt.Sprintf("no report within --timeout=%s", r.e.NodeTimeout)
			switch {
			case st.podSeen.IsZero():
				msg += "; the worker never got a pod"
				if r.e.Mode != ModePods {
					msg += fmt.Sprintf(" (the Job controller made no pod for this run in %s)", r.e.NodeTimeout)
				}
				if st.createErr != "" {
					msg += ": " + st.createErr
				}
			case st.waiting != "":
				msg += "; the node cannot start the worker: " + st.waiting
			case !st.running:
				msg += "; the worker pod never started"
			default:
				msg += "; the worker pod is still running (is the node's container runtime or kubelet down?)"
			}
			if st.warning != "" {
				msg += ": " + st.warning
			}
			st.reading = true
			timedOut = append(timedOut, late{st: st, msg: msg})
		case st.waiting != "" && now.Sub(st.waitSince) > r.e.WorkerStartGrace:
			r.finishLocked(st, failAll(st, st.waiting))
		case st.podSeen.IsZero() && st.createErr != "" && now.Sub(st.created) > r.e.NoPodGrace:
			r.finishLocked(st, failAll(st, "the Job cannot create its pod: "+explainAdmission(st.createErr, r.e.Namespace)))
		}
	}
	if r.pace.Update(now, backlogged) {
		r.signal() // dispatch may create Jobs ahead now
	}
	if w := debugEngine(); w != nil && now.Sub(r.debugAt) >= 2*time.Second {
		r.debugAt = now
		fmt.Fprintf(w, "%s live=%d podless=%d done=%d backlogged=%v %s\n",
			now.Format("15:04:05"), r.live, r.podless, r.done, backlogged, r.pace)
	}
	r.mu.Unlock()
	for _, l := range timedOut {
		// The Node (and its heartbeat Lease) explain a late node; the first
		// lateExplained of a run get those reads, so a run's reads do not
		// grow with the nodes it loses. The pod's warning came by the watch.
		if r.explained < lateExplained {
			r.explained++
			if why := r.nodeDown(ctx, l.st.node); why != "" {
				l.msg += "; " + why
			}
		} else if r.explained == lateExplained {
			r.explained++
			l.msg += fmt.Sprintf(" (more than %d nodes were late: see `kubectl describe node %s` for why)", lateExplained, l.st.node)
		} else {
			l.msg += fmt.Sprintf(" (see `kubectl describe node %s`)", l.st.node)
		}
		r.mu.Lock()
		l.st.reading = false
		r.finishLocked(l.st, failAll(l.st, l.msg))
		r.mu.Unlock()
	}
}

// overdue says whether a node is past NodeTimeout (TimeoutStart). r.mu held.
func (r *runner) overdue(st *nodeState, now time.Time) bool {
	return now.Sub(TimeoutStart(st.created, st.podSeen, r.pace.LastPod())) > r.e.NodeTimeout
}

// TimeoutStart is when a node's timeout starts: at its worker pod's
// appearance (pod); for a worker still without a pod — a Job waiting for
// the Job controller, the control plane's time, not the node's — at its
// creation (created) or the newest pod of the run (lastPod), whichever is
// later, so it runs out only once the run has seen no new pod for the whole
// timeout. Zero times are unknown. The engine and the controller both use it.
func TimeoutStart(created, pod, lastPod time.Time) time.Time {
	if !pod.IsZero() {
		return pod
	}
	if lastPod.After(created) {
		return lastPod
	}
	return created
}

// lateExplained is how many late nodes of a run get their Node (and its
// heartbeat Lease) read to say why they are late: at most 2 reads each.
const lateExplained = 3

// debugEngine (CORAL_DEBUG_ENGINE=FILE, a diagnostic for bench-scale, see
// docs/scale.md) receives the engine's flow-control state every 2 s: live
// and pod-less workers, results, whether Jobs ahead are allowed. Opened on
// first use and appended to, so a dry run does not empty it.
var debugEngine = sync.OnceValue(func() io.Writer {
	if p := os.Getenv("CORAL_DEBUG_ENGINE"); p != "" {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
			return f
		}
	}
	return nil
})

// DebugFlow is CORAL_DEBUG_ENGINE's writer (nil when unset), for the
// controller's flow-control trace.
func DebugFlow() io.Writer { return debugEngine() }

// cleanup deletes every worker of the run and the run's Lease. Small runs
// (and runs without a Lease) delete their workers with one DeleteCollection,
// the Lease beside it (one round trip, not two, between the last result and
// the exit); for larger ones deleting the Lease is the cleanup: the garbage
// collector removes every Job and pod that names it (in the background,
// about a minute per thousand nodes). Nothing when KeepJobs.
func (r *runner) cleanup() error {
	if r.e.KeepJobs {
		return nil
	}
	if r.attempted == 0 || (r.leaseCreated && r.attempted > r.e.SyncCleanupMax) {
		return r.deleteLease()
	}
	leaseGone := make(chan struct{})
	go func() { defer close(leaseGone); _ = r.deleteLease() }()
	defer func() { <-leaseGone }()
	ctx, cancel := context.WithTimeout(context.Background(), r.e.CleanupTimeout)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	sel := metav1.ListOptions{LabelSelector: jobs.RunSelector(r.e.RunID)}
	kind := "jobs"
	var err error
	if r.e.Mode == ModePods {
		kind = "pods"
		err = r.e.Client.CoreV1().Pods(r.e.Namespace).DeleteCollection(ctx, opts, sel)
	} else {
		err = r.e.Client.BatchV1().Jobs(r.e.Namespace).DeleteCollection(ctx, opts, sel)
	}
	if err == nil {
		return nil
	}
	hint := fmt.Sprintf("kubectl delete %s -n %s -l %s", kind, r.e.Namespace, jobs.RunSelector(r.e.RunID))
	if !apierrors.IsForbidden(err) && !apierrors.IsMethodNotSupported(err) {
		return fmt.Errorf("deleting the run's workers (%s): %w", hint, err)
	}
	// No deletecollection permission: delete one by one.
	var errs []error
	for _, st := range r.order {
		if st.created.IsZero() {
			continue
		}
		var err error
		if r.e.Mode == ModePods {
			err = r.e.Client.CoreV1().Pods(r.e.Namespace).Delete(ctx, st.jobName, opts)
		} else {
			err = r.e.Client.BatchV1().Jobs(r.e.Namespace).Delete(ctx, st.jobName, opts)
		}
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("deleting the run's workers (%s): %w", hint, errors.Join(errs...))
	}
	return nil
}

// cleaned says what is left after cleanup; with WaitCleanup it first waits
// for the garbage collector to remove the workers of a run cleaned up by
// its Lease.
func (r *runner) cleaned() Cleanup {
	c := Cleanup{Workers: r.attempted, Kind: "jobs", Selector: jobs.RunSelector(r.e.RunID)}
	if r.e.Mode == ModePods {
		c.Kind = "pods"
	}
	if r.e.KeepJobs || r.attempted == 0 || !r.leaseCreated || r.attempted <= r.e.SyncCleanupMax {
		return c
	}
	deadline := time.Now().Add(r.e.WaitCleanup)
	for {
		left, err := r.workersLeft()
		if err == nil && !left {
			return c
		}
		if time.Now().After(deadline) {
			c.Background = true
			return c
		}
		time.Sleep(2 * time.Second)
	}
}

// workersLeft says whether any Job or pod of the run still exists (one
// name asked for).
func (r *runner) workersLeft() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := metav1.ListOptions{LabelSelector: jobs.RunSelector(r.e.RunID), Limit: 1}
	pods, err := r.e.Client.CoreV1().Pods(r.e.Namespace).List(ctx, opts)
	if err != nil || len(pods.Items) > 0 || r.e.Mode == ModePods {
		return err != nil || len(pods.Items) > 0, err
	}
	js, err := r.e.Client.BatchV1().Jobs(r.e.Namespace).List(ctx, opts)
	return err != nil || len(js.Items) > 0, err
}

func failAll(st *nodeState, msg string) NodeResult {
	res := NodeResult{Node: st.node}
	for _, img := range st.items {
		res.Items = append(res.Items, report.ItemResult{Item: img, Status: report.StatusFailed, Message: msg})
	}
	return res
}

// explainAPIError turns API errors into messages that say what to do.
func explainAPIError(err error, ns string) string {
	switch {
	case apierrors.IsForbidden(err):
		msg := err.Error()
		if strings.Contains(msg, "PodSecurity") || strings.Contains(msg, "admission") || strings.Contains(msg, "denied the request") {
			return explainAdmission(msg, ns)
		}
		return fmt.Sprintf("%s (Coral needs to create, list, watch and delete Jobs and Pods, and create, update and delete Leases in namespace %q: see the RBAC section of the README)", msg, ns)
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("%s (does namespace %q exist?)", err.Error(), ns)
	}
	return err.Error()
}

// explainAdmission explains an admission rejection of the worker pod.
func explainAdmission(msg, ns string) string {
	if strings.Contains(msg, "hostNetwork") || strings.Contains(msg, "host-namespaces") || strings.Contains(msg, "host namespaces") {
		msg += "\n(the images worker runs in the node's network namespace only to start sooner: --host-network=false keeps it in the pod network)"
	}
	if strings.Contains(msg, "PodSecurity") {
		return fmt.Sprintf("%s\nPod Security admission in namespace %q rejects the worker: it mounts the node's container-runtime socket (a hostPath volume), "+
			"which only the \"privileged\" level allows. Run Coral in a namespace that allows it, for example:\n"+
			"  kubectl create namespace coral-system\n"+
			"  kubectl label namespace coral-system pod-security.kubernetes.io/enforce=privileged\n"+
			"and pass -n coral-system", msg, ns)
	}
	return fmt.Sprintf("%s (an admission controller in namespace %q rejected the worker pod; allow it there or pick another namespace with -n)", msg, ns)
}
