package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/registryauth"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/source"
	"github.com/google/go-containerregistry/pkg/authn"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ImagePrefetchReconciler keeps ImagePrefetch objects true.
type ImagePrefetchReconciler struct {
	sh *shared
	// resolve looks up a tag's digest; replaced in tests.
	resolve func(ctx context.Context, ref string, kc authn.Keychain) (string, error)
}

func (r *ImagePrefetchReconciler) setup(mgr ctrl.Manager) error {
	if r.resolve == nil {
		r.resolve = source.ResolveDigest
	}
	return r.sh.setupKind(mgr, "imageprefetch", &coralv1.ImagePrefetch{}, &coralv1.ImagePrefetchList{}, LabelImagePrefetch, r)
}

// Reconcile resolves tags, starts missing work and writes the status.
func (r *ImagePrefetchReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var obj coralv1.ImagePrefetch
	return r.sh.reconcile(ctx, req, &obj, LabelImagePrefetch, imageStatus, func(ctx context.Context) (*outcome, []string, time.Duration, error) {
		st := &obj.Status
		secrets, keyring, err := r.pullSecrets(ctx, &obj)
		if err != nil {
			return nil, nil, 0, err
		}
		next := r.resolveTags(ctx, &obj, st, keyring, time.Now())
		items := make([]plan.Item, len(obj.Spec.Images))
		for i, img := range obj.Spec.Images {
			items[i] = plan.Item{Ref: img, ExpectedDigest: digestOf(st.Images, img)}
		}
		out, err := r.sh.sync(ctx, r.target(&obj, items, secrets))
		if err != nil {
			return nil, nil, 0, err
		}
		requeue := out.requeue
		if next > 0 && (requeue == 0 || next < requeue) {
			requeue = next
		}
		var degraded []string
		if msgs := unresolved(st.Images); msgs != "" {
			degraded = []string{"ResolveFailed", msgs + " (nodes pull the tag as it is; the next try is at the refresh interval)"}
		}
		return out, degraded, requeue, nil
	})
}

func imageStatus(o client.Object) (any, *coralv1.PrefetchStatus) {
	ip := o.(*coralv1.ImagePrefetch)
	return &ip.Status, &ip.Status.PrefetchStatus
}

func (r *ImagePrefetchReconciler) target(obj *coralv1.ImagePrefetch, items []plan.Item, secrets []jobs.PullSecret) *target {
	sp := obj.Spec
	img := sp.WorkerImage
	if img == "" {
		img = r.sh.opts.WorkerImage
	}
	timeout := durationOr(sp.NodeTimeout, 15*time.Minute)
	spec := jobs.Spec{
		Namespace: obj.Namespace, WorkerImage: img, ImagePullPolicy: corev1.PullIfNotPresent,
		Deadline: timeout, TTL: r.sh.opts.JobTTL, Retries: int(sp.Retries),
		MaxPullsPerNode: int(max(sp.MaxPullsPerNode, 1)), ImageTimeout: durationOr(sp.ImageTimeout, 10*time.Minute),
		PullSecrets: secrets, WorkerPullSecrets: r.sh.opts.WorkerPullSecrets, Pin: sp.Pin,
	}
	return &target{
		obj: obj, kind: "ImagePrefetch", nameLabel: LabelImagePrefetch, recPrefix: "img",
		nodes: sp.Nodes, run: sp.RunSettings, items: items,
		planOpts: plan.Options{RuntimeEndpoint: sp.RuntimeEndpoint},
		build: func(t plan.Task, runID string) *batchv1.Job {
			s := spec
			s.RunID = runID
			return jobs.ForTask(t, s)
		},
		holds: func(have coralv1.NodeItem, want plan.Item) bool {
			if !report.Status(have.Status).Succeeded() {
				return false
			}
			if want.ExpectedDigest != "" && have.Digest != want.ExpectedDigest && !(have.Digest == "" && have.ExpectedDigest == want.ExpectedDigest) {
				return false
			}
			// A runtime that cannot pin said so: asking again changes nothing.
			return !sp.Pin || have.Pinned || strings.Contains(have.Message, "not pinned")
		},
	}
}

// badInput is a problem in the object or its namespace that a person must
// fix: it becomes Degraded with a reason, and is retried slowly.
type badInput struct{ reason, message string }

func (b *badInput) Error() string { return b.reason + ": " + b.message }

func asBadInput(err error, out **badInput) bool {
	return errors.As(err, out)
}

// pullSecrets reads the object's pull secrets (directly, not from a cache
// of every secret in the cluster) for the Jobs and for resolving tags.
func (r *ImagePrefetchReconciler) pullSecrets(ctx context.Context, obj *coralv1.ImagePrefetch) ([]jobs.PullSecret, *registryauth.Keyring, error) {
	k := &registryauth.Keyring{}
	var out []jobs.PullSecret
	for _, n := range obj.Spec.PullSecrets {
		var s corev1.Secret
		err := r.sh.apiReader.Get(ctx, client.ObjectKey{Namespace: obj.Namespace, Name: n}, &s)
		if apierrors.IsNotFound(err) {
			return nil, nil, &badInput{"PullSecretNotFound", fmt.Sprintf("spec.pullSecrets: secret %q does not exist in namespace %q (create it: kubectl create secret docker-registry %s -n %s --docker-server=… --docker-username=… --docker-password=…)", n, obj.Namespace, n, obj.Namespace)}
		}
		if err != nil {
			return nil, nil, err
		}
		if err := k.AddSecret(string(s.Type), s.Data); err != nil {
			return nil, nil, &badInput{"PullSecretInvalid", fmt.Sprintf("spec.pullSecrets: secret %q: %v", n, err)}
		}
		out = append(out, jobs.PullSecret{Name: n, Type: s.Type})
	}
	return out, k, nil
}

// resolveTags resolves the images' tags when the spec changed or the
// refresh interval passed, records them in st, and says when to refresh
// next (0: never). A tag that cannot be resolved keeps its last digest.
func (r *ImagePrefetchReconciler) resolveTags(ctx context.Context, obj *coralv1.ImagePrefetch, st *coralv1.ImagePrefetchStatus, k *registryauth.Keyring, now time.Time) time.Duration {
	interval := durationOr(obj.Spec.RefreshInterval, 10*time.Minute)
	if r := obj.Spec.RefreshInterval; r != nil && r.Duration == 0 {
		interval = 0 // 0s: never
	}
	same := len(st.Images) == len(obj.Spec.Images)
	for i := 0; same && i < len(st.Images); i++ {
		same = st.Images[i].Image == obj.Spec.Images[i]
	}
	due := !same || st.LastResolveTime == nil || (interval > 0 && !now.Before(st.LastResolveTime.Add(interval)))
	if !due {
		if interval <= 0 {
			return 0
		}
		return st.LastResolveTime.Add(interval).Sub(now)
	}
	kc := k.Keychain(r.sh.opts.Keychain)
	images := make([]coralv1.ResolvedImage, len(obj.Spec.Images))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, img := range obj.Spec.Images {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rctx, cancel := context.WithTimeout(ctx, r.sh.opts.ResolveTimeout)
			defer cancel()
			d, err := r.resolve(rctx, img, kc)
			images[i] = coralv1.ResolvedImage{Image: img, Digest: d}
			if err != nil {
				images[i] = coralv1.ResolvedImage{Image: img, Digest: digestOf(st.Images, img), Message: truncate("cannot resolve the tag: "+err.Error(), 256)}
			}
		}()
	}
	wg.Wait()
	for _, ri := range images {
		if old := digestOf(st.Images, ri.Image); old != "" && ri.Digest != "" && old != ri.Digest {
			r.sh.events.Eventf(obj, nil, corev1.EventTypeNormal, "TagMoved", "Resolve", "%s moved from %s to %s: prefetching the new digest on every node", ri.Image, old, ri.Digest)
		}
	}
	st.Images = images
	st.LastResolveTime = &metav1.Time{Time: now}
	return interval
}

func digestOf(images []coralv1.ResolvedImage, img string) string {
	for _, ri := range images {
		if ri.Image == img {
			return ri.Digest
		}
	}
	return ""
}

func unresolved(images []coralv1.ResolvedImage) string {
	var msgs []string
	for _, ri := range images {
		if ri.Message != "" {
			msgs = append(msgs, ri.Image+": "+ri.Message)
		}
	}
	return truncate(strings.Join(msgs, "; "), 1024)
}

// durationOr is d, or def when d is unset or not positive.
func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d != nil && d.Duration > 0 {
		return d.Duration
	}
	return def
}
