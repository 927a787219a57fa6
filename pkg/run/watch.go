package run

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/report"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// watch starts the run's watches: the pods with the run's label and the
// namespace's Warning events (FailedCreate: why the Job controller cannot
// make a pod; a worker pod's warnings: why it is late). One list and one
// watch per kind for the whole run: nothing is polled or listed per node.
// It returns once the pods are synced, or when ctx (the user's) is
// cancelled.
func (r *runner) watch(ctx, watchCtx context.Context) error {
	var watchErr struct {
		sync.Mutex
		err error
	}
	onErr := func(_ *cache.Reflector, err error) {
		watchErr.Lock()
		watchErr.err = err
		watchErr.Unlock()
	}
	pods := informers.NewSharedInformerFactoryWithOptions(r.e.Client, 0,
		informers.WithNamespace(r.e.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = jobs.RunSelector(r.e.RunID) }))
	podInf := pods.Core().V1().Pods().Informer()
	// Keep only what the engine reads: a run's memory must not grow with
	// whole pod objects.
	_ = podInf.SetTransform(slimPod)
	_ = podInf.SetWatchErrorHandler(onErr)
	podReg, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.onPod(watchCtx, obj, false) },
		UpdateFunc: func(_, obj any) { r.onPod(watchCtx, obj, false) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			r.onPod(watchCtx, obj, true)
		},
	})
	if err != nil {
		return err
	}
	pods.Start(watchCtx.Done())

	evs := informers.NewSharedInformerFactoryWithOptions(r.e.Client, 0,
		informers.WithNamespace(r.e.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("type", corev1.EventTypeWarning).String()
		}))
	evInf := evs.Core().V1().Events().Informer()
	// The informer's store keeps events slimmed to what onEvent reads
	// (names, reason, message, times): a namespace's warnings, bounded by
	// the events' own 1 h TTL.
	_ = evInf.SetTransform(slimEvent)
	_ = evInf.SetWatchErrorHandler(func(*cache.Reflector, error) {}) // optional: reading events may be forbidden
	if _, err := evInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.onEvent,
		UpdateFunc: func(_, obj any) { r.onEvent(obj) },
	}); err != nil {
		return err
	}
	evs.Start(watchCtx.Done())
	// Not waited for: events only explain, and a user without access to
	// them still gets a run.

	// No worker is created before the pod watch runs, so that an RBAC or
	// watch problem stops the run before it changes anything. WaitFor is
	// told the moment the handler has the initial list; WaitForCacheSync
	// polled every 100 ms, which cost every run ~0.1 s (make bench-prefetch).
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitFor(syncCtx, "", podReg.HasSyncedChecker()) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		watchErr.Lock()
		err := watchErr.err
		watchErr.Unlock()
		msg := fmt.Sprintf("watching pods in namespace %q: the watch did not start within 30s", r.e.Namespace)
		if err != nil {
			msg += ": " + err.Error()
			if apierrors.IsForbidden(err) {
				msg += fmt.Sprintf(" (Coral needs list and watch on pods in namespace %q: see the RBAC section of the README)", r.e.Namespace)
			}
		}
		return fmt.Errorf("%s", msg)
	}
	return nil
}

// slimPod drops what the engine never reads from a cached pod.
func slimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return SlimWorkerPod(pod), nil
}

// SlimWorkerPod is the part of a worker pod the engine and ReadWorkerPod
// read: its name, node and status (the worker container's only), not its
// spec. The controller's cache keeps its metadata beside.
func SlimWorkerPod(pod *corev1.Pod) *corev1.Pod {
	slim := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, ResourceVersion: pod.ResourceVersion,
			Annotations: map[string]string{jobs.AnnotationNode: pod.Annotations[jobs.AnnotationNode]},
		},
		Spec: corev1.PodSpec{NodeName: pod.Spec.NodeName},
		Status: corev1.PodStatus{
			Phase: pod.Status.Phase, Reason: pod.Status.Reason, Message: pod.Status.Message,
		},
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget {
			slim.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message}}
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == jobs.ContainerName {
			slim.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: cs.Name, Image: cs.Image, State: cs.State}}
		}
	}
	return slim
}

// slimEvent keeps what onEvent reads of a Warning event.
func slimEvent(obj any) (any, error) {
	ev, ok := obj.(*corev1.Event)
	if !ok {
		return obj, nil
	}
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: ev.Name, Namespace: ev.Namespace, ResourceVersion: ev.ResourceVersion, CreationTimestamp: ev.CreationTimestamp},
		InvolvedObject: corev1.ObjectReference{Kind: ev.InvolvedObject.Kind, Name: ev.InvolvedObject.Name},
		Type:           ev.Type, Reason: ev.Reason, Message: ev.Message,
		LastTimestamp: ev.LastTimestamp, EventTime: ev.EventTime,
	}, nil
}

// podWarning is a worker pod's newest informative Warning event.
type podWarning struct {
	text string
	at   time.Time
}

// maxPendingWarnings bounds the warnings kept for pods the run has not
// seen (yet): events carry no run label, so other pods' warnings in the
// namespace arrive too.
const maxPendingWarnings = 256

func (r *runner) onEvent(obj any) {
	ev, ok := obj.(*corev1.Event)
	if !ok || ev.Type != corev1.EventTypeWarning {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev.InvolvedObject.Kind {
	case "Job":
		if ev.Reason != "FailedCreate" {
			return
		}
		for _, st := range r.order { // by name: events carry no run label
			if st.jobName == ev.InvolvedObject.Name && !st.done && st.podSeen.IsZero() {
				st.createErr = ev.Message
				return
			}
		}
	case "Pod":
		if uninformative[ev.Reason] {
			return
		}
		w := podWarning{text: ev.Reason + ": " + ev.Message, at: eventTime(ev)}
		if st := r.byPod[ev.InvolvedObject.Name]; st != nil {
			if !st.done && !w.at.Before(st.warnAt) {
				st.warning, st.warnAt = w.text, w.at
			}
			return
		}
		if old, ok := r.pendingWarn[ev.InvolvedObject.Name]; ok && w.at.Before(old.at) {
			return
		}
		if _, ok := r.pendingWarn[ev.InvolvedObject.Name]; ok || len(r.pendingWarn) < maxPendingWarnings {
			r.pendingWarn[ev.InvolvedObject.Name] = w
		}
	}
}

// onPod is the pod watch's handler. It never blocks: decoding is pure, and
// an overflowed report's log is read on a goroutine of its own.
func (r *runner) onPod(ctx context.Context, obj any, deleted bool) {
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
	if st == nil || st.done || st.reading || r.closed {
		return
	}
	if st.podSeen.IsZero() && !st.created.IsZero() {
		st.podSeen = time.Now()
		r.podless--
		r.pace.PodAppeared(st.podSeen)
	}
	if st.podName != pod.Name {
		delete(r.byPod, st.podName)
		st.podName = pod.Name
		r.byPod[pod.Name] = st
		if w, ok := r.pendingWarn[pod.Name]; ok {
			delete(r.pendingWarn, pod.Name)
			if !w.at.Before(st.warnAt) {
				st.warning, st.warnAt = w.text, w.at
			}
		}
	}
	out := readPod(pod, st.items, st.expected)
	switch {
	case out.needLog:
		st.reading = true
		r.readers.Add(1)
		go r.readFullReport(ctx, st, pod.Name, out)
		return
	case out.final:
		r.finishLocked(st, out.result(st.node))
		return
	case deleted:
		msg := "the worker pod was deleted before it reported (was the node removed or drained?)"
		if why := disruption(pod); why != "" {
			msg = "the worker pod was deleted before it reported: " + why
		}
		r.finishLocked(st, failAll(st, msg))
		return
	}
	if out.waiting != "" {
		if st.waiting == "" {
			st.waitSince = time.Now()
		}
		st.waiting = out.waiting
		if out.waitingFinal {
			r.finishLocked(st, failAll(st, out.waiting))
		}
		return
	}
	st.waiting = ""
	if pod.Status.Phase == corev1.PodRunning && !st.running {
		st.running = true
		r.emitLocked(Event{Type: EventRunning, Node: node})
	}
	if st.running && !st.following && r.e.FollowLogsUpTo > 0 && len(r.order) <= r.e.FollowLogsUpTo {
		st.following = true
		r.followers.Add(1)
		go r.followLog(st, pod.Name)
	}
}

// followLog reads the worker's log as it is written and finishes the node
// with the report the worker prints before it exits. Anything short of a
// whole report of this run's items (no logs, a cut stream, another wire
// version) leaves the node to the container status, which carries the same
// report a moment later.
func (r *runner) followLog(st *nodeState, pod string) {
	defer r.followers.Done()
	rc, err := r.e.openLog(r.followCtx, pod, true)
	if err != nil {
		return
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, report.FullReportPrefix) {
			continue
		}
		full, err := report.DecodeFull(strings.NewReader(line))
		if err != nil || len(full.Items) != len(st.items) {
			return
		}
		r.mu.Lock()
		if !st.done && !st.reading {
			r.finishLocked(st, NodeResult{Node: st.node, Items: full.Items})
		}
		r.mu.Unlock()
		return
	}
}

// readFullReport reads an overflowed report from the worker's log, bounded
// in number and time, on the run's context, and then finishes the node.
func (r *runner) readFullReport(ctx context.Context, st *nodeState, pod string, out podOutcome) {
	defer r.readers.Done()
	select {
	case r.logSem <- struct{}{}:
		defer func() { <-r.logSem }()
	case <-ctx.Done():
	}
	res := out.result(st.node)
	if ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		res = r.withFullReport(lctx, pod, st, out)
		cancel()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st.reading = false
	r.finishLocked(st, res)
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

// nodeDown says, for a node that missed its deadline, whether its kubelet
// stopped reporting (Ready not True: the node controller marks it Unknown
// when the kubelet's heartbeats stop) or the Node is gone. One read, once,
// at the node's deadline.
func (r *runner) nodeDown(ctx context.Context, name string) string {
	n, err := r.e.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "the Node no longer exists"
	}
	if err != nil {
		return ""
	}
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady || c.Status == corev1.ConditionTrue {
			continue
		}
		since := ""
		if !c.LastTransitionTime.IsZero() {
			since = fmt.Sprintf(" since %s", c.LastTransitionTime.UTC().Format(time.RFC3339))
		}
		return fmt.Sprintf("the node is not Ready%s (%s: %s): its kubelet or runtime stopped reporting", since, c.Reason, c.Message)
	}
	// Ready turns Unknown only after the node monitor's grace period (about
	// 50 s); the kubelet's heartbeat Lease, renewed every 10 s, tells sooner.
	l, err := r.e.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
	if err != nil || l.Spec.RenewTime == nil {
		return ""
	}
	if age := time.Since(l.Spec.RenewTime.Time); age > 30*time.Second {
		return fmt.Sprintf("the node's kubelet has not renewed its heartbeat for %s: the kubelet is down or cut off", age.Round(time.Second))
	}
	return ""
}
