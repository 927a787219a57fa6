package prefetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	batchv1 "k8s.io/api/batch/v1"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/diskcheck"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/registryauth"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/run"
	"github.com/coral-dev/coral/pkg/source"
	"github.com/coral-dev/coral/pkg/version"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
)

// ImagesOptions holds everything `kubectl coral prefetch images` needs.
// NewImagesOptions is the one place for defaults.
type ImagesOptions struct {
	RunOptions

	Filenames       []string
	RuntimeEndpoint string
	PullSecrets     []string
	NoResolve       bool
	// Pin is "" (off), "true" (a pin that does not take fails the item) or
	// "best-effort" (it is only reported).
	Pin             string
	MaxPullsPerNode int
	ImageTimeout    time.Duration
	FromCluster     bool
	// Persist names an ImagePrefetch to write for the controller instead of
	// running Jobs here; Wait waits for it and reports like a one-shot run.
	Persist         string
	Wait            bool
	WaitTimeout     time.Duration
	RefreshInterval time.Duration
	FromNamespace   string
	FromContext     string
	disk            diskCheckOptions

	// Set by Complete.
	images []string
	// sourceClient reads --from-cluster; replaced in tests.
	sourceClient func() (kubernetes.Interface, error)
	// resolve looks up an image's digest; replaced in tests.
	resolve func(ctx context.Context, ref string, kc authn.Keychain) (string, error)
}

// NewImagesOptions returns the defaults.
func NewImagesOptions(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *ImagesOptions {
	return &ImagesOptions{
		RunOptions:      newRunOptions(flags, streams),
		MaxPullsPerNode: 3,
		Wait:            true,
		WaitTimeout:     30 * time.Minute,
		ImageTimeout:    10 * time.Minute,
		resolve:         source.ResolveDigest,
	}
}

// NewCmdImages builds `kubectl coral prefetch images`.
func NewCmdImages(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdImages(NewImagesOptions(flags, streams))
}

func newCmdImages(o *ImagesOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images [IMAGE...] [-f FILE|-] [-l SELECTOR | --nodes NAME,...]",
		Short: "Pull images onto nodes through each node's container runtime",
		Long: `Pull images onto nodes before workloads need them.

For every selected node (all nodes by default), Coral creates one Job pinned to
that node. Its pod mounts only the node's container-runtime socket and pulls the
images over CRI. The report shows, per node and image, Pulled (pulled now),
Present (already there with the expected digest), Failed (with the reason) or
Skipped (node not Ready, cordoned, or unable to run the worker, with the reason).

Each tag is resolved to a digest once, before the run, so every node gets the
same bytes; a node that ends up with other bytes is flagged. Nodes keep the
image under the name you gave (the tag), so workloads find it. A reference
with both a tag and a digest (repo:tag@sha256:…, what mirror -o name prints)
is pulled by its digest, as kubelet pulls it: the node holds repo@sha256:…,
which a workload naming the same reference finds, and not the tag.

Images come from arguments and/or -f: a plain list (one reference per line,
'#' comments) or Kubernetes manifests (every container, init and ephemeral
container image of Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets,
ReplicationControllers, Jobs, CronJobs and PodTemplates). Use -f - for stdin.

The worker pod mounts a hostPath (the runtime socket), which Pod Security
admission allows only at the "privileged" level: run in a namespace labelled
pod-security.kubernetes.io/enforce=privileged (e.g. -n coral-system).

Without a resolved digest (--no-resolve, or a registry only the nodes can
reach) every node asks the registry for the tag: an image is Present only when
the node already held what the registry serves now.

Exit codes: 0 every image, with the resolved digest (and pinned, with --pin),
on every selected node; 1 some failed — a node holding other bytes than were
resolved and a pin that did not take count as failures, and so do skipped
nodes with --fail-on-skipped; 2 bad input, including an image the registry
says does not exist (nothing created); 130 interrupted (everything created was
deleted).`,
		Example: `  # Two images onto the nodes of the web pool
  kubectl coral prefetch images nginx:1.27 registry.example.com/team/api:v3 -l pool=web

  # Images listed in a file, onto two named nodes
  kubectl coral prefetch images -f images.txt --nodes node-a,node-b

  # Every image of a Helm chart, JSON report for a pre-deploy script
  helm template ./chart | kubectl coral prefetch images -f - -o json

  # A private registry: use a dockerconfigjson secret of the namespace
  kubectl coral prefetch images registry.example.com/team/api:v3 --pull-secret regcred -n coral-system

  # Every image a cluster's workloads run, onto a new node pool
  kubectl coral prefetch images --from-cluster -l pool=new-pool -n coral-system

  # What cluster A runs, onto cluster B's nodes (see docs/sync.md for the registry side)
  kubectl coral prefetch images --from-cluster --from-context cluster-a --context cluster-b -n coral-system

  # Print the Jobs that would be created, create nothing
  kubectl coral prefetch images redis:7 --dry-run=client -o yaml`,
		Args: cobra.ArbitraryArgs,
		RunE: cmdutil.RunE(o),
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.Filenames, "filename", "f", nil, "file with images: a plain list or Kubernetes manifests; - for stdin (repeatable)")
	f.StringVar(&o.RuntimeEndpoint, "runtime-endpoint", "", "CRI socket on every node (unix:///…); default: discovered per node")
	f.StringArrayVar(&o.PullSecrets, "pull-secret", nil, "name of a kubernetes.io/dockerconfigjson or dockercfg secret in the namespace, for private registries (repeatable)")
	f.BoolVar(&o.NoResolve, "no-resolve", false, "do not resolve tags to digests before the run (nodes then pull whatever the tag points to)")
	f.StringVar(&o.Pin, "pin", "", "pin the images so kubelet's image garbage collection keeps them until unpinned (containerd 1.6.26+ / 2.x). --pin: an image that could not be pinned fails its node; --pin=best-effort: it is only reported")
	f.Lookup("pin").NoOptDefVal = pinStrict
	f.IntVar(&o.MaxPullsPerNode, "max-pulls-per-node", o.MaxPullsPerNode, "how many images one node pulls at once")
	f.DurationVar(&o.ImageTimeout, "image-timeout", o.ImageTimeout, "time limit per image on a node, retries included")
	f.StringVar(&o.Persist, "persist", "", "write an ImagePrefetch of this name (in -n) for the controller (kubectl coral install) instead of running Jobs here: the images stay on the selected nodes, nodes that join get them, moved tags are followed")
	f.BoolVar(&o.Wait, "wait", o.Wait, "with --persist: wait until the controller has settled and print its report (exit codes as a one-shot run); --wait=false returns once the object is written")
	f.DurationVar(&o.WaitTimeout, "wait-timeout", o.WaitTimeout, "with --persist: how long to wait")
	f.DurationVar(&o.RefreshInterval, "refresh-interval", 0, "with --persist: how often the controller re-resolves tags (default: the CRD's, 1h)")
	f.BoolVar(&o.FromCluster, "from-cluster", false, "also prefetch every image the cluster's pods and workloads run (Deployments, StatefulSets, DaemonSets, Jobs, CronJobs, …)")
	f.StringVar(&o.FromNamespace, "from-namespace", "", "with --from-cluster: read only this namespace (default: all namespaces; -n is where the workers run)")
	f.StringVar(&o.FromContext, "from-context", "", "with --from-cluster: read the workloads of this kubeconfig context instead of the target cluster (another cluster)")
	o.addFlags(f)
	o.addHostNetworkFlag(f)
	o.disk.addFlags(cmd)
	return cmd
}

// Complete reads the images and sets up the client.
func (o *ImagesOptions) Complete(cmd *cobra.Command, args []string) error {
	var err error
	if o.images, err = readImages(args, o.Filenames, o.In); err != nil {
		return err
	}
	if o.sourceClient == nil {
		o.sourceClient = o.newSourceClient
	}
	return o.complete()
}

// readImages reads image references from arguments and -f files (plain
// lists or manifests; - is in), without duplicates, in order.
func readImages(args, filenames []string, in io.Reader) ([]string, error) {
	var refs []string
	if len(args) > 0 {
		r, err := source.FromArgs(args)
		if err != nil {
			return nil, cmdutil.BadInput(err)
		}
		refs = append(refs, r...)
	}
	for _, fn := range filenames {
		r, err := source.FromFile(fn, in)
		if err != nil {
			return nil, cmdutil.BadInput(err)
		}
		refs = append(refs, r...)
	}
	return source.Dedup(refs), nil
}

// newSourceClient connects to the cluster --from-cluster reads: the target
// cluster, or --from-context of the same kubeconfig.
func (o *ImagesOptions) newSourceClient() (kubernetes.Interface, error) {
	if o.FromContext == "" {
		return o.client, nil
	}
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = o.configFlags.KubeConfig
	flags.Context = &o.FromContext
	cfg, err := flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "kubectl-coral/" + version.Version
	return kubernetes.NewForConfig(cfg)
}

// readCluster adds the images the source cluster's workloads run.
func (o *ImagesOptions) readCluster(ctx context.Context) error {
	where := "all namespaces"
	if o.FromNamespace != "" {
		where = fmt.Sprintf("namespace %q", o.FromNamespace)
	}
	if o.FromContext != "" {
		where += fmt.Sprintf(" of context %q", o.FromContext)
	}
	c, err := o.sourceClient()
	if err != nil {
		return cmdutil.BadInputf("--from-cluster: connecting to %s: %v", where, err)
	}
	got, err := source.FromCluster(ctx, c, o.FromNamespace)
	if err != nil {
		return cmdutil.BadInput(explainAPI(err, "--from-cluster: reading the workloads of "+where))
	}
	for _, w := range got.Warnings {
		fmt.Fprintf(o.ErrOut, "warning: --from-cluster: %s\n", w)
	}
	if len(got.Images) == 0 && len(o.images) == 0 {
		return cmdutil.BadInputf("--from-cluster: no pods or workloads with images in %s", where)
	}
	if len(got.PullSecrets) > 0 && len(o.PullSecrets) == 0 {
		fmt.Fprintf(o.ErrOut, "warning: --from-cluster: the workloads name image pull secrets (%s/%s, …); the workers use only --pull-secret secrets of namespace %q\n", got.PullSecrets[0].Namespace, got.PullSecrets[0].Name, o.namespace)
	}
	o.images = source.Dedup(append(o.images, got.Images...))
	return nil
}

// Validate checks the flags; nothing has been sent to the cluster yet.
func (o *ImagesOptions) Validate() error {
	switch {
	case len(o.images) == 0 && !o.FromCluster:
		return cmdutil.BadInputf("no images given: name them as arguments, with -f FILE, or take them from a cluster with --from-cluster (see --help)")
	case !o.FromCluster && (o.FromNamespace != "" || o.FromContext != ""):
		return cmdutil.BadInputf("--from-namespace and --from-context only apply to --from-cluster")
	case o.Persist != "" && o.DryRun != "none":
		return cmdutil.BadInputf("--persist writes an object for the controller; it cannot be combined with --dry-run (see the object with kubectl get imageprefetch %s -o yaml)", o.Persist)
	case o.Persist == "" && (o.RefreshInterval != 0 || !o.Wait):
		return cmdutil.BadInputf("--refresh-interval and --wait only apply to --persist")
	case o.Persist != "" && o.Pin == pinBestEffort:
		return cmdutil.BadInputf("--persist takes --pin (the controller reports nodes that cannot pin as Degraded), not --pin=best-effort")
	case o.MaxPullsPerNode <= 0:
		return cmdutil.BadInputf("--max-pulls-per-node must be at least 1, got %d", o.MaxPullsPerNode)
	case o.ImageTimeout <= 0:
		return cmdutil.BadInputf("--image-timeout must be a positive duration such as 5m, got %s", o.ImageTimeout)
	}
	switch o.Pin {
	case "", "false":
		o.Pin = ""
	case pinStrict, pinBestEffort:
	default:
		return cmdutil.BadInputf(`--pin must be given alone (pin, and fail an image that cannot be pinned) or as --pin=best-effort (pin where the runtime can, report the rest), got %q`, o.Pin)
	}
	if o.RuntimeEndpoint != "" {
		if _, _, err := plan.RuntimeSocket(&corev1.Node{}, o.RuntimeEndpoint); err != nil {
			return cmdutil.BadInput(err)
		}
	}
	return o.validate()
}

// Run plans, runs and reports.
func (o *ImagesOptions) Run(ctx context.Context) error {
	if o.FromCluster {
		if err := o.readCluster(ctx); err != nil {
			return err
		}
	}
	secrets, keyring, err := o.readPullSecrets(ctx)
	if err != nil {
		return err
	}
	items := make([]plan.Item, len(o.images))
	for i, img := range o.images {
		items[i] = plan.Item{Ref: img}
	}
	if o.Persist != "" {
		return o.persist(ctx)
	}
	if !o.disk.Skip { // the disk check reads what nodes hold of these images
		o.nodeImages = diskcheck.NewHeldFilter(o.images)
	}
	p, err := o.plan(ctx, items, o.RuntimeEndpoint, true)
	if err != nil {
		return err
	}
	readCtx, stopReads := context.WithCancel(ctx)
	defer stopReads()
	reads := o.startDiskReads(readCtx, &o.disk, p)
	if !o.NoResolve && len(p.Tasks) > 0 {
		digests, err := o.resolveAll(ctx, keyring)
		if err != nil {
			return err
		}
		for ti := range p.Tasks {
			for ii := range p.Tasks[ti].Items {
				p.Tasks[ti].Items[ii].ExpectedDigest = digests[p.Tasks[ti].Items[ii].Ref]
			}
		}
	}
	spec := o.jobSpec()
	spec.MaxPullsPerNode, spec.ImageTimeout, spec.PullSecrets, spec.Pin = o.MaxPullsPerNode, o.ImageTimeout, secrets, o.Pin != ""
	var njs []run.NodeJob
	for _, t := range p.Tasks {
		nj := run.NodeJob{Node: t.Node, JobName: jobs.Name(spec.RunID, t.Node), NewJob: func() *batchv1.Job { return jobs.ForTask(t, spec) }}
		for _, it := range t.Items {
			nj.Items = append(nj.Items, it.Ref)
			nj.Expected = append(nj.Expected, it.ExpectedDigest)
		}
		njs = append(njs, nj)
	}
	// The API server admits the first worker (server-side dry run) while
	// the disk check waits for the kubelets: both come before anything is
	// created, and a refusal by either stops the run.
	admitted := make(chan error, 1)
	if o.DryRun == "none" {
		go func() { admitted <- o.preflight(ctx, njs) }()
	} else {
		admitted <- nil
	}
	err = o.checkDisk(ctx, reads, p, keyring)
	stopReads() // done, or not needed after all (no image's size known)
	if perr := <-admitted; err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	out, err := o.execute(ctx, report.KindPrefetchReport, p, njs, func(nrs []run.NodeResult) []report.Result {
		return o.results(p, njs, nrs)
	})
	if err != nil {
		return err
	}
	return o.finish(out)
}

const (
	pinStrict     = "true"
	pinBestEffort = "best-effort"
)

// results turns node results and skips into report rows.
func (o *ImagesOptions) results(p *plan.Plan, njs []run.NodeJob, nrs []run.NodeResult) []report.Result {
	var out []report.Result
	for i, nr := range nrs {
		nj := njs[i]
		for j, it := range nr.Items {
			res := report.Result{
				Node: nr.Node, Image: nj.Items[j], Status: it.Status, Digest: it.Digest, ExpectedDigest: nj.Expected[j],
				SizeBytes: it.SizeBytes, DurationSeconds: float64(it.DurationMs) / 1000, Attempts: it.Attempts, Pinned: it.Pinned, Message: it.Message,
			}
			// The promise is "every image, with the resolved bytes, on every
			// selected node" (and pinned, when --pin asks for it): anything
			// less fails the item, so the run exits 1.
			if res.Status.Succeeded() && res.ExpectedDigest != "" && res.Digest != "" && res.Digest != res.ExpectedDigest {
				res.DigestMismatch = true
				res.Status = report.StatusFailed
				res.Message = strings.TrimSpace(fmt.Sprintf("node holds %s, %s was resolved before the run (did the tag move?) %s", res.Digest, res.ExpectedDigest, res.Message))
			}
			if res.Status.Succeeded() && o.Pin == pinStrict && !res.Pinned {
				res.Status = report.StatusFailed
				if !strings.Contains(res.Message, "not pinned") {
					res.Message = strings.TrimSpace("not pinned " + res.Message)
				}
				res.Message += " (--pin=best-effort accepts this)"
			}
			out = append(out, res)
		}
	}
	return append(out, skippedResults(p, func(node, reason string) []report.Result {
		var rows []report.Result
		for _, img := range o.images {
			rows = append(rows, report.Result{Node: node, Image: img, Status: report.StatusSkipped, Message: reason})
		}
		return rows
	})...)
}

// readPullSecrets checks every --pull-secret exists with a usable type and
// returns them for the Jobs, and their credentials for digest resolution.
func (o *ImagesOptions) readPullSecrets(ctx context.Context) ([]jobs.PullSecret, *registryauth.Keyring, error) {
	k := &registryauth.Keyring{}
	var out []jobs.PullSecret
	for _, n := range o.PullSecrets {
		s, err := o.client.CoreV1().Secrets(o.namespace).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return nil, nil, cmdutil.BadInputf("--pull-secret %s: no such secret in namespace %q (create it with: kubectl create secret docker-registry %s -n %s --docker-server=… --docker-username=… --docker-password=…)", n, o.namespace, n, o.namespace)
			}
			return nil, nil, cmdutil.BadInput(explainAPI(err, "reading --pull-secret "+n))
		}
		if err := k.AddSecret(string(s.Type), s.Data); err != nil {
			return nil, nil, cmdutil.BadInputf("--pull-secret %s: %v", n, err)
		}
		out = append(out, jobs.PullSecret{Name: n, Type: s.Type})
	}
	return out, k, nil
}

// resolveAll resolves every image's digest once, 8 at a time. Images that
// cannot be resolved from here (a registry only the nodes reach, a private
// one without a secret) are pulled by tag, with a warning. An image the
// registry says does not exist fails the run before anything is created.
func (o *ImagesOptions) resolveAll(ctx context.Context, k *registryauth.Keyring) (map[string]string, error) {
	kc := k.Keychain(authn.DefaultKeychain)
	out := make(map[string]string, len(o.images))
	var missing []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, img := range o.images {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			d, err := o.resolve(rctx, img, kc)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if source.IsManifestUnknown(err) {
					missing = append(missing, fmt.Sprintf("  %s: %s", img, shortErr(err)))
					return
				}
				fmt.Fprintf(o.ErrOut, "warning: cannot resolve %s to a digest from here (%v); nodes will ask the registry for the tag when they pull\n", img, shortErr(err))
				return
			}
			out[img] = d
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil, &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New("interrupted before any Job was created")}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, cmdutil.BadInputf("the registry says these images do not exist:\n%s\nfix the names or tags; if the nodes pull through a mirror that has them and this machine cannot see it, pass --no-resolve", strings.Join(missing, "\n"))
	}
	return out, nil
}

// persist writes the ImagePrefetch for the controller and, with --wait,
// prints its report with the same exit codes as a one-shot run.
func (o *ImagesOptions) persist(ctx context.Context) error {
	if msgs := validation.IsDNS1123Subdomain(o.Persist); len(msgs) > 0 {
		return cmdutil.BadInputf("--persist %q: %s", o.Persist, strings.Join(msgs, "; "))
	}
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return cmdutil.BadInput(explainKubeconfig(err))
	}
	cl, err := NewPersistClient(cfg)
	if err != nil {
		return cmdutil.BadInput(err)
	}
	rep, err := PersistImages(ctx, cl, ImagePersist{
		PersistSettings: PersistSettings{
			Name: o.Persist, Namespace: o.namespace, Selector: o.Selector, NodeNames: o.Nodes, IncludeUnschedulable: o.IncludeUnschedulable,
			WorkerImage: o.WorkerImage, MaxNodesInFlight: o.MaxNodesInFlight, NodeTimeout: o.Timeout, Retries: o.Retries,
			Wait: o.Wait, WaitTimeout: o.WaitTimeout,
		},
		Images: o.images, PullSecrets: o.PullSecrets, Pin: o.Pin != "", MaxPullsPerNode: o.MaxPullsPerNode,
		ImageTimeout: o.ImageTimeout, RuntimeEndpoint: o.RuntimeEndpoint, RefreshInterval: o.RefreshInterval,
	})
	return o.finishPersist(ctx, "imageprefetch", o.Persist, rep, err)
}
