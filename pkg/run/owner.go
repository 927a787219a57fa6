package run

import (
	"context"
	"fmt"
	"time"

	"github.com/coral-dev/coral/pkg/jobs"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// LeaseName is the name of a run's Lease.
func LeaseName(runID string) string { return "coral-run-" + runID }

// LeaseDuration is how long a run's Lease stays valid without a renewal:
// past it, `kubectl coral gc` takes the run for abandoned. LongLeaseDuration
// is a large run's (see Engine.LeaseRenew).
const (
	LeaseDuration     = 90 * time.Second
	LongLeaseDuration = 5 * time.Minute
)

// createLease creates the run's owner: a coordination.k8s.io Lease that
// every worker (Job or pod) names as its owner, renewed while the run goes
// on. Deleting it garbage-collects the run; an expired one marks a run
// whose plugin died. Without permission for Leases the run goes on without
// an owner (cleanup by label as before), with a warning.
func (r *runner) createLease(ctx context.Context) (*metav1.OwnerReference, string) {
	now := metav1.NewMicroTime(time.Now())
	labels := jobs.RunLabels(r.e.RunID)
	labels[jobs.LabelComponent] = "run"
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: LeaseName(r.e.RunID), Namespace: r.e.Namespace, Labels: labels},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(r.e.Holder),
			LeaseDurationSeconds: ptr.To(int32(r.leaseFor.Seconds())),
			AcquireTime:          &now,
			RenewTime:            &now,
		},
	}
	got, err := r.e.Client.CoordinationV1().Leases(r.e.Namespace).Create(ctx, l, metav1.CreateOptions{})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ""
		}
		msg := err.Error()
		if apierrors.IsForbidden(err) {
			msg = fmt.Sprintf("%s (grant create, patch and delete on leases.coordination.k8s.io in namespace %q)", msg, r.e.Namespace)
		}
		return nil, "cannot create the run's Lease, so a run killed before its cleanup is removed only by the Jobs' TTL, not by `kubectl coral gc`: " + msg
	}
	r.leaseCreated = true
	return &metav1.OwnerReference{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Name: got.Name, UID: got.UID}, ""
}

// renewLease keeps the Lease fresh until ctx ends.
func (r *runner) renewLease(ctx context.Context) {
	if !r.leaseCreated {
		return
	}
	t := time.NewTicker(r.leaseEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			patch := fmt.Sprintf(`{"spec":{"renewTime":%q}}`, time.Now().UTC().Format(metav1.RFC3339Micro))
			_, _ = r.e.Client.CoordinationV1().Leases(r.e.Namespace).Patch(ctx, LeaseName(r.e.RunID), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		}
	}
}

// deleteLease deletes the Lease; the garbage collector removes whatever
// still names it as owner.
func (r *runner) deleteLease() error {
	if !r.leaseCreated || r.e.KeepJobs || r.leaseDeleted {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.e.CleanupTimeout)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	err := r.e.Client.CoordinationV1().Leases(r.e.Namespace).Delete(ctx, LeaseName(r.e.RunID), metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the run's Lease (kubectl delete lease -n %s %s, or kubectl coral gc): %w", r.e.Namespace, LeaseName(r.e.RunID), err)
	}
	r.leaseDeleted = true
	return nil
}
