package prefetch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/diskcheck"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/registryauth"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// defaultDiskCheckNodes bounds the disk check's reads: two per node through
// the API server (kubelet's stats summary and configz). Above it a random
// sample of this many nodes is checked, so a run over 5000 nodes costs 400
// reads, not 10000.
const defaultDiskCheckNodes = 200

const diskCheckHelp = `Disk check: before any Job is created, each node's need (the images'
compressed sizes from their manifests — a lower bound: runtimes unpack layers,
containerd also keeps the compressed blobs — minus images the node already
reports, shared layers once) is compared with its image filesystem's free space
(kubelet's stats summary) and kubelet's imageGCHighThresholdPercent (configz),
both read through the API server (RBAC: get on nodes/proxy). A node that cannot
hold the images stops the run with exit 2, listing the numbers; a node the
pulls would push over the GC threshold (kubelet then deletes unused images) is
a warning. Up to --disk-check-nodes nodes are checked (2 reads each), a random
sample of that many above; images that cannot be read from here are not
counted. --skip-disk-check turns it off.`

// diskCheckOptions are the disk check's flags and seams.
type diskCheckOptions struct {
	Skip     bool
	MaxNodes int
	// read reads the nodes' kubelets; nil means through o.client's node
	// proxy (replaced in tests, where the client is a fake).
	read func(ctx context.Context, nodes []string) []diskcheck.NodeDisk
}

// addFlags registers the disk check's flags and help on cmd.
func (d *diskCheckOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&d.Skip, "skip-disk-check", false, "do not compare the images' sizes with the nodes' free image-filesystem space before the run")
	f.IntVar(&d.MaxNodes, "disk-check-nodes", defaultDiskCheckNodes, "the disk check reads every node up to this many (two API requests each) and a random sample of this many above; 0 reads every node")
	cmd.Long += "\n\n" + diskCheckHelp
	cmd.Example += `

  # Big images onto a pool whose disks you know (no disk check: no nodes/proxy reads)
  kubectl coral prefetch images registry.example.com/ml/trainer:v7 -l pool=gpu --skip-disk-check`
}

// diskReads is the disk check's reads of the nodes' kubelets, started as
// soon as the nodes are planned: the kubelets answer (two requests a node,
// through the API server) while the registry is asked for the images'
// digests and sizes, instead of after.
type diskReads struct {
	names   []string // the nodes read, sorted
	sampled bool     // names is a random sample of the plan's nodes
	done    chan struct{}
	disks   []diskcheck.NodeDisk // set when done is closed
}

// startDiskReads starts reading the kubelets of the plan's nodes (or of a
// random sample of --disk-check-nodes of them); nil when the check is off
// or there is no node. The reads end with ctx.
func (o *ImagesOptions) startDiskReads(ctx context.Context, d *diskCheckOptions, p *plan.Plan) *diskReads {
	if d.Skip || len(p.Tasks) == 0 {
		return nil
	}
	names := make([]string, len(p.Tasks))
	for i, t := range p.Tasks {
		names[i] = t.Node
	}
	r := &diskReads{done: make(chan struct{})}
	r.sampled = d.MaxNodes > 0 && len(names) > d.MaxNodes
	if r.sampled {
		rand.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		names = names[:d.MaxNodes]
	}
	sort.Strings(names)
	r.names = names
	read := d.read
	if read == nil {
		rc := o.client.CoreV1().RESTClient()
		read = func(ctx context.Context, nodes []string) []diskcheck.NodeDisk {
			return diskcheck.ReadNodes(ctx, rc, nodes, diskcheck.ReadOptions{Concurrency: 16, Timeout: 10 * time.Second})
		}
	}
	go func() {
		defer close(r.done)
		r.disks = read(ctx, names)
	}()
	return r
}

// checkDisk runs the disk check for an images run on what the kubelets
// answered to reads (startDiskReads; nil: the check is off): nil when the
// run may go on (warnings are printed), an exit-2 error naming the nodes
// that cannot hold the images.
func (o *ImagesOptions) checkDisk(ctx context.Context, reads *diskReads, p *plan.Plan, k *registryauth.Keyring) error {
	if reads == nil {
		return nil
	}
	warn := func(format string, args ...any) { fmt.Fprintf(o.ErrOut, "warning: disk check: "+format+"\n", args...) }

	// Images: the ones resolved from here (or all, with --no-resolve). An
	// image that could not be resolved is out of reach from here: its size
	// is not counted (resolveAll already said so).
	var imgs []diskcheck.Image
	var unread []string
	for _, it := range p.Tasks[0].Items {
		if !o.NoResolve && it.ExpectedDigest == "" {
			unread = append(unread, it.Ref)
			continue
		}
		imgs = append(imgs, diskcheck.Image{Ref: it.Ref, Digest: it.ExpectedDigest})
	}
	if len(imgs) == 0 {
		warn("skipped: no image's manifest can be read from here")
		return nil
	}

	nodes := o.nodesByName(reads.names)
	platforms := map[diskcheck.Platform]bool{}
	for _, n := range nodes {
		platforms[diskcheck.NodePlatform(n)] = true
	}
	var plats []diskcheck.Platform
	for pl := range platforms {
		plats = append(plats, pl)
	}

	sizes, serrs := diskcheck.ImageSizes(ctx, imgs, plats, diskcheck.SizeOptions{
		Remote: []remote.Option{remote.WithAuthFromKeychain(k.Keychain(authn.DefaultKeychain))},
	})
	if ctx.Err() != nil {
		return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New("interrupted before any Job was created")}
	}
	for _, e := range serrs {
		unread = append(unread, e.Ref)
		warn("cannot read the manifest of %s (%v); its size is not counted", e.Ref, shortErr(e.Err))
	}
	if len(sizes) == 0 {
		warn("skipped: no image's size is known")
		return nil
	}

	<-reads.done
	disks := reads.disks
	if ctx.Err() != nil {
		return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New("interrupted before any Job was created")}
	}

	var verdicts []diskcheck.Verdict
	var forbidden, failed, noThreshold []string
	unknownByNode := map[string][]string{}
	for _, nd := range disks {
		switch {
		case nd.Err != nil && apierrors.IsForbidden(nd.Err):
			forbidden = append(forbidden, nd.Node)
			continue
		case nd.Err != nil:
			failed = append(failed, shortErr(nd.Err))
			continue
		case nd.ThresholdErr != nil:
			noThreshold = append(noThreshold, nd.Node)
		}
		n := nodes[nd.Node]
		var held []corev1.ContainerImage
		pl := diskcheck.Platform{}
		if n != nil {
			held, pl = n.Status.Images, diskcheck.NodePlatform(n)
		}
		need := diskcheck.NodeNeed(imgs, sizes, pl, held)
		if len(need.Unknown) > 0 {
			unknownByNode[nd.Node] = need.Unknown
		}
		verdicts = append(verdicts, diskcheck.Judge(nd.Node, need.Bytes, nd.ImageFs, nd.HighThresholdPercent))
	}
	if len(forbidden) > 0 {
		warn("cannot read kubelet's stats of %s through the API server (forbidden); the check needs %s; --skip-disk-check silences this", nodeList(forbidden), diskcheck.RBACHint)
	}
	if len(failed) > 0 {
		warn("cannot read %d node(s); they are not checked: %s", len(failed), strings.Join(firstN(failed, 3), "; "))
	}
	if len(noThreshold) > 0 {
		warn("cannot read kubelet's configz of %s; assuming imageGCHighThresholdPercent %d", nodeList(noThreshold), diskcheck.DefaultImageGCHighThresholdPercent)
	}
	if len(unknownByNode) > 0 {
		var ns []string
		for n := range unknownByNode {
			ns = append(ns, n)
		}
		sort.Strings(ns)
		warn("no manifest for the platform of %s in %s; not counted", nodeList(ns), strings.Join(unknownByNode[ns[0]], ", "))
	}
	if len(verdicts) == 0 {
		return nil
	}

	var notFit []string
	var fits int
	var most, least *diskcheck.Verdict
	for i := range verdicts {
		v := &verdicts[i]
		switch v.Status {
		case diskcheck.DoesNotFit:
			notFit = append(notFit, fmt.Sprintf("  %s: %s", v.Node, v.Message))
		case diskcheck.OverGCThreshold:
			warn("node %s %s", v.Node, v.Message)
		case diskcheck.Unknown:
			warn("node %s: %s; not checked", v.Node, v.Message)
		case diskcheck.Fits:
			fits++
		}
		if most == nil || v.NeedBytes > most.NeedBytes {
			most = v
		}
		if v.Status != diskcheck.Unknown && (least == nil || v.AvailableBytes < least.AvailableBytes) {
			least = v
		}
	}
	scope := fmt.Sprintf("%d node(s)", len(verdicts))
	if reads.sampled {
		scope = fmt.Sprintf("a random sample of %d of %d nodes (--disk-check-nodes)", len(verdicts), len(p.Tasks))
	}
	if len(notFit) > 0 {
		return cmdutil.BadInputf("disk check: %d of %s cannot hold the images (compressed sizes: a lower bound of what they need):\n%s\nnothing was created; free space on those nodes, leave them out (-l SELECTOR or --nodes), or pass --skip-disk-check to pull anyway",
			len(notFit), scope, strings.Join(notFit, "\n"))
	}
	line := fmt.Sprintf("disk check: %s checked, %d fit under kubelet's image-GC threshold; the most any needs is %s (compressed, a lower bound)", scope, fits, diskcheck.HumanBytes(most.NeedBytes))
	if most.NeedBytes == 0 && len(unknownByNode) == 0 && len(unread) == 0 {
		line = fmt.Sprintf("disk check: %s checked, each already holds the images", scope)
	}
	if least != nil {
		line += fmt.Sprintf("; least free: %s, %s of %s (%d%% used)", least.Node, diskcheck.HumanBytes(least.AvailableBytes), diskcheck.HumanBytes(least.CapacityBytes), least.UsedPercent)
	}
	fmt.Fprintln(o.ErrOut, line)
	return nil
}

// nodesByName returns the checked nodes (platform, images held) as
// planning listed them (nodeImages): no second list.
func (o *ImagesOptions) nodesByName(names []string) map[string]*corev1.Node {
	out := make(map[string]*corev1.Node, len(names))
	for _, n := range names {
		if node := o.nodes[n]; node != nil {
			out[n] = node
		}
	}
	return out
}

func nodeList(ns []string) string {
	if len(ns) == 1 {
		return "node " + ns[0]
	}
	s := strings.Join(firstN(ns, 3), ", ")
	if len(ns) > 3 {
		s += fmt.Sprintf(" and %d more", len(ns)-3)
	}
	return fmt.Sprintf("%d nodes (%s)", len(ns), s)
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
