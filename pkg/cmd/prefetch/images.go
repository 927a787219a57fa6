package prefetch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/registryauth"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/run"
	"github.com/coral-dev/coral/pkg/source"
	"github.com/coral-dev/coral/pkg/version"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// ImagesOptions holds everything `kubectl coral prefetch images` needs.
// NewImagesOptions is the one place for defaults.
type ImagesOptions struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags

	Args                 []string
	Filenames            []string
	Selector             string
	Nodes                []string
	IncludeUnschedulable bool
	RuntimeEndpoint      string
	PullSecrets          []string
	NoResolve            bool

	WorkerImage      string
	WorkerPullSecret []string
	MaxNodesInFlight int
	MaxPullsPerNode  int
	Timeout          time.Duration
	ImageTimeout     time.Duration
	Retries          int
	KeepJobs         bool

	DryRun   string
	Output   string
	Progress string

	// Set by Complete.
	namespace string
	client    kubernetes.Interface
	images    []string
	selector  labels.Selector
	runID     string
	// resolve looks up an image's digest; replaced in tests.
	resolve func(ctx context.Context, ref string, kc authn.Keychain) (string, error)
}

// NewImagesOptions returns the defaults.
func NewImagesOptions(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *ImagesOptions {
	return &ImagesOptions{
		IOStreams:        streams,
		configFlags:      flags,
		WorkerImage:      version.DefaultWorkerImage(),
		MaxNodesInFlight: 50,
		MaxPullsPerNode:  3,
		Timeout:          15 * time.Minute,
		ImageTimeout:     10 * time.Minute,
		Retries:          3,
		DryRun:           "none",
		Progress:         "auto",
		resolve:          resolveDigest,
	}
}

// NewCmdImages builds `kubectl coral prefetch images`.
func NewCmdImages(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := NewImagesOptions(flags, streams)
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
image under the name you gave (the tag), so workloads find it.

Images come from arguments and/or -f: a plain list (one reference per line,
'#' comments) or Kubernetes manifests (every container, init and ephemeral
container image of Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets,
ReplicationControllers, Jobs, CronJobs and PodTemplates). Use -f - for stdin.

The worker pod mounts a hostPath (the runtime socket), which Pod Security
admission allows only at the "privileged" level: run in a namespace labelled
pod-security.kubernetes.io/enforce=privileged (e.g. -n coral-system).

Exit codes: 0 all images on all selected nodes, 1 some failed, 2 bad input
(nothing created), 130 interrupted (everything created was deleted).`,
		Example: `  # Two images onto the nodes of the web pool
  kubectl coral prefetch images nginx:1.27 registry.example.com/team/api:v3 -l pool=web

  # Images listed in a file, onto two named nodes
  kubectl coral prefetch images -f images.txt --nodes node-a,node-b

  # Every image of a Helm chart, JSON report for a pre-deploy script
  helm template ./chart | kubectl coral prefetch images -f - -o json

  # A private registry: use a dockerconfigjson secret of the namespace
  kubectl coral prefetch images registry.example.com/team/api:v3 --pull-secret regcred -n coral-system

  # Print the Jobs that would be created, create nothing
  kubectl coral prefetch images redis:7 --dry-run=client -o yaml`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(cmd, args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.Filenames, "filename", "f", nil, "file with images: a plain list or Kubernetes manifests; - for stdin (repeatable)")
	f.StringVarP(&o.Selector, "selector", "l", "", "node label selector (e.g. pool=web, 'zone in (a,b),!gpu'); default all nodes")
	f.StringSliceVar(&o.Nodes, "nodes", nil, "comma-separated node names (combined with -l: both must match)")
	f.BoolVar(&o.IncludeUnschedulable, "include-unschedulable", false, "include cordoned nodes")
	f.StringVar(&o.RuntimeEndpoint, "runtime-endpoint", "", "CRI socket on every node (unix:///…); default: discovered per node")
	f.StringArrayVar(&o.PullSecrets, "pull-secret", nil, "name of a kubernetes.io/dockerconfigjson or dockercfg secret in the namespace, for private registries (repeatable)")
	f.BoolVar(&o.NoResolve, "no-resolve", false, "do not resolve tags to digests before the run (nodes then pull whatever the tag points to)")
	f.StringVar(&o.WorkerImage, "worker-image", o.WorkerImage, "image of the worker that runs on each node; $"+version.EnvWorkerImage+" overrides the default")
	f.StringArrayVar(&o.WorkerPullSecret, "worker-image-pull-secret", nil, "image pull secret for the worker image itself (repeatable)")
	f.IntVar(&o.MaxNodesInFlight, "max-nodes-in-flight", o.MaxNodesInFlight, "how many nodes work at once")
	f.IntVar(&o.MaxPullsPerNode, "max-pulls-per-node", o.MaxPullsPerNode, "how many images one node pulls at once")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "time limit per node, from its Job's creation to its report")
	f.DurationVar(&o.ImageTimeout, "image-timeout", o.ImageTimeout, "time limit per image on a node, retries included")
	f.IntVar(&o.Retries, "retries", o.Retries, "retries per image for transient errors (unavailable, timeouts, 5xx); never for not-found or unauthorized")
	f.BoolVar(&o.KeepJobs, "keep-jobs", false, "keep the Jobs after the run (for debugging; they expire after 1h)")
	f.StringVar(&o.DryRun, "dry-run", o.DryRun, `"client": print the Jobs, create nothing; "server": also ask the API server to admit them (nothing is persisted)`)
	f.Lookup("dry-run").NoOptDefVal = "client"
	f.StringVarP(&o.Output, "output", "o", "", "output format: wide, json or yaml (default: a table)")
	f.StringVar(&o.Progress, "progress", o.Progress, "progress on stderr: auto (a bar on a terminal, lines otherwise), bar, plain or none")
	return cmd
}

// Complete reads the images and sets up the client.
func (o *ImagesOptions) Complete(cmd *cobra.Command, args []string) error {
	o.Args = args
	var refs []string
	if len(args) > 0 {
		r, err := source.FromArgs(args)
		if err != nil {
			return cmdutil.BadInput(err)
		}
		refs = append(refs, r...)
	}
	for _, fn := range o.Filenames {
		r, err := source.FromFile(fn, o.In)
		if err != nil {
			return cmdutil.BadInput(err)
		}
		refs = append(refs, r...)
	}
	o.images = source.Dedup(refs)

	sel, err := labels.Parse(o.Selector)
	if err != nil {
		return cmdutil.BadInputf("-l/--selector %q: %v", o.Selector, err)
	}
	o.selector = sel
	o.runID = newRunID()

	if o.client != nil { // set by tests
		if o.namespace == "" {
			o.namespace = "default"
		}
		return nil
	}
	o.namespace, _, err = o.configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return cmdutil.BadInput(explainKubeconfig(err))
	}
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return cmdutil.BadInput(explainKubeconfig(err))
	}
	// client-go's default 5 QPS makes a large run crawl; one run makes about
	// two requests per node, so a modest raise is enough (see
	// shared/notes/scale-simulation.md).
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "kubectl-coral/" + version.Version
	o.client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		return cmdutil.BadInput(explainKubeconfig(err))
	}
	return nil
}

// Validate checks the flags; nothing has been sent to the cluster yet.
func (o *ImagesOptions) Validate() error {
	switch {
	case len(o.images) == 0:
		return cmdutil.BadInputf("no images given: name them as arguments or with -f FILE (see --help)")
	case o.MaxNodesInFlight <= 0:
		return cmdutil.BadInputf("--max-nodes-in-flight must be at least 1, got %d", o.MaxNodesInFlight)
	case o.MaxPullsPerNode <= 0:
		return cmdutil.BadInputf("--max-pulls-per-node must be at least 1, got %d", o.MaxPullsPerNode)
	case o.Timeout <= 0:
		return cmdutil.BadInputf("--timeout must be a positive duration such as 10m, got %s", o.Timeout)
	case o.ImageTimeout <= 0:
		return cmdutil.BadInputf("--image-timeout must be a positive duration such as 5m, got %s", o.ImageTimeout)
	case o.Retries < 0:
		return cmdutil.BadInputf("--retries must be 0 or more, got %d", o.Retries)
	case o.WorkerImage == "":
		return cmdutil.BadInputf("--worker-image is empty")
	}
	if err := report.ValidateFormat(o.Output); err != nil {
		return cmdutil.BadInput(err)
	}
	switch o.DryRun {
	case "none", "client", "server":
	default:
		return cmdutil.BadInputf(`--dry-run must be "none", "client" or "server", got %q`, o.DryRun)
	}
	switch o.Progress {
	case "auto", "bar", "plain", "none":
	default:
		return cmdutil.BadInputf(`--progress must be auto, bar, plain or none, got %q`, o.Progress)
	}
	if _, err := source.FromArgs([]string{o.WorkerImage}); err != nil {
		return cmdutil.BadInputf("--worker-image: %v", err)
	}
	for _, n := range o.Nodes {
		if strings.TrimSpace(n) == "" {
			return cmdutil.BadInputf("--nodes holds an empty name")
		}
	}
	return nil
}

// Run plans, runs and reports.
func (o *ImagesOptions) Run(ctx context.Context) error {
	start := time.Now()
	nodes, err := o.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return cmdutil.BadInput(explainAPI(err, "listing nodes"))
	}
	secrets, keyring, err := o.readPullSecrets(ctx)
	if err != nil {
		return err
	}
	items := make([]plan.Item, len(o.images))
	for i, img := range o.images {
		items[i] = plan.Item{Ref: img}
	}
	p, err := plan.Build(nodes.Items, items, plan.Options{
		Selector: o.selector, NodeNames: o.Nodes, IncludeUnschedulable: o.IncludeUnschedulable, RuntimeEndpoint: o.RuntimeEndpoint,
	})
	if err != nil {
		return cmdutil.BadInput(err)
	}
	if o.RuntimeEndpoint != "" {
		if _, _, err := plan.RuntimeSocket(&corev1.Node{}, o.RuntimeEndpoint); err != nil {
			return cmdutil.BadInput(err)
		}
	}

	if !o.NoResolve && len(p.Tasks) > 0 {
		digests := o.resolveAll(ctx, keyring)
		for ti := range p.Tasks {
			for ii := range p.Tasks[ti].Items {
				p.Tasks[ti].Items[ii].ExpectedDigest = digests[p.Tasks[ti].Items[ii].Ref]
			}
		}
	}

	spec := jobs.Spec{
		RunID: o.runID, Namespace: o.namespace, WorkerImage: o.WorkerImage, ImagePullPolicy: corev1.PullIfNotPresent,
		Deadline: o.Timeout + time.Minute, TTL: time.Hour, MaxPullsPerNode: o.MaxPullsPerNode,
		ImageTimeout: o.ImageTimeout, Retries: o.Retries, PullSecrets: secrets, WorkerPullSecrets: o.WorkerPullSecret,
	}
	var njs []run.NodeJob
	for _, t := range p.Tasks {
		nj := run.NodeJob{Node: t.Node, Job: jobs.ForTask(t, spec)}
		for _, it := range t.Items {
			nj.Images = append(nj.Images, it.Ref)
			nj.Expected = append(nj.Expected, it.ExpectedDigest)
		}
		njs = append(njs, nj)
	}

	if o.DryRun != "none" {
		return o.printDryRun(ctx, p, njs)
	}
	if len(njs) > 0 {
		if err := run.Preflight(ctx, o.client, njs[0].Job); err != nil {
			return cmdutil.BadInput(err)
		}
	}

	prog := newProgress(o.ErrOut, o.Progress, len(njs), len(p.Skipped))
	engine := &run.Engine{
		Client: o.client, Namespace: o.namespace, RunID: o.runID,
		MaxInFlight: o.MaxNodesInFlight, NodeTimeout: o.Timeout, KeepJobs: o.KeepJobs,
		OnEvent: prog.Event,
	}
	prog.Start(o.runID, o.namespace)
	results, interrupted, runErr := engine.Run(ctx, njs)
	prog.Finish(interrupted)

	rep := report.NewPrefetchReport(o.runID, start, time.Now(), o.results(p, njs, results))
	rep.Interrupted = interrupted
	if err := report.Print(o.Out, o.Output, rep, rep.PrintTable); err != nil {
		return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: err}
	}
	switch {
	case interrupted:
		msg := "interrupted: the run's Jobs were deleted; the report above is partial"
		if runErr != nil {
			msg = fmt.Sprintf("interrupted, and cleanup failed: %v", runErr)
		}
		return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New(msg)}
	case runErr != nil:
		return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: runErr}
	case !rep.AllSucceeded():
		return cmdutil.Silent(cmdutil.ExitFailed)
	}
	return nil
}

// results turns node results and skips into report rows.
func (o *ImagesOptions) results(p *plan.Plan, njs []run.NodeJob, nrs []run.NodeResult) []report.Result {
	var out []report.Result
	for i, nr := range nrs {
		nj := njs[i]
		for j, it := range nr.Items {
			res := report.Result{
				Node: nr.Node, Image: nj.Images[j], Status: it.Status, Digest: it.Digest, ExpectedDigest: nj.Expected[j],
				SizeBytes: it.SizeBytes, DurationSeconds: float64(it.DurationMs) / 1000, Attempts: it.Attempts, Message: it.Message,
			}
			if res.Status.Succeeded() && res.ExpectedDigest != "" && res.Digest != "" && res.Digest != res.ExpectedDigest {
				res.DigestMismatch = true
				res.Message = strings.TrimSpace(fmt.Sprintf("node holds %s, %s was resolved before the run (did the tag move?) %s", res.Digest, res.ExpectedDigest, res.Message))
			}
			out = append(out, res)
		}
	}
	for _, s := range p.Skipped {
		for _, img := range o.images {
			out = append(out, report.Result{Node: s.Node, Image: img, Status: report.StatusSkipped, Message: s.Reason})
		}
	}
	return out
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
		switch s.Type {
		case corev1.SecretTypeDockerConfigJson:
			err = k.ParseDockerConfigJSON(s.Data[corev1.DockerConfigJsonKey])
		case corev1.SecretTypeDockercfg:
			err = k.ParseDockercfg(s.Data[corev1.DockerConfigKey])
		default:
			return nil, nil, cmdutil.BadInputf("--pull-secret %s: secret type is %q; want %s or %s", n, s.Type, corev1.SecretTypeDockerConfigJson, corev1.SecretTypeDockercfg)
		}
		if err != nil {
			return nil, nil, cmdutil.BadInputf("--pull-secret %s: %v", n, err)
		}
		out = append(out, jobs.PullSecret{Name: n, Type: s.Type})
	}
	return out, k, nil
}

// resolveAll resolves every image's digest once, 8 at a time. Images that
// cannot be resolved from here (a registry only the nodes reach, a private
// one without a secret) are pulled by tag, with a warning.
func (o *ImagesOptions) resolveAll(ctx context.Context, k *registryauth.Keyring) map[string]string {
	kc := k.Keychain(authn.DefaultKeychain)
	out := make(map[string]string, len(o.images))
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
				fmt.Fprintf(o.ErrOut, "warning: cannot resolve %s to a digest from here (%v); nodes will pull the tag as it is when they pull\n", img, shortErr(err))
				return
			}
			out[img] = d
		}()
	}
	wg.Wait()
	return out
}

func resolveDigest(ctx context.Context, ref string, kc authn.Keychain) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", err
	}
	if d, ok := r.(name.Digest); ok {
		return d.DigestStr(), nil
	}
	desc, err := remote.Head(r, remote.WithContext(ctx), remote.WithAuthFromKeychain(kc))
	if err != nil {
		return "", err
	}
	return desc.Digest.String(), nil
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// printDryRun prints the Jobs instead of creating them. With
// --dry-run=server the API server also admits the first Job and its pod.
func (o *ImagesOptions) printDryRun(ctx context.Context, p *plan.Plan, njs []run.NodeJob) error {
	if o.DryRun == "server" && len(njs) > 0 {
		if err := run.Preflight(ctx, o.client, njs[0].Job); err != nil {
			return cmdutil.BadInput(err)
		}
	}
	for _, s := range p.Skipped {
		fmt.Fprintf(o.ErrOut, "node %s skipped: %s\n", s.Node, s.Reason)
	}
	switch o.Output {
	case report.FormatJSON, report.FormatYAML:
		list := &batchv1.JobList{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "JobList"}}
		for _, nj := range njs {
			list.Items = append(list.Items, *nj.Job)
		}
		return printObject(o.Out, o.Output, list)
	}
	for _, nj := range njs {
		fmt.Fprintf(o.Out, "job.batch/%s created (%s dry run) on node %s: %d images\n", nj.Job.Name, o.DryRun, nj.Node, len(nj.Images))
	}
	return nil
}

func printObject(w io.Writer, format string, v any) error {
	if format == report.FormatYAML {
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	return report.Print(w, report.FormatJSON, v, nil)
}

func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
