package prefetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/textproto"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/run"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// ArtifactLabelPrefix starts the node label that says a node holds a
// verified artifact: artifacts.coral.dev/<name>=<first 12 hex digits of its digest>.
const ArtifactLabelPrefix = "artifacts.coral.dev/"

// ArtifactLabel is the node label key for an artifact name.
func ArtifactLabel(name string) string { return ArtifactLabelPrefix + name }

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

	sources []string
	s3Keys  map[string]string
}

// NewArtifactsOptions returns the defaults.
func NewArtifactsOptions(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *ArtifactsOptions {
	o := &ArtifactsOptions{
		RunOptions:    newRunOptions(flags, streams),
		DestRoot:      jobs.DefaultArtifactRoot,
		S3Region:      "us-east-1",
		SourceTimeout: 30 * time.Minute,
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

A node that holds the verified artifact gets the label
artifacts.coral.dev/NAME=<first 12 hex digits of its digest>; use
"kubectl coral inject artifact" to mount it into workloads that then run only
on such nodes.`,
		Example: `  # A model from a web server onto the GPU pool, verified
  kubectl coral prefetch artifacts https://models.example.com/bert.tar.gz --name bert --sha256 9f2c… -l pool=gpu

  # Everything under an S3 prefix of an S3-compatible store
  kubectl coral prefetch artifacts s3://ml-models/llama/ --name llama --s3-secret s3-creds --s3-endpoint https://minio.local:9000 -l pool=gpu

  # Unpack an archive; checksums from a SHA256SUMS file
  kubectl coral prefetch artifacts https://dl.example.com/v2/tools.tar.gz --name tools --extract --checksum-url https://dl.example.com/v2/SHA256SUMS`,
		Args: cobra.ArbitraryArgs,
		RunE: runE(o),
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
	o.addFlags(f)
	return cmd
}

var artifactName = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// ValidateArtifactName checks that name is safe as a directory name and as
// the name part of a node label key.
func ValidateArtifactName(name string) error {
	if !artifactName.MatchString(name) {
		return cmdutil.BadInputf("artifact name %q: use lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit, at most 63 characters", name)
	}
	return nil
}

// Complete reads the sources and sets up the client.
func (o *ArtifactsOptions) Complete(cmd *cobra.Command, args []string) error {
	o.sources = args
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
	case ValidateArtifactName(o.Name) != nil:
		return ValidateArtifactName(o.Name)
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
	}
	seen := map[string]bool{}
	for i, s := range o.sources {
		u, err := url.Parse(s)
		if err != nil {
			return cmdutil.BadInputf("source %q is not a valid URL: %v", s, err)
		}
		switch u.Scheme {
		case "http", "https":
			if u.Host == "" {
				return cmdutil.BadInputf("source %q has no host", s)
			}
			if b := path.Base(u.Path); b == "/" || b == "." {
				return cmdutil.BadInputf("source %q names no file: give the URL of a file", s)
			}
		case "s3":
			if u.Host == "" {
				return cmdutil.BadInputf("source %q has no bucket: use s3://bucket/key or s3://bucket/prefix/", s)
			}
			if strings.HasSuffix(u.Path, "/") || u.Path == "" {
				if len(o.SHA256) > 0 {
					return cmdutil.BadInputf("source %q is a prefix: --sha256 applies to single files; leave it out (each object is verified against the store's checksum when it keeps one)", s)
				}
				if o.Extract {
					return cmdutil.BadInputf("source %q is a prefix: --extract applies to single archives", s)
				}
			}
		default:
			return cmdutil.BadInputf("source %q: unsupported scheme %q (use http://, https:// or s3://)", s, u.Scheme)
		}
		if len(o.SHA256) > 0 {
			h := strings.ToLower(strings.TrimPrefix(o.SHA256[i], "sha256:"))
			if b, err := hex.DecodeString(h); err != nil || len(b) != 32 {
				return cmdutil.BadInputf("--sha256 %q: want 64 hex digits", o.SHA256[i])
			}
			o.SHA256[i] = h
		}
		name := path.Base(u.Path)
		if seen[name] && !strings.HasSuffix(u.Path, "/") {
			return cmdutil.BadInputf("two sources would both be saved as %q in the artifact directory", name)
		}
		seen[name] = true
	}
	if o.ChecksumURL != "" {
		if u, err := url.Parse(o.ChecksumURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return cmdutil.BadInputf("--checksum-url %q: want an http(s) URL", o.ChecksumURL)
		}
	}
	if o.S3Endpoint != "" {
		if u, err := url.Parse(o.S3Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return cmdutil.BadInputf("--s3-endpoint %q: want a URL such as https://minio.local:9000", o.S3Endpoint)
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
	return jobs.ArtifactSpec{
		Name: o.Name, Root: o.DestRoot, Extract: o.Extract, ChecksumURL: o.ChecksumURL,
		HeaderSecret: o.HeaderSecret,
		S3Secret:     o.S3Secret, S3Keys: o.s3Keys, S3Endpoint: o.S3Endpoint, S3Region: o.S3Region, S3PathStyle: o.S3PathStyle,
		SourceTimeout: o.SourceTimeout,
	}
}

// Run plans, runs, labels the nodes that hold the artifact, and reports.
func (o *ArtifactsOptions) Run(ctx context.Context) error {
	if err := o.readSecrets(ctx); err != nil {
		return err
	}
	items := make([]plan.Item, len(o.sources))
	for i, s := range o.sources {
		items[i] = plan.Item{Ref: s}
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
		nj := run.NodeJob{Node: t.Node, Job: jobs.ForArtifactTask(t, spec, a)}
		for _, it := range t.Items {
			nj.Images = append(nj.Images, it.Ref)
			nj.Expected = append(nj.Expected, "")
		}
		dirs[t.Node] = jobs.ArtifactDir(t, a)
		njs = append(njs, nj)
	}
	out, err := o.execute(ctx, report.KindArtifactReport, p, njs, func(nrs []run.NodeResult) []report.Result {
		var rows []report.Result
		for _, nr := range nrs {
			for j, it := range nr.Items {
				rows = append(rows, report.Result{
					Node: nr.Node, Artifact: o.Name, Source: o.sources[j], Path: dirs[nr.Node], Status: it.Status,
					Digest: it.Digest, SizeBytes: it.SizeBytes, DurationSeconds: float64(it.DurationMs) / 1000,
					Attempts: it.Attempts, Message: it.Message,
				})
			}
		}
		return append(rows, skippedResults(p, func(node, reason string) []report.Result {
			var r []report.Result
			for _, s := range o.sources {
				r = append(r, report.Result{Node: node, Artifact: o.Name, Source: s, Status: report.StatusSkipped, Message: reason})
			}
			return r
		})...)
	})
	if err != nil {
		return err
	}
	if !out.dryRun && !out.interrupted {
		o.labelNodes(ctx, out.report)
	}
	return o.finish(out)
}

// labelNodes labels every node on which every source succeeded with the
// artifact's short digest. A node where anything failed is left as it was:
// its previous content (and label, if any) is intact.
func (o *ArtifactsOptions) labelNodes(ctx context.Context, rep *report.PrefetchReport) {
	byNode := map[string][]report.Result{}
	for _, r := range rep.Results {
		byNode[r.Node] = append(byNode[r.Node], r)
	}
	for node, rows := range byNode {
		digests := make([]string, 0, len(rows))
		ok := true
		for _, r := range rows {
			if !r.Status.Succeeded() {
				ok = false
			}
			digests = append(digests, r.Digest)
		}
		if !ok {
			continue
		}
		value := ShortArtifactDigest(digests)
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{ArtifactLabel(o.Name): value}}})
		if _, err := o.client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			fmt.Fprintf(o.ErrOut, "warning: labelling node %s with %s=%s: %v\n", node, ArtifactLabel(o.Name), value, explainAPI(err, "patching the node"))
			for i := range rep.Results {
				if rep.Results[i].Node == node {
					rep.Results[i].Message = strings.TrimSpace(rep.Results[i].Message + " (node not labelled: " + shortErr(err) + ")")
				}
			}
		}
	}
}

// ShortArtifactDigest is the label value for an artifact made of the given
// item digests: the first 12 hex digits of its one digest, or of the digest
// of the sorted list when there are several.
func ShortArtifactDigest(digests []string) string {
	if len(digests) == 1 {
		return shortHex(digests[0])
	}
	s := append([]string(nil), digests...)
	sort.Strings(s)
	h := sha256.Sum256([]byte(strings.Join(s, "\n")))
	return hex.EncodeToString(h[:])[:12]
}

func shortHex(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
