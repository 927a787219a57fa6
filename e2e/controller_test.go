package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const controllerNS = "coral-system"

// TestController proves the controller mode end to end, in order: install,
// an ImagePrefetch reaching Ready with the images on both web nodes, a node
// joining and getting them within 30 s of Ready (and no Job anywhere else),
// a moved tag followed on every node, the controller killed mid-run and
// converging without orphan or duplicate Jobs, CRD validation, a missing
// pull secret shown as Degraded, and an uninstall that leaves nothing.
func TestController(t *testing.T) {
	c := getCluster(t)
	top := t // nodes added in one step serve the later steps: removed at the end
	cl := c.crClient(t)
	ctx := context.Background()

	install := c.installArgs(t)
	uninstalled := false
	t.Cleanup(func() {
		if !uninstalled {
			c.coral(t, nil, "uninstall", "--force")
		}
	})
	t.Run("install", func(t *testing.T) {
		start := time.Now()
		if r := c.coral(t, nil, install...); r.code != 0 {
			t.Fatalf("install exited %d: %s", r.code, r.stderr)
		}
		t.Logf("installed and ready in %s", time.Since(start).Round(100*time.Millisecond))
		// Idempotent: a second install changes nothing and succeeds.
		if r := c.coral(t, nil, install...); r.code != 0 {
			t.Fatalf("second install exited %d: %s", r.code, r.stderr)
		}
		if n := len(c.controllerPods(t, controllerNS)); n != 1 {
			t.Fatalf("%d controller pods, want 1", n)
		}
	})

	ref1, d1 := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "ctl-a", nil)
	ref2, d2 := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "ctl-b", nil)
	web := []string{"coral-node-1", "coral-node-2"}
	ip := &coralv1.ImagePrefetch{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: controllerNS},
		Spec: coralv1.ImagePrefetchSpec{
			Images:          []string{ref1, ref2},
			Nodes:           coralv1.Nodes{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "web"}}},
			RefreshInterval: &metav1.Duration{Duration: 10 * time.Second},
		},
	}
	t.Run("ready on both web nodes", func(t *testing.T) {
		if err := cl.Create(ctx, ip); err != nil {
			t.Fatal(err)
		}
		took := eventually(t, 2*time.Minute, "ImagePrefetch web Ready", func() bool { return isReady(getPrefetch(t, cl, controllerNS, "web")) })
		got := getPrefetch(t, cl, controllerNS, "web")
		t.Logf("Ready %s after create in %s", got.Status.Ready, took.Round(100*time.Millisecond))
		if got.Status.Ready != "2/2" || got.Status.DesiredNodes != 2 {
			t.Fatalf("status ready %q desired %d, want 2/2", got.Status.Ready, got.Status.DesiredNodes)
		}
		for _, n := range web {
			for ref, d := range map[string]string{ref1: d1, ref2: d2} {
				if !c.nodeHolds(t, n, ref, d) {
					t.Errorf("%s does not hold %s@%s", n, ref, d)
				}
			}
		}
		if c.nodeHolds(t, "coral-node-3", ref1, "") {
			t.Errorf("coral-node-3 (pool=batch) holds %s: it is not selected", ref1)
		}
		if got.Status.Images[0].Digest != d1 || got.Status.Images[1].Digest != d2 {
			t.Errorf("status images %+v, want digests %s, %s", got.Status.Images, d1, d2)
		}
		var recs coralv1.PrefetchNodeList
		if err := cl.List(ctx, &recs, client.InNamespace(controllerNS), client.MatchingLabels{"coral.dev/imageprefetch": "web"}); err != nil {
			t.Fatal(err)
		}
		if len(recs.Items) != 2 {
			t.Errorf("%d PrefetchNode records, want one per web node", len(recs.Items))
		}
		// A Job goes once the Job controller has finished it (a moment after
		// its node's record: the controller does not delete a Job the Job
		// controller still tracks, docs/controller.md), not with Ready.
		eventually(t, 30*time.Second, "no controller Job left after Ready", func() bool { return len(c.controllerJobs(t)) == 0 })
	})

	t.Run("a joining node gets the images", func(t *testing.T) {
		rec := c.recordJobs(t)
		const node = "coral-node-4"
		top.Cleanup(func() { c.script(top, "remove-node.sh", node) })
		c.script(t, "add-node.sh", node, "pool=web")
		held := eventually(t, 90*time.Second, node+" holds the images", func() bool {
			return c.nodeHolds(t, node, ref1, d1) && c.nodeHolds(t, node, ref2, d2)
		})
		lag := time.Since(c.readySince(t, node))
		t.Logf("%s holds both images %s after it became Ready (polled %s after add-node.sh returned)", node, lag.Round(time.Second), held.Round(100*time.Millisecond))
		if lag > 30*time.Second {
			t.Errorf("%s held the images %s after Ready, want within 30 s", node, lag)
		}
		eventually(t, time.Minute, "status 3/3", func() bool {
			g := getPrefetch(t, cl, controllerNS, "web")
			return isReady(g) && g.Status.Ready == "3/3"
		})
		for _, n := range rec.nodes() {
			if n != node {
				t.Errorf("a Job was created for %s while only %s joined", n, node)
			}
		}
		if len(rec.nodes()) != 1 {
			t.Errorf("%d Jobs for the joining node, want 1", len(rec.nodes()))
		}
		web = append(web, node)
	})

	t.Run("a moved tag is followed", func(t *testing.T) {
		img, err := random.Image(64*1024, 2)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := name.ParseReference(ref1)
		if err := remote.Write(r, img, remote.WithAuth(authn.Anonymous)); err != nil {
			t.Fatal(err)
		}
		nd, _ := img.Digest()
		newDigest := nd.String()
		took := eventually(t, 2*time.Minute, "every web node holds the new digest", func() bool {
			g := getPrefetch(t, cl, controllerNS, "web")
			if len(g.Status.Images) == 0 || g.Status.Images[0].Digest != newDigest || !isReady(g) {
				return false
			}
			for _, n := range web {
				if !c.nodeHolds(t, n, ref1, newDigest) {
					return false
				}
			}
			return true
		})
		t.Logf("tag moved to %s: on %d nodes and in the status after %s (refresh interval 10s)", newDigest, len(web), took.Round(time.Second))
	})

	t.Run("controller killed mid-run converges", func(t *testing.T) {
		rec := c.recordJobs(t)
		ref3, d3 := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "ctl-c", nil)
		g := getPrefetch(t, cl, controllerNS, "web")
		g.Spec.Images = append(g.Spec.Images, ref3)
		// One node at a time, so the kill lands with nodes still to do.
		g.Spec.MaxNodesInFlight = 1
		if err := cl.Update(ctx, g); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "the first Job of the new spec", func() bool { return len(rec.nodesWith(ref3)) > 0 })
		pods := c.controllerPods(t, controllerNS)
		before := len(rec.nodesWith(ref3))
		for _, p := range pods {
			zero := int64(0)
			if err := c.client.CoreV1().Pods(controllerNS).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("killed the controller (%d pods) with %d of %d nodes' Jobs created", len(pods), before, len(web))
		if before >= len(web) {
			t.Fatalf("every node's Job existed before the kill: the restart was not tested mid-run")
		}
		took := eventually(t, 3*time.Minute, "Ready with the new image after the restart", func() bool {
			g := getPrefetch(t, cl, controllerNS, "web")
			return isReady(g) && g.Status.Ready == fmt.Sprintf("%d/%d", len(web), len(web))
		})
		t.Logf("converged %s after the kill", took.Round(time.Second))
		for _, n := range web {
			if !c.nodeHolds(t, n, ref3, d3) {
				t.Errorf("%s does not hold %s", n, ref3)
			}
		}
		perNode := map[string]int{}
		for _, n := range rec.nodesWith(ref3) {
			perNode[n]++
		}
		for n, k := range perNode {
			if k != 1 {
				t.Errorf("%d Jobs for %s, want exactly 1 (no duplicates)", k, n)
			}
		}
		if len(perNode) != len(web) {
			t.Errorf("Jobs for %d nodes, want %d", len(perNode), len(web))
		}
		eventually(t, 30*time.Second, "no controller Job left (no orphans)", func() bool { return len(c.controllerJobs(t)) == 0 })
	})

	t.Run("CRD validation names the field", func(t *testing.T) {
		dyn := c.dynamic(t)
		gvr := schema.GroupVersionResource{Group: "coral.dev", Version: "v1alpha1", Resource: "imageprefetches"}
		for _, tc := range []struct {
			spec  map[string]any
			field string
		}{
			{map[string]any{"images": []any{ref1}, "maxPullsPerNode": int64(0)}, "spec.maxPullsPerNode"},
			{map[string]any{"images": []any{}}, "spec.images"},
			{map[string]any{"images": []any{ref1}, "refreshInterval": "2s"}, "spec.refreshInterval"},
		} {
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "coral.dev/v1alpha1", "kind": "ImagePrefetch",
				"metadata": map[string]any{"name": "bad", "namespace": controllerNS}, "spec": tc.spec,
			}}
			_, err := dyn.Resource(gvr).Namespace(controllerNS).Create(ctx, u, metav1.CreateOptions{})
			if err == nil || !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("spec %v: got %v, want an Invalid error naming %s", tc.spec, err, tc.field)
			} else {
				t.Logf("rejected: %v", err)
			}
		}
	})

	t.Run("missing pull secret is Degraded", func(t *testing.T) {
		bad := &coralv1.ImagePrefetch{
			ObjectMeta: metav1.ObjectMeta{Name: "private", Namespace: controllerNS},
			Spec:       coralv1.ImagePrefetchSpec{Images: []string{ref2}, PullSecrets: []string{"no-such-secret"}},
		}
		if err := cl.Create(ctx, bad); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "Degraded PullSecretNotFound", func() bool {
			d := condition(getPrefetch(t, cl, controllerNS, "private"), coralv1.ConditionDegraded)
			return d != nil && d.Status == metav1.ConditionTrue && d.Reason == "PullSecretNotFound"
		})
		d := condition(getPrefetch(t, cl, controllerNS, "private"), coralv1.ConditionDegraded)
		t.Logf("Degraded: %s: %s", d.Reason, d.Message)
		if !strings.Contains(d.Message, "no-such-secret") {
			t.Errorf("the message does not name the secret: %s", d.Message)
		}
		for _, j := range c.controllerJobs(t) {
			if j.Labels["coral.dev/imageprefetch"] == "private" {
				t.Errorf("Job %s created for an object whose secret is missing", j.Name)
			}
		}
		for _, p := range c.controllerPods(t, controllerNS) {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.RestartCount > 0 {
					t.Errorf("the controller restarted %d times", cs.RestartCount)
				}
			}
		}
	})

	t.Run("unpin refuses a pin an ImagePrefetch holds", func(t *testing.T) {
		const node = "coral-node-1" // containerd 2.x: pins
		ref, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "ctl-held", nil)
		held := &coralv1.ImagePrefetch{
			ObjectMeta: metav1.ObjectMeta{Name: "held", Namespace: controllerNS},
			Spec:       coralv1.ImagePrefetchSpec{Images: []string{ref}, Pin: true, Nodes: coralv1.Nodes{Names: []string{node}}},
		}
		if err := cl.Create(ctx, held); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Minute, "held Ready", func() bool { return isReady(getPrefetch(t, cl, controllerNS, "held")) })
		if !c.criPinned(t, node, ref) {
			t.Fatalf("%s: the runtime does not report %s pinned", node, ref)
		}
		r := c.coral(t, nil, "unpin", ref, "--nodes", node, "-n", controllerNS)
		if r.code != 2 || !strings.Contains(r.stderr, "imageprefetch "+controllerNS+"/held") || !strings.Contains(r.stderr, "node "+node) {
			t.Errorf("unpin of a pin the controller holds: exit %d, want 2 naming the object and node: %s", r.code, r.stderr)
		}
		if !c.criPinned(t, node, ref) {
			t.Errorf("%s: %s is no longer pinned after a refused unpin", node, ref)
		}
		// Deleting the object releases its pin (its finalizer): unpin then has
		// nothing to refuse, and nothing left to release.
		if err := cl.Delete(ctx, held); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "held gone", func() bool {
			return apierrors.IsNotFound(cl.Get(ctx, client.ObjectKeyFromObject(held), &coralv1.ImagePrefetch{}))
		})
		if c.criPinned(t, node, ref) {
			t.Errorf("%s: %s still pinned after its ImagePrefetch was deleted", node, ref)
		}
		if r := c.coral(t, nil, "unpin", ref, "--nodes", node, "-n", controllerNS); r.code != 0 {
			t.Errorf("unpin after the object is gone: exit %d: %s", r.code, r.stderr)
		}
	})

	t.Run("a namespace that rejects the worker is Degraded without a hot loop", func(t *testing.T) {
		// Pod Security "restricted" rejects the worker (a hostPath socket).
		ns := c.namespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
		rec := c.recordJobs(t)
		ip := &coralv1.ImagePrefetch{
			ObjectMeta: metav1.ObjectMeta{Name: "rejected", Namespace: ns},
			Spec: coralv1.ImagePrefetchSpec{Images: []string{ref2},
				Nodes: coralv1.Nodes{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "web"}}}},
		}
		if err := cl.Create(ctx, ip); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// The finalizer needs the controller: delete before it is uninstalled.
			cl.Delete(ctx, ip)
			eventually(t, time.Minute, "the rejected object gone", func() bool {
				return apierrors.IsNotFound(cl.Get(ctx, client.ObjectKeyFromObject(ip), &coralv1.ImagePrefetch{}))
			})
		})
		eventually(t, time.Minute, "Degraded WorkerRejected", func() bool {
			d := condition(getPrefetch(t, cl, ns, "rejected"), coralv1.ConditionDegraded)
			return d != nil && d.Status == metav1.ConditionTrue && d.Reason == "WorkerRejected"
		})
		got := getPrefetch(t, cl, ns, "rejected")
		d := condition(got, coralv1.ConditionDegraded)
		t.Logf("Degraded: %s: %s", d.Reason, d.Message)
		for _, want := range []string{"Pod Security", ns, "pod-security.kubernetes.io/enforce=privileged"} {
			if !strings.Contains(d.Message, want) {
				t.Errorf("the message does not say %q: a person cannot act on it", want)
			}
		}
		if p := condition(got, coralv1.ConditionProgressing); p == nil || p.Status != metav1.ConditionFalse || p.Reason != "WorkerRejected" {
			t.Errorf("Progressing %+v, want False/WorkerRejected", p)
		}
		// No hot loop: over 30 s no Job is created, the object is not
		// rewritten, and the Degraded event is not repeated.
		events := func() int32 {
			l, err := c.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=rejected"})
			if err != nil {
				t.Fatal(err)
			}
			var n int32
			for _, e := range l.Items {
				n += max(e.Count, 1)
				if e.Series != nil {
					n += e.Series.Count
				}
			}
			return n
		}
		rv, ev0 := got.ResourceVersion, events()
		time.Sleep(30 * time.Second)
		got = getPrefetch(t, cl, ns, "rejected")
		ev1 := events()
		t.Logf("over 30 s: %d Jobs created, object resourceVersion %s → %s, events %d → %d", len(rec.nodesIn(ns)), rv, got.ResourceVersion, ev0, ev1)
		if n := len(rec.nodesIn(ns)); n != 0 {
			t.Errorf("%d Jobs created in a namespace that rejects the worker", n)
		}
		if got.ResourceVersion != rv {
			t.Errorf("the object was rewritten within 30 s (resourceVersion %s → %s): status %+v", rv, got.ResourceVersion, got.Status.Conditions)
		}
		if ev1 > ev0+1 {
			t.Errorf("%d events in 30 s on the object, want at most one (a retry a minute)", ev1-ev0)
		}
		if pods, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err != nil || len(pods.Items) != 0 {
			t.Errorf("pods in the namespace: %d (%v)", len(pods.Items), err)
		}
	})

	t.Run("pins keep images from image GC until the object is deleted", func(t *testing.T) {
		const node = "coral-node-5"
		t.Cleanup(func() { c.script(t, "remove-node.sh", node) })
		cmd := c.scriptCmd("add-node.sh", node, "pool=gc")
		cmd.Env = append(cmd.Env, "CORAL_IMAGE_MAX_GC_AGE=10s")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("add-node.sh: %v\n%s", err, out)
		}
		ref, d := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "ctl-pin", nil)
		pin := &coralv1.ImagePrefetch{
			ObjectMeta: metav1.ObjectMeta{Name: "pinned", Namespace: controllerNS},
			Spec: coralv1.ImagePrefetchSpec{Images: []string{ref}, Pin: true,
				Nodes: coralv1.Nodes{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "gc"}}}},
		}
		if err := cl.Create(ctx, pin); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Minute, "pinned Ready", func() bool { return isReady(getPrefetch(t, cl, controllerNS, "pinned")) })
		var recs coralv1.PrefetchNodeList
		if err := cl.List(ctx, &recs, client.InNamespace(controllerNS), client.MatchingLabels{"coral.dev/imageprefetch": "pinned"}); err != nil || len(recs.Items) != 1 || !recs.Items[0].Results[0].Pinned {
			t.Fatalf("want one record with the image pinned: %+v %v", recs.Items, err)
		}
		// kubelet removes unused images older than 10 s at each GC pass (every
		// 5 minutes): the worker image, unused once its Job is gone, going
		// away shows that a pass ran; the pinned image must have outlived it.
		took := eventually(t, 6*time.Minute, "an image GC pass removes the unused worker image", func() bool {
			return !c.nodeHolds(t, node, c.env["CORAL_WORKER_IMAGE"], "")
		})
		t.Logf("image GC removed the unused worker image %s after Ready", took.Round(time.Second))
		if !c.nodeHolds(t, node, ref, d) {
			t.Fatalf("%s lost the pinned image %s to image GC", node, ref)
		}
		if err := cl.Delete(ctx, pin); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "the object gone (finalizer: pins released)", func() bool {
			err := cl.Get(ctx, client.ObjectKeyFromObject(pin), &coralv1.ImagePrefetch{})
			return apierrors.IsNotFound(err)
		})
		took = eventually(t, 6*time.Minute, "image GC removes the unpinned image", func() bool { return !c.nodeHolds(t, node, ref, "") })
		t.Logf("unpinned image removed by kubelet's GC %s after the object was gone", took.Round(time.Second))
	})

	t.Run("uninstall leaves nothing", func(t *testing.T) {
		r := c.coral(t, nil, "uninstall")
		if r.code != 2 || !strings.Contains(r.stderr, "--delete-prefetches") {
			t.Fatalf("uninstall with prefetch objects: exit %d, want 2 with advice: %s", r.code, r.stderr)
		}
		if r := c.coral(t, nil, "uninstall", "--delete-prefetches", "--timeout", "3m"); r.code != 0 {
			t.Fatalf("uninstall exited %d: %s", r.code, r.stderr)
		}
		uninstalled = true
		if r := c.coral(t, nil, "uninstall"); r.code != 0 {
			t.Errorf("a second uninstall exited %d (want 0: idempotent): %s", r.code, r.stderr)
		}
		dyn := c.dynamic(t)
		crds, err := dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, crd := range crds.Items {
			if strings.HasSuffix(crd.GetName(), ".coral.dev") {
				t.Errorf("CRD %s left", crd.GetName())
			}
		}
		if _, err := c.client.RbacV1().ClusterRoles().Get(ctx, "coral-controller", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("ClusterRole coral-controller: %v, want NotFound", err)
		}
		if _, err := c.client.RbacV1().ClusterRoleBindings().Get(ctx, "coral-controller", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("ClusterRoleBinding coral-controller: %v, want NotFound", err)
		}
		if _, err := c.client.CoreV1().Namespaces().Get(ctx, controllerNS, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s: %v, want NotFound (with its Deployment)", controllerNS, err)
		}
		if jobs := c.controllerJobs(t); len(jobs) != 0 {
			t.Errorf("%d controller Jobs left", len(jobs))
		}
	})
}
