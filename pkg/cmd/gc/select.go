package gc

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/run"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The run's owner object, as the engine creates it: a Lease per one-shot run,
// named LeasePrefix+runID in the run's namespace, labelled like the run's
// Jobs, renewed while the plugin runs. Every Job (and directly created pod)
// of the run has an ownerReference to it, so deleting the Lease lets the
// garbage collector remove the run.
var (
	// LeasePrefix starts the name of every run's Lease.
	LeasePrefix = run.LeaseName("")
	// DefaultLeaseDuration is assumed for a Lease that carries no duration.
	DefaultLeaseDuration = run.LeaseDuration
)

// ManagedBy is the managed-by label of what the plugin creates. The
// controller labels its own objects "coral-controller": gc never selects them.
const ManagedBy = "kubectl-coral"

// Selector selects every object a one-shot run of the plugin creates.
var Selector = jobs.LabelManagedBy + "=" + ManagedBy

// Resource names as kubectl prints them (-o name).
const (
	ResourceLease = "lease.coordination.k8s.io"
	ResourceJob   = "job.batch"
	ResourcePod   = "pod"
)

// Object is something gc deletes.
type Object struct {
	Resource  string
	Namespace string
	Name      string
	UID       types.UID
	// ResourceVersion, for a Lease, makes the delete fail if the plugin
	// renewed the Lease after gc read it.
	ResourceVersion string
	RunID           string
	// Why says why the object is garbage.
	Why string
}

// Kept is a run gc leaves alone, and why.
type Kept struct {
	Namespace string
	RunID     string
	Why       string
}

// Inventory is what gc found: every object of the plugin's runs in scope.
type Inventory struct {
	Leases []coordinationv1.Lease
	Jobs   []batchv1.Job
	Pods   []corev1.Pod
}

// Selection is what gc will delete and what it keeps.
type Selection struct {
	Delete []Object
	Kept   []Kept
}

type runKey struct{ ns, id string }

// Select decides, from an inventory read at now, what a crashed run left
// behind:
//   - a run's Lease whose renewTime+leaseDurationSeconds is past: the plugin
//     that renewed it is gone. The Lease is deleted and its Jobs and pods
//     follow through the garbage collector (those of its objects that do not
//     name the Lease as owner are deleted directly).
//   - Jobs and pods of a run that has no Lease (plugins from before the
//     Lease): nothing says whether their plugin still runs, so they are taken
//     only when older than minAge and (Jobs) no longer running within their
//     activeDeadlineSeconds.
//
// A run with a fresh Lease is never touched, and neither is anything not
// labelled managed-by=kubectl-coral (the controller's objects).
func Select(inv Inventory, now time.Time, minAge time.Duration) Selection {
	var sel Selection
	leases := map[runKey]*coordinationv1.Lease{}
	expired := map[runKey]bool{}
	for i := range inv.Leases {
		l := &inv.Leases[i]
		if !ours(l.Labels) || !strings.HasPrefix(l.Name, LeasePrefix) {
			continue
		}
		id := runIDOf(l.Labels, strings.TrimPrefix(l.Name, LeasePrefix))
		k := runKey{l.Namespace, id}
		leases[k] = l
		if l.DeletionTimestamp != nil {
			sel.Kept = append(sel.Kept, Kept{l.Namespace, id, "its Lease is already being deleted"})
			continue
		}
		last, dur := leaseTimes(l)
		until := last.Add(dur)
		if now.Before(until) {
			sel.Kept = append(sel.Kept, Kept{l.Namespace, id, fmt.Sprintf("live: its Lease was renewed %s ago by %s and holds until %s from now",
				roundAge(now.Sub(last)), holder(l), roundAge(until.Sub(now)))})
			continue
		}
		expired[k] = true
		jobsN, podsN := countRun(inv, k)
		sel.Delete = append(sel.Delete, Object{
			Resource: ResourceLease, Namespace: l.Namespace, Name: l.Name, UID: l.UID, ResourceVersion: l.ResourceVersion, RunID: id,
			Why: fmt.Sprintf("its Lease expired %s ago (last renewed by %s); %s follow through the garbage collector",
				roundAge(now.Sub(until)), holder(l), plural(jobsN, "Job")+" and "+plural(podsN, "pod")),
		})
	}

	// Jobs: the Lease decides for its run; without one, age and activity do.
	jobsByName := map[runKey]bool{} // ns + Job name
	young := map[runKey]time.Duration{}
	for i := range inv.Jobs {
		j := &inv.Jobs[i]
		if !ours(j.Labels) {
			continue
		}
		jobsByName[runKey{j.Namespace, j.Name}] = true
		id := runIDOf(j.Labels, "")
		k := runKey{j.Namespace, id}
		if j.DeletionTimestamp != nil {
			continue
		}
		if l, ok := leases[k]; ok {
			if expired[k] && !ownedBy(j.OwnerReferences, l.UID) {
				sel.Delete = append(sel.Delete, Object{Resource: ResourceJob, Namespace: j.Namespace, Name: j.Name, UID: j.UID, RunID: id,
					Why: "its run's Lease expired and the Job does not name the Lease as owner"})
			}
			continue
		}
		age := now.Sub(j.CreationTimestamp.Time)
		if age < minAge {
			if d, seen := young[k]; !seen || age < d {
				young[k] = age
			}
			continue
		}
		if active, until := jobActive(j, now); active {
			sel.Kept = append(sel.Kept, Kept{j.Namespace, id, fmt.Sprintf("Job %s has no Lease and may still run: its activeDeadlineSeconds ends in %s", j.Name, roundAge(until))})
			continue
		}
		sel.Delete = append(sel.Delete, Object{Resource: ResourceJob, Namespace: j.Namespace, Name: j.Name, UID: j.UID, RunID: id,
			Why: fmt.Sprintf("its run has no Lease (an older plugin) and the Job is %s old (--min-age=%s)", roundAge(age), minAge)})
	}

	// Pods: those of an existing Job follow their Job. The others (orphans,
	// or created directly) follow their run's Lease, or age without one.
	for i := range inv.Pods {
		p := &inv.Pods[i]
		if !ours(p.Labels) || p.DeletionTimestamp != nil {
			continue
		}
		if owner := controllerJob(p.OwnerReferences); owner != "" && jobsByName[runKey{p.Namespace, owner}] {
			continue
		}
		id := runIDOf(p.Labels, "")
		k := runKey{p.Namespace, id}
		if l, ok := leases[k]; ok {
			if expired[k] && !ownedBy(p.OwnerReferences, l.UID) {
				sel.Delete = append(sel.Delete, Object{Resource: ResourcePod, Namespace: p.Namespace, Name: p.Name, UID: p.UID, RunID: id,
					Why: "its run's Lease expired and the pod has no owner that would take it"})
			}
			continue
		}
		age := now.Sub(p.CreationTimestamp.Time)
		if age < minAge {
			if d, seen := young[k]; !seen || age < d {
				young[k] = age
			}
			continue
		}
		sel.Delete = append(sel.Delete, Object{Resource: ResourcePod, Namespace: p.Namespace, Name: p.Name, UID: p.UID, RunID: id,
			Why: fmt.Sprintf("its run has no Lease and the pod has no Job; it is %s old (--min-age=%s)", roundAge(age), minAge)})
	}
	for k, age := range young {
		sel.Kept = append(sel.Kept, Kept{k.ns, k.id, fmt.Sprintf("no Lease (an older plugin, or one still starting) and its newest object is %s old, younger than --min-age=%s", roundAge(age), minAge)})
	}

	order := map[string]int{ResourceLease: 0, ResourceJob: 1, ResourcePod: 2}
	sort.SliceStable(sel.Delete, func(a, b int) bool {
		x, y := sel.Delete[a], sel.Delete[b]
		if order[x.Resource] != order[y.Resource] {
			return order[x.Resource] < order[y.Resource]
		}
		if x.Namespace != y.Namespace {
			return x.Namespace < y.Namespace
		}
		return x.Name < y.Name
	})
	sort.SliceStable(sel.Kept, func(a, b int) bool {
		x, y := sel.Kept[a], sel.Kept[b]
		if x.Namespace != y.Namespace {
			return x.Namespace < y.Namespace
		}
		if x.RunID != y.RunID {
			return x.RunID < y.RunID
		}
		return x.Why < y.Why
	})
	return sel
}

// ours: labelled as the plugin's (never the controller's).
func ours(labels map[string]string) bool { return labels[jobs.LabelManagedBy] == ManagedBy }

func runIDOf(labels map[string]string, fallback string) string {
	if id := labels[jobs.LabelRunID]; id != "" {
		return id
	}
	return fallback
}

// leaseTimes returns when the Lease was last renewed (acquired, created) and
// for how long that holds.
func leaseTimes(l *coordinationv1.Lease) (time.Time, time.Duration) {
	last := l.CreationTimestamp.Time
	switch {
	case l.Spec.RenewTime != nil:
		last = l.Spec.RenewTime.Time
	case l.Spec.AcquireTime != nil:
		last = l.Spec.AcquireTime.Time
	}
	dur := DefaultLeaseDuration
	if l.Spec.LeaseDurationSeconds != nil && *l.Spec.LeaseDurationSeconds > 0 {
		dur = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return last, dur
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
		return *l.Spec.HolderIdentity
	}
	return "an unnamed holder"
}

func ownedBy(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.UID == uid {
			return true
		}
	}
	return false
}

func controllerJob(refs []metav1.OwnerReference) string {
	for _, r := range refs {
		if r.Kind == "Job" && r.Controller != nil && *r.Controller {
			return r.Name
		}
	}
	return ""
}

// jobActive: the Job has not finished and its activeDeadlineSeconds (from
// its start) has not passed; until is what is left of it.
func jobActive(j *batchv1.Job, now time.Time) (bool, time.Duration) {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return false, 0
		}
	}
	if j.Spec.ActiveDeadlineSeconds == nil {
		return false, 0
	}
	start := j.CreationTimestamp.Time
	if j.Status.StartTime != nil {
		start = j.Status.StartTime.Time
	}
	end := start.Add(time.Duration(*j.Spec.ActiveDeadlineSeconds) * time.Second)
	if now.Before(end) {
		return true, end.Sub(now)
	}
	return false, 0
}

func countRun(inv Inventory, k runKey) (int, int) {
	var j, p int
	for i := range inv.Jobs {
		if inv.Jobs[i].Namespace == k.ns && ours(inv.Jobs[i].Labels) && inv.Jobs[i].Labels[jobs.LabelRunID] == k.id {
			j++
		}
	}
	for i := range inv.Pods {
		if inv.Pods[i].Namespace == k.ns && ours(inv.Pods[i].Labels) && inv.Pods[i].Labels[jobs.LabelRunID] == k.id {
			p++
		}
	}
	return j, p
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// roundAge shows a duration to the second (to the minute past an hour).
func roundAge(d time.Duration) time.Duration {
	if d < 0 {
		d = 0
	}
	if d >= time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}
