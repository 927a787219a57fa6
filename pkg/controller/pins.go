package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/artifact"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/run"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func metaName(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }

// releasePins runs while a pinning ImagePrefetch is being deleted: on every
// node where its records show pinned images, one unpin Job releases those
// that no other object holds pinned on that node (same digest), so kubelet's
// image GC may remove them again. done is false while unpin Jobs run; each
// node's record is updated when its Job has reported, so a restart resumes.
// A node that is gone, or whose unpin failed, is reported in an event and
// does not block the deletion.
func (s *shared) releasePins(ctx context.Context, obj client.Object) (bool, error) {
	ip, ok := obj.(*coralv1.ImagePrefetch)
	if !ok || !ip.Spec.Pin {
		return true, nil
	}
	uid := string(ip.UID)
	recs, err := s.listRecords(ip.Namespace, uid)
	if err != nil {
		return false, err
	}
	all, err := s.view.Records("", "")
	if err != nil {
		return false, err
	}
	keep := map[string]bool{} // node \x00 digest-or-ref pinned by another object
	for _, r := range all {
		if r.Labels[LabelPrefetchUID] == uid || r.Prefetch.Kind != "ImagePrefetch" {
			continue
		}
		for _, it := range r.Results {
			if it.Pinned {
				keep[r.Node+"\x00"+pinKey(it)] = true
			}
		}
	}
	jobList, err := s.view.Jobs(ip.Namespace, uid)
	if err != nil {
		return false, err
	}
	pods, err := s.view.Pods(ip.Namespace, uid)
	if err != nil {
		return false, err
	}
	done := true
	for node, rec := range recs {
		var items []plan.Item
		for _, it := range rec.Results {
			if it.Pinned && !keep[node+"\x00"+pinKey(it)] {
				items = append(items, plan.Item{Ref: it.Ref})
			}
		}
		if len(items) == 0 {
			continue
		}
		var n corev1.Node
		if err := s.client.Get(ctx, client.ObjectKey{Name: node}, &n); err != nil {
			if apierrors.IsNotFound(err) {
				continue // the node and its runtime are gone
			}
			return false, err
		}
		sock, _, err := plan.RuntimeSocket(&n, ip.Spec.RuntimeEndpoint)
		if err != nil {
			s.events.Eventf(ip, nil, corev1.EventTypeWarning, "UnpinFailed", "Unpin", "node %s: %v", node, err)
			continue
		}
		task := plan.Task{Node: node, RuntimeSocket: sock, HostRoot: artifact.HostRoot(&n), Items: items}
		job := s.unpinJob(ip, task)
		var existing *batchv1.Job
		for _, j := range jobList {
			if j.Name == job.Name && j.DeletionTimestamp == nil {
				existing = j
			}
		}
		if existing == nil {
			if err := s.client.Create(ctx, job); err != nil && !apierrors.IsAlreadyExists(err) {
				s.events.Eventf(ip, nil, corev1.EventTypeWarning, "UnpinFailed", "Unpin", "node %s: %s", node, run.ExplainAPIError(err, ip.Namespace))
				continue
			}
			done = false
			continue
		}
		nj := run.NodeJob{Node: node, Job: existing}
		for _, it := range items {
			nj.Items = append(nj.Items, it.Ref)
			nj.Expected = append(nj.Expected, "")
		}
		var res run.NodeResult
		final := false
		for _, pod := range pods {
			if pod.Labels[batchv1.JobNameLabel] == existing.Name {
				res, final = run.ReadWorkerPod(s.clientset, pod, nj)
			}
		}
		if !final && jobFailed(existing) != "" {
			res, final = run.FailedNode(nj, "the unpin Job failed: "+jobFailed(existing)), true
		}
		if !final {
			done = false
			continue
		}
		var failed []string
		unpinned := map[string]bool{}
		for i, it := range res.Items {
			if it.Status == report.StatusFailed {
				failed = append(failed, nj.Items[i]+": "+it.Message)
			} else {
				unpinned[nj.Items[i]] = true
			}
		}
		if len(failed) > 0 {
			s.events.Eventf(ip, nil, corev1.EventTypeWarning, "UnpinFailed", "Unpin", "node %s: %s", node, truncate(strings.Join(failed, "; "), 512))
		}
		upd := rec.DeepCopy()
		for i := range upd.Results {
			if unpinned[upd.Results[i].Ref] || len(failed) > 0 {
				// A failed unpin is not retried: the deletion must not hang on it.
				upd.Results[i].Pinned = false
			}
		}
		if err := s.client.Update(ctx, upd); err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
		s.mu.Lock()
		s.records[recordKey(upd.Namespace, upd.Name)] = upd.DeepCopy()
		s.mu.Unlock()
		if err := s.deleteJob(ctx, existing); err != nil {
			return false, err
		}
		s.events.Eventf(ip, nil, corev1.EventTypeNormal, "Unpinned", "Unpin", "node %s: released %d pinned images", node, len(unpinned))
		done = false // one more pass to see the records settled
	}
	return done, nil
}

func pinKey(it coralv1.NodeItem) string {
	if it.Digest != "" {
		return it.Digest
	}
	return it.Ref
}

// unpinJob is the node's pull Job with the verb switched to unpin; it has
// no owner (its owner is going away) and is deleted once read.
func (s *shared) unpinJob(ip *coralv1.ImagePrefetch, t plan.Task) *batchv1.Job {
	items, _ := json.Marshal(t.Items)
	h := sha256.Sum256([]byte(string(ip.UID) + "\x00unpin\x00" + t.Node + "\x00" + string(items)))
	img := ip.Spec.WorkerImage
	if img == "" {
		img = s.opts.WorkerImage
	}
	job := jobs.ForTask(t, jobs.Spec{
		RunID: "u" + hex.EncodeToString(h[:])[:8], Namespace: ip.Namespace, WorkerImage: img, ImagePullPolicy: corev1.PullIfNotPresent,
		Deadline: durationOr(ip.Spec.NodeTimeout, 15*time.Minute), TTL: s.opts.JobTTL, MaxPullsPerNode: 1, ImageTimeout: time.Minute,
		WorkerPullSecrets: s.opts.WorkerPullSecrets, Unpin: true,
	})
	for _, m := range []map[string]string{job.Labels, job.Spec.Template.Labels} {
		m[jobs.LabelManagedBy] = ManagedBy
		m[LabelPrefetchUID] = string(ip.UID)
		m[LabelImagePrefetch] = ip.Name
	}
	job.Labels[labelUnpin] = "true"
	job.Annotations[AnnotationItems] = string(items)
	job.Annotations[annotationUnpin] = "true"
	return job
}

// annotationUnpin marks unpin Jobs, which finalize must not delete; the
// label of the same name lets its deletecollection leave them out.
const (
	annotationUnpin = "coral.dev/unpin"
	labelUnpin      = "coral.dev/unpin"
)
