package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/report"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestPinsOfANodeThatLeftAreReleased: a node that leaves a pinning
// ImagePrefetch's selection (relabelled) keeps its record, so deleting the
// object still runs an unpin Job there; without the record the pin would
// stay for good, out of every object's reach.
func TestPinsOfANodeThatLeftAreReleased(t *testing.T) {
	const ns = "coral"
	cfg, cl := startAPIServer(t, ns)
	ctx := context.Background()
	addNode(t, cl, "n1", "web")
	o := NewOptions()
	o.WorkerImage = "reg.local/coral-worker:test"
	stop := startController(t, cfg, o)
	defer stop()

	img := "reg.local/app@sha256:" + strings.Repeat("c", 64)
	ip := &coralv1.ImagePrefetch{
		ObjectMeta: metav1.ObjectMeta{Name: "pinned", Namespace: ns},
		Spec:       coralv1.ImagePrefetchSpec{Images: []string{img}, Pin: true, Nodes: coralv1.Nodes{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "web"}}}},
	}
	must(t, cl.Create(ctx, ip))
	waitFor(t, "a Job for n1", func() bool { return len(listJobs(t, cl, ns)) == 1 })
	j := listJobs(t, cl, ns)[0]
	finishJobPinned(t, cl, &j, report.StatusPulled, true)
	waitFor(t, "Ready 1/1", func() bool {
		must(t, cl.Get(ctx, client.ObjectKeyFromObject(ip), ip))
		return meta.IsStatusConditionTrue(ip.Status.Conditions, coralv1.ConditionReady) && ip.Status.Ready == "1/1"
	})

	// n1 leaves the selection.
	var n1 corev1.Node
	must(t, cl.Get(ctx, client.ObjectKey{Name: "n1"}, &n1))
	n1.Labels["pool"] = "batch"
	must(t, cl.Update(ctx, &n1))
	waitFor(t, "n1 out of the counts", func() bool {
		must(t, cl.Get(ctx, client.ObjectKeyFromObject(ip), ip))
		return ip.Status.DesiredNodes == 0 && ip.Status.Ready == "0/0"
	})
	time.Sleep(2 * time.Second) // a few more reconciles
	var recs coralv1.PrefetchNodeList
	must(t, cl.List(ctx, &recs, client.InNamespace(ns)))
	if len(recs.Items) != 1 || recs.Items[0].Node != "n1" || !recs.Items[0].Results[0].Pinned {
		t.Fatalf("records after n1 left: %+v, want n1's record with its pin kept", recs.Items)
	}

	// Deleted: the finalizer releases the pin on n1 all the same.
	must(t, cl.Delete(ctx, ip))
	waitFor(t, "an unpin Job for n1", func() bool {
		js := listJobs(t, cl, ns)
		return len(js) == 1 && js[0].Annotations[annotationUnpin] != "" && js[0].Annotations[jobs.AnnotationNode] == "n1"
	})
	u := listJobs(t, cl, ns)[0]
	if args := strings.Join(u.Spec.Template.Spec.Containers[0].Args, " "); !strings.HasPrefix(args, "unpin ") || !strings.Contains(args, "--image="+img) {
		t.Errorf("unpin Job args %q", args)
	}
	finishJob(t, cl, &u, report.StatusPresent)
	waitFor(t, "the object gone", func() bool {
		return apierrors.IsNotFound(cl.Get(ctx, client.ObjectKeyFromObject(ip), &coralv1.ImagePrefetch{}))
	})
}
