package prefetch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/diskcheck"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/progress"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/report/output"
	"github.com/coral-dev/coral/pkg/run"
	"github.com/coral-dev/coral/pkg/source"
	"github.com/coral-dev/coral/pkg/version"
	"github.com/spf13/pflag"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
)

// RunOptions are the flags and state every prefetch command shares: which
// nodes, which worker, how the run behaves, how results are shown. The two
// commands (images, artifacts) differ only in their items and Jobs.
type RunOptions struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags

	Selector             string
	Nodes                []string
	IncludeUnschedulable bool

	WorkerImage      string
	WorkerPullSecret []string
	MaxNodesInFlight int
	WaitCleanup      time.Duration
	Mode             string
	Timeout          time.Duration
	Retries          int
	KeepJobs         bool
	FailOnSkipped    bool
	// HostNetwork: the images and unpin workers run in the node's network
	// namespace (jobs.Spec.HostNetwork); artifact workers never do.
	HostNetwork bool

	DryRun   string
	Output   string
	Progress string

	// Set by complete.
	namespace string
	client    kubernetes.Interface
	selector  labels.Selector
	runID     string
	admitted  bool // the run's preflight passed
	// nodeImages, when set, keeps in nodes the entries of each node's image
	// list that name the run's repositories (the disk check reads them);
	// nodes holds what plan listed, slimmed, by name, until execute.
	nodeImages diskcheck.HeldFilter
	nodes      map[string]*corev1.Node
}

func newRunOptions(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) RunOptions {
	return RunOptions{
		IOStreams:        streams,
		configFlags:      flags,
		WorkerImage:      version.DefaultWorkerImage(),
		MaxNodesInFlight: 50,
		Mode:             modeAuto,
		Timeout:          15 * time.Minute,
		Retries:          3,
		DryRun:           "none",
		Progress:         string(progress.Auto),
		HostNetwork:      true,
	}
}

// addHostNetworkFlag is --host-network, for the commands whose worker only
// talks to the node's runtime socket (prefetch images, unpin).
func (o *RunOptions) addHostNetworkFlag(f *pflag.FlagSet) {
	f.BoolVar(&o.HostNetwork, "host-network", o.HostNetwork, "run the worker in the node's network namespace: it opens no connection (the node's runtime pulls), and skipping the pod network's setup starts it 0.1–0.3 s sooner. --host-network=false where a policy forbids hostNetwork; the worker then gets a pod network it does not use")
}

func (o *RunOptions) addFlags(f *pflag.FlagSet) {
	f.StringVarP(&o.Selector, "selector", "l", "", "node label selector (e.g. pool=web, 'zone in (a,b),!gpu'); default all nodes")
	f.StringSliceVar(&o.Nodes, "nodes", nil, "comma-separated node names (combined with -l: both must match)")
	f.BoolVar(&o.IncludeUnschedulable, "include-unschedulable", false, "include cordoned nodes")
	f.StringVar(&o.WorkerImage, "worker-image", o.WorkerImage, "image of the worker that runs on each node; $"+version.EnvWorkerImage+" overrides the default")
	f.StringArrayVar(&o.WorkerPullSecret, "worker-image-pull-secret", nil, "image pull secret for the worker image itself (repeatable)")
	f.DurationVar(&o.WaitCleanup, "wait-cleanup", 0, "how long to wait, after a run of more than 200 nodes, for the garbage collector to remove its Jobs or pods (0: return at once and say what is left; a smaller run deletes them itself before returning)")
	f.IntVar(&o.MaxNodesInFlight, "max-nodes-in-flight", o.MaxNodesInFlight, "how many worker pods pull at once (created, not yet reported): what the registry and the nodes feel. In Job mode, while the Job controller lags behind and its pace allows (pods a second × a worker's time within the cap), the other Jobs are handed to it early: they pull nothing until it makes their pods. Nodes start in an order of the run's own (hashed with its id), not by name: nodes that hang together (a rack, a pool) do not fill the cap at once")
	f.StringVar(&o.Mode, "mode", o.Mode, fmt.Sprintf("how workers are launched: jobs (one Job per node, the Job controller makes its pod), pods (the worker pod directly, owned by the run's Lease: no Job controller on the path) or auto (jobs up to %d nodes, pods above)", autoPodsAbove))
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "time limit per node, from its worker pod's appearance to its report (a Job waiting for a busy Job controller is not counted while the controller keeps making the run's pods)")
	f.IntVar(&o.Retries, "retries", o.Retries, "retries per item for transient errors (unavailable, timeouts, 5xx); never for not-found or unauthorized")
	f.BoolVar(&o.FailOnSkipped, "fail-on-skipped", false, "exit 1 when a selected node was skipped (not Ready, cordoned, no worker build for its platform); by default skipped nodes are reported and do not fail the run")
	f.BoolVar(&o.KeepJobs, "keep-jobs", false, "keep the Jobs after the run (for debugging; they expire after 1h)")
	f.StringVar(&o.DryRun, "dry-run", o.DryRun, `"client": print the Jobs, create nothing; "server": also ask the API server to admit them (nothing is persisted)`)
	f.Lookup("dry-run").NoOptDefVal = "client"
	f.StringVarP(&o.Output, "output", "o", "", "output format: wide, json, yaml, name (the nodes that hold every item; with --dry-run the objects), jsonpath=…, go-template=… (default: a table)")
	f.StringVar(&o.Progress, "progress", o.Progress, "progress on stderr: auto (a bar on a terminal, lines otherwise), bar, plain or none")
}

// complete parses the selector and builds the client.
func (o *RunOptions) complete() error {
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
	// docs/scale.md).
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "kubectl-coral/" + version.Version
	o.client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		return cmdutil.BadInput(explainKubeconfig(err))
	}
	return nil
}

// validate checks the shared flags; nothing has been sent to the cluster.
func (o *RunOptions) validate() error {
	switch {
	case o.MaxNodesInFlight <= 0:
		return cmdutil.BadInputf("--max-nodes-in-flight must be at least 1, got %d", o.MaxNodesInFlight)
	case o.Timeout <= 0:
		return cmdutil.BadInputf("--timeout must be a positive duration such as 10m, got %s", o.Timeout)
	case o.Retries < 0:
		return cmdutil.BadInputf("--retries must be 0 or more, got %d", o.Retries)
	case o.WaitCleanup < 0:
		return cmdutil.BadInputf("--wait-cleanup must be 0 or a positive duration such as 5m, got %s", o.WaitCleanup)
	case o.WorkerImage == "":
		return cmdutil.BadInputf("--worker-image is empty")
	}
	if err := output.ValidateFormat(o.Output); err != nil {
		return cmdutil.BadInput(err)
	}
	switch o.DryRun {
	case "none", "client", "server":
	default:
		return cmdutil.BadInputf(`--dry-run must be "none", "client" or "server", got %q`, o.DryRun)
	}
	switch o.Mode {
	case modeAuto, string(run.ModeJobs), string(run.ModePods):
	default:
		return cmdutil.BadInputf(`--mode must be auto, jobs or pods, got %q`, o.Mode)
	}
	if _, err := progress.ParseMode(o.Progress); err != nil {
		return cmdutil.BadInputf("--progress %v", err)
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

// plan lists the nodes and plans one task per usable node.
func (o *RunOptions) plan(ctx context.Context, items []plan.Item, runtimeEndpoint string, needSocket bool) (*plan.Plan, error) {
	nodes, err := o.listNodes(ctx)
	if err != nil {
		return nil, cmdutil.BadInput(explainAPI(err, "listing nodes"))
	}
	p, err := plan.Build(nodes, items, plan.Options{
		Selector: o.selector, NodeNames: o.Nodes, IncludeUnschedulable: o.IncludeUnschedulable,
		RuntimeEndpoint: runtimeEndpoint, SkipRuntimeSocket: !needSocket,
	})
	if err != nil {
		return nil, cmdutil.BadInput(err)
	}
	return p, nil
}

// jobSpec is the part of every Job that comes from the shared flags.
func (o *RunOptions) jobSpec() jobs.Spec {
	return jobs.Spec{
		RunID: o.runID, Namespace: o.namespace, WorkerImage: o.WorkerImage, ImagePullPolicy: corev1.PullIfNotPresent,
		Deadline: o.Timeout + time.Minute, TTL: time.Hour, Retries: o.Retries, WorkerPullSecrets: o.WorkerPullSecret,
		HostNetwork: o.HostNetwork,
	}
}

// outcome is what a run produced, before it is printed.
type outcome struct {
	report      *report.PrefetchReport
	interrupted bool
	err         error // the run itself failed (watch, cleanup)
	dryRun      bool
}

// execute prints the Jobs for a dry run; otherwise it asks the API server to
// admit them, runs them with progress, and turns node results into report
// rows with toResults.
func (o *RunOptions) execute(ctx context.Context, kind string, p *plan.Plan, njs []run.NodeJob, toResults func([]run.NodeResult) []report.Result) (*outcome, error) {
	start := time.Now()
	// Planning and the disk check were the nodes' last readers: a large
	// cluster's node list (2.4 KB a node even slimmed: 2.4 MB per 1000
	// nodes) is let go before the run instead of staying for its whole length.
	o.nodes = nil
	if ctx.Err() != nil { // interrupted while planning: nothing was created
		return nil, &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New("interrupted before any Job was created")}
	}
	if o.DryRun != "none" {
		return &outcome{dryRun: true}, o.printDryRun(ctx, p, njs)
	}
	mode := o.mode(len(njs))
	if err := o.preflight(ctx, njs); err != nil {
		return nil, err
	}
	prog := newRunProgress(o.ErrOut, o.Progress, len(njs), len(p.Skipped))
	engine := &run.Engine{
		Client: o.client, Namespace: o.namespace, RunID: o.runID, Mode: mode,
		MaxInFlight: o.MaxNodesInFlight, NodeTimeout: o.Timeout, KeepJobs: o.KeepJobs,
		OnEvent: prog.Event, Holder: holder(), WaitCleanup: o.WaitCleanup,
	}
	prog.Start(o.runID, o.namespace)
	results, interrupted, runErr := engine.Run(ctx, njs)
	prog.Finish(interrupted)
	rep := report.NewReport(kind, o.runID, start, time.Now(), toResults(results))
	rep.Interrupted = interrupted
	if c := engine.Cleaned; c.Background {
		rep.LeftBehind = &report.LeftBehind{Workers: c.Workers, Kind: c.Kind, Selector: c.Selector,
			Removal: "the run's Lease, their owner, was deleted: the garbage collector removes them in the background (about a minute per thousand)"}
		fmt.Fprintf(o.ErrOut, "note: the %d %s of this run are being removed by the garbage collector (about a minute per thousand); `kubectl get %s -n %s -l %s` shows what is left, --wait-cleanup waits for it\n",
			c.Workers, c.Kind, c.Kind, o.namespace, c.Selector)
	}
	return &outcome{report: rep, interrupted: interrupted, err: runErr}, nil
}

// preflight asks the API server, once per run, whether the workers would
// be admitted (a command may ask early, before it changes anything).
func (o *RunOptions) preflight(ctx context.Context, njs []run.NodeJob) error {
	if o.admitted || len(njs) == 0 {
		return nil
	}
	if err := run.Preflight(ctx, o.client, njs[0].Worker(), o.mode(len(njs))); err != nil {
		if ctx.Err() != nil {
			return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New("interrupted before any Job was created")}
		}
		return cmdutil.BadInput(err)
	}
	o.admitted = true
	return nil
}

// finish prints the report and returns the error that carries the exit code.
func (o *RunOptions) finish(out *outcome) error {
	if out.dryRun {
		return nil
	}
	rep := out.report
	if err := output.Print(o.Out, o.Output, rep, rep.PrintTable); err != nil {
		return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: err}
	}
	switch {
	case out.interrupted:
		msg := "interrupted: the run's Jobs were deleted; the report above is partial"
		if out.err != nil {
			msg = fmt.Sprintf("interrupted, and cleanup failed: %v", out.err)
		}
		return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New(msg)}
	case out.err != nil:
		return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: out.err}
	case !rep.AllSucceeded():
		return cmdutil.Silent(cmdutil.ExitFailed)
	case o.FailOnSkipped && rep.Summary.Skipped > 0:
		return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: fmt.Errorf("%d node×item results were skipped (--fail-on-skipped)", rep.Summary.Skipped)}
	}
	return nil
}

// skippedResults are the report rows of skipped nodes, one per item.
func skippedResults(p *plan.Plan, row func(node, reason string) []report.Result) []report.Result {
	var out []report.Result
	for _, s := range p.Skipped {
		out = append(out, row(s.Node, s.Reason)...)
	}
	return out
}

// printDryRun prints the Jobs instead of creating them. With
// --dry-run=server the API server also admits the first Job and its pod.
func (o *RunOptions) printDryRun(ctx context.Context, p *plan.Plan, njs []run.NodeJob) error {
	if o.DryRun == "server" && len(njs) > 0 {
		if err := run.Preflight(ctx, o.client, njs[0].Worker(), o.mode(len(njs))); err != nil {
			return cmdutil.BadInput(err)
		}
	}
	for _, s := range p.Skipped {
		fmt.Fprintf(o.ErrOut, "node %s skipped: %s\n", s.Node, s.Reason)
	}
	pods := o.mode(len(njs)) == run.ModePods
	switch o.Output {
	case report.FormatTable, report.FormatWide:
	default:
		if pods {
			list := &corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}}
			for _, nj := range njs {
				list.Items = append(list.Items, *jobs.WorkerPod(nj.Worker()))
			}
			return printObject(o.Out, o.Output, list)
		}
		list := &batchv1.JobList{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "JobList"}}
		for _, nj := range njs {
			list.Items = append(list.Items, *nj.Worker())
		}
		return printObject(o.Out, o.Output, list)
	}
	kind := "job.batch"
	if pods {
		kind = "pod"
	}
	for _, nj := range njs {
		fmt.Fprintf(o.Out, "%s/%s created (%s dry run) on node %s: %d items\n", kind, nj.Name(), o.DryRun, nj.Node, len(nj.Items))
	}
	return nil
}

func printObject(w io.Writer, format string, obj runtime.Object) error {
	return output.PrintObject(w, format, obj)
}

const modeAuto = "auto"

// autoPodsAbove is the node count above which --mode=auto creates worker
// pods directly instead of Jobs (see docs/scale.md for the figures).
const autoPodsAbove = 100

// mode resolves --mode for a run over n nodes.
func (o *RunOptions) mode(n int) run.Mode {
	switch {
	case o.Mode == string(run.ModePods):
		return run.ModePods
	case o.Mode == string(run.ModeJobs):
		return run.ModeJobs
	case n > autoPodsAbove:
		return run.ModePods
	}
	return run.ModeJobs
}

// holder names this process on the run's Lease.
func holder() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("kubectl-coral@%s/%d", host, os.Getpid())
}

func newRunID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func shortErr(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
