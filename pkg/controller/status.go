package controller

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/plan"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// kindLabel is the kubectl command that lists an object's per-node detail.
func kindLabel(label, ns, name string) string {
	return fmt.Sprintf("kubectl get prefetchnodes -n %s -l %s=%s", ns, label, name)
}

// setStatus writes counts and conditions. out is nil when nothing could be
// planned (degraded says why); degraded is {reason, message} or empty.
func setStatus(st *coralv1.PrefetchStatus, gen int64, out *outcome, degraded []string, detail string) {
	st.ObservedGeneration = gen
	cond := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: truncate(msg, 2048), ObservedGeneration: gen})
	}
	if out == nil {
		cond(coralv1.ConditionReady, false, degraded[0], degraded[1])
		cond(coralv1.ConditionProgressing, false, degraded[0], "nothing can start until this is fixed")
		cond(coralv1.ConditionDegraded, true, degraded[0], degraded[1])
		return
	}
	out.sortLists()
	st.DesiredNodes, st.ReadyNodes, st.FailedNodes, st.InFlightNodes, st.SkippedNodes = out.desired, out.ready, out.failed, out.inFlight, out.skipped
	st.Ready = fmt.Sprintf("%d/%d", out.ready, out.desired)
	st.FailingNodes, st.Skipped = out.failing, out.skips

	switch {
	case out.ready == out.desired && out.desired == 0:
		cond(coralv1.ConditionReady, true, "NoNodes", "no usable node is selected now; nodes that join and match get the items")
	case out.ready == out.desired:
		cond(coralv1.ConditionReady, true, "AllNodesReady", fmt.Sprintf("all %d nodes hold every item", out.desired))
	case out.failed > 0:
		cond(coralv1.ConditionReady, false, "NodesFailed", fmt.Sprintf("%d of %d nodes ready, %d failed", out.ready, out.desired, out.failed))
	default:
		cond(coralv1.ConditionReady, false, "InProgress", fmt.Sprintf("%d of %d nodes ready", out.ready, out.desired))
	}
	switch {
	case out.blockedReason != "":
		cond(coralv1.ConditionProgressing, false, out.blockedReason, "no Job can start until this is fixed")
	case out.inFlight > 0:
		cond(coralv1.ConditionProgressing, true, "JobsRunning", fmt.Sprintf("%d nodes working, %d waiting for a slot", out.inFlight, out.waiting))
	case out.waiting > 0:
		cond(coralv1.ConditionProgressing, true, "WaitingForSlot", fmt.Sprintf("%d nodes wait for a free slot (the controller's cap on Jobs in flight, or another object's Job on the node)", out.waiting))
	default:
		cond(coralv1.ConditionProgressing, false, "Idle", "no work in flight")
	}
	switch {
	case out.blockedReason != "":
		cond(coralv1.ConditionDegraded, true, out.blockedReason, out.blockedMessage)
	case len(degraded) == 2:
		cond(coralv1.ConditionDegraded, true, degraded[0], degraded[1])
	case out.failed > 0:
		var b strings.Builder
		fmt.Fprintf(&b, "%d nodes failed (retried with backoff): ", out.failed)
		for i, f := range out.failing {
			if i == 3 {
				b.WriteString("; …")
				break
			}
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(f.Node + ": " + truncate(f.Message, 300))
		}
		b.WriteString(". Every node: " + detail)
		cond(coralv1.ConditionDegraded, true, "NodesFailed", b.String())
	default:
		cond(coralv1.ConditionDegraded, false, "AsExpected", "")
	}
}

// announce records events for condition changes a person wants to see.
func (s *shared) announce(obj client.Object, before, after *coralv1.PrefetchStatus) {
	was, now := meta.FindStatusCondition(before.Conditions, coralv1.ConditionReady), meta.FindStatusCondition(after.Conditions, coralv1.ConditionReady)
	if now != nil && now.Status == metav1.ConditionTrue && (was == nil || was.Status != metav1.ConditionTrue) {
		s.events.Eventf(obj, nil, corev1.EventTypeNormal, "Ready", "Reconcile", "%s", now.Message)
	}
	wasD, nowD := meta.FindStatusCondition(before.Conditions, coralv1.ConditionDegraded), meta.FindStatusCondition(after.Conditions, coralv1.ConditionDegraded)
	if nowD != nil && nowD.Status == metav1.ConditionTrue && (wasD == nil || wasD.Status != metav1.ConditionTrue || wasD.Reason != nowD.Reason) {
		s.events.Eventf(obj, nil, corev1.EventTypeWarning, nowD.Reason, "Reconcile", "%s", truncate(nowD.Message, 1000))
	}
}

// finalize runs when an object is deleted: its pull Jobs go, its pins are
// released (unpin Jobs), then the finalizer. (PrefetchNode records are
// owned by the object and go with it.) The result asks to come back while
// unpin Jobs run.
func (s *shared) finalize(ctx context.Context, obj client.Object) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(obj, Finalizer) {
		return ctrl.Result{}, nil
	}
	s.mu.Lock()
	delete(s.plans, obj.GetUID()) // no more syncs
	s.mu.Unlock()
	if err := s.deletePullJobs(ctx, obj); err != nil {
		return ctrl.Result{}, err
	}
	done, err := s.releasePins(ctx, obj)
	if err != nil || !done {
		return ctrl.Result{RequeueAfter: 5 * time.Second}, err
	}
	controllerutil.RemoveFinalizer(obj, Finalizer)
	if err := s.client.Update(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

// deletePullJobs deletes an object's pull Jobs, not its unpin Jobs, in one
// request (a deletecollection by label) when there are several: at 5000
// nodes ~3400 Jobs still waited for the Job controller to finish them when
// the object was deleted, and deleting them one by one at the client's
// 50 QPS kept the object (and its finalizer) for over a minute
// (bench-scale, --modes controller). An unpin Job made before unpin Jobs
// carried their label (only the annotation) is never deleted by it: while
// one exists, the Jobs go one by one as before.
func (s *shared) deletePullJobs(ctx context.Context, obj client.Object) error {
	list, err := s.view.Jobs(obj.GetNamespace(), string(obj.GetUID()))
	if err != nil {
		return err
	}
	var pull []*batchv1.Job
	unlabelledUnpin := false
	for _, j := range list {
		if j.Annotations[annotationUnpin] != "" {
			unlabelledUnpin = unlabelledUnpin || j.Labels[labelUnpin] == ""
			continue
		}
		s.mu.Lock()
		_, gone := s.deleted[jobKey(j)]
		s.mu.Unlock()
		if !gone && j.DeletionTimestamp == nil {
			pull = append(pull, j)
		}
	}
	if len(pull) <= 1 || unlabelledUnpin {
		for _, j := range pull {
			if err := s.deleteJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	}
	sel := labels.SelectorFromSet(labels.Set{LabelPrefetchUID: string(obj.GetUID())})
	notUnpin, err := labels.NewRequirement(labelUnpin, selection.DoesNotExist, nil)
	if err != nil {
		return err
	}
	err = s.client.DeleteAllOf(ctx, &batchv1.Job{}, client.InNamespace(obj.GetNamespace()),
		client.MatchingLabelsSelector{Selector: sel.Add(*notUnpin)}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the pull Jobs of %s: %w", obj.GetName(), err)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range pull {
		s.deleted[jobKey(j)] = now
		delete(s.recorded, jobKey(j))
	}
	return nil
}

// batchWindow is how long a Job, pod or node event waits before it wakes
// the reconcile of its object: every event within the window wakes one
// reconcile. A worker makes about eight events between its Job's creation
// and its deletion, and each reconcile plans over every node and reads every
// record of its object, so one reconcile per event grew as nodes squared:
// make bench-scale's controller mode at 1000 nodes spent 94 s of CPU in the
// controller (221.5 s wall, the bound 139.7 s). The object's own changes
// (a new spec, a deletion) still wake it at once.
const batchWindow = 250 * time.Millisecond

// enqueueAfter enqueues what m maps an event to, batchWindow later; the
// queue keeps the earliest time of a request already waiting.
func enqueueAfter(m handler.MapFunc) handler.EventHandler {
	type queue = workqueue.TypedRateLimitingInterface[reconcile.Request]
	add := func(ctx context.Context, objs []client.Object, q queue) {
		for _, o := range objs {
			for _, r := range m(ctx, o) {
				q.AddAfter(r, batchWindow)
			}
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q queue) { add(ctx, []client.Object{e.Object}, q) },
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q queue) {
			objs := []client.Object{e.ObjectNew}
			if !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) {
				objs = append(objs, e.ObjectOld) // relabelled: its old object too
			}
			add(ctx, objs, q)
		},
		DeleteFunc:  func(ctx context.Context, e event.DeleteEvent, q queue) { add(ctx, []client.Object{e.Object}, q) },
		GenericFunc: func(ctx context.Context, e event.GenericEvent, q queue) { add(ctx, []client.Object{e.Object}, q) },
	}
}

// byNameLabel maps a worker Job or pod to its object through the name label.
func byNameLabel(label string) handler.MapFunc {
	return func(_ context.Context, o client.Object) []reconcile.Request {
		if n := o.GetLabels()[label]; n != "" {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: n}}}
		}
		return nil
	}
}

// all maps a node event to every object of a kind: any of them may select
// the node. Objects are few; nodes are many, and nodeChanged filters their
// heartbeats out.
func (s *shared) all(list client.ObjectList) handler.MapFunc {
	return func(ctx context.Context, _ client.Object) []reconcile.Request {
		l := list.DeepCopyObject().(client.ObjectList)
		if err := s.client.List(ctx, l); err != nil {
			return nil
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			return nil
		}
		out := make([]reconcile.Request, 0, len(items))
		for _, it := range items {
			o := it.(client.Object)
			out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}})
		}
		return out
	}
}

// nodeChanged passes the node events that can change a plan — a node
// joins or leaves, or changes in what plan.SameInputs compares (labels,
// annotations, cordon, taints, readiness, runtime) — and counts each in
// nodeEpoch before it is passed on, so a reconcile that event queues
// always sees the new count and replans (plans).
func (s *shared) nodeChanged() predicate.Predicate {
	changed := func() bool { s.nodeEpoch.Add(1); return true }
	return predicate.Funcs{
		CreateFunc: func(event.CreateEvent) bool { return changed() },
		DeleteFunc: func(event.DeleteEvent) bool { return changed() },
		UpdateFunc: func(e event.UpdateEvent) bool {
			a, ok1 := e.ObjectOld.(*corev1.Node)
			b, ok2 := e.ObjectNew.(*corev1.Node)
			if ok1 && ok2 && plan.SameInputs(a, b) {
				return false
			}
			return changed()
		},
		GenericFunc: func(event.GenericEvent) bool { return changed() },
	}
}
