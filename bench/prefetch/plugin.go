package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coral-dev/coral/pkg/report"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Labels and names the plugin puts on its objects (pkg/jobs); repeated here
// so the bench reads the plugin from the outside, as a user would.
const (
	labelRunID     = "coral.dev/run-id"
	labelManagedBy = "app.kubernetes.io/managed-by"
	annotationNode = "coral.dev/node"
	workerName     = "worker"
)

// nodeTimeline is when things happened to one node's Job and pod, as seen by
// the bench: its own watch (observation times), the plugin's stderr, the
// node's CRI (ns), the worker's log (the runtime's ns timestamps per line),
// and kubelet's and containerd's logs.
type nodeTimeline struct {
	JobCreated     time.Time // plugin's "job created" line
	JobSeen        time.Time // Job ADDED on the bench's watch
	PodSeen        time.Time // pod ADDED
	RunningSeen    time.Time // phase Running first observed
	TerminatedSeen time.Time // the worker container's state Terminated first observed
	DoneSeen       time.Time // phase Succeeded/Failed first observed
	PluginDone     time.Time // plugin's "[i/n] node: done" line
	PodGone        time.Time // pod DELETED

	Runtime    podTimes // sandbox/container times from the node's CRI
	RuntimeErr error

	WorkerFirst time.Time // the worker's first log line (after Dial + Version)
	WorkerLast  time.Time // the worker's last per-image line
	LogErr      error

	KubeletAdd       time.Time // kubelet: SyncLoop ADD
	SandboxRequested time.Time // containerd: RunPodSandbox called
	SandboxReturned  time.Time // containerd: RunPodSandbox returned
	PLEGDied         time.Time // kubelet: PLEG ContainerDied for the worker
	StopStart        time.Time // containerd: StopPodSandbox called
	StopDone         time.Time // containerd: StopPodSandbox returned

	podName, podUID string
	collected       bool // Runtime and Worker* have been read
}

// recorder watches the plugin's Jobs and pods in a namespace for the whole
// bench and keeps a timeline per run and node.
type recorder struct {
	client kubernetes.Interface
	ns     string
	nodes  map[string]*node

	mu   sync.Mutex
	runs map[string]map[string]*nodeTimeline // run id → node → timeline
	live map[string]bool                     // pods (ns/name) that exist
}

func newRecorder(ctx context.Context, client kubernetes.Interface, ns string, nodes map[string]*node) (*recorder, error) {
	r := &recorder{client: client, ns: ns, nodes: nodes, runs: map[string]map[string]*nodeTimeline{}, live: map[string]bool{}}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = labelManagedBy + "=kubectl-coral" }))
	pods := f.Core().V1().Pods().Informer()
	jobsInf := f.Batch().V1().Jobs().Informer()
	if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { r.onPod(o, true, false) },
		UpdateFunc: func(_, o any) { r.onPod(o, false, false) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			r.onPod(o, false, true)
		},
	}); err != nil {
		return nil, err
	}
	if _, err := jobsInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: r.onJob}); err != nil {
		return nil, err
	}
	f.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), pods.HasSynced, jobsInf.HasSynced) {
		return nil, fmt.Errorf("watching pods and jobs in namespace %s: no sync within 30s", ns)
	}
	return r, nil
}

// tl returns the timeline for run and node; the caller holds r.mu.
func (r *recorder) tl(run, node string) *nodeTimeline {
	m := r.runs[run]
	if m == nil {
		m = map[string]*nodeTimeline{}
		r.runs[run] = m
	}
	t := m[node]
	if t == nil {
		t = &nodeTimeline{}
		m[node] = t
	}
	return t
}

func (r *recorder) onJob(o any) {
	now := time.Now()
	j, ok := o.(*batchv1.Job)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.tl(j.Labels[labelRunID], j.Annotations[annotationNode])
	if t.JobSeen.IsZero() {
		t.JobSeen = now
	}
}

func (r *recorder) onPod(o any, added, deleted bool) {
	now := time.Now()
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	nodeName := p.Annotations[annotationNode]
	if nodeName == "" {
		nodeName = p.Spec.NodeName
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := p.Namespace + "/" + p.Name
	if deleted {
		delete(r.live, key)
	} else {
		r.live[key] = true
	}
	t := r.tl(p.Labels[labelRunID], nodeName)
	t.podName, t.podUID = p.Name, string(p.UID)
	if t.PodSeen.IsZero() {
		t.PodSeen = now
	}
	if deleted {
		t.PodGone = now
		return
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == workerName && cs.State.Terminated != nil && t.TerminatedSeen.IsZero() {
			t.TerminatedSeen = now
		}
	}
	switch p.Status.Phase {
	case corev1.PodRunning:
		if t.RunningSeen.IsZero() {
			t.RunningSeen = now
		}
	case corev1.PodSucceeded, corev1.PodFailed:
		if t.DoneSeen.IsZero() {
			t.DoneSeen = now
			// Read what the node and the worker know before the plugin's
			// cleanup removes the pod.
			n := r.nodes[nodeName]
			uid, name := string(p.UID), p.Name
			go r.collect(t, n, uid, name)
		}
	}
}

// collect reads the pod's runtime timestamps and the worker's log.
func (r *recorder) collect(t *nodeTimeline, n *node, uid, pod string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var pt podTimes
	var ptErr error
	if n == nil {
		ptErr = fmt.Errorf("unknown node")
	} else {
		pt, ptErr = n.podTimes(ctx, uid, workerName)
	}
	first, last, logErr := r.workerLog(ctx, pod)
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Runtime, t.RuntimeErr = pt, ptErr
	t.WorkerFirst, t.WorkerLast, t.LogErr = first, last, logErr
	t.collected = true
}

var itemLine = regexp.MustCompile(` (Pulled|Present|Failed) `)

// workerLog reads the worker's log with the runtime's timestamps: the first
// line is written once the worker has dialled the runtime; each image's
// outcome is one line "REF STATUS DIGEST MESSAGE".
func (r *recorder) workerLog(ctx context.Context, pod string) (first, last time.Time, err error) {
	b, err := r.client.CoreV1().Pods(r.ns).GetLogs(pod, &corev1.PodLogOptions{Container: workerName, Timestamps: true}).DoRaw(ctx)
	if err != nil {
		return first, last, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		ts, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		t, perr := time.Parse(time.RFC3339Nano, ts)
		if perr != nil {
			continue
		}
		if first.IsZero() {
			first = t
		}
		if itemLine.MatchString(rest) && !strings.HasPrefix(strings.TrimSpace(rest), "{") {
			last = t
		}
	}
	if first.IsZero() || last.IsZero() {
		return first, last, fmt.Errorf("no timestamped per-image lines in the worker log")
	}
	return first, last, nil
}

// runTimeline returns a copy of the timelines of run once every one of nodes
// has been seen finishing and its runtime and log have been read (or after
// limit: what is missing then shows as n/a).
func (r *recorder) runTimeline(run string, nodes []string, limit time.Duration) map[string]nodeTimeline {
	deadline := time.Now().Add(limit)
	for {
		r.mu.Lock()
		ready := true
		for _, n := range nodes {
			if t := r.runs[run][n]; t == nil || !t.collected {
				ready = false
			}
		}
		if ready || time.Now().After(deadline) {
			out := map[string]nodeTimeline{}
			for n, t := range r.runs[run] {
				out[n] = *t
			}
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
}

// waitNoPods waits until no pod of the plugin exists in the namespace, so a
// measurement does not overlap the previous run's teardown.
func (r *recorder) waitNoPods(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		r.mu.Lock()
		n := len(r.live)
		r.mu.Unlock()
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d coral pods still exist in namespace %s after %s", n, r.ns, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// pluginRun is one `kubectl coral prefetch images` measurement.
type pluginRun struct {
	Start, Exit time.Time
	RunLine     time.Time // "run ID: N nodes in namespace NS"
	Finished    time.Time // "finished in …"
	ExitCode    int
	Report      *report.PrefetchReport
	Stderr      string
	Nodes       map[string]nodeTimeline
}

var (
	createdLine = regexp.MustCompile(`^\[\d+/\d+\] (\S+): job created`)
	doneLine    = regexp.MustCompile(`^\[\d+/\d+\] (\S+): `)
)

// runPlugin runs the plugin once with --progress=plain and timestamps every
// stderr line as it arrives. On ctx cancellation the plugin gets SIGINT (it
// then deletes its Jobs) rather than SIGKILL.
func runPlugin(ctx context.Context, plugin, kubeconfig, workerImage, ns string, maxPulls int, extra, refs []string, rec *recorder) (*pluginRun, error) {
	args := append([]string{"--kubeconfig", kubeconfig, "prefetch", "images"}, refs...)
	args = append(args, "-n", ns, "--progress=plain", "-o", "json", fmt.Sprintf("--max-pulls-per-node=%d", maxPulls))
	args = append(args, extra...)
	cmd := exec.Command(plugin, args...)
	cmd.Env = append(os.Environ(), "CORAL_WORKER_IMAGE="+workerImage)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	pr := &pluginRun{}
	created := map[string]time.Time{}
	done := map[string]time.Time{}
	var stderr strings.Builder
	for _, n := range rec.nodes {
		n.KubeletLog.mark()
		n.ContainerdLog.mark()
	}
	pr.Start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Signal(syscall.SIGINT) })
	defer stop()
	sc := bufio.NewScanner(errPipe)
	for sc.Scan() {
		now, line := time.Now(), sc.Text()
		fmt.Fprintf(&stderr, "%+8.3fs %s\n", now.Sub(pr.Start).Seconds(), line)
		switch {
		case strings.HasPrefix(line, "run "):
			pr.RunLine = now
		case strings.HasPrefix(line, "finished in "):
			pr.Finished = now
		case createdLine.MatchString(line):
			created[createdLine.FindStringSubmatch(line)[1]] = now
		case doneLine.MatchString(line):
			done[doneLine.FindStringSubmatch(line)[1]] = now
		}
	}
	werr := cmd.Wait()
	pr.Exit = time.Now()
	pr.Stderr = stderr.String()
	if ee, ok := werr.(*exec.ExitError); ok {
		pr.ExitCode = ee.ExitCode()
	} else if werr != nil {
		return pr, werr
	}
	rep := &report.PrefetchReport{}
	if err := json.Unmarshal(stdout.Bytes(), rep); err != nil {
		return pr, fmt.Errorf("the plugin printed no JSON report (exit %d): %v\nstderr:\n%s", pr.ExitCode, err, pr.Stderr)
	}
	pr.Report = rep
	var nodes []string
	for _, res := range rep.Results {
		if !slices.Contains(nodes, res.Node) {
			nodes = append(nodes, res.Node)
		}
	}
	pr.Nodes = rec.runTimeline(rep.RunID, nodes, 15*time.Second)
	for n, t := range pr.Nodes {
		t.JobCreated, t.PluginDone = created[n], done[n]
		if nd := rec.nodes[n]; nd != nil {
			kubeletTimes(nd.KubeletLog.since(), &t, t.podName)
			containerdTimes(nd.ContainerdLog.since(), &t, t.podUID)
		}
		pr.Nodes[n] = t
	}
	return pr, nil
}
