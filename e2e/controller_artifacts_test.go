package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/artifact"
	"github.com/coral-dev/coral/pkg/inject"
	"github.com/coral-dev/coral/pkg/report"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestControllerArtifacts proves ArtifactPrefetch end to end: written by
// `prefetch artifacts --persist`, it reaches Ready with the file on both
// web nodes' disks and the artifact label on them; a node that joins with
// pool=web gets the file and the label; and a workload injected with
// `kubectl coral inject artifact` runs on the joined node and reads the
// file there.
func TestControllerArtifacts(t *testing.T) {
	c := getCluster(t)
	top := t
	cl := c.crClient(t)
	ctx := context.Background()
	if r := c.coral(t, nil, c.installArgs(t)...); r.code != 0 {
		t.Fatalf("install exited %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() { c.coral(t, nil, "uninstall", "--force") })

	data := make([]byte, 2<<20)
	rand.Read(data)
	base := fileServer(t, c, map[string][]byte{"/models/weights.bin": data})
	art := c.artifactName(t, "ctl-weights")
	url := base + "/models/weights.bin"
	label := hexSum(data)[:12]
	web := []string{"coral-node-1", "coral-node-2"}

	// --persist writes the object, waits for the controller and reports
	// like a one-shot run.
	res := c.coral(t, nil, "prefetch", "artifacts", url, "--name", art, "--sha256", hexSum(data), "-l", "pool=web",
		"--persist", "weights", "-n", controllerNS, "-o", "json", "--wait-timeout", "3m")
	if res.code != 0 {
		t.Fatalf("prefetch artifacts --persist: exit %d\n%s", res.code, res.stdout)
	}
	var rep report.PrefetchReport
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil || rep.Kind != report.KindArtifactReport {
		t.Fatalf("report: %v\n%s", err, res.stdout)
	}
	if rep.Summary.Nodes != 2 || rep.Summary.Failed != 0 || rep.Summary.Downloaded+rep.Summary.Present != 2 {
		t.Errorf("report summary %+v, want 2 nodes holding the file", rep.Summary)
	}
	var ap coralv1.ArtifactPrefetch
	if err := cl.Get(ctx, client.ObjectKey{Namespace: controllerNS, Name: "weights"}, &ap); err != nil {
		t.Fatal(err)
	}
	if !artifactReady(&ap) || ap.Status.Ready != "2/2" || ap.Spec.Name != art {
		t.Fatalf("ArtifactPrefetch after --persist: ready %q, conditions %+v", ap.Status.Ready, ap.Status.Conditions)
	}
	for _, n := range web {
		c.expectArtifact(t, n, art, "weights.bin", data, label)
	}
	if _, err := os.Stat(c.nodeArtifactDir(t, batchNode, art)); err == nil {
		t.Errorf("%s (pool=batch) got the artifact", batchNode)
	}
	if _, ok := c.artifactLabel(t, batchNode, art); ok {
		t.Errorf("%s (pool=batch) carries the artifact label", batchNode)
	}
	// A Job goes once the Job controller has finished it (a moment after
	// its node's record: the controller does not delete a Job the Job
	// controller still tracks, docs/controller.md), not with Ready.
	eventually(t, 30*time.Second, "no controller Job left after Ready", func() bool { return len(c.controllerJobs(t)) == 0 })

	const joined = "coral-node-4"
	// On the local cluster every node's "/" is its own directory (its
	// host-root annotation), so a pod template can mount an artifact held by
	// one node only; inject is proven with a second artifact, for the
	// joining node by name: written now, before the node exists.
	solo := make([]byte, 1<<20)
	rand.Read(solo)
	soloBase := fileServer(t, c, map[string][]byte{"/solo.bin": solo})
	soloArt := c.artifactName(t, "ctl-solo")
	res = c.coral(t, nil, "prefetch", "artifacts", soloBase+"/solo.bin", "--name", soloArt, "--sha256", hexSum(solo), "--nodes", joined,
		"--persist", "solo", "--wait=false", "-n", controllerNS)
	if res.code != 0 || !strings.Contains(res.stderr, "artifactprefetch.coral.dev/solo written") {
		t.Fatalf("prefetch artifacts --persist --wait=false: exit %d: %s", res.code, res.stderr)
	}

	t.Run("a joining node gets the file and the label", func(t *testing.T) {
		rec := c.recordJobs(t)
		top.Cleanup(func() { c.script(top, "remove-node.sh", joined) }) // the next step needs it
		c.script(t, "add-node.sh", joined, "pool=web")
		eventually(t, 90*time.Second, joined+" holds the file and the label", func() bool {
			v, ok := c.artifactLabel(t, joined, art)
			got, err := os.ReadFile(filepath.Join(c.nodeArtifactDir(t, joined, art), "weights.bin"))
			return ok && v == label && err == nil && bytes.Equal(got, data)
		})
		lag := time.Since(c.readySince(t, joined))
		t.Logf("%s holds the file and the label %s after it became Ready", joined, lag.Round(time.Second))
		if lag > 30*time.Second {
			t.Errorf("%s got the artifact %s after Ready, want within 30 s", joined, lag)
		}
		eventually(t, time.Minute, "status 3/3", func() bool {
			var g coralv1.ArtifactPrefetch
			return cl.Get(ctx, client.ObjectKeyFromObject(&ap), &g) == nil && artifactReady(&g) && g.Status.Ready == "3/3"
		})
		for _, n := range rec.nodes() {
			if n != joined {
				t.Errorf("a Job was created for %s while only %s joined", n, joined)
			}
		}
		eventually(t, time.Minute, joined+" holds the artifact named for it", func() bool {
			v, ok := c.artifactLabel(t, joined, soloArt)
			return ok && v == hexSum(solo)[:12]
		})
		c.expectArtifact(t, joined, soloArt, "solo.bin", solo, hexSum(solo)[:12])
	})

	t.Run("inject artifact targets the joined node", func(t *testing.T) {
		// No node selector of its own: the injected affinity alone must send
		// the pod to the only node that holds the artifact.
		ns := c.namespace(t, nil)
		image := c.pushSumfileImage(t)
		deploy := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "reader"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "reader"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "reader"}},
					Spec: corev1.PodSpec{
						Containers:  []corev1.Container{{Name: "reader", Image: image, Args: []string{"/models/solo/solo.bin"}}},
						Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					},
				},
			},
		}
		if _, err := c.client.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if r := c.coral(t, nil, "inject", "artifact", soloArt, "deployment/reader", "--mount-path", "/models/solo", "-n", ns); r.code != 0 {
			t.Fatalf("inject: exit %d\n%s", r.code, r.stderr)
		}
		want := "sha256 " + hexSum(solo) + " /models/solo/solo.bin"
		eventually(t, 2*time.Minute, "the injected pod reads the artifact on "+joined, func() bool {
			pods, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=reader"})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pods.Items {
				if p.DeletionTimestamp != nil || !hasVolume(p.Spec, inject.VolumeName(soloArt)) {
					continue
				}
				if p.Spec.NodeName != "" && p.Spec.NodeName != joined {
					t.Fatalf("pod %s runs on %s, which does not hold the artifact (%s does)", p.Name, p.Spec.NodeName, joined)
				}
				if p.Status.Phase != corev1.PodRunning {
					continue
				}
				logs, err := c.client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
				if err == nil && strings.Contains(string(logs), want) {
					return true
				}
			}
			return false
		})
	})

	t.Run("deleted, it leaves files and labels", func(t *testing.T) {
		if err := cl.Delete(ctx, &ap); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "the ArtifactPrefetch gone", func() bool {
			return apierrors.IsNotFound(cl.Get(ctx, client.ObjectKeyFromObject(&ap), &coralv1.ArtifactPrefetch{}))
		})
		// What is on a node's disk stays, and so does the label that says so
		// (docs/controller.md): workloads injected with it keep running.
		for _, n := range web {
			c.expectArtifact(t, n, art, "weights.bin", data, label)
		}
	})
}

func artifactReady(ap *coralv1.ArtifactPrefetch) bool {
	cond := meta.FindStatusCondition(ap.Status.Conditions, coralv1.ConditionReady)
	return ap.Status.ObservedGeneration == ap.Generation && cond != nil && cond.Status == metav1.ConditionTrue
}

// nodeArtifactDir is where an artifact lives on any node of the local
// cluster, joined ones included: under the node's host-root annotation.
func (c *cluster) nodeArtifactDir(t *testing.T, node, name string) string {
	t.Helper()
	n, err := c.client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(artifact.HostRoot(n), artifact.DefaultRoot, name)
}

// expectArtifact checks a node's disk holds file with data in the
// artifact's directory, and the node carries the artifact's label.
func (c *cluster) expectArtifact(t *testing.T, node, name, file string, data []byte, label string) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(c.nodeArtifactDir(t, node, name), file))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("%s: %s is not in the artifact's directory with its content (%v)", node, file, err)
	}
	if v, ok := c.artifactLabel(t, node, name); !ok || v != label {
		t.Errorf("%s: label %s=%q, want %q", node, artifact.LabelKey(name), v, label)
	}
}
