package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/run"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// maxListed caps the nodes listed by name in a status.
const maxListed = 10

// target is what the per-node sync needs from one prefetch object; the two
// kinds differ only in their items, their Job and what "holds" means.
type target struct {
	obj       client.Object
	kind      string // ImagePrefetch, ArtifactPrefetch
	nameLabel string // LabelImagePrefetch, LabelArtifactPrefetch
	recPrefix string // PrefetchNode name prefix
	nodes     coralv1.Nodes
	run       coralv1.RunSettings
	items     []plan.Item
	planOpts  plan.Options
	// build makes the Job for a task holding only the node's missing items.
	build func(t plan.Task, runID string) *batchv1.Job
	// holds says whether a recorded outcome covers a wanted item.
	holds func(have coralv1.NodeItem, want plan.Item) bool
	// onReady runs when a node's record turns Ready (artifacts label the node).
	onReady func(ctx context.Context, rec *coralv1.PrefetchNode) error
}

// outcome is what one sync saw and did.
type outcome struct {
	desired, ready, failed, inFlight, skipped int32
	// waiting nodes need a Job but got none yet (caps, one Job per node).
	waiting int
	// podless of the inFlight Jobs have no pod yet; backlogged: one of
	// them has waited jobBacklogAfter for it.
	podless    int
	backlogged bool
	failing    []coralv1.NodeMessage
	skips      []coralv1.NodeMessage
	// blocked is set when Jobs cannot be created at all (reason, message).
	blockedReason, blockedMessage string
	created                       int
	requeue                       time.Duration
}

func (o *outcome) after(d time.Duration) {
	if d > 0 && (o.requeue == 0 || d < o.requeue) {
		o.requeue = d
	}
}

// sync brings one object's nodes one step closer to holding its items.
func (s *shared) sync(ctx context.Context, tg *target) (*outcome, error) {
	now := time.Now()
	out := &outcome{}
	ns, uid := tg.obj.GetNamespace(), string(tg.obj.GetUID())

	cp, err := s.plan(tg)
	if err != nil {
		return nil, err
	}
	p, missingNames := cp.plan, cp.missing
	records, err := s.listRecords(ns, uid)
	if err != nil {
		return nil, err
	}
	// The cache's own Jobs and pods (view): a reconcile only reads them
	// (and deletes Jobs by name).
	jobList, err := s.view.Jobs(ns, uid)
	if err != nil {
		return nil, err
	}
	pods, err := s.view.Pods(ns, uid)
	if err != nil {
		return nil, err
	}
	s.notePods(tg, pods)
	podOf := make(map[string]*corev1.Pod, len(pods))
	for _, pod := range pods {
		if jn := pod.Labels[batchv1.JobNameLabel]; jn != "" {
			if prev := podOf[jn]; prev == nil || prev.CreationTimestamp.Before(&pod.CreationTimestamp) {
				podOf[jn] = pod
			}
		}
	}
	s.mu.Lock()
	jobOf := make(map[string]*batchv1.Job, len(jobList))
	for _, j := range jobList {
		if _, gone := s.deleted[jobKey(j)]; gone || j.DeletionTimestamp != nil {
			continue
		}
		jobOf[j.Annotations[jobs.AnnotationNode]] = j
	}
	s.mu.Unlock()

	// Finished Jobs first, wherever their node is now: their results count.
	for node, j := range jobOf {
		rec, done, err := s.collect(ctx, tg, j, podOf[j.Name], records[node], now)
		if err != nil {
			return nil, err
		}
		if done {
			delete(jobOf, node)
			if rec != nil {
				records[node] = rec
			}
			s.mu.Lock()
			_, finishing := s.recorded[jobKey(j)]
			s.mu.Unlock()
			if finishing {
				out.after(finishWait + time.Second) // should the Job controller not finish it
			}
		}
	}

	for _, name := range missingNames {
		out.skipped++
		if len(out.skips) < maxListed {
			out.skips = append(out.skips, coralv1.NodeMessage{Node: name, Message: "no such node (yet): it gets the items when it joins"})
		}
	}
	for _, sk := range p.Skipped {
		out.skipped++
		if len(out.skips) < maxListed {
			out.skips = append(out.skips, coralv1.NodeMessage{Node: sk.Node, Message: sk.Reason})
		}
	}

	var cands []attemptTask
	for _, t := range p.Tasks {
		out.desired++
		rec := records[t.Node]
		if j := jobOf[t.Node]; j != nil {
			if socketOf(j) == "" || socketOf(j) == t.RuntimeSocket {
				out.inFlight++
				if podOf[j.Name] == nil {
					out.podless++
					out.backlogged = out.backlogged || now.Sub(j.CreationTimestamp.Time) > jobBacklogAfter
				}
				continue
			}
			// The node's runtime socket changed (e.g. its cri-socket
			// annotation arrived after it turned Ready): a Job mounting the
			// old path can never start. Replace it.
			if err := s.deleteJob(ctx, j); err != nil {
				return nil, err
			}
			delete(jobOf, t.Node)
		}
		missing := missingItems(tg, rec, t.Items)
		if len(missing) == 0 {
			out.ready++
			continue
		}
		var attempts int32
		if rec != nil && rec.State == coralv1.NodeStateFailed {
			out.failed++
			if len(out.failing) < maxListed {
				out.failing = append(out.failing, coralv1.NodeMessage{Node: t.Node, Message: rec.Message})
			}
			attempts = rec.Attempts
			if rec.LastAttemptTime != nil {
				if wait := rec.LastAttemptTime.Add(s.backoff(attempts)).Sub(now); wait > 0 {
					out.after(wait)
					continue
				}
			}
		}
		t.Items = missing
		cands = append(cands, attemptTask{task: t, attempts: attempts})
	}

	// Records of nodes that left the selection (deleted, relabelled) go,
	// except the record of a node that is still there and holds images this
	// object pinned: it is how the finalizer finds the pins to release.
	for node, rec := range records {
		if cp.selected[node] || jobOf[node] != nil {
			continue
		}
		if holdsPins(rec) {
			err := s.client.Get(ctx, client.ObjectKey{Name: node}, &corev1.Node{})
			if err == nil {
				continue
			}
			if !apierrors.IsNotFound(err) {
				return nil, err
			}
		}
		if err := s.client.Delete(ctx, rec); err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		s.mu.Lock()
		delete(s.records, recordKey(ns, rec.Name))
		s.mu.Unlock()
	}

	if len(cands) > 0 {
		if err := s.start(ctx, tg, cands, out); err != nil {
			return nil, err
		}
	}
	if out.inFlight > 0 || out.waiting > 0 {
		// Job and pod events wake the reconcile; this is the safety net,
		// and the retry for nodes waiting on a cap freed by other objects.
		out.after(15 * time.Second)
	}
	return out, nil
}

// holdsPins says whether a record shows images pinned on its node.
func holdsPins(rec *coralv1.PrefetchNode) bool {
	for _, it := range rec.Results {
		if it.Pinned {
			return true
		}
	}
	return false
}

// preflightName matches the random suffix of a preflight pod's name
// (generateName) in an admission error.
var preflightName = regexp.MustCompile(`-preflight-[a-z0-9]+\b`)

// stableMessage drops what differs between two identical rejections: a
// condition message that changed at every reconcile would rewrite the
// status each time, and each write would wake the next reconcile — a hot
// loop against the API server.
func stableMessage(msg string) string {
	return preflightName.ReplaceAllString(msg, "-preflight")
}

// attemptTask is a node's missing work and its failed attempts so far.
type attemptTask struct {
	task     plan.Task
	attempts int32
}

// socketOf is the host path of the runtime socket a Job mounts ("" for
// artifact Jobs, which mount none).
func socketOf(j *batchv1.Job) string {
	if v := socketVolume(j); v != nil {
		return v.HostPath.Path
	}
	return ""
}

// socketVolume is the hostPath volume of the runtime socket a Job's pod
// mounts (jobs.ForTask), or nil.
func socketVolume(j *batchv1.Job) *corev1.Volume {
	for i, v := range j.Spec.Template.Spec.Volumes {
		if v.Name == "cri-socket" && v.HostPath != nil {
			return &j.Spec.Template.Spec.Volumes[i]
		}
	}
	return nil
}

// cachedPlan is an object's last plan and what it was made from: the
// count of node events that can change a plan (nodeEpoch) and the object's
// selection, items and plan options (inputs).
type cachedPlan struct {
	epoch   uint64
	inputs  string
	plan    *plan.Plan
	missing []string
	// selected are the plan's nodes, tasks and skips: a record of any
	// other node is for one that left the selection.
	selected map[string]bool
	used     time.Time
}

// planTTL drops a plan no reconcile used for this long (its object went
// without a finalize, or has nothing left to do).
const planTTL = 10 * time.Minute

// plan is the object's plan: the one it had while no node event that can
// change a plan came and the object's inputs are the same, else a new one.
// Planning reads every node; a reconcile comes for every few Jobs that
// finish, and planning was 48 % of what the controller allocated at 5000
// nodes (bench-scale --modes controller, an allocs profile). The plan is
// shared between reconciles: read it, never change it.
func (s *shared) plan(tg *target) (*cachedPlan, error) {
	// Read before the nodes are: an event counted after this replans on the
	// next reconcile, which that event queues (nodeChanged).
	epoch := s.nodeEpoch.Load()
	inputs, err := planInputs(tg)
	if err != nil {
		return nil, err
	}
	uid := tg.obj.GetUID()
	now := time.Now()
	s.mu.Lock()
	if c := s.plans[uid]; c != nil && c.epoch == epoch && c.inputs == inputs {
		c.used = now
		s.mu.Unlock()
		return c, nil
	}
	s.mu.Unlock()
	p, missing, err := s.buildPlan(tg)
	if err != nil {
		return nil, err
	}
	// Jobs start in plan order: each object in its own, not by name.
	plan.Spread(p.Tasks, string(uid), func(t plan.Task) string { return t.Node })
	c := &cachedPlan{epoch: epoch, inputs: inputs, plan: p, missing: missing, used: now,
		selected: make(map[string]bool, len(p.Tasks)+len(p.Skipped))}
	for _, t := range p.Tasks {
		c.selected[t.Node] = true
	}
	for _, sk := range p.Skipped {
		c.selected[sk.Node] = true
	}
	s.mu.Lock()
	s.plans[uid] = c
	s.mu.Unlock()
	return c, nil
}

// planInputs is what an object's plan is made from besides the nodes, as
// a string to compare.
func planInputs(tg *target) (string, error) {
	o := tg.planOpts
	sel := ""
	if o.Selector != nil {
		sel = o.Selector.String()
	}
	o.Selector = nil
	b, err := json.Marshal(struct {
		Nodes   coralv1.Nodes
		Items   []plan.Item
		Options string
	}{tg.nodes, tg.items, fmt.Sprintf("%#v %q", o, sel)})
	return string(b), err
}

// buildPlan selects the object's nodes with pkg/plan. Named nodes that do not
// exist are returned apart: a node may join later, it is not an error.
func (s *shared) buildPlan(tg *target) (*plan.Plan, []string, error) {
	// The cache's nodes (every reconcile plans over every node): pkg/plan
	// only reads them.
	nodes, err := s.view.Nodes()
	if err != nil {
		return nil, nil, err
	}
	sel := labels.Everything()
	if tg.nodes.Selector != nil {
		var err error
		if sel, err = metav1.LabelSelectorAsSelector(tg.nodes.Selector); err != nil {
			return nil, nil, fmt.Errorf("spec.nodes.selector: %w", err)
		}
	}
	var names, missing []string
	exists := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		exists[n.Name] = true
	}
	for _, n := range tg.nodes.Names {
		if exists[n] {
			names = append(names, n)
		} else {
			missing = append(missing, n)
		}
	}
	if len(tg.nodes.Names) > 0 && len(names) == 0 {
		return &plan.Plan{}, missing, nil
	}
	o := tg.planOpts
	o.Selector, o.NodeNames, o.IncludeUnschedulable = sel, names, tg.nodes.IncludeUnschedulable
	p, err := plan.Build(nodes, tg.items, o)
	if errors.Is(err, plan.ErrNoNodeMatched) {
		return &plan.Plan{}, missing, nil
	}
	return p, missing, err
}

// missingItems are the wanted items a node's record does not show it holds.
func missingItems(tg *target, rec *coralv1.PrefetchNode, want []plan.Item) []plan.Item {
	have := map[string]coralv1.NodeItem{}
	if rec != nil {
		for _, it := range rec.Results {
			have[it.Ref] = it
		}
	}
	var out []plan.Item
	for _, w := range want {
		h, ok := have[w.Ref]
		if !ok || !tg.holds(h, w) {
			out = append(out, w)
		}
	}
	return out
}

func (s *shared) backoff(attempts int32) time.Duration {
	d := s.opts.RetryBase
	for i := int32(1); i < attempts && d < s.opts.RetryMax; i++ {
		d *= 2
	}
	if d > s.opts.RetryMax {
		d = s.opts.RetryMax
	}
	return d
}

// start creates Jobs for nodes with missing items, within the caps: the
// object's maxNodesInFlight, the controller's MaxJobsInFlight across every
// object — each a run.Pacer, the CLI's rule: worker pods within the cap,
// more Jobs only while the Job controller is behind — and one Job per node
// at a time. At most createsPerSync at a time, so the results of finished
// Jobs are not kept waiting behind a thousand creates.
func (s *shared) start(ctx context.Context, tg *target, cands []attemptTask, out *outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.expire(now)
	f, err := s.jobsInFlight(now)
	if err != nil {
		return err
	}
	mine := s.pacer(tg)
	mine.Update(now, out.backlogged)
	s.global.Update(now, f.backlogged)
	if w := run.DebugFlow(); w != nil && now.Sub(s.debugAt) >= 2*time.Second {
		s.debugAt = now
		fmt.Fprintf(w, "%s %s live=%d podless=%d backlogged=%v %s | all live=%d podless=%d backlogged=%v %s | candidates=%d\n",
			now.Format("15:04:05"), tg.obj.GetName(), out.inFlight, out.podless, out.backlogged, mine.Pacer, f.total, f.podless, f.backlogged, s.global, len(cands))
	}
	admitKey := fmt.Sprintf("%s/%d", tg.obj.GetUID(), tg.obj.GetGeneration())
	created := 0
	for _, c := range cands {
		if len(f.byNode[c.task.Node]) > 0 || !s.global.Allows(f.total, f.podless) || !mine.Allows(int(out.inFlight), out.podless) {
			out.waiting++
			continue
		}
		if created == createsPerSync {
			out.waiting++
			out.after(time.Second)
			continue
		}
		job := s.jobFor(tg, c.task, c.attempts)
		if _, ok := s.admitted[admitKey]; !ok {
			if err := run.Preflight(ctx, s.clientset, job, run.ModeJobs); err != nil {
				out.blockedReason, out.blockedMessage = "WorkerRejected", stableMessage(err.Error())
				out.waiting += len(cands)
				out.after(time.Minute)
				return nil
			}
			s.admitted[admitKey] = time.Now()
		}
		key := jobKey(job)
		err := s.client.Create(ctx, job)
		switch {
		case apierrors.IsAlreadyExists(err):
		case err != nil:
			delete(s.admitted, admitKey) // ask admission again before the next try
			out.blockedReason, out.blockedMessage = "JobCreateFailed", run.ExplainAPIError(err, job.Namespace)
			out.after(time.Minute)
			return nil
		default:
			out.created++
		}
		created++
		s.created[key] = expectedJob{node: c.task.Node, namespace: job.Namespace, at: time.Now()}
		f.byNode[c.task.Node] = append(f.byNode[c.task.Node], key)
		f.total++
		f.podless++
		out.inFlight++
		out.podless++
	}
	return nil
}

// createsPerSync bounds the Jobs one reconcile creates (a second at the
// client's QPS); the rest wait a second, or the next reconcile.
const createsPerSync = 50

// pacer returns an object's run.Pacer, its limits set from the object's
// spec; s.mu held.
func (s *shared) pacer(tg *target) *objectPace {
	p := s.pacers[tg.obj.GetUID()]
	if p == nil {
		p = &objectPace{Pacer: run.NewPacer(1, 0), seen: map[types.UID]struct{}{}}
		s.pacers[tg.obj.GetUID()] = p
	}
	limit := int(tg.run.MaxNodesInFlight)
	if limit <= 0 {
		limit = 20
	}
	p.SetLimits(limit, s.opts.JobsAhead)
	p.touched = time.Now()
	return p
}

// jobFor builds a node's Job with the CLI's builder, then marks it as the
// controller's: labels, owner, and its items for reading the result later.
// Its name is a function of the object, node, items, attempt and socket, so
// a create repeated after a crash finds the Job it made before.
func (s *shared) jobFor(tg *target, t plan.Task, attempts int32) *batchv1.Job {
	items, _ := json.Marshal(t.Items)
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%s\x00%d\x00%s", tg.obj.GetUID(), t.Node, items, attempts, t.RuntimeSocket)))
	runID := "p" + hex.EncodeToString(h[:])[:8]
	job := tg.build(t, runID)
	for _, m := range []map[string]string{job.Labels, job.Spec.Template.Labels} {
		m[jobs.LabelManagedBy] = ManagedBy
		m[LabelPrefetchUID] = string(tg.obj.GetUID())
		m[tg.nameLabel] = tg.obj.GetName()
	}
	job.Annotations[AnnotationItems] = string(items)
	_ = controllerutil.SetControllerReference(tg.obj, job, s.scheme)
	return job
}

// collect reads a Job's outcome if it has one, records it and deletes the
// Job. done is false while the node is still working.
func (s *shared) collect(ctx context.Context, tg *target, j *batchv1.Job, pod *corev1.Pod, rec *coralv1.PrefetchNode, now time.Time) (*coralv1.PrefetchNode, bool, error) {
	node := j.Annotations[jobs.AnnotationNode]
	if rec != nil && rec.LastJob == j.Name {
		// Recorded (before a restart, or waiting for the Job controller to
		// finish the Job): only the delete is missing.
		return rec, true, s.finish(ctx, j, rec.LastAttemptTime, now)
	}
	if j.Annotations[AnnotationItems] == "" {
		return nil, true, s.deleteJob(ctx, j) // not a Job this controller can read
	}
	// Most Jobs at most reconciles are still working: say so before
	// decoding their items (that decoding was 425 of the 1300 MB the
	// controller allocated at 1000 nodes; bench-scale, an allocs profile).
	timeout := durationOr(tg.run.NodeTimeout, 15*time.Minute)
	timedOut := func() bool { return now.Sub(s.nodeClock(tg, j, pod)) > timeout+30*time.Second }
	if (pod == nil || !run.WorkerSettled(pod)) && jobFailed(j) == "" && !timedOut() {
		return nil, false, nil
	}
	var items []plan.Item
	if err := json.Unmarshal([]byte(j.Annotations[AnnotationItems]), &items); err != nil || len(items) == 0 {
		return nil, true, s.deleteJob(ctx, j) // not a Job this controller can read
	}
	nj := run.NodeJob{Node: node, Job: j}
	for _, it := range items {
		nj.Items = append(nj.Items, it.Ref)
		nj.Expected = append(nj.Expected, it.ExpectedDigest)
	}
	var res run.NodeResult
	ok := false
	if pod != nil {
		if res, ok = run.ReadWorkerPod(s.clientset, pod, nj); ok {
			s.noteReport(tg, pod, now)
		}
	}
	if !ok {
		switch {
		case jobFailed(j) != "":
			res, ok = run.FailedNode(nj, "the worker Job failed: "+jobFailed(j)), true
		case timedOut():
			res, ok = run.FailedNode(nj, fmt.Sprintf("no report within nodeTimeout (%s)%s", timeout, s.noPodReason(ctx, tg, j, pod, now))), true
		}
	}
	if !ok {
		return nil, false, nil
	}
	rec, err := s.record(ctx, tg, node, j.Name, items, res, rec, now)
	if err != nil {
		return nil, false, err
	}
	if pod != nil && ok && podTerminated(pod) {
		return rec, true, s.finish(ctx, j, rec.LastAttemptTime, now)
	}
	return rec, true, s.deleteJob(ctx, j)
}

// finish deletes a Job whose result is recorded once the Job controller
// has finished it (Complete or Failed), or finishWait after the result was
// recorded (at). Deleted earlier, the Job controller finds the Job gone
// while its pod still carries the Job's tracking finalizer and takes the
// orphan's slower path: bench-scale, 1000 nodes, controller mode, deleting
// each Job as its report was read made the Job controller create pods at
// ~4/s instead of the ~7.5/s it manages when Jobs are deleted after their
// run. Until then the Job no longer counts as in flight (s.recorded).
func (s *shared) finish(ctx context.Context, j *batchv1.Job, at *metav1.Time, now time.Time) error {
	if jobFinished(j) || at == nil || now.Sub(at.Time) > finishWait {
		return s.deleteJob(ctx, j)
	}
	s.mu.Lock()
	if _, ok := s.recorded[jobKey(j)]; !ok {
		s.recorded[jobKey(j)] = now
	}
	s.mu.Unlock()
	return nil
}

// finishWait bounds how long a recorded Job waits for the Job controller.
const finishWait = 10 * time.Minute

// podTerminated says whether a worker pod's container has exited (the
// Job controller will finish its Job on its own).
func podTerminated(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return true
	}
	for _, c := range pod.Status.ContainerStatuses {
		if c.State.Terminated != nil {
			return true
		}
	}
	return false
}

// jobFinished says whether the Job controller has finished a Job.
func jobFinished(j *batchv1.Job) bool {
	return jobCondition(j, batchv1.JobComplete) != nil || jobCondition(j, batchv1.JobFailed) != nil
}

// jobFailed is why a failed Job failed ("" when it did not).
func jobFailed(j *batchv1.Job) string {
	if c := jobCondition(j, batchv1.JobFailed); c != nil {
		return strings.TrimSpace(c.Reason + ": " + c.Message)
	}
	return ""
}

// jobCondition is a Job's condition of type t when it is true, or nil.
func jobCondition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return &j.Status.Conditions[i]
		}
	}
	return nil
}

// nodeClock is when a node's nodeTimeout starts: run.TimeoutStart, the
// CLI's rule, with the object's newest worker pod as the run's. It counted
// from the Job's creation before: bench-scale, 1000 Jobs at once with
// nodeTimeout 90s, failed 348 healthy nodes while their Jobs queued.
func (s *shared) nodeClock(tg *target, j *batchv1.Job, pod *corev1.Pod) time.Time {
	var podAt time.Time
	if pod != nil {
		podAt = pod.CreationTimestamp.Time
	}
	s.mu.Lock()
	last := s.pacer(tg).LastPod()
	s.mu.Unlock()
	return run.TimeoutStart(j.CreationTimestamp.Time, podAt, last)
}

// notePods tells the object's pacer (and the global one) of its worker
// pods not seen before: when they appeared, for the pace of Little's law
// and the newest for nodeClock (its pods are deleted with their Jobs, so
// the cache alone forgets). pods is every pod of the object.
func (s *shared) notePods(tg *target, pods []*corev1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pacer(tg)
	seen := make(map[types.UID]struct{}, len(pods))
	for _, pod := range pods {
		if _, ok := p.seen[pod.UID]; !ok {
			p.PodAppeared(pod.CreationTimestamp.Time)
			s.global.PodAppeared(pod.CreationTimestamp.Time)
		}
		seen[pod.UID] = struct{}{}
	}
	p.seen = seen
}

// noteReport tells the pacers how long a worker took from its pod's
// creation to the report read now.
func (s *shared) noteReport(tg *target, pod *corev1.Pod, now time.Time) {
	took := now.Sub(pod.CreationTimestamp.Time)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pacer(tg).Reported(took)
	s.global.Reported(took)
}

// noPodReason explains a Job that never got a pod (quota, admission) by
// its newest event: for at most noPodExplained Jobs of an object a minute,
// so a Job controller that made no pods for a thousand Jobs costs a few
// reads, not a thousand.
func (s *shared) noPodReason(ctx context.Context, tg *target, j *batchv1.Job, pod *corev1.Pod, now time.Time) string {
	if pod != nil {
		return ""
	}
	s.mu.Lock()
	p := s.pacer(tg)
	if now.Sub(p.explainedAt) > time.Minute {
		p.explainedAt, p.explained = now, 0
	}
	ask := p.explained < noPodExplained
	p.explained++
	s.mu.Unlock()
	hint := fmt.Sprintf(": the Job never got a pod (see its events: kubectl get events -n %s --field-selector involvedObject.kind=Job)", j.Namespace)
	if !ask {
		return hint
	}
	evs, err := s.clientset.CoreV1().Events(j.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Job,involvedObject.name=" + j.Name})
	if err != nil || len(evs.Items) == 0 {
		return ": the Job never got a pod"
	}
	last := evs.Items[len(evs.Items)-1]
	return ": the Job never got a pod (" + last.Reason + ": " + last.Message + ")"
}

// noPodExplained is how many pod-less Jobs of an object a minute get their
// events read (run's lateExplained is the CLI's).
const noPodExplained = 3

func (s *shared) deleteJob(ctx context.Context, j *batchv1.Job) error {
	err := s.client.Delete(ctx, j, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	s.mu.Lock()
	s.deleted[jobKey(j)] = time.Now()
	delete(s.recorded, jobKey(j))
	s.mu.Unlock()
	return nil
}

// record merges a node's result into its PrefetchNode and writes it.
func (s *shared) record(ctx context.Context, tg *target, node, jobName string, items []plan.Item, res run.NodeResult, rec *coralv1.PrefetchNode, now time.Time) (*coralv1.PrefetchNode, error) {
	create := rec == nil
	if create {
		rec = &coralv1.PrefetchNode{
			ObjectMeta: metav1.ObjectMeta{
				Name:      recordName(tg.recPrefix, tg.obj.GetName(), node),
				Namespace: tg.obj.GetNamespace(),
				Labels:    map[string]string{LabelPrefetchUID: string(tg.obj.GetUID()), tg.nameLabel: tg.obj.GetName()},
			},
			Prefetch: coralv1.PrefetchRef{Kind: tg.kind, Name: tg.obj.GetName()},
			Node:     node,
		}
		_ = controllerutil.SetControllerReference(tg.obj, rec, s.scheme)
	} else {
		rec = rec.DeepCopy()
	}
	byRef := map[string]int{}
	for i, it := range rec.Results {
		byRef[it.Ref] = i
	}
	var failures []string
	for i, it := range res.Items {
		if i >= len(items) {
			break
		}
		ni := coralv1.NodeItem{Ref: items[i].Ref, ExpectedDigest: items[i].ExpectedDigest, Digest: it.Digest, Status: string(it.Status), Pinned: it.Pinned, Message: it.Message}
		if it.Status == report.StatusFailed {
			failures = append(failures, items[i].Ref+": "+it.Message)
		}
		if k, ok := byRef[ni.Ref]; ok {
			rec.Results[k] = ni
		} else {
			byRef[ni.Ref] = len(rec.Results)
			rec.Results = append(rec.Results, ni)
		}
	}
	// Forget items the object no longer wants.
	wanted := map[string]bool{}
	for _, it := range tg.items {
		wanted[it.Ref] = true
	}
	kept := rec.Results[:0]
	for _, it := range rec.Results {
		if wanted[it.Ref] {
			kept = append(kept, it)
		}
	}
	rec.Results = kept
	rec.LastJob, rec.LastAttemptTime = jobName, &metav1.Time{Time: now}
	if len(failures) > 0 {
		rec.State, rec.Message = coralv1.NodeStateFailed, truncate(strings.Join(failures, "; "), 1024)
		rec.Attempts++
	} else {
		rec.State, rec.Message, rec.Attempts = coralv1.NodeStateReady, "", 0
		for _, it := range rec.Results {
			if strings.Contains(it.Message, "not pinned") {
				rec.Message = truncate(it.Ref+": "+it.Message, 1024)
			}
		}
	}
	var err error
	if create {
		err = s.client.Create(ctx, rec)
		if apierrors.IsAlreadyExists(err) {
			// A record the cache has not shown yet: take its version, write ours.
			var cur coralv1.PrefetchNode
			if err = s.apiReader.Get(ctx, client.ObjectKeyFromObject(rec), &cur); err == nil {
				rec.ResourceVersion = cur.ResourceVersion
				err = s.client.Update(ctx, rec)
			}
		}
	} else {
		err = s.client.Update(ctx, rec)
	}
	if err != nil {
		return nil, fmt.Errorf("recording node %s: %w", node, err)
	}
	s.mu.Lock()
	s.records[recordKey(rec.Namespace, rec.Name)] = rec.DeepCopy()
	s.mu.Unlock()
	if rec.State == coralv1.NodeStateFailed {
		s.events.Eventf(tg.obj, nil, corev1.EventTypeWarning, "NodeFailed", "Prefetch", "node %s: %s", node, truncate(rec.Message, 512))
	} else if tg.onReady != nil {
		if err := tg.onReady(ctx, rec); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// listRecords returns the object's PrefetchNodes by node, each the newer of
// the cache's and the one this controller last wrote. Both are shared, not
// copies (the cache's, and s.records' which nothing changes once stored):
// read them, and copy one before changing it (record does).
func (s *shared) listRecords(ns, uid string) (map[string]*coralv1.PrefetchNode, error) {
	list, err := s.view.Records(ns, uid)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*coralv1.PrefetchNode, len(list))
	for _, r := range list {
		key := recordKey(ns, r.Name)
		if mine := s.records[key]; mine != nil {
			if mine.Generation > r.Generation {
				r = mine
			} else {
				delete(s.records, key)
			}
		}
		out[r.Node] = r
	}
	for _, r := range s.records {
		if r.Namespace == ns && r.Labels[LabelPrefetchUID] == uid && out[r.Node] == nil {
			out[r.Node] = r
		}
	}
	return out, nil
}

func recordKey(ns, name string) types.NamespacedName {
	return types.NamespacedName{Namespace: ns, Name: name}
}

// recordName is "<prefix>.<object>.<node>", hashed when that would be too long.
func recordName(prefix, obj, node string) string {
	n := prefix + "." + obj + "." + node
	if len(n) <= 253 {
		return n
	}
	h := sha256.Sum256([]byte(node))
	return prefix + "." + obj + "." + node[:253-len(prefix)-len(obj)-2-13] + "-" + hex.EncodeToString(h[:])[:12]
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// summary sorts a status's node lists so equal states compare equal.
func (o *outcome) sortLists() {
	sort.Slice(o.failing, func(i, j int) bool { return o.failing[i].Node < o.failing[j].Node })
	sort.Slice(o.skips, func(i, j int) bool { return o.skips[i].Node < o.skips[j].Node })
}
