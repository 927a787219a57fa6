// Package controller is Coral's controller mode: it keeps ImagePrefetch and
// ArtifactPrefetch objects true over time. A reconcile turns an object's
// spec and the cluster's nodes into a plan (pkg/plan, the CLI's node
// selection), creates the missing per-node Jobs (pkg/jobs.ForTask, the
// CLI's Jobs), reads finished worker pods the way the CLI's engine does
// (run.ReadWorkerPod) and records each node's outcome in a PrefetchNode
// object. Everything it acts on is re-derived from the cluster at every
// reconcile — Jobs by label, PrefetchNode records, node state, status — so a
// restarted or newly elected controller carries on where the last one
// stopped; the little it keeps in memory only bridges the informer cache's
// lag behind its own writes.
package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/nodelist"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/run"
	"github.com/google/go-containerregistry/pkg/authn"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// Labels and names the controller puts on what it creates.
const (
	// ManagedBy is the app.kubernetes.io/managed-by value of the
	// controller's Jobs (one-shot CLI runs use kubectl-coral).
	ManagedBy = "coral-controller"
	// LabelPrefetchUID ties Jobs and PrefetchNodes to their object.
	LabelPrefetchUID = "coral.dev/prefetch-uid"
	// LabelImagePrefetch and LabelArtifactPrefetch carry the object's name
	// (at most 63 characters: the CRDs enforce it) for kubectl -l.
	LabelImagePrefetch    = "coral.dev/imageprefetch"
	LabelArtifactPrefetch = "coral.dev/artifactprefetch"
	// AnnotationItems on a Job lists its items (JSON), so the result can be
	// read after a restart without parsing worker arguments.
	AnnotationItems = "coral.dev/items"
	// Finalizer lets the controller clean up (Jobs, pins) before an object
	// goes away.
	Finalizer = "coral.dev/cleanup"
)

// Options configure the controller. NewOptions holds the defaults.
type Options struct {
	// WorkerImage runs on the nodes (an object's spec.workerImage wins).
	WorkerImage string
	// WorkerPullSecrets are image pull secrets for the worker image, by
	// name, in each object's namespace (missing ones are ignored by kubelet).
	WorkerPullSecrets []string
	// MaxJobsInFlight caps the worker pods running at once across every
	// object, as an object's maxNodesInFlight caps its own. Jobs still
	// waiting for the Job controller to make their pods pull nothing: by
	// run.Pacer's rule, more may wait while the Job controller is
	// backlogged and the pods stay within the caps at the pace it makes
	// them.
	MaxJobsInFlight int
	// JobsAhead bounds those waiting Jobs beyond the caps: 0 (default) no
	// bound beyond run.Pacer's rule, negative none (the caps count Jobs).
	JobsAhead int
	// JobTTL removes finished Jobs should the controller not (a safety net).
	JobTTL time.Duration
	// RetryBase and RetryMax bound the backoff of a node that failed.
	RetryBase, RetryMax time.Duration
	// ResolveTimeout bounds resolving one tag.
	ResolveTimeout time.Duration
	// Keychain is the base keychain for resolving tags (pull secrets come on top).
	Keychain authn.Keychain
}

// NewOptions returns the defaults.
func NewOptions() Options {
	return Options{
		MaxJobsInFlight: 50,
		JobTTL:          time.Hour,
		RetryBase:       30 * time.Second,
		RetryMax:        30 * time.Minute,
		ResolveTimeout:  20 * time.Second,
		Keychain:        authn.DefaultKeychain,
	}
}

// Scheme holds the types the controller reads and writes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := coralv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}

// CacheOptions keep the informer caches small: only the controller's own
// Jobs and worker pods are cached, never every pod of the cluster; no
// object keeps its managed fields; and every node of the cluster is kept
// as the part a plan reads (plan.SlimNode), without the images its kubelet
// lists — most of a real node's bytes.
//
// core, a client of the core v1 API, lists the nodes for the Node
// informer one node at a time (nodelist.Slimmed), so its first list never
// holds every whole node at once: at 1000 simulated nodes of 50 images
// that list was the controller's peak RSS (docs/scale.md). With core nil
// the informer lists as client-go does, the answer whole.
func CacheOptions(core rest.Interface) cache.Options {
	own := labels.SelectorFromSet(labels.Set{jobs.LabelManagedBy: ManagedBy})
	o := cache.Options{
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&batchv1.Job{}: {Label: own, Transform: slimJob},
			&corev1.Pod{}:  {Label: own, Transform: slimPod},
			// No selector: nodelist.Slimmed lists every node.
			&corev1.Node{}: {Transform: slimNode},
		},
	}
	if core != nil {
		o.NewInformer = func(lw toolscache.ListerWatcher, obj runtime.Object, resync time.Duration, idx toolscache.Indexers) toolscache.SharedIndexInformer {
			if _, ok := obj.(*corev1.Node); ok {
				lw = &nodelist.Slimmed{Client: core, Watcher: toolscache.ToListerWatcherWithContext(lw), Slim: plan.SlimNode}
			}
			return toolscache.NewSharedIndexInformer(lw, obj, resync, idx)
		}
	}
	return o
}

// slimJob is the Job cache's transform: the metadata (labels, the node
// and items annotations, owner, timestamps), the runtime socket volume
// socketOf reads and the conditions jobFailed reads — not the pod template,
// most of a Job's bytes. Cached Jobs are only read and deleted, never
// written back.
func slimJob(obj any) (any, error) {
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return obj, nil
	}
	slim := &batchv1.Job{ObjectMeta: j.ObjectMeta, Status: batchv1.JobStatus{Conditions: j.Status.Conditions}}
	slim.ManagedFields = nil
	if v := socketVolume(j); v != nil {
		slim.Spec.Template.Spec.Volumes = []corev1.Volume{*v}
	}
	return slim, nil
}

// slimPod is the worker pod cache's transform: run.SlimWorkerPod, what
// ReadWorkerPod reads, and the metadata (labels select an object's pods,
// the creation time paces and times them). Never written back.
func slimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := run.SlimWorkerPod(pod)
	slim.ObjectMeta = pod.ObjectMeta
	slim.ManagedFields = nil
	return slim, nil
}

// slimNode is the Node cache's transform. The controller never writes a
// cached Node back (it patches node annotations by name).
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	slim := plan.SlimNode(n)
	return &slim, nil
}

// shared is the state both reconcilers share: the global Job cap, and the
// expectations that bridge the cache's lag behind the controller's writes.
type shared struct {
	opts      Options
	scheme    *runtime.Scheme
	client    client.Client
	apiReader client.Reader
	clientset kubernetes.Interface
	events    recorder.EventRecorder
	// view reads the caches a reconcile reads on every pass, uncopied.
	view *view

	// mu serialises the "count Jobs in flight, then create" step of every
	// reconcile, so the global cap holds across objects and kinds.
	mu sync.Mutex
	// created: Jobs created but maybe not yet in the cache (→ node). Jobs
	// are keyed by namespace and name as a struct, not a joined string: a
	// reconcile looks up every one of its Jobs, and each join allocated.
	created map[types.NamespacedName]expectedJob
	// records: PrefetchNodes written but maybe not yet in the cache.
	records map[types.NamespacedName]*coralv1.PrefetchNode
	// deleted: Jobs deleted but maybe still in the cache.
	// recorded: Jobs whose result is recorded, left to the Job controller
	// to finish before they are deleted (finishing); not in flight.
	deleted  map[types.NamespacedName]time.Time
	recorded map[types.NamespacedName]time.Time
	// admitted: when admission last accepted an object's worker (the
	// server-side dry run before its Jobs), by object UID and generation.
	admitted map[string]time.Time
	// statusWritten: when each object's status was last written.
	statusWritten map[types.UID]time.Time
	// pacers: each object's flow control (maxNodesInFlight, Jobs ahead)
	// and the newest worker pod it has seen (nodeClock); global is the
	// same across every object (MaxJobsInFlight).
	pacers map[types.UID]*objectPace
	global *run.Pacer
	// debugAt: the last flow-control trace line (run.DebugFlow).
	debugAt time.Time

	// plans: each object's last plan and what it was made from; nodeEpoch
	// counts the node events that can change a plan (nodeChanged).
	plans     map[types.UID]*cachedPlan
	nodeEpoch atomic.Uint64
}

// objectPace is an object's run.Pacer and the worker pods it has been
// told of (the object's pods at its last reconcile), so a pod listed by
// every reconcile counts once.
type objectPace struct {
	*run.Pacer
	seen    map[types.UID]struct{}
	touched time.Time // when a reconcile last used it
	// explained pod-less Jobs had their events read since explainedAt.
	explained   int
	explainedAt time.Time
}

// admissionTTL is how long an object's admitted worker is trusted before
// the dry run asks again: once a minute, the cadence a rejected worker is
// retried at, instead of two dry runs per Job (measured by make
// bench-scale's controller mode: 148 dry runs for 100 nodes). A namespace
// whose admission tightens in between is found by the next dry run; the
// Jobs created meanwhile get no pod and their nodes fail with the Job's
// FailedCreate reason.
const admissionTTL = time.Minute

// jobKey is a Job's key in created, deleted and recorded.
func jobKey(j *batchv1.Job) types.NamespacedName {
	return types.NamespacedName{Namespace: j.Namespace, Name: j.Name}
}

type expectedJob struct {
	node, namespace string
	at              time.Time
}

// Setup registers both reconcilers with the manager.
func Setup(mgr manager.Manager, o Options) error {
	if o.WorkerImage == "" {
		return fmt.Errorf("no worker image")
	}
	cs, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return err
	}
	v, err := newView(context.Background(), mgr.GetCache())
	if err != nil {
		return err
	}
	sh := &shared{
		opts: o, scheme: mgr.GetScheme(), client: mgr.GetClient(), apiReader: mgr.GetAPIReader(), clientset: cs, view: v,
		events:  mgr.GetEventRecorder(ManagedBy),
		created: map[types.NamespacedName]expectedJob{}, records: map[types.NamespacedName]*coralv1.PrefetchNode{}, deleted: map[types.NamespacedName]time.Time{}, recorded: map[types.NamespacedName]time.Time{},
		admitted: map[string]time.Time{}, statusWritten: map[types.UID]time.Time{}, pacers: map[types.UID]*objectPace{},
		plans:  map[types.UID]*cachedPlan{},
		global: run.NewPacer(o.MaxJobsInFlight, o.JobsAhead),
	}
	if err := (&ImagePrefetchReconciler{sh: sh}).setup(mgr); err != nil {
		return err
	}
	return (&ArtifactPrefetchReconciler{sh: sh}).setup(mgr)
}

// expire forgets expectations older than the cache could lag.
func (s *shared) expire(now time.Time) {
	for k, v := range s.created {
		if now.Sub(v.at) > 2*time.Minute {
			delete(s.created, k)
		}
	}
	for k, v := range s.recorded {
		if now.Sub(v) > finishWait+time.Minute { // deleted by now, or the cache lost it
			delete(s.recorded, k)
		}
	}
	for k, v := range s.deleted {
		if now.Sub(v) > 2*time.Minute {
			delete(s.deleted, k)
		}
	}
	for k, v := range s.admitted {
		if now.Sub(v) >= admissionTTL {
			delete(s.admitted, k)
		}
	}
	for k, v := range s.statusWritten {
		if now.Sub(v) >= statusInterval {
			delete(s.statusWritten, k)
		}
	}
	for k, p := range s.pacers {
		if now.Sub(p.touched) > 25*time.Hour { // past the longest nodeTimeout
			delete(s.pacers, k)
		}
	}
	for k, p := range s.plans {
		if now.Sub(p.used) > planTTL {
			delete(s.plans, k)
		}
	}
}

// gone says whether a Job is done with: deleted, or its result recorded
// (finishing). s.mu held.
func (s *shared) gone(key types.NamespacedName) bool {
	_, deleted := s.deleted[key]
	_, recorded := s.recorded[key]
	return deleted || recorded
}

// inFlight is every object's Jobs in flight, as jobsInFlight counts them.
type inFlight struct {
	byNode map[string][]types.NamespacedName // Jobs per node
	total  int
	// podless of them have no worker pod yet; backlogged: one of those has
	// waited jobBacklogAfter for the Job controller.
	podless    int
	backlogged bool
}

// jobBacklogAfter is how long a Job may wait for its pod before the Job
// controller counts as backlogged (run.Pacer): the engine's second, plus
// the second creation timestamps are truncated to.
const jobBacklogAfter = 2 * time.Second

// jobsInFlight lists the controller's Jobs (all objects), merging the
// cache with Jobs created but not yet seen and dropping Jobs deleted but
// still cached, and which of them have a pod. Call with mu held.
func (s *shared) jobsInFlight(now time.Time) (*inFlight, error) {
	list, err := s.view.Jobs("", "")
	if err != nil {
		return nil, err
	}
	pods, err := s.view.Pods("", "")
	if err != nil {
		return nil, err
	}
	hasPod := make(map[types.NamespacedName]bool, len(pods))
	for _, p := range pods {
		hasPod[types.NamespacedName{Namespace: p.Namespace, Name: p.Labels[batchv1.JobNameLabel]}] = true
	}
	f := &inFlight{byNode: make(map[string][]types.NamespacedName, len(list))}
	seen := make(map[types.NamespacedName]bool, len(list))
	for _, j := range list {
		key := jobKey(j)
		seen[key] = true
		if s.gone(key) || j.DeletionTimestamp != nil {
			continue
		}
		node := j.Annotations[jobs.AnnotationNode]
		f.byNode[node] = append(f.byNode[node], key)
		f.total++
		if !hasPod[key] {
			f.podless++
			f.backlogged = f.backlogged || now.Sub(j.CreationTimestamp.Time) > jobBacklogAfter
		}
	}
	for key, e := range s.created {
		// Seen by the cache, or already read and deleted by us (a quick Job
		// may come and go between two calls): no longer an expectation.
		if seen[key] || s.gone(key) {
			delete(s.created, key)
			continue
		}
		f.byNode[e.node] = append(f.byNode[e.node], key)
		f.total++
		f.podless++
		f.backlogged = f.backlogged || now.Sub(e.at) > jobBacklogAfter
	}
	return f, nil
}
