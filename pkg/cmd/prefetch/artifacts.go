package prefetch

import (
	"context"
	"encoding/hex"
	"fmt"
	batchv1 "k8s.io/api/batch/v1"
	"net/textproto"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/artifact"
	"github.com/coral-dev/coral/pkg/artifact/artifacturl"
	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/run"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// ArtifactsOptions holds everything `kubectl coral prefetch artifacts` needs.
type ArtifactsOptions struct {
	RunOptions

	Name          string
	SHA256        []string
	ChecksumURL   string
	Extract       bool
	DestRoot      string
	HeaderSecret  string
	S3Secret      string
	S3Endpoint    string
	S3Region      string
	S3PathStyle   bool
	SourceTimeout time.Duration
	// Persist names an ArtifactPrefetch to write for the controller instead
	// of running Jobs here; Wait waits for it and reports like a one-shot run.
	Persist     string
	Wait        bool
	WaitTimeout time.Duration

	sources        []string
	persistFlagSet bool // --wait or --wait-timeout was given
	parsed         []artifacturl.Source
	sum            artifacturl.Source // the parsed --checksum-url
	s3Keys         map[string]string
	// persistClient writes the ArtifactPrefetch; replaced in tests.
	persistClient *PersistClient
}

// NewArtifactsOptions returns the defaults.
func NewArtifactsOptions(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *ArtifactsOptions {
	o := &ArtifactsOptions{
		RunOptions:    newRunOptions(flags, streams),
		DestRoot:      artifact.DefaultRoot,
		S3Region:      "us-east-1",
		SourceTimeout: 30 * time.Minute,
		Wait:          true,
		WaitTimeout:   time.Hour,
	}
	// Artifacts are large: a node gets an hour by default, a source half of it.
	o.Timeout = time.Hour
	return o
}

// NewCmdArtifacts builds `kubectl coral prefetch artifacts`.
func NewCmdArtifacts(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmdArtifacts(NewArtifactsOptions(flags, streams))
}

func newCmdArtifacts(o *ArtifactsOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "artifacts SOURCE... --name NAME [--sha256 HEX]... [-l SELECTOR | --nodes NAME,...]",
		Short: "Download files from http(s) or S3 onto nodes' disks, verified and atomic",
		Long: `Download files onto nodes before workloads need them.

For every selected node, Coral creates one Job pinned to that node. Its pod
mounts only the artifact's directory on the node,
/var/lib/coral/artifacts/NAME (--dest-root changes the root; a node's
coral.dev/artifact-root annotation changes it for that node), and downloads
every SOURCE into it:

  http(s)://host/path/file         one file, saved as NAME/file
  s3://bucket/key                  one object, saved as NAME/<last part of key>
  s3://bucket/prefix/              every object under the prefix, keeping the layout

Each file is verified while it streams (--sha256, a --checksum-url file, or
the checksum the S3 store keeps), written to a temp file beside its target,
synced and renamed into place: readers never see a partial file, and a failed
download leaves the previous content as it was. A manifest
(NAME/.coral-manifest.json) records each source's digest, size and time;
running again with the same digest does nothing (Present). Dropped HTTP
connections resume with Range; 5xx and 429 are retried, 4xx are not.
--extract unpacks tar / tar.gz archives into NAME/<archive name without .tar.gz>,
refusing entries that would escape the directory.

A node that holds every source, verified, gets the label
artifacts.coral.dev/NAME=<first 12 hex digits of its digest>; the label comes
off before a run changes the node's copy and is set again only after a full
success, so it always describes the disk. Use "kubectl coral inject artifact"
to mount the artifact into workloads that then run only on such nodes.

A URL's query (pre-signed URLs) is sent with the request only: Jobs, logs,
the report and the manifest show the URL without it, and the workers get it
from a Secret the run creates and deletes. URLs with a user name or password
are refused: use --header-secret, whose headers go only to the source's own
host.`,
		Example: `  # A model from a web server onto the GPU pool, verified
  kubectl coral prefetch artifacts https://models.example.com/bert.tar.gz --name bert --sha256 9f2c… -l pool=gpu

  # Everything under an S3 prefix of an S3-compatible store
  kubectl coral prefetch artifacts s3://ml-models/llama/ --name llama --s3-secret s3-creds --s3-endpoint https://minio.local:9000 -l pool=gpu

  # Unpack an archive; checksums from a SHA256SUMS file
  kubectl coral prefetch artifacts https://dl.example.com/v2/tools.tar.gz --name tools --extract --checksum-url https://dl.example.com/v2/SHA256SUMS

  # Keep it on the GPU pool, nodes that join later included (the controller: kubectl coral install)
  kubectl coral prefetch artifacts https://models.example.com/bert.tar.gz --name bert --sha256 9f2c… -l pool=gpu --persist bert -n coral-system`,
		Args: cobra.ArbitraryArgs,
		RunE: cmdutil.RunE(o),
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "", "the artifact's name: its directory on each node and its node label (required)")
	f.StringArrayVar(&o.SHA256, "sha256", nil, "expected sha256 of each source, in order (64 hex digits; repeatable)")
	f.StringVar(&o.ChecksumURL, "checksum-url", "", "URL of a sha256sum-style file listing the sources' checksums")
	f.BoolVar(&o.Extract, "extract", false, "unpack tar / tar.gz sources into a directory")
	f.StringVar(&o.DestRoot, "dest-root", o.DestRoot, "directory on the node that holds one directory per artifact")
	f.StringVar(&o.HeaderSecret, "header-secret", "", "secret whose keys are HTTP header names and values their values (e.g. Authorization: Bearer …)")
	f.StringVar(&o.S3Secret, "s3-secret", "", "secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optional AWS_SESSION_TOKEN; without it, the worker uses the default AWS chain (e.g. IRSA)")
	f.StringVar(&o.S3Endpoint, "s3-endpoint", "", "endpoint of an S3-compatible store (implies --s3-path-style)")
	f.StringVar(&o.S3Region, "s3-region", o.S3Region, "S3 region")
	f.BoolVar(&o.S3PathStyle, "s3-path-style", false, "path-style bucket addressing (default with --s3-endpoint)")
	f.DurationVar(&o.SourceTimeout, "source-timeout", o.SourceTimeout, "time limit per source on a node, retries included")
	f.StringVar(&o.Persist, "persist", "", "write an ArtifactPrefetch of this name (in -n) for the controller (kubectl coral install) instead of running Jobs here: the files stay on the selected nodes and nodes that join get them (and the label)")
	f.BoolVar(&o.Wait, "wait", o.Wait, "with --persist: wait until the controller has settled and print its report (exit codes as a one-shot run); --wait=false returns once the object is written")
	f.DurationVar(&o.WaitTimeout, "wait-timeout", o.WaitTimeout, "with --persist: how long to wait")
	o.addFlags(f)
	return cmd
}

// Complete reads the sources and sets up the client.
func (o *ArtifactsOptions) Complete(cmd *cobra.Command, args []string) error {
	o.sources = args
	o.persistFlagSet = cmd.Flags().Changed("wait") || cmd.Flags().Changed("wait-timeout")
	if o.S3Endpoint != "" && !cmd.Flags().Changed("s3-path-style") {
		o.S3PathStyle = true
	}
	if !cmd.Flags().Changed("source-timeout") && o.Timeout > 0 && o.SourceTimeout > o.Timeout {
		o.SourceTimeout = o.Timeout // a shorter --timeout bounds the default per source too
	}
	return o.complete()
}

// Validate checks everything that can be checked without the cluster.
func (o *ArtifactsOptions) Validate() error {
	switch {
	case len(o.sources) == 0:
		return cmdutil.BadInputf("no sources given: name http(s):// or s3:// URLs as arguments (see --help)")
	case o.Name == "":
		return cmdutil.BadInputf("--name is required: the artifact's directory on each node and its label")
	case artifact.ValidateName(o.Name) != nil:
		return cmdutil.BadInput(artifact.ValidateName(o.Name))
	case !path.IsAbs(o.DestRoot):
		return cmdutil.BadInputf("--dest-root %q must be an absolute path", o.DestRoot)
	case o.SourceTimeout <= 0:
		return cmdutil.BadInputf("--source-timeout must be a positive duration, got %s", o.SourceTimeout)
	case o.SourceTimeout > o.Timeout:
		return cmdutil.BadInputf("--source-timeout (%s) is longer than --timeout (%s), the limit for the whole node: raise --timeout or lower --source-timeout", o.SourceTimeout, o.Timeout)
	case len(o.SHA256) > 0 && len(o.SHA256) != len(o.sources):
		return cmdutil.BadInputf("--sha256 given %d times for %d sources: give one per source, in order", len(o.SHA256), len(o.sources))
	case len(o.SHA256) > 0 && o.ChecksumURL != "":
		return cmdutil.BadInputf("--sha256 and --checksum-url cannot be used together")
	case o.Persist != "" && o.DryRun != "none":
		return cmdutil.BadInputf("--persist writes an object for the controller; it cannot be combined with --dry-run (see the object with kubectl get artifactprefetch %s -o yaml)", o.Persist)
	case o.Persist == "" && o.persistFlagSet:
		return cmdutil.BadInputf("--wait and --wait-timeout only apply to --persist")
	}
	seen := map[string]bool{}
	o.parsed = make([]artifacturl.Source, len(o.sources))
	for i, raw := range o.sources {
		src, err := artifacturl.Parse(raw)
		if err != nil {
			return cmdutil.BadInput(err)
		}
		o.parsed[i] = src
		if src.Prefix {
			if len(o.SHA256) > 0 {
				return cmdutil.BadInputf("source %q is a prefix: --sha256 applies to single files; leave it out (each object is verified against the store's checksum when it keeps one)", src.Display())
			}
			if o.Extract {
				return cmdutil.BadInputf("source %q is a prefix: --extract applies to single archives", src.Display())
			}
		}
		if len(o.SHA256) > 0 {
			h := strings.ToLower(strings.TrimPrefix(o.SHA256[i], "sha256:"))
			if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
				return cmdutil.BadInputf("--sha256 %q: want 64 hex digits", o.SHA256[i])
			}
			o.SHA256[i] = h
		}
		if !src.Prefix {
			if seen[src.FileName] {
				return cmdutil.BadInputf("two sources would both be saved as %q in the artifact directory", src.FileName)
			}
			seen[src.FileName] = true
		}
	}
	if o.ChecksumURL != "" {
		sum, err := artifacturl.ParseChecksum(o.ChecksumURL)
		if err != nil {
			return cmdutil.BadInput(err)
		}
		o.sum = sum
	}
	if o.Persist != "" {
		if err := o.validatePersist(); err != nil {
			return err
		}
	}
	if o.S3Endpoint != "" {
		u, err := url.Parse(o.S3Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cmdutil.BadInputf("--s3-endpoint %q: want a URL such as https://minio.local:9000", artifacturl.Redact(o.S3Endpoint))
		}
		if u.User != nil || u.RawQuery != "" {
			return cmdutil.BadInputf("--s3-endpoint %q: credentials do not go in the endpoint URL; put them in --s3-secret", artifacturl.Redact(o.S3Endpoint))
		}
	}
	return o.validate()
}

// readSecrets checks the S3 and header secrets and learns their keys.
func (o *ArtifactsOptions) readSecrets(ctx context.Context) error {
	get := func(flag, name string) (map[string][]byte, error) {
		s, err := o.client.CoreV1().Secrets(o.namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, cmdutil.BadInputf("%s %s: no such secret in namespace %q", flag, name, o.namespace)
		}
		if err != nil {
			return nil, cmdutil.BadInput(explainAPI(err, "reading "+flag+" "+name))
		}
		return s.Data, nil
	}
	if o.S3Secret != "" {
		data, err := get("--s3-secret", o.S3Secret)
		if err != nil {
			return err
		}
		o.s3Keys = map[string]string{}
		for file, aliases := range map[string][]string{
			"AWS_ACCESS_KEY_ID":     {"AWS_ACCESS_KEY_ID", "accessKeyID", "access-key-id", "accesskey"},
			"AWS_SECRET_ACCESS_KEY": {"AWS_SECRET_ACCESS_KEY", "secretAccessKey", "secret-access-key", "secretkey"},
			"AWS_SESSION_TOKEN":     {"AWS_SESSION_TOKEN", "sessionToken", "session-token"},
		} {
			for _, k := range aliases {
				if len(data[k]) > 0 {
					o.s3Keys[file] = k
					break
				}
			}
		}
		if o.s3Keys["AWS_ACCESS_KEY_ID"] == "" || o.s3Keys["AWS_SECRET_ACCESS_KEY"] == "" {
			return cmdutil.BadInputf("--s3-secret %s: want keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and optionally AWS_SESSION_TOKEN); it has %s", o.S3Secret, keyList(data))
		}
	}
	if o.HeaderSecret != "" {
		data, err := get("--header-secret", o.HeaderSecret)
		if err != nil {
			return err
		}
		if len(data) == 0 {
			return cmdutil.BadInputf("--header-secret %s is empty: each key is a header name (e.g. Authorization), each value its value", o.HeaderSecret)
		}
		for k := range data {
			if textproto.CanonicalMIMEHeaderKey(k) == "" || strings.ContainsAny(k, " :") {
				return cmdutil.BadInputf("--header-secret %s: key %q is not an HTTP header name", o.HeaderSecret, k)
			}
		}
	}
	return nil
}

func keyList(data map[string][]byte) string {
	if len(data) == 0 {
		return "no keys"
	}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return "keys " + strings.Join(keys, ", ")
}

func (o *ArtifactsOptions) spec() jobs.ArtifactSpec {
	a := jobs.ArtifactSpec{
		Name: o.Name, Root: o.DestRoot, Extract: o.Extract, ChecksumURL: o.sum.Public,
		HeaderSecret: o.HeaderSecret,
		S3Secret:     o.S3Secret, S3Keys: o.s3Keys, S3Endpoint: o.S3Endpoint, S3Region: o.S3Region, S3PathStyle: o.S3PathStyle,
		SourceTimeout: o.SourceTimeout,
	}
	if len(o.queries()) > 0 {
		a.QuerySecret = jobs.QuerySecretName(o.runID)
	}
	return a
}

// queries are the URLs' query strings, which the run's query secret carries
// to the workers (pre-signed URLs keep their credentials there).
func (o *ArtifactsOptions) queries() map[string]string {
	q := map[string]string{}
	for i, s := range o.parsed {
		if s.Query != "" {
			q[jobs.QueryKey(i)] = s.Query
		}
	}
	if o.sum.Query != "" {
		q[jobs.ChecksumQueryKey] = o.sum.Query
	}
	return q
}

// Run plans, runs, labels the nodes that hold the artifact, and reports.
func (o *ArtifactsOptions) Run(ctx context.Context) error {
	if err := o.readSecrets(ctx); err != nil {
		return err
	}
	if o.Persist != "" {
		return o.persist(ctx)
	}
	items := make([]plan.Item, len(o.parsed))
	for i, s := range o.parsed {
		items[i] = plan.Item{Ref: s.Public}
		if len(o.SHA256) > 0 {
			items[i].ExpectedDigest = o.SHA256[i]
		}
	}
	p, err := o.plan(ctx, items, "", false)
	if err != nil {
		return err
	}
	a := o.spec()
	spec := o.jobSpec()
	var njs []run.NodeJob
	dirs := map[string]string{}
	for _, t := range p.Tasks {
		nj := run.NodeJob{Node: t.Node, JobName: jobs.Name(spec.RunID, t.Node), NewJob: func() *batchv1.Job { return jobs.ForArtifactTask(t, spec, a) }}
		for i := range t.Items {
			nj.Items = append(nj.Items, o.parsed[i].Display())
			nj.Expected = append(nj.Expected, "")
		}
		dirs[t.Node] = jobs.ArtifactDir(t, a)
		njs = append(njs, nj)
	}
	labels, removed := map[string]string{}, map[string]string{}
	if o.DryRun == "none" && len(njs) > 0 {
		// Everything that can refuse the run does so before a node changes.
		if err := o.preflight(ctx, njs); err != nil {
			return err
		}
		if a.QuerySecret != "" {
			cleanup, err := o.createQuerySecret(ctx)
			if err != nil {
				return err
			}
			defer cleanup()
		}
		if labels, removed, err = o.unlabel(ctx, p); err != nil {
			return err
		}
	}
	out, err := o.execute(ctx, report.KindArtifactReport, p, njs, func(nrs []run.NodeResult) []report.Result {
		var rows []report.Result
		for _, nr := range nrs {
			for j, it := range nr.Items {
				rows = append(rows, report.Result{
					Node: nr.Node, Artifact: o.Name, Source: o.parsed[j].Display(), Path: dirs[nr.Node], Status: it.Status,
					Digest: it.Digest, SizeBytes: it.SizeBytes, DurationSeconds: float64(it.DurationMs) / 1000,
					Attempts: it.Attempts, Message: it.Message,
				})
			}
		}
		return append(rows, skippedResults(p, func(node, reason string) []report.Result {
			var r []report.Result
			for _, s := range o.parsed {
				r = append(r, report.Result{Node: node, Artifact: o.Name, Source: s.Display(), Status: report.StatusSkipped, Message: reason})
			}
			return r
		})...)
	})
	if err != nil {
		// Nothing ran: the labels removed for the run go back.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, e := range artifact.Restore(rctx, o.client.CoreV1().Nodes(), o.Name, removed) {
			fmt.Fprintf(o.ErrOut, "error: %v\n", e)
		}
		return err
	}
	var labelErrs []*artifact.LabelError
	if !out.dryRun {
		labelErrs = o.relabel(ctx, p, out.report, labels)
	}
	err = o.finish(out)
	if len(labelErrs) > 0 && cmdutil.Code(err) == cmdutil.ExitOK {
		return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: fmt.Errorf("the artifact is on every node, but %d node labels could not be written (see the report): workloads injected with kubectl coral inject artifact will not run there", len(labelErrs))}
	}
	return err
}

// createQuerySecret creates the run's query secret and returns the function
// that deletes it.
func (o *ArtifactsOptions) createQuerySecret(ctx context.Context) (func(), error) {
	sec := jobs.ArtifactQuerySecret(o.runID, o.namespace, o.queries())
	if _, err := o.client.CoreV1().Secrets(o.namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return nil, cmdutil.BadInput(fmt.Errorf("%w (a URL with a query is passed to the nodes through a Secret the run creates and deletes, so that its credentials stay out of Jobs, logs and reports: Coral needs to create and delete secrets in namespace %s)", explainAPI(err, "creating the secret for the URLs' queries"), o.namespace))
	}
	return func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err := o.client.CoreV1().Secrets(o.namespace).Delete(dctx, sec.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			fmt.Fprintf(o.ErrOut, "warning: the secret %s holds the URLs' queries and could not be deleted: %v; delete it: kubectl delete secret -n %s %s\n", sec.Name, shortErr(err), o.namespace, sec.Name)
		}
	}, nil
}

// labelValue is the label a full success will set, when known before the
// run (every source has an expected digest); "" otherwise.
func (o *ArtifactsOptions) labelValue() string {
	if len(o.SHA256) != len(o.parsed) || len(o.SHA256) == 0 {
		return ""
	}
	d := make([]string, len(o.SHA256))
	for i, h := range o.SHA256 {
		d[i] = "sha256:" + h
	}
	return artifact.LabelValue(d)
}

// unlabel removes the artifact's label from the nodes the run may change
// (see pkg/artifact), and returns the label state the run starts from.
func (o *ArtifactsOptions) unlabel(ctx context.Context, p *plan.Plan) (current, removed map[string]string, err error) {
	nodes := o.client.CoreV1().Nodes()
	current, err = artifact.Labels(ctx, nodes, o.Name)
	if err != nil {
		return nil, nil, cmdutil.BadInput(explainAPI(err, "reading which nodes hold artifact "+o.Name))
	}
	targets := make([]string, len(p.Tasks))
	for i, t := range p.Tasks {
		targets[i] = t.Node
	}
	removed, errs := artifact.Unlabel(ctx, nodes, o.Name, targets, current, o.labelValue())
	if len(errs) == 0 {
		return current, removed, nil
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	err = fmt.Errorf("%s: a node's label must come off before its copy of the artifact changes; nothing was run (Coral needs to patch nodes: see the RBAC section of the README)", explainAPI(errs[0].Err, strings.Join(msgs, "; ")))
	// Nothing ran: put back what came off, so that nothing changed.
	if rerrs := artifact.Restore(ctx, nodes, o.Name, removed); len(rerrs) > 0 {
		return nil, nil, &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: fmt.Errorf("%w; and %v", err, rerrs[0])}
	}
	return nil, nil, cmdutil.BadInput(err)
}

// relabel sets the artifact's label on every node where every source
// succeeded and keeps it off the others; a failed write is noted on the
// node's rows and returned.
func (o *ArtifactsOptions) relabel(ctx context.Context, p *plan.Plan, rep *report.PrefetchReport, current map[string]string) []*artifact.LabelError {
	planned := map[string]bool{}
	for _, t := range p.Tasks {
		planned[t.Node] = true
	}
	byNode := map[string]*artifact.NodeOutcome{}
	var outcomes []artifact.NodeOutcome
	for _, r := range rep.Results {
		if !planned[r.Node] {
			continue
		}
		oc := byNode[r.Node]
		if oc == nil {
			oc = &artifact.NodeOutcome{Node: r.Node, Succeeded: true}
			byNode[r.Node] = oc
		}
		if !r.Status.Succeeded() {
			oc.Succeeded = false
		}
		oc.Digests = append(oc.Digests, r.Digest)
	}
	for _, t := range p.Tasks {
		if oc := byNode[t.Node]; oc != nil {
			outcomes = append(outcomes, *oc)
		} else {
			outcomes = append(outcomes, artifact.NodeOutcome{Node: t.Node}) // no result: not known to hold it
		}
	}
	// An interrupted run still labels what it finished: briefly, past Ctrl-C.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	errs := artifact.Relabel(lctx, o.client.CoreV1().Nodes(), o.Name, outcomes, current)
	for _, e := range errs {
		what := "node not labelled"
		if !e.Set {
			what = "the node's label could not be removed though its copy is incomplete"
		}
		fmt.Fprintf(o.ErrOut, "error: %s\n", explainAPI(e.Err, e.Error()))
		for i := range rep.Results {
			if rep.Results[i].Node == e.Node {
				rep.Results[i].Message = strings.TrimSpace(rep.Results[i].Message + " (" + what + ": " + shortErr(e.Err) + ")")
			}
		}
	}
	return errs
}

// validatePersist refuses what an ArtifactPrefetch cannot carry: the
// object is stored in the API server and read by the controller, so
// nothing secret may go in it, and per-run flags have no field.
func (o *ArtifactsOptions) validatePersist() error {
	if msgs := validation.IsDNS1123Subdomain(o.Persist); len(msgs) > 0 || len(o.Persist) > 63 {
		if len(msgs) == 0 {
			msgs = []string{"at most 63 characters (it is a label value)"}
		}
		return cmdutil.BadInputf("--persist %q: %s", o.Persist, strings.Join(msgs, "; "))
	}
	for _, s := range o.parsed {
		if s.Query != "" {
			return cmdutil.BadInputf("--persist: source %q has a query (a pre-signed URL?): the ArtifactPrefetch would keep it in the API server, readable by anyone who may read the object; use a URL without a query and --header-secret, or run without --persist", s.Display())
		}
	}
	if o.sum.Query != "" {
		return cmdutil.BadInputf("--persist: --checksum-url has a query: the ArtifactPrefetch would keep it in the API server; use a URL without a query, or run without --persist")
	}
	switch {
	case len(o.WorkerPullSecret) > 0:
		return cmdutil.BadInputf("--persist: --worker-image-pull-secret is not part of an ArtifactPrefetch (the controller's Jobs use the pull secrets it was installed with)")
	case o.KeepJobs:
		return cmdutil.BadInputf("--persist: --keep-jobs applies to a run of this command; the controller deletes its Jobs once it has read them")
	}
	return nil
}

// persistSpec is the ArtifactPrefetch spec the flags describe (node and
// run settings come from PersistSettings).
func (o *ArtifactsOptions) persistSpec() (coralv1.ArtifactPrefetchSpec, error) {
	spec := coralv1.ArtifactPrefetchSpec{
		Name: o.Name, ChecksumURL: o.sum.Public, Extract: o.Extract, Root: o.DestRoot,
		HeaderSecret: o.HeaderSecret, SourceTimeout: durationPtr(o.SourceTimeout),
	}
	s3 := o.S3Secret != "" || o.S3Endpoint != ""
	for i, s := range o.parsed {
		src := coralv1.ArtifactSource{URL: s.Public}
		if len(o.SHA256) > 0 {
			src.SHA256 = o.SHA256[i]
		}
		spec.Sources = append(spec.Sources, src)
		s3 = s3 || s.Scheme == "s3"
	}
	if s3 {
		spec.S3 = &coralv1.S3Options{Secret: o.S3Secret, Endpoint: o.S3Endpoint, Region: o.S3Region, PathStyle: o.S3PathStyle}
	}
	// The controller reads the S3 secret's keys by their AWS names only.
	for file, key := range o.s3Keys {
		if key != file {
			return spec, cmdutil.BadInputf("--persist: --s3-secret %s has key %s; the controller reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN only: rename the key (kubectl edit secret %s -n %s)", o.S3Secret, key, o.S3Secret, o.namespace)
		}
	}
	return spec, nil
}

// persist writes the ArtifactPrefetch for the controller and, with --wait,
// prints its report with the same exit codes as a one-shot run.
func (o *ArtifactsOptions) persist(ctx context.Context) error {
	spec, err := o.persistSpec()
	if err != nil {
		return err
	}
	cl := o.persistClient
	if cl == nil {
		cfg, err := o.configFlags.ToRESTConfig()
		if err != nil {
			return cmdutil.BadInput(explainKubeconfig(err))
		}
		if cl, err = NewPersistClient(cfg); err != nil {
			return cmdutil.BadInput(err)
		}
	}
	rep, err := PersistArtifacts(ctx, cl, ArtifactPersist{
		PersistSettings: PersistSettings{
			Name: o.Persist, Namespace: o.namespace, Selector: o.Selector, NodeNames: o.Nodes, IncludeUnschedulable: o.IncludeUnschedulable,
			WorkerImage: o.WorkerImage, MaxNodesInFlight: o.MaxNodesInFlight, NodeTimeout: o.Timeout, Retries: o.Retries,
			Wait: o.Wait, WaitTimeout: o.WaitTimeout,
		},
		Spec: spec,
	})
	return o.finishPersist(ctx, "artifactprefetch", o.Persist, rep, err)
}
