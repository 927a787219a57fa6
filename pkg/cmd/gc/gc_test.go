package gc

import (
	"bytes"
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/jobs"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func runLabels(id string) map[string]string { return jobs.RunLabels(id) }

func controllerLabels(id string) map[string]string {
	l := jobs.RunLabels(id)
	l[jobs.LabelManagedBy] = "coral-controller"
	return l
}

// lease is a run's Lease last renewed `renewed` before now.
func lease(ns, id string, renewed time.Duration, labels map[string]string) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			Name: LeasePrefix + id, Namespace: ns, Labels: labels, UID: types.UID("lease-" + ns + "-" + id), ResourceVersion: "7",
			CreationTimestamp: metav1.NewTime(now.Add(-renewed - time.Minute)),
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To("kubectl-coral@laptop/4242"),
			LeaseDurationSeconds: ptr.To[int32](90),
			RenewTime:            ptr.To(metav1.NewMicroTime(now.Add(-renewed))),
		},
	}
}

type jobOpt func(*batchv1.Job)

func ownedByLease(id, ns string) jobOpt {
	return func(j *batchv1.Job) {
		j.OwnerReferences = []metav1.OwnerReference{{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Name: LeasePrefix + id, UID: types.UID("lease-" + ns + "-" + id)}}
	}
}

func finished(j *batchv1.Job) {
	j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
}

func job(ns, name, id string, age time.Duration, labels map[string]string, opts ...jobOpt) *batchv1.Job {
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, UID: types.UID("job-" + ns + "-" + name), CreationTimestamp: metav1.NewTime(now.Add(-age))},
		Spec:       batchv1.JobSpec{ActiveDeadlineSeconds: ptr.To[int64](960)},
	}
	for _, o := range opts {
		o(j)
	}
	return j
}

// pod is a pod of Job jobName ("" for none).
func pod(ns, name, jobName string, age time.Duration, labels map[string]string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, UID: types.UID("pod-" + ns + "-" + name), CreationTimestamp: metav1.NewTime(now.Add(-age))}}
	if jobName != "" {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: jobName, UID: types.UID("job-" + ns + "-" + jobName), Controller: ptr.To(true)}}
	}
	return p
}

func names(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Resource+"/"+o.Namespace+"/"+o.Name)
	}
	sort.Strings(out)
	return out
}

func TestSelect(t *testing.T) {
	tests := []struct {
		name       string
		objs       []runtime.Object
		minAge     time.Duration
		wantDelete []string
		wantKept   []string // substrings, one per kept run, in order
	}{{
		name: "an expired Lease goes; its owned Jobs and pods follow through the garbage collector",
		objs: []runtime.Object{
			lease("ns", "dead1", 2*time.Minute, runLabels("dead1")),
			job("ns", "coral-dead1-n1", "dead1", 3*time.Minute, runLabels("dead1"), ownedByLease("dead1", "ns")),
			pod("ns", "coral-dead1-n1-x", "coral-dead1-n1", 3*time.Minute, runLabels("dead1")),
		},
		minAge:     time.Hour,
		wantDelete: []string{"lease.coordination.k8s.io/ns/coral-run-dead1"},
	}, {
		name: "a fresh Lease keeps its run, whatever the age of its Jobs and --min-age=0",
		objs: []runtime.Object{
			lease("ns", "live1", 20*time.Second, runLabels("live1")),
			job("ns", "coral-live1-n1", "live1", 3*time.Hour, runLabels("live1"), ownedByLease("live1", "ns"), finished),
			pod("ns", "coral-live1-n1-x", "coral-live1-n1", 3*time.Hour, runLabels("live1")),
			pod("ns", "coral-live1-direct", "", 3*time.Hour, runLabels("live1")),
		},
		minAge:   0,
		wantKept: []string{"live: its Lease was renewed 20s ago by kubectl-coral@laptop/4242 and holds until 1m10s"},
	}, {
		name: "a Lease just inside its duration is live; just past it is not",
		objs: []runtime.Object{
			lease("ns", "edge1", 89*time.Second, runLabels("edge1")),
			lease("ns", "edge2", 91*time.Second, runLabels("edge2")),
		},
		minAge:     time.Hour,
		wantDelete: []string{"lease.coordination.k8s.io/ns/coral-run-edge2"},
		wantKept:   []string{"renewed 1m29s ago"},
	}, {
		name: "an expired run's objects that do not name the Lease as owner are deleted directly",
		objs: []runtime.Object{
			lease("ns", "dead2", 5*time.Minute, runLabels("dead2")),
			job("ns", "coral-dead2-n1", "dead2", 6*time.Minute, runLabels("dead2")),
			job("ns", "coral-dead2-n2", "dead2", 6*time.Minute, runLabels("dead2"), ownedByLease("dead2", "ns")),
			pod("ns", "coral-dead2-n1-x", "coral-dead2-n1", 6*time.Minute, runLabels("dead2")),
			pod("ns", "coral-dead2-lone", "", 6*time.Minute, runLabels("dead2")),
		},
		minAge: time.Hour,
		wantDelete: []string{
			"job.batch/ns/coral-dead2-n1",
			"lease.coordination.k8s.io/ns/coral-run-dead2",
			"pod/ns/coral-dead2-lone",
		},
	}, {
		name: "no Lease (older plugin): old finished Jobs and orphan pods go, young ones stay",
		objs: []runtime.Object{
			job("ns", "coral-old1-n1", "old1", 2*time.Hour, runLabels("old1"), finished),
			pod("ns", "coral-old1-n1-x", "coral-old1-n1", 2*time.Hour, runLabels("old1")),
			pod("ns", "coral-old1-n2-x", "coral-old1-n2", 2*time.Hour, runLabels("old1")), // its Job is gone
			job("ns", "coral-new1-n1", "new1", 10*time.Minute, runLabels("new1"), finished),
			pod("ns", "coral-new1-n1-x", "coral-new1-n1", 10*time.Minute, runLabels("new1")),
		},
		minAge:     time.Hour,
		wantDelete: []string{"job.batch/ns/coral-old1-n1", "pod/ns/coral-old1-n2-x"},
		wantKept:   []string{"its newest object is 10m0s old, younger than --min-age=1h0m0s"},
	}, {
		name: "no Lease: a Job still within its activeDeadlineSeconds may belong to a live older plugin",
		objs: []runtime.Object{
			job("ns", "coral-long1-n1", "long1", 2*time.Hour, runLabels("long1"), func(j *batchv1.Job) { j.Spec.ActiveDeadlineSeconds = ptr.To[int64](3 * 3600) }),
		},
		minAge:   time.Hour,
		wantKept: []string{"Job coral-long1-n1 has no Lease and may still run: its activeDeadlineSeconds ends in 1h0m0s"},
	}, {
		name: "no Lease, --min-age=0: everything of the run goes at once",
		objs: []runtime.Object{
			job("ns", "coral-k1-n1", "k1", time.Second, runLabels("k1"), finished),
			pod("ns", "coral-k1-n1-x", "coral-k1-n1", time.Second, runLabels("k1")),
		},
		minAge:     0,
		wantDelete: []string{"job.batch/ns/coral-k1-n1"},
	}, {
		name: "the controller's objects are never touched, even with an expired Lease of the same shape",
		objs: []runtime.Object{
			lease("ns", "ctl1", time.Hour, controllerLabels("ctl1")),
			job("ns", "coral-ctl1-n1", "ctl1", 5*time.Hour, controllerLabels("ctl1"), finished),
			pod("ns", "coral-ctl1-n1-x", "", 5*time.Hour, controllerLabels("ctl1")),
		},
		minAge: 0,
	}, {
		name: "a Lease of ours without the coral-run- prefix is not a run's Lease",
		objs: []runtime.Object{
			func() *coordinationv1.Lease {
				l := lease("ns", "x", time.Hour, runLabels("x"))
				l.Name = "something-else"
				return l
			}(),
		},
		minAge: 0,
	}, {
		name: "objects already being deleted are left to finish",
		objs: []runtime.Object{
			func() *coordinationv1.Lease {
				l := lease("ns", "del1", time.Hour, runLabels("del1"))
				l.DeletionTimestamp = ptr.To(metav1.NewTime(now))
				return l
			}(),
			func() *batchv1.Job {
				j := job("ns", "coral-del2-n1", "del2", 2*time.Hour, runLabels("del2"), finished)
				j.DeletionTimestamp = ptr.To(metav1.NewTime(now))
				return j
			}(),
		},
		minAge:   0,
		wantKept: []string{"already being deleted"},
	}, {
		name: "a Lease with no renewTime and no duration counts from its creation, for 90s",
		objs: []runtime.Object{
			func() *coordinationv1.Lease {
				l := lease("ns", "bare", 0, runLabels("bare"))
				l.Spec = coordinationv1.LeaseSpec{}
				l.CreationTimestamp = metav1.NewTime(now.Add(-100 * time.Second))
				return l
			}(),
			func() *coordinationv1.Lease {
				l := lease("ns", "bare2", 0, runLabels("bare2"))
				l.Spec = coordinationv1.LeaseSpec{}
				l.CreationTimestamp = metav1.NewTime(now.Add(-80 * time.Second))
				return l
			}(),
		},
		minAge:     time.Hour,
		wantDelete: []string{"lease.coordination.k8s.io/ns/coral-run-bare"},
		wantKept:   []string{"renewed 1m20s ago by an unnamed holder"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var inv Inventory
			for _, o := range tt.objs {
				switch v := o.(type) {
				case *coordinationv1.Lease:
					inv.Leases = append(inv.Leases, *v)
				case *batchv1.Job:
					inv.Jobs = append(inv.Jobs, *v)
				case *corev1.Pod:
					inv.Pods = append(inv.Pods, *v)
				}
			}
			sel := Select(inv, now, tt.minAge)
			if got := names(sel.Delete); strings.Join(got, ",") != strings.Join(tt.wantDelete, ",") {
				t.Errorf("delete = %v, want %v", got, tt.wantDelete)
			}
			if len(sel.Kept) != len(tt.wantKept) {
				t.Fatalf("kept = %+v, want %d runs kept", sel.Kept, len(tt.wantKept))
			}
			for i, k := range sel.Kept {
				if !strings.Contains(k.Why, tt.wantKept[i]) {
					t.Errorf("kept[%d] = %q, want it to contain %q", i, k.Why, tt.wantKept[i])
				}
			}
		})
	}
}

// newOptions runs gc against a fake clientset holding objs.
func newOptions(objs ...runtime.Object) (*Options, *fake.Clientset, *bytes.Buffer, *bytes.Buffer) {
	client := fake.NewSimpleClientset(objs...)
	out, errb := &bytes.Buffer{}, &bytes.Buffer{}
	o := NewOptions(nil, genericiooptions.IOStreams{Out: out, ErrOut: errb})
	o.client, o.namespace, o.now = client, "ns", func() time.Time { return now }
	return o, client, out, errb
}

func gcRun(t *testing.T, o *Options) error {
	t.Helper()
	if err := o.Complete(nil, nil); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	return o.Run(context.Background())
}

// remaining lists what is left in the fake cluster, as resource/ns/name.
func remaining(t *testing.T, c *fake.Clientset) []string {
	t.Helper()
	var out []string
	ls, _ := c.CoordinationV1().Leases("").List(context.Background(), metav1.ListOptions{})
	for _, l := range ls.Items {
		out = append(out, ResourceLease+"/"+l.Namespace+"/"+l.Name)
	}
	js, _ := c.BatchV1().Jobs("").List(context.Background(), metav1.ListOptions{})
	for _, j := range js.Items {
		out = append(out, ResourceJob+"/"+j.Namespace+"/"+j.Name)
	}
	ps, _ := c.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{})
	for _, p := range ps.Items {
		out = append(out, ResourcePod+"/"+p.Namespace+"/"+p.Name)
	}
	sort.Strings(out)
	return out
}

func fixture() []runtime.Object {
	return []runtime.Object{
		lease("ns", "dead", 10*time.Minute, runLabels("dead")),
		job("ns", "coral-dead-n1", "dead", 11*time.Minute, runLabels("dead"), ownedByLease("dead", "ns")),
		lease("ns", "live", 5*time.Second, runLabels("live")),
		job("ns", "coral-live-n1", "live", time.Minute, runLabels("live"), ownedByLease("live", "ns")),
		job("ns", "coral-old-n1", "old", 3*time.Hour, runLabels("old"), finished),
		lease("other", "dead", 10*time.Minute, runLabels("dead")),
		job("other", "coral-ctl-n1", "ctl", 5*time.Hour, controllerLabels("ctl"), finished),
		job("other", "unrelated", "", 5*time.Hour, map[string]string{"app": "web"}, finished),
	}
}

func TestRunDeletesWhatCrashedRunsLeft(t *testing.T) {
	o, c, out, errb := newOptions(fixture()...)
	var deletes []string
	c.PrependReactor("delete", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteAction)
		opts := d.GetDeleteOptions()
		if opts.PropagationPolicy == nil || *opts.PropagationPolicy != metav1.DeletePropagationBackground {
			t.Errorf("delete of %s without background propagation", d.GetName())
		}
		if opts.Preconditions == nil || opts.Preconditions.UID == nil {
			t.Errorf("delete of %s without a UID precondition", d.GetName())
		}
		if a.GetResource().Resource == "leases" && (opts.Preconditions == nil || opts.Preconditions.ResourceVersion == nil || *opts.Preconditions.ResourceVersion != "7") {
			t.Errorf("delete of Lease %s without a resourceVersion precondition: %+v", d.GetName(), opts.Preconditions)
		}
		deletes = append(deletes, a.GetResource().Resource+"/"+a.GetNamespace()+"/"+d.GetName())
		return false, nil, nil
	})
	if err := gcRun(t, o); err != nil {
		t.Fatalf("gc: %v\n%s", err, errb)
	}
	want := []string{"leases/ns/coral-run-dead", "jobs/ns/coral-old-n1"}
	if strings.Join(deletes, ",") != strings.Join(want, ",") {
		t.Errorf("deletes = %v, want %v", deletes, want)
	}
	wantLeft := []string{
		"job.batch/ns/coral-dead-n1", // the garbage collector's job (there is none in a fake clientset)
		"job.batch/ns/coral-live-n1",
		"job.batch/other/coral-ctl-n1",
		"job.batch/other/unrelated",
		"lease.coordination.k8s.io/ns/coral-run-live",
		"lease.coordination.k8s.io/other/coral-run-dead", // another namespace
	}
	if got := remaining(t, c); strings.Join(got, ",") != strings.Join(wantLeft, ",") {
		t.Errorf("left = %v, want %v", got, wantLeft)
	}
	for _, s := range []string{
		"lease.coordination.k8s.io/coral-run-dead deleted from namespace ns: run dead: its Lease expired 8m30s ago (last renewed by kubectl-coral@laptop/4242); 1 Job and 0 pods follow",
		"job.batch/coral-old-n1 deleted from namespace ns: run old: its run has no Lease",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("stdout lacks %q:\n%s", s, out)
		}
	}
	for _, s := range []string{"kept run live in namespace ns: live", `deleted 2 object(s) in namespace "ns"`} {
		if !strings.Contains(errb.String(), s) {
			t.Errorf("stderr lacks %q:\n%s", s, errb)
		}
	}
}

func TestRunAllNamespacesNameOutput(t *testing.T) {
	o, c, out, _ := newOptions(fixture()...)
	o.AllNamespaces, o.Output = true, "name"
	if err := gcRun(t, o); err != nil {
		t.Fatal(err)
	}
	want := "lease.coordination.k8s.io/coral-run-dead\nlease.coordination.k8s.io/coral-run-dead\njob.batch/coral-old-n1\n"
	if out.String() != want {
		t.Errorf("stdout = %q, want %q", out, want)
	}
	for _, gone := range []string{"lease.coordination.k8s.io/other/coral-run-dead", "lease.coordination.k8s.io/ns/coral-run-dead"} {
		for _, left := range remaining(t, c) {
			if left == gone {
				t.Errorf("%s is still there", gone)
			}
		}
	}
}

func TestRunDryRunDeletesNothing(t *testing.T) {
	o, c, out, errb := newOptions(fixture()...)
	o.DryRun = "client"
	before := remaining(t, c)
	if err := gcRun(t, o); err != nil {
		t.Fatal(err)
	}
	if after := remaining(t, c); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("--dry-run deleted: before %v, after %v", before, after)
	}
	if !strings.Contains(out.String(), "coral-run-dead deleted from namespace ns (dry run)") || !strings.Contains(errb.String(), "would delete 2 object(s)") {
		t.Errorf("stdout:\n%s\nstderr:\n%s", out, errb)
	}
}

func TestRunServerDryRunSendsDryRunDeletes(t *testing.T) {
	o, c, _, _ := newOptions(fixture()...)
	o.DryRun = "server"
	n := 0
	c.PrependReactor("delete", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		n++
		if dr := a.(k8stesting.DeleteAction).GetDeleteOptions().DryRun; len(dr) != 1 || dr[0] != metav1.DryRunAll {
			t.Errorf("delete without dryRun=All: %v", dr)
		}
		return true, nil, nil // the server persists nothing
	})
	if err := gcRun(t, o); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%d deletes sent, want 2", n)
	}
}

func TestRunNothingToCollect(t *testing.T) {
	o, _, out, errb := newOptions(lease("ns", "live", time.Second, runLabels("live")))
	if err := gcRun(t, o); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || !strings.Contains(errb.String(), `nothing to collect in namespace "ns"`) {
		t.Errorf("stdout %q stderr %q", out, errb)
	}
}

func TestRunLeaseRenewedMeanwhileIsKept(t *testing.T) {
	o, c, out, errb := newOptions(lease("ns", "slow", 2*time.Minute, runLabels("slow")))
	c.PrependReactor("delete", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		// What the API server answers when the resourceVersion precondition fails.
		return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "coral-run-slow",
			errorString("Precondition failed: ResourceVersion in precondition: 7, ResourceVersion in object meta: 8"))
	})
	if err := gcRun(t, o); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 || !strings.Contains(errb.String(), "its Lease was renewed while gc ran") {
		t.Errorf("stdout %q stderr %q", out, errb)
	}
}

func TestRunDeleteErrorsExit1(t *testing.T) {
	o, c, _, _ := newOptions(fixture()...)
	c.PrependReactor("delete", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, a.(k8stesting.DeleteAction).GetName(), errorString("no"))
	})
	err := gcRun(t, o)
	if cmdutil.Code(err) != cmdutil.ExitFailed || !strings.Contains(err.Error(), "RBAC") {
		t.Errorf("err = %v (code %d), want exit 1 with an RBAC hint", err, cmdutil.Code(err))
	}
	// The Lease was still deleted: one failure does not stop the others.
	for _, l := range remaining(t, c) {
		if l == "lease.coordination.k8s.io/ns/coral-run-dead" {
			t.Error("the expired Lease was not deleted")
		}
	}
}

func TestRunListErrorExit1(t *testing.T) {
	o, c, _, _ := newOptions()
	c.PrependReactor("list", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "", errorString("no"))
	})
	err := gcRun(t, o)
	if cmdutil.Code(err) != cmdutil.ExitFailed || !strings.Contains(err.Error(), "listing Leases") {
		t.Errorf("err = %v (code %d)", err, cmdutil.Code(err))
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		set  func(*Options)
		want string
	}{
		{func(o *Options) { o.MinAge = -time.Second }, "--min-age"},
		{func(o *Options) { o.Output = "json" }, "--output"},
		{func(o *Options) { o.DryRun = "yes" }, "--dry-run"},
	} {
		o, c, _, _ := newOptions(fixture()...)
		tt.set(o)
		err := gcRun(t, o)
		if cmdutil.Code(err) != cmdutil.ExitBadInput || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("err = %v, want exit 2 naming %s", err, tt.want)
		}
		if len(c.Actions()) != 0 {
			t.Errorf("bad flags, yet %d requests were sent", len(c.Actions()))
		}
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
