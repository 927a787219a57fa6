package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/report"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// fate is what a simulated node's worker does.
type fate int

const (
	fateOK     fate = iota
	fateFail        // reports the first image Failed (exit code 1)
	fateSilent      // never reports: the pod stays Running
)

func (f fate) String() string { return [...]string{"ok", "fail", "silent"}[f] }

// fates assigns a fate to each of the N nodes of a run. failPct % of them,
// spread evenly in name order, fail. silentPct % are silent, chosen in each
// run as it goes: the first nodes (not fated to fail) whose worker pod
// appears. So a silent node's --timeout runs out early in every run,
// whatever order the tool starts its nodes in (Coral's CLI and controller
// start them in a hashed order, the bound in name order), and the ratio
// measures how fast a tool gets through the nodes, not where its order
// happens to put the ones that hang. The bound (bound.go) picks its silent
// nodes by the same rule; it runs in its own process and sees the pods
// appear in the same order (the watch's).
type fates struct {
	byNode map[string]fate // fateOK or fateFail: silence is chosen per run
	count  [3]int          // count[fateSilent] nodes are chosen in each run

	mu  sync.Mutex
	run map[string]bool // this run's silent nodes
}

func newFates(n int, failPct, silentPct float64) *fates {
	fail := int(math.Floor(float64(n) * failPct / 100))
	nodes, failing := make([]string, n), make([]string, 0, fail)
	for i := 1; i <= n; i++ {
		nodes[i-1] = nodeName(i)
		if fail > 0 && (i-1)%max(1, n/fail) == 0 && len(failing) < fail {
			failing = append(failing, nodeName(i))
		}
	}
	return knownFates(nodes, failing, int(math.Floor(float64(n)*silentPct/100)))
}

// knownFates are the fates of the given nodes: those failing fail, and
// silent of the others are chosen as their pods appear.
func knownFates(nodes, failing []string, silent int) *fates {
	f := &fates{byNode: make(map[string]fate, len(nodes)), run: map[string]bool{}}
	for _, n := range nodes {
		f.byNode[n] = fateOK
	}
	for _, n := range failing {
		if _, ok := f.byNode[n]; ok {
			f.byNode[n] = fateFail
			f.count[fateFail]++
		}
	}
	f.count[fateSilent] = min(silent, len(nodes)-f.count[fateFail])
	f.count[fateOK] = len(nodes) - f.count[fateFail] - f.count[fateSilent]
	return f
}

// newRun forgets the last run's silent nodes.
func (f *fates) newRun() {
	f.mu.Lock()
	f.run = map[string]bool{}
	f.mu.Unlock()
}

// appeared is called with the node of every worker pod seen in a run, in
// the order the pods appear: the first count[fateSilent] nodes not fated to fail
// become silent.
func (f *fates) appeared(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.run) < f.count[fateSilent] && !f.run[node] && f.byNode[node] == fateOK {
		f.run[node] = true
	}
}

// chosen is how many of the run's silent nodes have been chosen so far.
func (f *fates) chosen() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.run)
}

func (f *fates) of(node string) fate {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.run[node] {
		return fateSilent
	}
	return f.byNode[node]
}

// failing lists the nodes fated to fail (the bound's --fail file).
func (f *fates) failing() []string {
	var out []string
	for node, ft := range f.byNode {
		if ft == fateFail {
			out = append(out, node)
		}
	}
	slices.Sort(out)
	return out
}

func (f *fates) String() string {
	return fmt.Sprintf("%d ok, %d fail, %d silent (the first to appear in each run)", f.count[fateOK], f.count[fateFail], f.count[fateSilent])
}

// completer plays the worker and the kubelet's last status update: when a
// worker pod on a simulated node is Running (kwok's stage), it waits --work,
// then writes the pod's terminal status with the termination message the
// real worker would have written for the images in the pod's own args,
// encoded by pkg/report.EncodeTermination — so Coral's real decode path
// (report.DecodeTermination) runs on every node.
//
// Why not a kwok Stage: its templates (Go templates with sprig) could print
// JSON, but that would be a second, hand-written encoder of the wire format
// that drifts silently when pkg/report changes; and choosing per node which
// ones fail or stay silent needs node lists in the Stage's selectors. Here the
// encoder is pkg/report's own and the fates are a map. The cost is one status
// patch per pod from this client — the write a kubelet (or kwok's own
// completion stage) makes anyway — counted apart in the audit log (coral-sim).
type completer struct {
	client kubernetes.Interface
	ns     string
	work   time.Duration
	fates  atomic.Pointer[fates]

	mu      sync.Mutex
	handled map[types.UID]bool
	queue   chan *corev1.Pod

	patched, failedPatches atomic.Int64
}

func startCompleter(ctx context.Context, client kubernetes.Interface, ns string, work time.Duration) (*completer, error) {
	c := &completer{client: client, ns: ns, work: work, handled: map[types.UID]bool{}, queue: make(chan *corev1.Pod, 100000)}
	c.fates.Store(newFates(0, 0, 0))
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns))
	inf := f.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.onPod,
		UpdateFunc: func(_, o any) { c.onPod(o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				c.mu.Lock()
				delete(c.handled, p.UID)
				c.mu.Unlock()
			}
		},
	}); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("completer: the pod watch in %s did not sync", ns)
	}
	for range 16 {
		go c.worker(ctx)
	}
	return c, nil
}

func (c *completer) onPod(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok || p.DeletionTimestamp != nil {
		return
	}
	c.fates.Load().appeared(p.Spec.NodeName)
	if p.Status.Phase != corev1.PodRunning {
		return
	}
	cs := containerStatus(p, jobs.ContainerName)
	if cs == nil || cs.State.Running == nil {
		return
	}
	if c.fates.Load().of(p.Spec.NodeName) == fateSilent {
		return
	}
	c.mu.Lock()
	if c.handled[p.UID] {
		c.mu.Unlock()
		return
	}
	c.handled[p.UID] = true
	c.mu.Unlock()
	p = p.DeepCopy()
	time.AfterFunc(c.work, func() { c.queue <- p })
}

func (c *completer) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-c.queue:
			c.complete(ctx, p)
		}
	}
}

func (c *completer) complete(ctx context.Context, p *corev1.Pod) {
	patch, err := terminalStatusPatch(p, c.fates.Load().of(p.Spec.NodeName) == fateFail, c.work, time.Now())
	if err != nil {
		c.failedPatches.Add(1)
		return
	}
	for attempt := 0; attempt < 5; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = c.client.CoreV1().Pods(p.Namespace).Patch(pctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
		cancel()
		if err == nil {
			c.patched.Add(1)
			return
		}
		if apierrors.IsNotFound(err) || ctx.Err() != nil {
			return
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	c.failedPatches.Add(1)
}

// terminalStatusPatch is the merge patch of a finished worker pod's status:
// phase Succeeded (or Failed when an item failed, as the worker then exits
// 1) and the worker container Terminated with its report.
func terminalStatusPatch(p *corev1.Pod, fail bool, work time.Duration, now time.Time) ([]byte, error) {
	var args []string
	for _, ctr := range p.Spec.Containers {
		if ctr.Name == jobs.ContainerName {
			args = ctr.Args
		}
	}
	images, expected := imageArgs(args)
	msg := workerMessage(p.Spec.NodeName, images, expected, fail, work)
	exit, phase, reason := int32(0), corev1.PodSucceeded, "Completed"
	if fail {
		exit, phase, reason = 1, corev1.PodFailed, "Error"
	}
	st := p.Status.DeepCopy()
	st.Phase = phase
	t := metav1.NewTime(now)
	for i := range st.Conditions {
		switch st.Conditions[i].Type {
		case corev1.PodReady, corev1.ContainersReady:
			st.Conditions[i].Status, st.Conditions[i].Reason, st.Conditions[i].LastTransitionTime = corev1.ConditionFalse, "PodCompleted", t
		}
	}
	for i := range st.ContainerStatuses {
		cs := &st.ContainerStatuses[i]
		started := t
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
		}
		cs.Ready, cs.Started = false, ptrTo(false)
		term := &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: t}
		if cs.Name == jobs.ContainerName {
			term.ExitCode, term.Reason, term.Message = exit, reason, msg
		}
		cs.State = corev1.ContainerState{Terminated: term}
	}
	return json.Marshal(map[string]any{"status": st})
}

// imageArgs reads the worker's --image=REF[=DIGEST] args (pkg/jobs.ImageArg)
// in order.
func imageArgs(args []string) (images, expected []string) {
	for _, a := range args {
		v, ok := strings.CutPrefix(a, "--image=")
		if !ok {
			continue
		}
		ref, digest, _ := strings.Cut(v, "=")
		images = append(images, ref)
		expected = append(expected, digest)
	}
	return images, expected
}

// workerMessage is the termination message of a worker that pulled images
// (the first one Failed when fail), encoded as the worker encodes it.
func workerMessage(node string, images, expected []string, fail bool, work time.Duration) string {
	r := &report.WorkerReport{Version: report.WireVersion}
	for i, img := range images {
		d := expected[i]
		if d == "" {
			d = fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(img)))
		}
		it := report.ItemResult{Item: img, Status: report.StatusPulled, Digest: d, SizeBytes: 25_000_000 + int64(i)*1_000_000, DurationMs: work.Milliseconds(), Attempts: 1}
		if fail && i == 0 {
			it = report.ItemResult{Item: img, Status: report.StatusFailed, Attempts: 4,
				Message: fmt.Sprintf("simulated failure on %s: rpc error: code = NotFound desc = failed to pull and unpack image %q: not found", node, img)}
		}
		r.Items = append(r.Items, it)
	}
	return report.EncodeTermination(r, expected, report.TerminationMessageLimit)
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }
