package controller

import (
	"strings"
	"testing"
	"time"

	"context"
	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/run"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func TestMissingItemsImages(t *testing.T) {
	r := &ImagePrefetchReconciler{sh: &shared{opts: NewOptions()}}
	want := []plan.Item{{Ref: "a:1", ExpectedDigest: "sha256:aa"}, {Ref: "b:1", ExpectedDigest: "sha256:bb"}, {Ref: "c:1"}}
	rec := &coralv1.PrefetchNode{Results: []coralv1.NodeItem{
		{Ref: "a:1", Digest: "sha256:aa", Status: "Pulled"},
		{Ref: "b:1", Digest: "sha256:old", Status: "Present"}, // the tag moved since
		{Ref: "c:1", Digest: "sha256:cc", Status: "Failed"},
	}}
	for _, tc := range []struct {
		name string
		pin  bool
		rec  *coralv1.PrefetchNode
		want []string
	}{
		{"no record: everything", false, nil, []string{"a:1", "b:1", "c:1"}},
		{"only what is missing or moved", false, rec, []string{"b:1", "c:1"}},
		{"pin asks again for unpinned items", true, rec, []string{"a:1", "b:1", "c:1"}},
		{"a runtime that cannot pin is not asked again", true, &coralv1.PrefetchNode{Results: []coralv1.NodeItem{
			{Ref: "a:1", Digest: "sha256:aa", Status: "Pulled", Message: "not pinned: the runtime cannot pin"},
			{Ref: "b:1", Digest: "sha256:bb", Status: "Pulled", Pinned: true},
			{Ref: "c:1", Digest: "sha256:cc", Status: "Present", Pinned: true},
		}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := &coralv1.ImagePrefetch{Spec: coralv1.ImagePrefetchSpec{Images: []string{"a:1", "b:1", "c:1"}, Pin: tc.pin}}
			tg := r.target(obj, want, nil)
			var got []string
			for _, it := range missingItems(tg, tc.rec, want) {
				got = append(got, it.Ref)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("missing %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSetStatus(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		out                           *outcome
		degraded                      []string
		ready, progressing, degraded_ string
	}{
		{"all ready", &outcome{desired: 3, ready: 3}, nil, "AllNodesReady", "Idle", "AsExpected"},
		{"no nodes", &outcome{}, nil, "NoNodes", "Idle", "AsExpected"},
		{"running", &outcome{desired: 3, ready: 1, inFlight: 2}, nil, "InProgress", "JobsRunning", "AsExpected"},
		{"failed", &outcome{desired: 3, ready: 2, failed: 1, failing: []coralv1.NodeMessage{{Node: "n3", Message: "not found"}}}, nil, "NodesFailed", "Idle", "NodesFailed"},
		{"worker rejected", &outcome{desired: 2, waiting: 2, blockedReason: "WorkerRejected", blockedMessage: "PodSecurity"}, nil, "InProgress", "WorkerRejected", "WorkerRejected"},
		{"missing secret", nil, []string{"PullSecretNotFound", "spec.pullSecrets: …"}, "PullSecretNotFound", "PullSecretNotFound", "PullSecretNotFound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st coralv1.PrefetchStatus
			setStatus(&st, 4, tc.out, tc.degraded, "kubectl get prefetchnodes …")
			for typ, want := range map[string]string{coralv1.ConditionReady: tc.ready, coralv1.ConditionProgressing: tc.progressing, coralv1.ConditionDegraded: tc.degraded_} {
				c := meta.FindStatusCondition(st.Conditions, typ)
				if c == nil || c.Reason != want || c.ObservedGeneration != 4 {
					t.Errorf("%s: %+v, want reason %s", typ, c, want)
				}
			}
			if st.ObservedGeneration != 4 {
				t.Errorf("observedGeneration %d", st.ObservedGeneration)
			}
			ready := meta.IsStatusConditionTrue(st.Conditions, coralv1.ConditionReady)
			if ready != (tc.ready == "AllNodesReady" || tc.ready == "NoNodes") {
				t.Errorf("Ready=%v with reason %s", ready, tc.ready)
			}
		})
	}
}

func TestStatusStaysSmall(t *testing.T) {
	out := &outcome{desired: 5000, ready: 10, failed: 4990}
	for i := 0; i < 4990 && len(out.failing) < maxListed; i++ {
		out.failing = append(out.failing, coralv1.NodeMessage{Node: "node", Message: strings.Repeat("x", 1024)})
	}
	var st coralv1.PrefetchStatus
	setStatus(&st, 1, out, nil, "detail")
	if len(st.FailingNodes) > maxListed {
		t.Errorf("%d failing nodes listed", len(st.FailingNodes))
	}
	if c := meta.FindStatusCondition(st.Conditions, coralv1.ConditionDegraded); len(c.Message) > 2048 {
		t.Errorf("Degraded message of %d bytes", len(c.Message))
	}
}

func TestBackoffAndNames(t *testing.T) {
	s := &shared{opts: NewOptions()}
	if s.backoff(1) != 30*time.Second || s.backoff(3) != 2*time.Minute || s.backoff(50) != 30*time.Minute {
		t.Errorf("backoff %s %s %s", s.backoff(1), s.backoff(3), s.backoff(50))
	}
	long := strings.Repeat("n", 250)
	if n := recordName("img", strings.Repeat("o", 63), long); len(n) > 253 {
		t.Errorf("record name of %d characters", len(n))
	}
	if recordName("img", "web", "node-1") != "img.web.node-1" {
		t.Errorf("short names stay readable: %s", recordName("img", "web", "node-1"))
	}
}

// Two rejections of the same worker differ only in the preflight pod's
// random name: the Degraded message must not, or every reconcile rewrites
// the status and wakes the next one.
func TestStableMessage(t *testing.T) {
	a := `the worker pod would be rejected: pods "coral-p010a5e5b-coral-node-1-64930e-preflight-dqjl9" is forbidden: violates PodSecurity "restricted:latest"`
	b := strings.Replace(a, "dqjl9", "x7k2p", 1)
	if stableMessage(a) != stableMessage(b) {
		t.Fatalf("%q\n%q", stableMessage(a), stableMessage(b))
	}
	if want := `pods "coral-p010a5e5b-coral-node-1-64930e-preflight" is forbidden`; !strings.Contains(stableMessage(a), want) {
		t.Errorf("%q lacks %q", stableMessage(a), want)
	}
}

// TestStatusWait: a status whose only change is its counts waits for
// statusInterval after the last write; a condition that changes status or
// reason, a new generation, or a first write goes at once.
func TestStatusWait(t *testing.T) {
	s := &shared{statusWritten: map[types.UID]time.Time{}}
	obj := &coralv1.ImagePrefetch{ObjectMeta: metav1.ObjectMeta{UID: "u1"}}
	status := func(gen int64, ready, desired int32) *coralv1.PrefetchStatus {
		st := &coralv1.PrefetchStatus{}
		setStatus(st, gen, &outcome{desired: desired, ready: ready, inFlight: desired - ready}, nil, "")
		return st
	}
	t0 := time.Now()
	if w := s.statusWait(obj, status(1, 1, 10), status(1, 2, 10), t0); w != 0 {
		t.Errorf("never written: waits %s", w)
	}
	s.statusWritten["u1"] = t0
	if w := s.statusWait(obj, status(1, 1, 10), status(1, 2, 10), t0.Add(300*time.Millisecond)); w != statusInterval-300*time.Millisecond {
		t.Errorf("counts only, 300ms after a write: waits %s, want %s", w, statusInterval-300*time.Millisecond)
	}
	if w := s.statusWait(obj, status(1, 1, 10), status(1, 2, 10), t0.Add(statusInterval)); w != 0 {
		t.Errorf("counts only, statusInterval after a write: waits %s", w)
	}
	if w := s.statusWait(obj, status(1, 9, 10), status(1, 10, 10), t0.Add(time.Millisecond)); w != 0 {
		t.Errorf("Ready turns true: waits %s", w)
	}
	if w := s.statusWait(obj, status(1, 1, 10), status(2, 1, 10), t0.Add(time.Millisecond)); w != 0 {
		t.Errorf("a new generation: waits %s", w)
	}
}

// The Node cache holds slim nodes (no images, no managed fields) of every
// node (no selector), and the other caches drop managed fields.
func TestCacheTransforms(t *testing.T) {
	o := CacheOptions(nil)
	var nodeTransform func(any) (any, error)
	for obj, by := range o.ByObject {
		if _, ok := obj.(*corev1.Node); ok {
			nodeTransform = by.Transform
			// nodelist.Slimmed lists every node: a selector here would
			// apply to the Node informer's watch and not to its lists.
			if by.Label != nil || by.Field != nil {
				t.Errorf("the Node cache has a selector (label %v, field %v) that nodelist.Slimmed's lists would not apply", by.Label, by.Field)
			}
		}
	}
	if nodeTransform == nil || o.DefaultTransform == nil {
		t.Fatal("CacheOptions set no Node transform or no default transform")
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "7", Labels: map[string]string{"pool": "web"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}},
		Status:     corev1.NodeStatus{Images: []corev1.ContainerImage{{Names: []string{"a"}}}, NodeInfo: corev1.NodeSystemInfo{ContainerRuntimeVersion: "containerd://2.1.0"}},
	}
	got, err := nodeTransform(n)
	if err != nil {
		t.Fatal(err)
	}
	s := got.(*corev1.Node)
	if s.ManagedFields != nil || s.Status.Images != nil || s.Labels["pool"] != "web" || s.ResourceVersion != "7" || s.Status.NodeInfo.ContainerRuntimeVersion == "" {
		t.Errorf("slim node %+v", s)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}}}
	if got, _ := o.DefaultTransform(pod); got.(*corev1.Pod).ManagedFields != nil {
		t.Error("the default transform kept a pod's managed fields")
	}
}

// A node's nodeTimeout runs from its worker pod's creation; a Job without
// a pod counts from its creation or the object's newest pod, whichever is
// later: a Job queued behind a busy Job controller is not the node's fault.
func TestNodeClock(t *testing.T) {
	s := &shared{pacers: map[types.UID]*objectPace{}, global: run.NewPacer(50, 0)}
	tg := &target{obj: &coralv1.ImagePrefetch{ObjectMeta: metav1.ObjectMeta{UID: "u1"}}}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	at := func(d time.Duration) metav1.Time { return metav1.NewTime(t0.Add(d)) }
	podAt := func(uid string, d time.Duration) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), CreationTimestamp: at(d)}}
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: at(0)}}
	pod := podAt("p0", 40*time.Second)
	if got := s.nodeClock(tg, job, pod); !got.Equal(t0.Add(40 * time.Second)) {
		t.Errorf("with a pod: %s, want the pod's creation", got.Sub(t0))
	}
	if got := s.nodeClock(tg, job, nil); !got.Equal(t0) {
		t.Errorf("no pod, no pod seen: %s, want the Job's creation", got.Sub(t0))
	}
	// The Job controller made other pods of the object after this Job.
	s.notePods(tg, []*corev1.Pod{podAt("p1", 70*time.Second), podAt("p2", 20*time.Second)})
	if got := s.nodeClock(tg, job, nil); !got.Equal(t0.Add(70 * time.Second)) {
		t.Errorf("no pod, newer pods of the object: %s, want the newest pod's creation (70s)", got.Sub(t0))
	}
	// Pods deleted with their Jobs leave the cache: the newest stays known.
	s.notePods(tg, nil)
	if got := s.nodeClock(tg, job, nil); !got.Equal(t0.Add(70 * time.Second)) {
		t.Errorf("after the pods left the cache: %s, want 70s", got.Sub(t0))
	}
	// Another object's pods do not move this one's clock.
	other := &target{obj: &coralv1.ImagePrefetch{ObjectMeta: metav1.ObjectMeta{UID: "u2"}}}
	s.notePods(other, []*corev1.Pod{podAt("p3", 90*time.Second)})
	if got := s.nodeClock(tg, job, nil); !got.Equal(t0.Add(70 * time.Second)) {
		t.Errorf("another object's pod moved the clock to %s", got.Sub(t0))
	}
}

// A pod listed by every reconcile counts once in an object's pace (and the
// global one): the rate of Little's law is of pods appearing, not listed.
func TestNotePodsCountsEachPodOnce(t *testing.T) {
	s := &shared{pacers: map[types.UID]*objectPace{}, global: run.NewPacer(50, 0)}
	tg := &target{obj: &coralv1.ImagePrefetch{ObjectMeta: metav1.ObjectMeta{UID: "u1"}}, run: coralv1.RunSettings{MaxNodesInFlight: 2}}
	now := time.Now()
	pods := func(uids ...string) []*corev1.Pod {
		var out []*corev1.Pod
		for _, u := range uids {
			out = append(out, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(u), CreationTimestamp: metav1.NewTime(now)}})
		}
		return out
	}
	// Two reconciles list the same two pods, a third adds one: 3 pods in
	// 10 s (0.3/s), each reporting after 5 s: 1.5 workers at once, under
	// the cap of 2, so Jobs may wait ahead once the Job controller lags.
	s.notePods(tg, pods("a", "b"))
	s.notePods(tg, pods("a", "b"))
	s.notePods(tg, pods("a", "b", "c"))
	p := s.pacer(tg)
	p.Reported(5 * time.Second)
	if !p.Update(now, true) || !p.Allows(3, 2) {
		t.Errorf("3 pods seen once each should allow Jobs ahead (%s)", p)
	}
	// Had every listing counted (7 pods: 3.5 at once), the cap would hold.
	s.notePods(tg, pods("d", "e", "f", "g"))
	if p.Update(now, true); p.Allows(3, 2) {
		t.Errorf("7 pods at 5 s each exceed the cap of 2 at once, yet Jobs ahead are allowed (%s)", p)
	}
	if g := s.global.String(); !strings.Contains(g, "pods10s=7") {
		t.Errorf("global pace %s, want the 7 pods counted once", g)
	}
}

// enqueueAfter: an event's requests wait batchWindow in the queue (events
// within it are one reconcile), and an update maps its old object only
// when the labels moved (a node update would otherwise list every object
// twice).
func TestEnqueueAfter(t *testing.T) {
	var mapped int
	h := enqueueAfter(func(_ context.Context, o client.Object) []reconcile.Request {
		mapped++
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: "ns", Name: o.GetLabels()["obj"]}}}
	})
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	pod := func(obj string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{"obj": obj}}}
	}
	ctx := context.Background()
	h.Update(ctx, event.UpdateEvent{ObjectOld: pod("a"), ObjectNew: pod("a")}, q)
	h.Create(ctx, event.CreateEvent{Object: pod("a")}, q)
	if mapped != 2 {
		t.Errorf("an update with the same labels and a create mapped %d objects, want 2", mapped)
	}
	if q.Len() != 0 {
		t.Errorf("%d requests ready at once, want them to wait %s", q.Len(), batchWindow)
	}
	h.Update(ctx, event.UpdateEvent{ObjectOld: pod("a"), ObjectNew: pod("b")}, q)
	if mapped != 4 {
		t.Errorf("a relabelling update mapped %d objects in all, want both of its objects (4)", mapped)
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.Len() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if q.Len() != 2 {
		t.Errorf("%d requests ready after the window, want 2 (a, merged; b)", q.Len())
	}
}

// A Job controller that made no pod for many Jobs costs a few events
// lists a minute per object, not one per Job.
func TestNoPodReasonIsBounded(t *testing.T) {
	cs := fake.NewClientset(&corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "e1", Namespace: "ns"},
		InvolvedObject: corev1.ObjectReference{Kind: "Job", Name: "j"},
		Reason:         "FailedCreate", Message: "exceeded quota",
	})
	s := &shared{clientset: cs, pacers: map[types.UID]*objectPace{}, global: run.NewPacer(50, 0)}
	tg := &target{obj: &coralv1.ImagePrefetch{ObjectMeta: metav1.ObjectMeta{UID: "u1"}}}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "j", Namespace: "ns"}}
	now := time.Now()
	for i := range 10 {
		msg := s.noPodReason(context.Background(), tg, job, nil, now)
		explained := strings.Contains(msg, "FailedCreate: exceeded quota")
		if explained != (i < noPodExplained) {
			t.Errorf("Job %d: %q (explained %v, want %v)", i, msg, explained, i < noPodExplained)
		}
	}
	if n := len(cs.Actions()); n != noPodExplained {
		t.Errorf("%d reads for 10 pod-less Jobs, want %d", n, noPodExplained)
	}
	if msg := s.noPodReason(context.Background(), tg, job, nil, now.Add(61*time.Second)); !strings.Contains(msg, "FailedCreate") {
		t.Errorf("a minute later: %q, want the Job's event again", msg)
	}
	if msg := s.noPodReason(context.Background(), tg, job, &corev1.Pod{}, now); msg != "" {
		t.Errorf("a Job with a pod: %q, want nothing", msg)
	}
}

// The Job and pod caches keep what the controller reads of them — the
// Job's metadata, runtime socket and conditions, the pod's metadata and
// worker status — and drop the pod template and spec.
func TestSlimJobAndPod(t *testing.T) {
	meta := metav1.ObjectMeta{
		Name: "j", Namespace: "ns", CreationTimestamp: metav1.Now(), ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kcm"}},
		Labels:      map[string]string{LabelPrefetchUID: "u1", batchv1.JobNameLabel: "j"},
		Annotations: map[string]string{jobs.AnnotationNode: "n1", AnnotationItems: `[{"ref":"a:1"}]`},
	}
	job := &batchv1.Job{ObjectMeta: meta}
	job.Spec.Template.Spec.Containers = []corev1.Container{{Name: jobs.ContainerName, Args: []string{"--image=a:1"}}}
	job.Spec.Template.Spec.Volumes = []corev1.Volume{
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "cri-socket", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/run/containerd/containerd.sock"}}},
	}
	job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "DeadlineExceeded"}}
	got, err := slimJob(job)
	if err != nil {
		t.Fatal(err)
	}
	sj := got.(*batchv1.Job)
	if socketOf(sj) != socketOf(job) || jobFailed(sj) != jobFailed(job) || sj.Annotations[AnnotationItems] == "" || sj.Labels[LabelPrefetchUID] != "u1" || !sj.CreationTimestamp.Equal(&job.CreationTimestamp) {
		t.Errorf("slim Job lost what the controller reads: %+v", sj)
	}
	if sj.ManagedFields != nil || len(sj.Spec.Template.Spec.Containers) != 0 {
		t.Errorf("slim Job kept its managed fields or template: %+v", sj)
	}

	pod := &corev1.Pod{ObjectMeta: meta, Spec: job.Spec.Template.Spec}
	pod.Spec.NodeName = "n1"
	pod.Status.Phase = corev1.PodSucceeded
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: jobs.ContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Message: "report"}}}}
	got, err = slimPod(pod)
	if err != nil {
		t.Fatal(err)
	}
	sp := got.(*corev1.Pod)
	if sp.Labels[batchv1.JobNameLabel] != "j" || sp.UID != pod.UID || !sp.CreationTimestamp.Equal(&pod.CreationTimestamp) || sp.Spec.NodeName != "n1" ||
		sp.Status.Phase != corev1.PodSucceeded || sp.Status.ContainerStatuses[0].State.Terminated.Message != "report" {
		t.Errorf("slim pod lost what the controller reads: %+v", sp)
	}
	if sp.ManagedFields != nil || len(sp.Spec.Containers) != 0 || len(sp.Spec.Volumes) != 0 {
		t.Errorf("slim pod kept its managed fields or spec: %+v", sp)
	}
}
