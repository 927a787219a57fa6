// Package run is Coral's engine: it creates one Job per node with a cap on
// nodes in flight, follows every worker pod through one watch for the whole
// run, decodes the workers' reports, enforces a per-node deadline, and on the
// way out — finished, failed or interrupted — deletes everything it created.
package run

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/report"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// NodeJob is one node's Job and the images its worker was given, in order.
type NodeJob struct {
	Node     string
	Job      *batchv1.Job
	Images   []string
	Expected []string
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
)

// Event is a progress notice. Handlers must be quick; they are called with
// the engine's lock held, one at a time.
type Event struct {
	Type     EventType
	Node     string
	Done     int
	Total    int
	Failed   int // items failed on this node (Finished only)
	Message  string
	Duration time.Duration
}

// Engine runs a set of NodeJobs.
type Engine struct {
	Client    kubernetes.Interface
	Namespace string
	RunID     string
	// MaxInFlight caps nodes whose Job exists and has not finished.
	MaxInFlight int
	// NodeTimeout bounds one node from its Job's creation to its report.
	NodeTimeout time.Duration
	// KeepJobs leaves the Jobs in place at the end (for debugging).
	KeepJobs bool
	// OnEvent receives progress; nil ignores it.
	OnEvent func(Event)
	// NoPodGrace is how long a created Job may have no pod before its events
	// are read for a reason (admission, quota). Default 10s.
	NoPodGrace time.Duration
	// CleanupTimeout bounds the final cleanup. Default 30s.
	CleanupTimeout time.Duration
}

type nodeState struct {
	nj        NodeJob
	created   time.Time
	hasPod    bool
	podName   string
	explained bool // events for a pod-less Job were read
	done      bool
	running   bool
	result    NodeResult
}

// Run creates the Jobs, waits for every node's report or deadline, cleans up
// and returns one NodeResult per NodeJob (in input order). When ctx is
// cancelled it stops creating Jobs, cleans up, marks unfinished nodes Failed
// and returns the partial results with interrupted set. err reports what
// went wrong with the run itself (the watch, the cleanup), alongside results.
func (e *Engine) Run(ctx context.Context, njs []NodeJob) (results []NodeResult, interrupted bool, err error) {
	if e.MaxInFlight < 1 {
		e.MaxInFlight = 1
	}
	if e.NoPodGrace <= 0 {
		e.NoPodGrace = 10 * time.Second
	}
	if e.CleanupTimeout <= 0 {
		e.CleanupTimeout = 30 * time.Second
	}
	r := &runner{e: e, states: map[string]*nodeState{}, allDone: make(chan struct{}), slots: make(chan struct{}, e.MaxInFlight)}
	for _, nj := range njs {
		r.states[nj.Node] = &nodeState{nj: nj}
		r.order = append(r.order, nj.Node)
	}
	if len(njs) == 0 {
		return nil, false, nil
	}

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	if err := r.watchPods(watchCtx); err != nil {
		return nil, false, err
	}

	var dispatch sync.WaitGroup
	dispatch.Add(1)
	go func() {
		defer dispatch.Done()
		r.dispatch(ctx, njs)
	}()

	ticker := time.NewTicker(500 * time.Millisecond)
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
	// No Job may be created after cleanup starts: wait for the dispatcher.
	dispatch.Wait()
	cleanupErr := r.cleanup()
	stopWatch()

	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]NodeResult, 0, len(r.order))
	for _, n := range r.order {
		st := r.states[n]
		if !st.done {
			msg := "interrupted before the node reported"
			if st.created.IsZero() {
				msg = "interrupted before the node's Job was created"
			}
			st.result = failAll(st.nj, msg)
		}
		out = append(out, st.result)
	}
	return out, interrupted, cleanupErr
}

type runner struct {
	e       *Engine
	mu      sync.Mutex
	states  map[string]*nodeState
	order   []string
	done    int
	allDone chan struct{}
	slots   chan struct{}
	// attempted names every Job a create was sent for.
	attempted []string
}

func (r *runner) emit(ev Event) {
	ev.Done, ev.Total = r.done, len(r.order)
	if r.e.OnEvent != nil {
		r.e.OnEvent(ev)
	}
}

// watchPods starts the run's one watch: pods with the run's label.
func (r *runner) watchPods(ctx context.Context) error {
	f := informers.NewSharedInformerFactoryWithOptions(r.e.Client, 0,
		informers.WithNamespace(r.e.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = jobs.RunSelector(r.e.RunID) }))
	inf := f.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.onPod(obj, false) },
		UpdateFunc: func(_, obj any) { r.onPod(obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			r.onPod(obj, true)
		},
	})
	if err != nil {
		return err
	}
	f.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		return fmt.Errorf("watching pods in namespace %q: the watch did not start within 30s", r.e.Namespace)
	}
	return nil
}

// dispatch creates Jobs, never more than MaxInFlight unfinished at once.
func (r *runner) dispatch(ctx context.Context, njs []NodeJob) {
	for _, nj := range njs {
		select {
		case r.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil {
			return
		}
		// Counted before the call: a create cut short by an interrupt may
		// still have reached the API server, so cleanup must look.
		r.mu.Lock()
		r.attempted = append(r.attempted, nj.Job.Name)
		r.mu.Unlock()
		_, err := r.e.Client.BatchV1().Jobs(r.e.Namespace).Create(ctx, nj.Job, metav1.CreateOptions{})
		r.mu.Lock()
		st := r.states[nj.Node]
		st.created = time.Now()
		if err != nil {
			if ctx.Err() != nil {
				st.created = time.Time{}
				r.mu.Unlock()
				return
			}
			r.finish(st, failAll(nj, "creating the Job: "+explainAPIError(err, r.e.Namespace)))
		} else {
			r.emit(Event{Type: EventCreated, Node: nj.Node})
		}
		r.mu.Unlock()
	}
}

// finish records a node's result; the caller holds r.mu.
func (r *runner) finish(st *nodeState, res NodeResult) {
	if st.done {
		return
	}
	st.done = true
	if !st.created.IsZero() {
		res.Duration = time.Since(st.created)
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
	r.emit(Event{Type: EventFinished, Node: st.nj.Node, Failed: failed, Message: msg, Duration: res.Duration})
	select {
	case <-r.slots:
	default:
	}
	if r.done == len(r.order) {
		close(r.allDone)
	}
}

func (r *runner) onPod(obj any, deleted bool) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	node := pod.Annotations[jobs.AnnotationNode]
	if node == "" {
		node = pod.Spec.NodeName
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.states[node]
	if st == nil || st.done {
		return
	}
	st.hasPod = true
	st.podName = pod.Name
	if res, final := r.e.readPod(pod, st.nj); final {
		r.finish(st, res)
		return
	}
	if deleted {
		r.finish(st, failAll(st.nj, "the worker pod was deleted before it reported (was the node removed or drained?)"))
		return
	}
	if pod.Status.Phase == corev1.PodRunning && !st.running {
		st.running = true
		r.emit(Event{Type: EventRunning, Node: node})
	}
}

// checkDeadlines fails nodes past --timeout and explains Jobs with no pod.
func (r *runner) checkDeadlines(ctx context.Context) {
	type late struct {
		st  *nodeState
		msg string
		pod string
	}
	r.mu.Lock()
	var explain []*nodeState
	var timedOut []late
	now := time.Now()
	for _, n := range r.order {
		st := r.states[n]
		if st.done || st.created.IsZero() {
			continue
		}
		if r.e.NodeTimeout > 0 && now.Sub(st.created) > r.e.NodeTimeout {
			msg := fmt.Sprintf("no report within --timeout=%s", r.e.NodeTimeout)
			switch {
			case !st.hasPod:
				msg += "; the Job never got a pod"
			case !st.running:
				msg += "; the worker pod never started"
			default:
				msg += "; the worker pod is still running (is the node's container runtime or kubelet down?)"
			}
			timedOut = append(timedOut, late{st: st, msg: msg, pod: st.podName})
			continue
		}
		if !st.hasPod && !st.explained && now.Sub(st.created) > r.e.NoPodGrace {
			st.explained = true
			explain = append(explain, st)
		}
	}
	r.mu.Unlock()
	// What kubelet last said about a late pod (e.g. it cannot reach the
	// runtime to create the sandbox) is the most useful part of the message.
	for _, l := range timedOut {
		if why := r.lastWarning(ctx, "Pod", l.pod); why != "" {
			l.msg += ": " + why
		}
		r.mu.Lock()
		r.finish(l.st, failAll(l.st.nj, l.msg))
		r.mu.Unlock()
	}
	// A Job without a pod after a grace period: one look at its events tells
	// why (admission webhook, quota, Pod Security). One request per such Job,
	// once — not a poll.
	for _, st := range explain {
		reason := r.jobCreateFailure(ctx, st.nj.Job.Name)
		if reason == "" {
			continue
		}
		r.mu.Lock()
		if !st.hasPod {
			r.finish(st, failAll(st.nj, "the Job cannot create its pod: "+reason))
		}
		r.mu.Unlock()
	}
}

// lastWarning returns the newest Warning event's reason and message for an
// object, or "".
func (r *runner) lastWarning(ctx context.Context, kind, name string) string {
	if name == "" {
		return ""
	}
	sel := fields.Set{"involvedObject.kind": kind, "involvedObject.name": name}.AsSelector().String()
	evs, err := r.e.Client.CoreV1().Events(r.e.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return ""
	}
	var best *corev1.Event
	for i := range evs.Items {
		ev := &evs.Items[i]
		if ev.Type != corev1.EventTypeWarning || uninformative[ev.Reason] {
			continue
		}
		if best == nil || eventTime(ev).After(eventTime(best)) {
			best = ev
		}
	}
	if best == nil {
		return ""
	}
	return best.Reason + ": " + best.Message
}

// uninformative warnings say nothing about why a worker did not report.
var uninformative = map[string]bool{"MissingClusterDNS": true, "DNSConfigForming": true}

func eventTime(ev *corev1.Event) time.Time {
	if !ev.LastTimestamp.IsZero() {
		return ev.LastTimestamp.Time
	}
	if !ev.EventTime.IsZero() {
		return ev.EventTime.Time
	}
	return ev.CreationTimestamp.Time
}

func (r *runner) jobCreateFailure(ctx context.Context, job string) string {
	sel := fields.Set{"involvedObject.kind": "Job", "involvedObject.name": job}.AsSelector().String()
	evs, err := r.e.Client.CoreV1().Events(r.e.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		return ""
	}
	sort.Slice(evs.Items, func(i, j int) bool { return evs.Items[i].LastTimestamp.After(evs.Items[j].LastTimestamp.Time) })
	for _, ev := range evs.Items {
		if ev.Reason == "FailedCreate" {
			return explainAdmission(ev.Message, r.e.Namespace)
		}
	}
	return ""
}

// cleanup deletes every Job of the run (and, through the garbage collector,
// their pods) with one DeleteCollection, unless KeepJobs.
func (r *runner) cleanup() error {
	if r.e.KeepJobs {
		return nil
	}
	r.mu.Lock()
	attempted := len(r.attempted)
	r.mu.Unlock()
	if attempted == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.e.CleanupTimeout)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	err := r.e.Client.BatchV1().Jobs(r.e.Namespace).DeleteCollection(ctx,
		metav1.DeleteOptions{PropagationPolicy: &bg},
		metav1.ListOptions{LabelSelector: jobs.RunSelector(r.e.RunID)})
	if err == nil {
		return nil
	}
	if !apierrors.IsForbidden(err) && !apierrors.IsMethodNotSupported(err) {
		return fmt.Errorf("deleting the run's Jobs (kubectl delete jobs -n %s -l %s): %w", r.e.Namespace, jobs.RunSelector(r.e.RunID), err)
	}
	// No deletecollection permission: delete one by one.
	var errs []error
	r.mu.Lock()
	names := append([]string(nil), r.attempted...)
	r.mu.Unlock()
	for _, n := range names {
		if err := r.e.Client.BatchV1().Jobs(r.e.Namespace).Delete(ctx, n, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("deleting the run's Jobs (kubectl delete jobs -n %s -l %s): %w", r.e.Namespace, jobs.RunSelector(r.e.RunID), errors.Join(errs...))
	}
	return nil
}

func failAll(nj NodeJob, msg string) NodeResult {
	res := NodeResult{Node: nj.Node}
	for _, img := range nj.Images {
		res.Items = append(res.Items, report.ItemResult{Image: img, Status: report.StatusFailed, Message: msg})
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
		return fmt.Sprintf("%s (Coral needs to create, list, watch and delete Jobs and list/watch Pods in namespace %q: see the RBAC section of the README)", msg, ns)
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("%s (does namespace %q exist?)", err.Error(), ns)
	}
	return err.Error()
}

// explainAdmission explains an admission rejection of the worker pod.
func explainAdmission(msg, ns string) string {
	if strings.Contains(msg, "PodSecurity") {
		return fmt.Sprintf("%s\nPod Security admission in namespace %q rejects the worker: it mounts the node's container-runtime socket (a hostPath volume), "+
			"which only the \"privileged\" level allows. Run Coral in a namespace that allows it, for example:\n"+
			"  kubectl create namespace coral-system\n"+
			"  kubectl label namespace coral-system pod-security.kubernetes.io/enforce=privileged\n"+
			"and pass -n coral-system", msg, ns)
	}
	return fmt.Sprintf("%s (an admission controller in namespace %q rejected the worker pod; allow it there or pick another namespace with -n)", msg, ns)
}
