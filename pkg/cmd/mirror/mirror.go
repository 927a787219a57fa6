// Package mirror is the `kubectl coral mirror` command: copy images into a
// registry, from arguments, files, manifests or what a cluster runs.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	mirrorlib "github.com/coral-dev/coral/pkg/mirror"
	"github.com/coral-dev/coral/pkg/progress"
	"github.com/coral-dev/coral/pkg/report/output"
	"github.com/coral-dev/coral/pkg/source"
)

var mirrorLong = `Copy container images from their registries into another registry.

Images come from arguments, from -f FILE (a list, one image per line, or
Kubernetes manifests: every container, init and ephemeral container image of
Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, …;
"-f -" reads stdin), or from a live cluster with --from-cluster. With
--all-tags, --tags REGEX or --semver RANGE, arguments name repositories and
their matching tags are copied.

Where images go: the source registry is replaced by --to, the path and tag
are kept. Two sources that would land on one destination are an error.
  nginx:1.27                  -> REGISTRY[/PREFIX]/library/nginx:1.27
  quay.io/org/app@sha256:...  -> REGISTRY[/PREFIX]/org/app@sha256:...
  ghcr.io/org/app:v1@sha256:. -> REGISTRY[/PREFIX]/org/app:v1 (that digest)
{registry} in the prefix stands for the source registry, keeping images of
many registries apart (and matching containerd's per-registry mirrors):
  quay.io/org/app:v1 --to REGISTRY/{registry} -> REGISTRY/quay.io/org/app:v1

Multi-platform images are copied whole and keep their digest. --platform
copies a subset: one platform writes that platform's image manifest (its digest
is the source's per-platform digest), several write a new, smaller index whose
digest differs from the source's; the report says so.

Runs are incremental: an image whose digest is already at the destination
costs a manifest read at the source and one HEAD at the destination (only the
HEAD when pinned by digest), blobs the destination has are never sent again,
and blobs are mounted from other repositories where the registry allows.

Before anything is written, every source is resolved and the destination is
checked; invalid or missing images, unreachable registries, refused
credentials and destination collisions stop the run with exit code 2.
Registry errors 429 and 5xx are retried, waiting as long as Retry-After says.

Credentials: your docker config and credential helpers, plus
kubernetes.io/dockerconfigjson secrets read from the cluster with
--pull-secret (sources) and --push-secret (destination); with --from-cluster
also the imagePullSecrets of the pods and workloads read. TLS is always
verified (add private CAs with --registry-ca-file); plain http or unverified
TLS only for registries named with --insecure-registry (and plain http on
localhost).

Progress goes to stderr; the result table, or a MirrorReport with -o json|yaml,
to stdout. Exit codes: 0 all copied or present, 1 some images failed,
2 bad input (nothing written), 130 interrupted.`

var mirrorExample = `  # Copy two images (every platform, digests kept) into a local registry
  kubectl coral mirror nginx:1.27 quay.io/org/app@sha256:... --to registry.local:5000

  # Copy a list of images, or the images of manifests, 8 at a time, under a prefix
  kubectl coral mirror -f images.txt --to registry.local:5000/mirror --jobs 8

  # Show what a Helm chart needs and how much would be sent, writing nothing
  helm template ./chart | kubectl coral mirror -f - --to registry.local:5000 --dry-run

  # Copy every image another cluster runs into this region's registry
  kubectl coral mirror --from-cluster --context prod-us -A --to registry.eu.local

  # The same, one path per source registry (docker.io/..., quay.io/...)
  kubectl coral mirror --from-cluster --context prod-us -A --to 'registry.eu.local/{registry}'

  # Copy the Redis 7 tags, for amd64 and arm64 only
  kubectl coral mirror docker.io/library/redis --tags '^7\.' --platform linux/amd64,linux/arm64 --to registry.local:5000

  # A registry with a private CA, logging in with a secret from the cluster
  kubectl coral mirror -f images.txt --to registry.corp:5000 --registry-ca-file corp-ca.crt --push-secret regcred

  # Machine-readable report
  kubectl coral mirror -f images.txt --to registry.local:5000 -o json`

// Options holds the flags and state of `kubectl coral mirror`.
type Options struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags

	Filenames          []string
	FromCluster        bool
	AllNamespaces      bool
	To                 string
	AllTags            bool
	Tags               string
	Semver             string
	Platforms          []string
	Jobs               int
	KeepGoing          bool
	PullSecrets        []string
	PushSecrets        []string
	InsecureRegistries []string
	CAFiles            []string
	Retries            int
	DryRun             string
	Output             string
	Progress           string

	args      []string
	sources   []string
	dest      mirrorlib.Destination
	tagFilter mirrorlib.TagFilter
	namespace string
	extraOpts []mirrorlib.Option

	// newClient returns the clientset for --from-cluster and secrets.
	newClient func() (kubernetes.Interface, error)
}

// NewOptions returns Options holding every default.
func NewOptions(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *Options {
	o := &Options{
		IOStreams:   streams,
		configFlags: flags,
		Jobs:        mirrorlib.DefaultJobs,
		KeepGoing:   true,
		DryRun:      "none",
		Retries:     mirrorlib.DefaultRetries - 1,
		Progress:    string(progress.Auto),
	}
	o.newClient = func() (kubernetes.Interface, error) {
		cfg, err := o.configFlags.ToRESTConfig()
		if err != nil {
			return nil, err
		}
		return kubernetes.NewForConfig(cfg)
	}
	return o
}

// NewCmdMirror returns the `mirror` command.
func NewCmdMirror(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmd(NewOptions(flags, streams))
}

func newCmd(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:                   "mirror [IMAGE|REPOSITORY...] --to REGISTRY[/PREFIX]",
		DisableFlagsInUseLine: true,
		Short:                 "Copy images into a registry, from a list, manifests, or what a cluster runs",
		Long:                  mirrorLong,
		Example:               mirrorExample,
		SilenceUsage:          true,
		RunE:                  cmdutil.RunE(o),
	}
	f := cmd.Flags()
	f.StringVar(&o.To, "to", o.To, "Registry (and optional path prefix, where {registry} stands for the source registry) to copy into, e.g. registry.local:5000/mirror. Required.")
	f.StringArrayVarP(&o.Filenames, "filename", "f", o.Filenames, "File with images: a list (one per line, # comments) or Kubernetes manifests; - reads stdin. Repeatable.")
	f.BoolVar(&o.FromCluster, "from-cluster", o.FromCluster, "Copy the images of the pods and workloads of the cluster (--context, -n or -A).")
	f.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", o.AllNamespaces, "With --from-cluster: every namespace.")
	f.BoolVar(&o.AllTags, "all-tags", o.AllTags, "Arguments are repositories: copy all their tags.")
	f.StringVar(&o.Tags, "tags", o.Tags, "Arguments are repositories: copy the tags matching this regular expression, e.g. '^7\\.'.")
	f.StringVar(&o.Semver, "semver", o.Semver, "Arguments are repositories: copy the tags in this version range, e.g. '>=1.25, <1.28' or '~7.2'.")
	f.StringSliceVar(&o.Platforms, "platform", o.Platforms, "Copy only these platforms (os/arch[/variant], comma-separated or repeated). The destination digest then differs from the source index's.")
	f.IntVarP(&o.Jobs, "jobs", "j", o.Jobs, "Images copied at once (each also uploads up to this many blobs at once).")
	f.BoolVar(&o.KeepGoing, "keep-going", o.KeepGoing, "Go on after an image fails (exit 1 at the end); --keep-going=false stops starting new copies.")
	f.StringArrayVar(&o.PullSecrets, "pull-secret", o.PullSecrets, "kubernetes.io/dockerconfigjson secret ([NAMESPACE/]NAME) with credentials for the sources. Repeatable.")
	f.StringArrayVar(&o.PushSecrets, "push-secret", o.PushSecrets, "kubernetes.io/dockerconfigjson secret ([NAMESPACE/]NAME) with credentials for --to. Repeatable.")
	f.StringArrayVar(&o.InsecureRegistries, "insecure-registry", o.InsecureRegistries, "Registry (HOST or HOST:PORT) that may use plain http or an unverified certificate. Repeatable.")
	f.StringArrayVar(&o.CAFiles, "registry-ca-file", o.CAFiles, "PEM file with CA certificates to trust for registries, in addition to the system's. Repeatable.")
	f.IntVar(&o.Retries, "retries", o.Retries, "How often a request is retried after 429 Too Many Requests or a transient 5xx/network error.")
	f.StringVar(&o.DryRun, "dry-run", o.DryRun, `"client" (or just --dry-run): print the plan (source, destination, digest, bytes to send, already present) and write nothing`)
	f.Lookup("dry-run").NoOptDefVal = "client"
	f.StringVarP(&o.Output, "output", "o", o.Output, "Output format: "+strings.Join(output.Formats, "|")+" (default: a table).")
	f.StringVar(&o.Progress, "progress", o.Progress, "Progress on stderr: auto (a status line on a terminal, lines otherwise), bar, plain or none.")
	return cmd
}

// Complete reads the sources given as arguments and files.
func (o *Options) Complete(cmd *cobra.Command, args []string) error {
	o.args = args
	o.sources = nil
	if len(args) > 0 {
		if o.AllTags || o.Tags != "" || o.Semver != "" {
			o.sources = append(o.sources, args...) // repositories, checked by Validate
		} else {
			refs, err := source.FromArgs(args)
			if err != nil {
				return cmdutil.BadInput(err)
			}
			o.sources = append(o.sources, refs...)
		}
	}
	for _, f := range o.Filenames {
		refs, err := source.FromFile(f, o.In)
		if err != nil {
			return cmdutil.BadInput(err)
		}
		o.sources = append(o.sources, refs...)
	}
	o.sources = source.Dedup(o.sources)
	if o.FromCluster || len(o.PullSecrets) > 0 || len(o.PushSecrets) > 0 {
		ns, _, err := o.configFlags.ToRawKubeConfigLoader().Namespace()
		if err != nil {
			return cmdutil.BadInputf("reading the namespace from the kubeconfig (--kubeconfig, --context, -n): %w", err)
		}
		o.namespace = ns
	}
	return nil
}

// Validate checks every flag before anything is read from a registry.
func (o *Options) Validate() error {
	if o.To == "" {
		return cmdutil.BadInputf("--to is required: the registry to copy into, e.g. --to registry.local:5000/mirror")
	}
	dest, err := mirrorlib.ParseDestination(o.To, o.InsecureRegistries...)
	if err != nil {
		return cmdutil.BadInputf("--to: %w", err)
	}
	o.dest = dest
	switch o.DryRun {
	case "none", "client":
	case "server":
		return cmdutil.BadInputf(`--dry-run=server is not supported by mirror (registries have no dry run): use --dry-run`)
	default:
		return cmdutil.BadInputf(`--dry-run must be "none" or "client", got %q`, o.DryRun)
	}
	if o.Jobs <= 0 {
		return cmdutil.BadInputf("--jobs must be at least 1, got %d", o.Jobs)
	}
	if o.Retries < 0 {
		return cmdutil.BadInputf("--retries must be 0 or more, got %d", o.Retries)
	}
	if err := output.ValidateFormat(o.Output); err != nil {
		return cmdutil.BadInput(err)
	}
	if _, err := progress.ParseMode(o.Progress); err != nil {
		return cmdutil.BadInputf("--progress %v", err)
	}
	if o.tagFilter, err = mirrorlib.NewTagFilter(o.AllTags, o.Tags, o.Semver); err != nil {
		return cmdutil.BadInput(err)
	}
	if o.tagFilter.Enabled() && o.FromCluster {
		return cmdutil.BadInputf("%s expands repositories given as arguments or with -f; it cannot be used with --from-cluster", o.tagFilter)
	}
	if o.AllNamespaces && !o.FromCluster {
		return cmdutil.BadInputf("-A/--all-namespaces only applies to --from-cluster")
	}
	if len(o.sources) == 0 && !o.FromCluster {
		return cmdutil.BadInputf("nothing to mirror: give images as arguments, -f FILE (-f - for stdin), or --from-cluster")
	}
	platforms, err := mirrorlib.ParsePlatforms(o.Platforms)
	if err != nil {
		return cmdutil.BadInput(err)
	}
	for _, h := range o.InsecureRegistries {
		if strings.Contains(h, "/") || strings.TrimSpace(h) == "" {
			return cmdutil.BadInputf("--insecure-registry %q: want HOST or HOST:PORT, without scheme or path", h)
		}
	}
	opts := []mirrorlib.Option{
		mirrorlib.WithJobs(o.Jobs),
		mirrorlib.WithPlatforms(platforms...),
		mirrorlib.WithInsecureRegistries(o.InsecureRegistries...),
		mirrorlib.WithKeepGoing(o.KeepGoing),
		mirrorlib.WithTagFilter(o.tagFilter),
		mirrorlib.WithRetries(o.Retries+1, mirrorlib.DefaultRetryBase, mirrorlib.DefaultRetryMaxWait),
		mirrorlib.WithUserAgent("kubectl-coral-mirror"),
	}
	for _, f := range o.CAFiles {
		if _, err := mirrorlib.New(mirrorlib.WithCAFiles(f)); err != nil {
			return cmdutil.BadInputf("--registry-ca-file %s: %w", f, err)
		}
	}
	opts = append(opts, mirrorlib.WithCAFiles(o.CAFiles...))
	o.extraOpts = append(opts, o.extraOpts...)
	return nil
}

// Run plans, then copies (or, with --dry-run, prints the plan).
func (o *Options) Run(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	sources := o.sources
	var workloadSecrets []source.SecretRef
	if o.FromCluster {
		imgs, secrets, err := o.clusterImages(ctx)
		if err != nil {
			return interruptedOr(ctx, cmdutil.BadInput(err))
		}
		sources = source.Dedup(append(sources, imgs...))
		workloadSecrets = secrets
		if len(sources) == 0 {
			return cmdutil.BadInputf("--from-cluster: no images found in %s", o.scope())
		}
	}
	srcKC, dstKC, err := o.keychains(ctx, workloadSecrets)
	if err != nil {
		return interruptedOr(ctx, cmdutil.BadInput(err))
	}
	pr := progress.New(o.ErrOut, progress.Mode(o.Progress))
	opts := append([]mirrorlib.Option{
		mirrorlib.WithSourceKeychain(srcKC),
		mirrorlib.WithDestinationKeychain(dstKC),
		mirrorlib.WithProgress(copyProgress{out: pr}.update, pr.UpdateEvery()),
	}, o.extraOpts...)
	m, err := mirrorlib.New(opts...)
	if err != nil {
		return cmdutil.BadInput(err)
	}

	pr.Status(fmt.Sprintf("resolving %d %s …", len(sources), plural(len(sources), "source", "sources")))
	plan, err := m.Plan(ctx, sources, o.dest)
	pr.Clear()
	if err != nil {
		return interruptedOr(ctx, cmdutil.BadInput(withHints(err)))
	}
	dryRun := o.DryRun == "client"
	printPlan(o.ErrOut, plan, dryRun)

	if dryRun {
		if err := m.Estimate(ctx, plan); err != nil {
			return interruptedOr(ctx, cmdutil.BadInput(withHints(err)))
		}
		rep := plan.DryRunReport()
		return output.Print(o.Out, o.Output, rep, func(w io.Writer, wide bool) error { return printTable(w, rep, wide) })
	}

	rep, copyErr := m.Copy(ctx, plan)
	pr.Clear()
	if err := output.Print(o.Out, o.Output, rep, func(w io.Writer, wide bool) error { return printTable(w, rep, wide) }); err != nil {
		return err
	}
	switch {
	case copyErr != nil && ctx.Err() != nil:
		fmt.Fprintln(o.ErrOut, "interrupted: images not yet copied are marked Failed; run the same command again to finish")
		return cmdutil.Silent(cmdutil.ExitInterrupted)
	case rep.Summary.Failed > 0:
		return cmdutil.Silent(cmdutil.ExitFailed)
	}
	return nil
}

func (o *Options) scope() string {
	if o.AllNamespaces {
		return "all namespaces"
	}
	return fmt.Sprintf("namespace %q", o.namespace)
}

// interruptedOr returns the interrupt exit code when ctx ended, else err.
func interruptedOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New("interrupted; nothing was written")}
	}
	return err
}

// withHints adds what to change for the kinds of problems the library names.
func withHints(err error) error {
	hints := []struct {
		kind error
		hint string
	}{
		{mirrorlib.ErrUntrusted, "a registry's certificate did not verify: pass its CA with --registry-ca-file FILE, or name it with --insecure-registry HOST"},
		{mirrorlib.ErrUnauthorized, "a registry refused the credentials: log in with docker login (your docker config and credential helpers are used) or pass --pull-secret / --push-secret NAME"},
		{mirrorlib.ErrNotFound, "an image or tag does not exist: fix or remove it in the input"},
		{mirrorlib.ErrUnreachable, "a registry could not be reached: check its host and port (and --insecure-registry for plain http)"},
		{mirrorlib.ErrPlatform, "an image lacks a --platform asked for: see what it has with --dry-run -o yaml, or change --platform"},
		{mirrorlib.ErrCollision, "two sources map to one destination: put {registry} in the --to path (e.g. --to 'registry.local:5000/{registry}') or mirror them in separate runs"},
	}
	var lines []string
	for _, h := range hints {
		if errors.Is(err, h.kind) {
			lines = append(lines, "hint: "+h.hint)
		}
	}
	if len(lines) == 0 {
		return err
	}
	return fmt.Errorf("%w\n%s", err, strings.Join(lines, "\n"))
}
