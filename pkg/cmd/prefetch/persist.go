package prefetch

import (
	"context"
	"errors"
	"fmt"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/report/output"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// This file is `--persist NAME`: instead of running Jobs itself, the
// command writes an ImagePrefetch or ArtifactPrefetch for the controller
// (kubectl coral install) and, unless told not to wait, waits until it has
// settled and reports from the controller's per-node records, so the report
// and exit code match a one-shot run.

// PersistSettings are the flags --persist shares between both commands.
type PersistSettings struct {
	Name      string
	Namespace string
	// Selector is the -l string; NodeNames --nodes.
	Selector             string
	NodeNames            []string
	IncludeUnschedulable bool
	WorkerImage          string
	MaxNodesInFlight     int
	NodeTimeout          time.Duration
	Retries              int
	// Wait for the object to settle; WaitTimeout bounds it.
	Wait        bool
	WaitTimeout time.Duration
}

func (p PersistSettings) common() (coralv1.Nodes, coralv1.RunSettings, error) {
	var nodes coralv1.Nodes
	if p.Selector != "" {
		sel, err := metav1.ParseToLabelSelector(p.Selector)
		if err != nil {
			return nodes, coralv1.RunSettings{}, fmt.Errorf("-l/--selector %q: %w", p.Selector, err)
		}
		nodes.Selector = sel
	}
	nodes.Names, nodes.IncludeUnschedulable = p.NodeNames, p.IncludeUnschedulable
	rs := coralv1.RunSettings{
		MaxNodesInFlight: int32(p.MaxNodesInFlight), NodeTimeout: durationPtr(p.NodeTimeout),
		Retries: int32(p.Retries), WorkerImage: p.WorkerImage,
	}
	return nodes, rs, nil
}

// ImagePersist is what `prefetch images --persist` writes.
type ImagePersist struct {
	PersistSettings
	Images          []string
	PullSecrets     []string
	Pin             bool
	MaxPullsPerNode int
	ImageTimeout    time.Duration
	RuntimeEndpoint string
	// RefreshInterval re-resolves tags (0: the CRD's default).
	RefreshInterval time.Duration
}

// PersistImages creates or updates the ImagePrefetch, waits (when asked)
// and returns the report built from the controller's records. The report
// is nil when not waiting.
func PersistImages(ctx context.Context, cl *PersistClient, p ImagePersist) (*report.PrefetchReport, error) {
	nodes, rs, err := p.common()
	if err != nil {
		return nil, err
	}
	spec := coralv1.ImagePrefetchSpec{
		Images: p.Images, Nodes: nodes, PullSecrets: p.PullSecrets, Pin: p.Pin,
		MaxPullsPerNode: int32(p.MaxPullsPerNode), ImageTimeout: durationPtr(p.ImageTimeout),
		RuntimeEndpoint: p.RuntimeEndpoint, RunSettings: rs,
	}
	if p.RefreshInterval > 0 {
		spec.RefreshInterval = &metav1.Duration{Duration: p.RefreshInterval}
	}
	obj := &coralv1.ImagePrefetch{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
	if err := upsert(ctx, cl, imagePrefetches, obj, func() { obj.Spec = withDefaults(obj.Spec, spec) }); err != nil {
		return nil, err
	}
	if !p.Wait {
		return nil, nil
	}
	start := time.Now()
	st, err := waitSettled(ctx, cl, imagePrefetches, obj, p.WaitTimeout, func() (int64, *coralv1.PrefetchStatus) { return obj.Generation, &obj.Status.PrefetchStatus })
	rep, rerr := persistReport(ctx, cl, obj, "coral.dev/imageprefetch", report.KindPrefetchReport, st, start, p.Images)
	if rerr != nil {
		return nil, rerr
	}
	return rep, err
}

// withDefaults keeps the API server's defaults for fields the CLI leaves
// zero, so an update does not fight them.
func withDefaults(old, s coralv1.ImagePrefetchSpec) coralv1.ImagePrefetchSpec {
	if s.RefreshInterval == nil {
		s.RefreshInterval = old.RefreshInterval
	}
	return s
}

// ArtifactPersist is what `prefetch artifacts --persist` writes.
type ArtifactPersist struct {
	PersistSettings
	Spec coralv1.ArtifactPrefetchSpec
}

// PersistArtifacts creates or updates the ArtifactPrefetch (Spec's node
// and run settings come from PersistSettings), waits when asked, and
// returns the report.
func PersistArtifacts(ctx context.Context, cl *PersistClient, p ArtifactPersist) (*report.PrefetchReport, error) {
	nodes, rs, err := p.common()
	if err != nil {
		return nil, err
	}
	spec := p.Spec
	spec.Nodes, spec.RunSettings = nodes, rs
	obj := &coralv1.ArtifactPrefetch{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
	if err := upsert(ctx, cl, artifactPrefetches, obj, func() { obj.Spec = spec }); err != nil {
		return nil, err
	}
	if !p.Wait {
		return nil, nil
	}
	start := time.Now()
	st, err := waitSettled(ctx, cl, artifactPrefetches, obj, p.WaitTimeout, func() (int64, *coralv1.PrefetchStatus) { return obj.Generation, &obj.Status.PrefetchStatus })
	var sources []string
	for _, s := range spec.Sources {
		sources = append(sources, s.URL)
	}
	rep, rerr := persistReport(ctx, cl, obj, "coral.dev/artifactprefetch", report.KindArtifactReport, st, start, sources)
	if rerr != nil {
		return nil, rerr
	}
	return rep, err
}

// durationPtr is nil for 0 (the CRD's default applies).
func durationPtr(d time.Duration) *metav1.Duration {
	if d <= 0 {
		return nil
	}
	return &metav1.Duration{Duration: d}
}

func upsert(ctx context.Context, cl *PersistClient, res string, obj persistObject, set func()) error {
	err := cl.get(ctx, res, obj)
	switch {
	case apierrors.IsNotFound(err) && !isNoResource(err):
		set()
		err = cl.write(ctx, res, obj, false)
	case err == nil:
		set()
		err = cl.write(ctx, res, obj, true)
	}
	if err != nil {
		if isNoResource(err) {
			return fmt.Errorf("writing %s/%s: %w", obj.GetNamespace(), obj.GetName(), &noCRDError{res: res, err: err})
		}
		return fmt.Errorf("writing %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// errNotSettled is returned with the report when the wait timed out.
var errNotSettled = fmt.Errorf("the prefetch did not settle in time")

// waitSettled polls until the status describes the current generation and
// is Ready, or nothing is in flight any more (failures), or it is blocked.
func waitSettled(ctx context.Context, cl *PersistClient, res string, obj persistObject, timeout time.Duration, status func() (int64, *coralv1.PrefetchStatus)) (*coralv1.PrefetchStatus, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last *coralv1.PrefetchStatus
	err := wait.PollUntilContextCancel(wctx, time.Second, true, func(ctx context.Context) (bool, error) {
		if err := cl.get(ctx, res, obj); err != nil {
			return false, nil
		}
		gen, st := status()
		last = st
		if st.ObservedGeneration != gen {
			return false, nil
		}
		if meta.IsStatusConditionTrue(st.Conditions, coralv1.ConditionReady) {
			return true, nil
		}
		prog := meta.FindStatusCondition(st.Conditions, coralv1.ConditionProgressing)
		return prog != nil && prog.Status == metav1.ConditionFalse, nil
	})
	if err != nil {
		return last, fmt.Errorf("%w (%s)", errNotSettled, timeout)
	}
	return last, nil
}

// persistReport turns the object's PrefetchNode records into the CLI's
// report: one row per node and item, plus the skipped nodes the status lists.
func persistReport(ctx context.Context, cl *PersistClient, obj persistObject, label, kind string, st *coralv1.PrefetchStatus, start time.Time, items []string) (*report.PrefetchReport, error) {
	recs, err := cl.prefetchNodes(ctx, obj.GetNamespace(), label+"="+obj.GetName())
	if err != nil {
		return nil, err
	}
	var rows []report.Result
	for _, r := range recs {
		for _, it := range r.Results {
			row := report.Result{Node: r.Node, Status: report.Status(it.Status), Digest: it.Digest, ExpectedDigest: it.ExpectedDigest, Pinned: it.Pinned, Message: it.Message}
			if kind == report.KindArtifactReport {
				row.Source = it.Ref
			} else {
				row.Image = it.Ref
			}
			rows = append(rows, row)
		}
	}
	if st != nil {
		for _, sk := range st.Skipped {
			for _, it := range items {
				row := report.Result{Node: sk.Node, Status: report.StatusSkipped, Message: sk.Message}
				if kind == report.KindArtifactReport {
					row.Source = it
				} else {
					row.Image = it
				}
				rows = append(rows, row)
			}
		}
	}
	return report.NewReport(kind, obj.GetName(), start, time.Now(), rows), nil
}

// finishPersist turns what PersistImages/PersistArtifacts returned into
// the command's output and exit code: the report as a one-shot run prints
// it, or a line saying the object was written (--wait=false).
func (o *RunOptions) finishPersist(ctx context.Context, resource, name string, rep *report.PrefetchReport, err error) error {
	if rep == nil && err != nil {
		if noCRD := (*noCRDError)(nil); errors.As(err, &noCRD) {
			return cmdutil.BadInputf("--persist needs Coral's controller: %v", noCRD)
		}
		if ctx.Err() != nil {
			return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: fmt.Errorf("interrupted while waiting; %s/%s stays and goes on", resource, name)}
		}
		return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: fmt.Errorf("--persist %s: %w", name, err)}
	}
	if rep == nil {
		fmt.Fprintf(o.ErrOut, "%s.coral.dev/%s written in namespace %s; the controller takes it from here (kubectl get %s -n %s %s)\n", resource, name, o.namespace, resource, o.namespace, name)
		return nil
	}
	if ctx.Err() != nil {
		_ = output.Print(o.Out, o.Output, rep, rep.PrintTable)
		return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: fmt.Errorf("interrupted while waiting; the report above is partial, and %s/%s stays and goes on", resource, name)}
	}
	return o.finish(&outcome{report: rep, err: err})
}
