package controller

import (
	"context"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// This file is what the two reconcilers share: how each kind is watched,
// and the shape of a reconcile around the kind's own step.

// setupKind registers a reconciler for one kind: its objects, their Jobs
// and worker pods (through the name label), and Node changes that can
// change a plan (every object of the kind may select the node). Events of
// Jobs, pods and nodes are batched (enqueueAfter).
func (s *shared) setupKind(mgr ctrl.Manager, name string, obj client.Object, list client.ObjectList, nameLabel string, r reconcile.Reconciler) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named(name).
		For(obj).
		Watches(&batchv1.Job{}, enqueueAfter(byNameLabel(nameLabel))).
		Watches(&corev1.Pod{}, enqueueAfter(byNameLabel(nameLabel))).
		Watches(&corev1.Node{}, enqueueAfter(s.all(list)), builder.WithPredicates(s.nodeChanged())).
		// One reconcile at a time: the global cap and one-Job-per-node are
		// decided in one place. A reconcile only reads caches and writes a
		// few objects, and events are batched, so one worker keeps up with
		// thousands of nodes (docs/scale.md, controller mode).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(r)
}

// step is a kind's part of a reconcile. It changes the object's status in
// place where the kind has its own fields (resolved digests), and returns
// the sync's outcome (nil when nothing could be planned), a Degraded
// {reason, message} if any, and when to come back. A *badInput error is a
// problem a person must fix: Degraded, retried after a minute.
type step func(ctx context.Context) (out *outcome, degraded []string, requeue time.Duration, err error)

// statusOf returns an object's whole status (for comparing) and the part
// every kind shares.
type statusOf func(client.Object) (any, *coralv1.PrefetchStatus)

// reconcile reads the object, runs its finalizer when it is being
// deleted, adds the finalizer otherwise, runs the kind's step, and writes
// the status only when it changed (a write wakes the next reconcile).
func (s *shared) reconcile(ctx context.Context, req ctrl.Request, obj client.Object, nameLabel string, status statusOf, kindStep step) (ctrl.Result, error) {
	if err := s.client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !obj.GetDeletionTimestamp().IsZero() {
		return s.finalize(ctx, obj)
	}
	if controllerutil.AddFinalizer(obj, Finalizer) {
		if err := s.client.Update(ctx, obj); err != nil {
			return ctrl.Result{}, err
		}
	}
	before := obj.DeepCopyObject().(client.Object)
	out, degraded, requeue, err := kindStep(ctx)
	if err != nil {
		var bad *badInput
		if !asBadInput(err, &bad) {
			return ctrl.Result{}, err
		}
		out, degraded, requeue = nil, []string{bad.reason, bad.message}, time.Minute
	}
	was, wasCommon := status(before)
	now, st := status(obj)
	setStatus(st, obj.GetGeneration(), out, degraded, kindLabel(nameLabel, obj.GetNamespace(), obj.GetName()))
	s.announce(obj, wasCommon, st)
	if !equality.Semantic.DeepEqual(now, was) {
		if wait := s.statusWait(obj, wasCommon, st, time.Now()); wait > 0 {
			// Only counts moved, and the status was written less than
			// statusInterval ago: written on a later reconcile.
			if requeue <= 0 || wait < requeue {
				requeue = wait
			}
			return ctrl.Result{RequeueAfter: requeue}, nil
		}
		if err := s.client.Status().Update(ctx, obj); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{Requeue: true}, nil
			}
			return ctrl.Result{}, err
		}
		s.mu.Lock()
		s.statusWritten[obj.GetUID()] = time.Now()
		s.mu.Unlock()
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// statusInterval is the least time between two status writes of an object
// whose only change is its counts (and the messages that quote them). A
// status write per finished Job was most of the controller's writes in make
// bench-scale's controller mode (134 for 100 nodes); a person watching the
// object still sees it move every second, and a change of a condition's
// status or reason, or of the generation observed, is written at once.
const statusInterval = time.Second

// statusWait says how long a status change may wait: zero when it matters
// now or the last write is statusInterval old.
func (s *shared) statusWait(obj client.Object, was, now *coralv1.PrefetchStatus, at time.Time) time.Duration {
	if was.ObservedGeneration != now.ObservedGeneration || len(was.Conditions) != len(now.Conditions) {
		return 0
	}
	for _, c := range now.Conditions {
		w := meta.FindStatusCondition(was.Conditions, c.Type)
		if w == nil || w.Status != c.Status || w.Reason != c.Reason {
			return 0
		}
	}
	s.mu.Lock()
	last, ok := s.statusWritten[obj.GetUID()]
	s.mu.Unlock()
	if !ok {
		return 0
	}
	return max(0, statusInterval-at.Sub(last))
}
