package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coral-dev/coral/pkg/jobs"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// boundResult is the one JSON line `scale bound` prints.
type boundResult struct {
	Wall     float64 `json:"wall"`
	First    float64 `json:"first"`
	Last     float64 `json:"last"`
	Created  float64 `json:"created"` // every create answered
	Nodes    int     `json:"nodes"`
	Reported int     `json:"reported"`
	Failed   int     `json:"failed"`
	TimedOut bool    `json:"timedOut,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// boundMain is `scale bound`: the minimal client. It creates the Jobs of a
// Coral dry run (or, with --mode pods, bare pods from their templates) under
// a fresh run id, watches the run's pods with one informer, and stops when
// every node's worker container has terminated (silent nodes: when their pod
// runs; they are the first --silent nodes not in --fail whose pods appear,
// as the completer chooses them), then deletes what it created, one delete
// per object. No cap on nodes in flight, no events, no deadlines: what the
// control plane alone allows.
func boundMain(args []string) int {
	fs := flag.NewFlagSet("bound", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the bound's user")
	ns := fs.String("namespace", "coral-scale", "namespace")
	jobsFile := fs.String("jobs", "", "JobList JSON (kubectl coral prefetch images --dry-run=client -o json)")
	mode := fs.String("mode", "jobs", "jobs or pods")
	failFile := fs.String("fail", "", "file with the names of the nodes fated to fail, one per line (never silent)")
	silent := fs.Int("silent", 0, "how many nodes never report: the first whose pods appear, not counting --fail's")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	qps := fs.Float64("qps", 100, "client QPS (burst twice that)")
	ownerLease := fs.Bool("owner-lease", false, "make every Job (or pod) a dependent of one Lease, as Coral's runs are (to tell what that costs the control plane)")
	_ = fs.Parse(args)
	res := runBound(*kubeconfig, *ns, *jobsFile, *mode, *failFile, *silent, *timeout, float32(*qps), *ownerLease)
	_ = json.NewEncoder(os.Stdout).Encode(res)
	if res.Error != "" || res.TimedOut {
		return 1
	}
	return 0
}

func runBound(kubeconfig, ns, jobsFile, mode, failFile string, silent int, timeout time.Duration, qps float32, ownerLease bool) (res boundResult) {
	fail := func(err error) boundResult { res.Error = err.Error(); return res }
	var list batchv1.JobList
	b, err := os.ReadFile(jobsFile)
	if err != nil {
		return fail(err)
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return fail(fmt.Errorf("reading %s: %w", jobsFile, err))
	}
	var failing []string
	if failFile != "" {
		b, err := os.ReadFile(failFile)
		if err != nil {
			return fail(err)
		}
		failing = strings.Fields(string(b))
	}
	var nodes []string
	for _, j := range list.Items {
		nodes = append(nodes, j.Spec.Template.Spec.NodeName)
	}
	fts := knownFates(nodes, failing, silent)
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fail(err)
	}
	cfg.QPS, cfg.Burst, cfg.UserAgent = qps, int(2*qps), "coral-scale-bound"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fail(err)
	}

	runID := newID()
	jobsOut := retarget(list.Items, runID)
	res.Nodes = len(jobsOut)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if ownerLease {
		l, err := client.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "coral-bound-" + runID}}, metav1.CreateOptions{})
		if err != nil {
			return fail(fmt.Errorf("creating the owner Lease: %w", err))
		}
		defer client.CoordinationV1().Leases(ns).Delete(context.Background(), l.Name, metav1.DeleteOptions{})
		for _, j := range jobsOut {
			j.OwnerReferences = append(j.OwnerReferences, metav1.OwnerReference{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Name: l.Name, UID: l.UID})
		}
	}
	start := time.Now()
	since := func() float64 { return time.Since(start).Seconds() }

	var mu sync.Mutex
	pending := map[string]bool{}
	for _, j := range jobsOut {
		pending[j.Spec.Template.Spec.NodeName] = true
	}
	allDone := make(chan struct{})
	onPod := func(o any) {
		p, ok := o.(*corev1.Pod)
		if !ok {
			return
		}
		node := p.Spec.NodeName
		fts.appeared(node)
		cs := containerStatus(p, jobs.ContainerName)
		done := cs != nil && cs.State.Terminated != nil
		if !done && !(fts.of(node) == fateSilent && p.Status.Phase == corev1.PodRunning) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !pending[node] {
			return
		}
		delete(pending, node)
		// First and last count worker reports only: a silent node's pod
		// running says nothing a user would see as a result.
		if done {
			t := since()
			if res.First == 0 {
				res.First = t
			}
			res.Last = t
		}
		res.Reported++
		if done && cs.State.Terminated.ExitCode != 0 {
			res.Failed++
		}
		if len(pending) == 0 {
			close(allDone)
		}
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = jobs.RunSelector(runID) }))
	inf := f.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onPod, UpdateFunc: func(_, o any) { onPod(o) }}); err != nil {
		return fail(err)
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fail(fmt.Errorf("the pod watch did not sync"))
	}

	work := make(chan *batchv1.Job)
	var wg sync.WaitGroup
	var createErr error
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				var err error
				if mode == "pods" {
					_, err = client.CoreV1().Pods(ns).Create(ctx, podFromJob(j), metav1.CreateOptions{})
				} else {
					_, err = client.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
				}
				if err != nil && ctx.Err() == nil {
					mu.Lock()
					if createErr == nil {
						createErr = fmt.Errorf("creating %s: %w", j.Name, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, j := range jobsOut {
		work <- j
	}
	close(work)
	wg.Wait()
	res.Created = since()
	if createErr != nil {
		res.Error = createErr.Error()
	} else {
		select {
		case <-allDone:
		case <-ctx.Done():
			res.TimedOut = true
		}
	}
	// Cleanup: one delete per object, 64 at a time, within the client's
	// QPS. One DeleteCollection would be a single request, but the API server
	// deletes its objects one by one (--delete-collection-workers=1) and cuts
	// it off at its 60 s request timeout: measured, 1000 Jobs do not fit
	// (see docs/scale.md). The bound shows what the control plane allows.
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer ccancel()
	bg := metav1.DeletePropagationBackground
	del := make(chan string)
	var dwg sync.WaitGroup
	var delErr error
	for range 64 {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			for name := range del {
				var err error
				if mode == "pods" {
					err = client.CoreV1().Pods(ns).Delete(cctx, name, metav1.DeleteOptions{})
				} else {
					err = client.BatchV1().Jobs(ns).Delete(cctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
				}
				if err != nil && !apierrors.IsNotFound(err) {
					mu.Lock()
					if delErr == nil {
						delErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, j := range jobsOut {
		del <- j.Name
	}
	close(del)
	dwg.Wait()
	if delErr != nil && res.Error == "" {
		res.Error = "cleanup: " + delErr.Error()
	}
	res.Wall = since()
	return res
}

// retarget gives Coral's dry-run Jobs a fresh run id (label and name), so the
// bound's objects never meet a Coral run's.
func retarget(in []batchv1.Job, runID string) []*batchv1.Job {
	var out []*batchv1.Job
	for i := range in {
		j := in[i].DeepCopy()
		old := j.Labels[jobs.LabelRunID]
		j.Name = strings.Replace(j.Name, "coral-"+old+"-", "coral-"+runID+"-", 1)
		j.ResourceVersion, j.UID = "", ""
		j.Labels[jobs.LabelRunID] = runID
		if j.Spec.Template.Labels == nil {
			j.Spec.Template.Labels = map[string]string{}
		}
		j.Spec.Template.Labels[jobs.LabelRunID] = runID
		out = append(out, j)
	}
	return out
}

// podFromJob is the Job's pod, created directly: same spec, labels and
// annotations, the Job's deadline as the pod's.
func podFromJob(j *batchv1.Job) *corev1.Pod {
	spec := *j.Spec.Template.Spec.DeepCopy()
	spec.ActiveDeadlineSeconds = j.Spec.ActiveDeadlineSeconds
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: j.Name, Namespace: j.Namespace, Labels: j.Spec.Template.Labels, Annotations: j.Spec.Template.Annotations, OwnerReferences: j.OwnerReferences},
		Spec:       spec,
	}
}

func newID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
