package prefetch

import (
	"context"
	"fmt"
	batchv1 "k8s.io/api/batch/v1"
	"sort"
	"strings"
	"sync"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/run"
	"github.com/coral-dev/coral/pkg/source"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// `kubectl coral unpin` lives in this package because it is a run like a
// prefetch: the same node selection, Jobs, engine, progress, report and exit
// codes (RunOptions); only the worker's verb differs (unpin instead of pull).

// UnpinOptions holds everything `kubectl coral unpin` needs.
type UnpinOptions struct {
	RunOptions

	Filenames       []string
	RuntimeEndpoint string

	images []string
	// pinRecords lists the controller's PrefetchNode records in every
	// namespace (nil when the CRDs are not installed); replaced in tests.
	pinRecords func(ctx context.Context) ([]coralv1.PrefetchNode, error)
	// resolve looks up an image's digest; replaced in tests.
	resolve func(ctx context.Context, ref string, kc authn.Keychain) (string, error)
}

// NewUnpinOptions returns the defaults.
func NewUnpinOptions(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *UnpinOptions {
	o := &UnpinOptions{RunOptions: newRunOptions(flags, streams), resolve: source.ResolveDigest}
	// Releasing a label takes a moment; a node that needs more is stuck.
	o.Timeout = 5 * time.Minute
	return o
}

// NewCmdUnpin builds `kubectl coral unpin`.
func NewCmdUnpin(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdUnpin(NewUnpinOptions(flags, streams))
}

func newCmdUnpin(o *UnpinOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "unpin [IMAGE...] [-f FILE|-] [-l SELECTOR | --nodes NAME,...]",
		Short: "Release images pinned by prefetch images --pin, so kubelet's image GC may remove them",
		Long: `Release the pins that "kubectl coral prefetch images --pin" put on images.

A pinned image is kept by kubelet's image garbage collection for as long as
the pin stays: a one-shot --pin run leaves it there. unpin runs like a
prefetch — one Job per selected node (all nodes by default), the node's
runtime socket mounted — but its worker removes the pin from every name of
the image the node holds under IMAGE, and checks over CRI that the runtime no
longer reports it pinned. The image itself stays on the node until kubelet's
GC (or you) removes it.

The report shows, per node and image, Present with "unpinned" (released, or
was not pinned), Skipped "not on the node" (nothing to release), or Failed
with the reason; skipped nodes (not Ready, cordoned, …) as with prefetch.

Pins that an ImagePrefetch holds belong to the controller, which releases
them when the object is deleted: unpin refuses (and names the object) when
one holds a pin on an image you name, on a node you select — the image under
the same name or, resolved in its registry, with the same digest.

Exit codes: 0 every image released (or not on the node) on every selected
node; 1 some failed, or skipped nodes with --fail-on-skipped; 2 bad input,
including a pin an ImagePrefetch holds (nothing created); 130 interrupted
(everything created was deleted).`,
		Example: `  # Release what a one-shot run pinned on the web pool
  kubectl coral unpin registry.example.com/team/api:v3 nginx:1.27 -l pool=web -n coral-system

  # The images of a file (plain list or manifests), on two nodes
  kubectl coral unpin -f images.txt --nodes node-a,node-b -n coral-system

  # Show the Jobs it would create
  kubectl coral unpin nginx:1.27 --dry-run=client -o yaml`,
		Args: cobra.ArbitraryArgs,
		RunE: cmdutil.RunE(o),
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.Filenames, "filename", "f", nil, "file with images: a plain list or Kubernetes manifests; - for stdin (repeatable)")
	f.StringVar(&o.RuntimeEndpoint, "runtime-endpoint", "", "CRI socket on every node (unix:///…); default: discovered per node")
	o.addFlags(f)
	o.addHostNetworkFlag(f)
	// The unpin verb does not retry; the flag would only mislead.
	_ = f.MarkHidden("retries")
	return cmd
}

// Complete reads the images and sets up the client.
func (o *UnpinOptions) Complete(cmd *cobra.Command, args []string) error {
	var err error
	if o.images, err = readImages(args, o.Filenames, o.In); err != nil {
		return err
	}
	if err := o.complete(); err != nil {
		return err
	}
	if o.pinRecords == nil {
		o.pinRecords = o.listPinRecords
	}
	return nil
}

// Validate checks the flags; nothing has been sent to the cluster yet.
func (o *UnpinOptions) Validate() error {
	if len(o.images) == 0 {
		return cmdutil.BadInputf("no images given: name the images to release as arguments or with -f FILE (see --help)")
	}
	if o.RuntimeEndpoint != "" {
		if _, _, err := plan.RuntimeSocket(&corev1.Node{}, o.RuntimeEndpoint); err != nil {
			return cmdutil.BadInput(err)
		}
	}
	return o.validate()
}

// Run plans, refuses pins the controller holds, runs the unpin Jobs and
// reports.
func (o *UnpinOptions) Run(ctx context.Context) error {
	items := make([]plan.Item, len(o.images))
	for i, img := range o.images {
		items[i] = plan.Item{Ref: img}
	}
	p, err := o.plan(ctx, items, o.RuntimeEndpoint, true)
	if err != nil {
		return err
	}
	if len(p.Tasks) > 0 {
		if err := o.refuseControllerPins(ctx, p); err != nil {
			return err
		}
	}
	spec := o.jobSpec()
	// The worker's unpin verb ignores these; they keep the Job valid.
	spec.MaxPullsPerNode, spec.ImageTimeout, spec.Unpin = 1, time.Minute, true
	var njs []run.NodeJob
	for _, t := range p.Tasks {
		nj := run.NodeJob{Node: t.Node, JobName: jobs.Name(spec.RunID, t.Node), NewJob: func() *batchv1.Job { return jobs.ForTask(t, spec) }}
		for _, it := range t.Items {
			nj.Items = append(nj.Items, it.Ref)
			nj.Expected = append(nj.Expected, "")
		}
		njs = append(njs, nj)
	}
	out, err := o.execute(ctx, report.KindPrefetchReport, p, njs, func(nrs []run.NodeResult) []report.Result {
		var rows []report.Result
		for i, nr := range nrs {
			for j, it := range nr.Items {
				rows = append(rows, report.Result{
					Node: nr.Node, Image: njs[i].Items[j], Status: it.Status, Digest: it.Digest,
					DurationSeconds: float64(it.DurationMs) / 1000, Pinned: it.Pinned, Message: it.Message,
				})
			}
		}
		return append(rows, skippedResults(p, func(node, reason string) []report.Result {
			var r []report.Result
			for _, img := range o.images {
				r = append(r, report.Result{Node: node, Image: img, Status: report.StatusSkipped, Message: reason})
			}
			return r
		})...)
	})
	if err != nil {
		return err
	}
	return o.finish(out)
}

// listPinRecords reads every PrefetchNode record; none when the CRDs are
// not installed (no controller, so no pin it holds).
func (o *UnpinOptions) listPinRecords(ctx context.Context) ([]coralv1.PrefetchNode, error) {
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	cl, err := NewPersistClient(cfg)
	if err != nil {
		return nil, err
	}
	recs, err := cl.prefetchNodes(ctx, "", "")
	if isNoResource(err) {
		return nil, nil
	}
	return recs, err
}

// refuseControllerPins fails the run, before anything is created, when an
// ImagePrefetch holds a pin this run would release: the worker unpins the
// image (every name it has), so it would take the controller's pin too.
func (o *UnpinOptions) refuseControllerPins(ctx context.Context, p *plan.Plan) error {
	recs, err := o.pinRecords(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: fmt.Errorf("interrupted before any Job was created")}
		}
		return cmdutil.BadInput(fmt.Errorf("%w (unpin reads the controller's PrefetchNode records, in every namespace, so as not to release a pin an ImagePrefetch holds: it needs list on prefetchnodes.coral.dev)", explainAPI(err, "checking which pins the controller holds")))
	}
	if !anyPinned(recs) {
		return nil
	}
	digests := o.resolveDigests(ctx)
	nodes := make([]string, len(p.Tasks))
	for i, t := range p.Tasks {
		nodes[i] = t.Node
	}
	held := controllerPins(nodes, o.images, digests, recs)
	if len(held) == 0 {
		return nil
	}
	const show = 10
	lines := held
	if len(lines) > show {
		lines = append(lines[:show:show], fmt.Sprintf("  … and %d more", len(held)-show))
	}
	return cmdutil.BadInputf("these pins belong to the controller (an ImagePrefetch with pin: true holds them), nothing was unpinned:\n%s\nthe controller releases them when the object is deleted (kubectl delete imageprefetch -n NAMESPACE NAME); or leave these nodes out with -l/--nodes", strings.Join(lines, "\n"))
}

func anyPinned(recs []coralv1.PrefetchNode) bool {
	for _, r := range recs {
		for _, it := range r.Results {
			if it.Pinned && r.Prefetch.Kind == "ImagePrefetch" {
				return true
			}
		}
	}
	return false
}

// resolveDigests resolves the images' digests, 8 at a time, best effort:
// an image that cannot be resolved from here is compared by name only.
func (o *UnpinOptions) resolveDigests(ctx context.Context) map[string]string {
	out := map[string]string{}
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
			d, err := o.resolve(rctx, img, authn.DefaultKeychain)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fmt.Fprintf(o.ErrOut, "warning: cannot resolve %s to a digest from here (%v); only a controller pin under that very name is recognised\n", img, shortErr(err))
				return
			}
			out[img] = d
		}()
	}
	wg.Wait()
	return out
}

// controllerPins lists, one line each, the (node, image) pairs of this run
// on which an ImagePrefetch's record shows a pin: the same reference, or
// the same digest under another name.
func controllerPins(nodes, images []string, digests map[string]string, recs []coralv1.PrefetchNode) []string {
	selected := map[string]bool{}
	for _, n := range nodes {
		selected[n] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Prefetch.Kind != "ImagePrefetch" || !selected[r.Node] {
			continue
		}
		for _, it := range r.Results {
			if !it.Pinned {
				continue
			}
			for _, img := range images {
				same := it.Ref == img
				if d := digests[img]; d != "" && (it.Digest == d || (it.Digest == "" && it.ExpectedDigest == d)) {
					same = true
				}
				if !same {
					continue
				}
				line := fmt.Sprintf("  node %s, %s: pinned by imageprefetch %s/%s", r.Node, img, r.Namespace, r.Prefetch.Name)
				if it.Ref != img {
					line += " (as " + it.Ref + ", the same image)"
				}
				if !seen[line] {
					seen[line] = true
					out = append(out, line)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}
