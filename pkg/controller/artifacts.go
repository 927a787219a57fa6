package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/artifact"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/report"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// s3SecretKeys are the keys the worker reads from an S3 secret.
var s3SecretKeys = []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}

// ArtifactPrefetchReconciler keeps ArtifactPrefetch objects true: the files
// on every selected node, and the node label artifacts.coral.dev/<name> on
// the nodes that hold them (what kubectl coral inject artifact targets).
type ArtifactPrefetchReconciler struct{ sh *shared }

func (r *ArtifactPrefetchReconciler) setup(mgr ctrl.Manager) error {
	return r.sh.setupKind(mgr, "artifactprefetch", &coralv1.ArtifactPrefetch{}, &coralv1.ArtifactPrefetchList{}, LabelArtifactPrefetch, r)
}

// Reconcile starts missing work and writes the status.
func (r *ArtifactPrefetchReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var obj coralv1.ArtifactPrefetch
	return r.sh.reconcile(ctx, req, &obj, LabelArtifactPrefetch, artifactStatus, func(ctx context.Context) (*outcome, []string, time.Duration, error) {
		s3Keys, err := r.secrets(ctx, &obj)
		if err != nil {
			return nil, nil, 0, err
		}
		out, err := r.sh.sync(ctx, r.target(&obj, s3Keys))
		if err != nil {
			return nil, nil, 0, err
		}
		return out, nil, out.requeue, nil
	})
}

func artifactStatus(o client.Object) (any, *coralv1.PrefetchStatus) {
	ap := o.(*coralv1.ArtifactPrefetch)
	return &ap.Status, &ap.Status.PrefetchStatus
}

func (r *ArtifactPrefetchReconciler) target(obj *coralv1.ArtifactPrefetch, s3Keys map[string]string) *target {
	sp := obj.Spec
	img := sp.WorkerImage
	if img == "" {
		img = r.sh.opts.WorkerImage
	}
	timeout := durationOr(sp.NodeTimeout, time.Hour)
	spec := jobs.Spec{
		Namespace: obj.Namespace, WorkerImage: img, ImagePullPolicy: corev1.PullIfNotPresent,
		Deadline: timeout, TTL: r.sh.opts.JobTTL, Retries: int(sp.Retries), WorkerPullSecrets: r.sh.opts.WorkerPullSecrets,
	}
	a := jobs.ArtifactSpec{
		Name: sp.Name, Root: sp.Root, Extract: sp.Extract, ChecksumURL: sp.ChecksumURL, HeaderSecret: sp.HeaderSecret,
		SourceTimeout: durationOr(sp.SourceTimeout, 30*time.Minute),
	}
	if sp.S3 != nil {
		a.S3Secret, a.S3Keys, a.S3Endpoint, a.S3Region = sp.S3.Secret, s3Keys, sp.S3.Endpoint, sp.S3.Region
		a.S3PathStyle = sp.S3.PathStyle || sp.S3.Endpoint != ""
		if a.S3Region == "" {
			a.S3Region = "us-east-1"
		}
	}
	items := make([]plan.Item, len(sp.Sources))
	for i, s := range sp.Sources {
		items[i] = plan.Item{Ref: s.URL, ExpectedDigest: s.SHA256}
	}
	return &target{
		obj: obj, kind: "ArtifactPrefetch", nameLabel: LabelArtifactPrefetch, recPrefix: "art",
		nodes: sp.Nodes, run: sp.RunSettings, items: items,
		planOpts: plan.Options{SkipRuntimeSocket: true},
		build: func(t plan.Task, runID string) *batchv1.Job {
			s := spec
			s.RunID = runID
			return jobs.ForArtifactTask(t, s, a)
		},
		holds: func(have coralv1.NodeItem, want plan.Item) bool {
			if !report.Status(have.Status).Succeeded() {
				return false
			}
			return want.ExpectedDigest == "" || strings.TrimPrefix(have.Digest, "sha256:") == want.ExpectedDigest
		},
		onReady: func(ctx context.Context, rec *coralv1.PrefetchNode) error {
			return r.label(ctx, sp.Name, items, rec)
		},
	}
}

// label marks a node that holds every source of the artifact, with the
// CLI's label and value, so kubectl coral inject artifact targets it.
func (r *ArtifactPrefetchReconciler) label(ctx context.Context, name string, items []plan.Item, rec *coralv1.PrefetchNode) error {
	got := map[string]string{}
	for _, it := range rec.Results {
		if report.Status(it.Status).Succeeded() {
			got[it.Ref] = it.Digest
		}
	}
	var digests []string
	for _, it := range items {
		d, ok := got[it.Ref]
		if !ok {
			return nil // not every source yet
		}
		digests = append(digests, d)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{artifact.LabelKey(name): artifact.LabelValue(digests)}}})
	err := r.sh.client.Patch(ctx, &corev1.Node{ObjectMeta: metaName(rec.Node)}, client.RawPatch(types.MergePatchType, patch))
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("labelling node %s: %w", rec.Node, err)
	}
	return nil
}

// secrets checks the S3 and header secrets exist; the S3 secret's keys are
// the worker's file names (AWS_ACCESS_KEY_ID, …).
func (r *ArtifactPrefetchReconciler) secrets(ctx context.Context, obj *coralv1.ArtifactPrefetch) (map[string]string, error) {
	get := func(field, name string) (*corev1.Secret, error) {
		var s corev1.Secret
		err := r.sh.apiReader.Get(ctx, client.ObjectKey{Namespace: obj.Namespace, Name: name}, &s)
		if apierrors.IsNotFound(err) {
			return nil, &badInput{"SecretNotFound", fmt.Sprintf("%s: secret %q does not exist in namespace %q", field, name, obj.Namespace)}
		}
		return &s, err
	}
	if obj.Spec.HeaderSecret != "" {
		if _, err := get("spec.headerSecret", obj.Spec.HeaderSecret); err != nil {
			return nil, err
		}
	}
	if obj.Spec.S3 == nil || obj.Spec.S3.Secret == "" {
		return nil, nil
	}
	s, err := get("spec.s3.secret", obj.Spec.S3.Secret)
	if err != nil {
		return nil, err
	}
	keys := map[string]string{}
	for _, k := range s3SecretKeys {
		if len(s.Data[k]) > 0 {
			keys[k] = k
		}
	}
	if keys["AWS_ACCESS_KEY_ID"] == "" || keys["AWS_SECRET_ACCESS_KEY"] == "" {
		return nil, &badInput{"SecretInvalid", fmt.Sprintf("spec.s3.secret %q: want keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and optionally AWS_SESSION_TOKEN)", obj.Spec.S3.Secret)}
	}
	return keys, nil
}
