package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/report"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// The cross-cluster sync chain of docs/sync.md, as a user types it:
//
//	kubectl coral mirror --from-cluster --context cluster-a -A --to REG/PREFIX/{registry} -o name |
//	  kubectl coral prefetch images -f - --context cluster-b -l pool=web
//
// Two kubeconfig contexts of the one local cluster stand for the two clusters;
// they differ in their default namespace, so the workers must run where
// context cluster-b says. Cluster A's workloads never run (their pods stay
// Pending): mirror reads what they would run from the API server.
func TestSyncMirrorPipeToPrefetch(t *testing.T) {
	c := getCluster(t)
	nsA := c.namespace(t, nil)
	nsB := c.namespace(t, nil)
	reg := c.env["CORAL_REGISTRY"]
	app, appDigest := c.pushRandomImage(t, reg, "sync-app", nil)
	side, sideDigest := c.pushRandomImage(t, reg, "sync-init", nil)
	cron, cronDigest := c.pushRandomImage(t, reg, "sync-cron", nil)
	sources := map[string]string{app: appDigest, side: sideDigest, cron: cronDigest}

	nowhere := map[string]string{"coral.dev/e2e-unschedulable": "true"} // no node has it
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1), // a live pod too, Pending for good
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{
					NodeSelector:   nowhere,
					InitContainers: []corev1.Container{{Name: "init", Image: side}},
					Containers:     []corev1.Container{{Name: "app", Image: app}},
				},
			},
		},
	}
	cronJob := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly"},
		Spec: batchv1.CronJobSpec{
			Schedule: "0 3 * * *",
			Suspend:  ptr.To(true),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					NodeSelector:  nowhere,
					RestartPolicy: corev1.RestartPolicyNever,
					Containers:    []corev1.Container{{Name: "report", Image: cron}},
				},
			}}},
		},
	}
	ctx := context.Background()
	if _, err := c.client.AppsV1().Deployments(nsA).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.client.BatchV1().CronJobs(nsA).Create(ctx, cronJob, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	kubeconfig := c.twoClusterKubeconfig(t, map[string]string{"cluster-a": nsA, "cluster-b": nsB})
	dest := fmt.Sprintf("%s/sync-%06d", reg, rand.IntN(1000000))
	mirror := c.kubectlCoral(kubeconfig, "mirror", "--from-cluster", "--context", "cluster-a", "-A", "--to", dest+"/{registry}", "-o", "name")
	prefetch := c.kubectlCoral(kubeconfig, "prefetch", "images", "-f", "-", "--context", "cluster-b", "-l", "pool=web", "-o", "json")
	workers := c.watchWorkerNamespaces(t)
	names, mirrorErr, prefetchOut, prefetchErr := runPipe(t, mirror, prefetch)
	if mirrorErr != nil || prefetchErr != nil {
		t.Errorf("exit statuses: mirror %v, prefetch %v; want both 0", mirrorErr, prefetchErr)
	}

	// What mirror printed: one destination reference a line, pinned, under
	// dest, and for our images exactly the source's digest.
	lines := strings.Fields(names)
	for _, l := range lines {
		ref, err := name.ParseReference(l)
		if _, pinned := ref.(name.Digest); err != nil || !pinned || !strings.HasPrefix(l, dest+"/") {
			t.Errorf("mirror -o name printed %q: want a digest-pinned reference under %s/ (%v)", l, dest, err)
		}
	}
	// {registry} spells 127.0.0.1:PORT as 127.0.0.1_PORT (docs/mirror.md).
	srcRegPath := strings.ReplaceAll(reg, ":", "_")
	want := map[string]string{} // destination line → source digest
	for src, d := range sources {
		want[dest+"/"+srcRegPath+strings.TrimPrefix(src, reg)+"@"+d] = d
	}
	for l := range want {
		if !contains(lines, l) {
			t.Errorf("mirror -o name lacks %s; it printed:\n%s", l, names)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for l, d := range want {
		tagged, _ := name.ParseReference(strings.TrimSuffix(l, "@"+d))
		if desc, err := remote.Head(tagged); err != nil || desc.Digest.String() != d {
			t.Errorf("the destination registry does not serve %s at %s: %v %v", d, tagged, err, desc)
		}
	}

	// What prefetch reported: every line Pulled (or Present) on the web nodes
	// with the source digest.
	rep := &report.PrefetchReport{}
	if err := json.Unmarshal([]byte(prefetchOut), rep); err != nil {
		t.Fatalf("prefetch -o json: %v\n%s", err, prefetchOut)
	}
	got := byNodeImage(rep)
	if len(got) != len(webNodes) {
		t.Errorf("the report names nodes %v, want exactly %v (-l pool=web)", keys(got), webNodes)
	}
	for l, d := range want {
		for _, n := range webNodes {
			if r := got[n][l]; r.Digest != d || (r.Status != report.StatusPulled && r.Status != report.StatusPresent) {
				t.Errorf("report for %s on %s: %+v, want Pulled with %s", l, n, r, d)
			}
		}
	}

	// What cluster B's nodes hold, asked over CRI: the selected nodes the
	// mirrored digests under the destination repositories, the others
	// nothing. The runtime keeps a "repo:tag@digest" pull by its digest
	// (containerd drops the tag of such a reference), so ask by digest.
	for l, d := range want {
		repo := l[:strings.LastIndex(strings.TrimSuffix(l, "@"+d), ":")]
		pinned := repo + "@" + d
		for _, n := range webNodes {
			has, digests := c.nodeHas(t, n, pinned)
			var mine []string
			for _, rd := range digests {
				if strings.HasPrefix(rd, repo+"@") {
					mine = append(mine, rd)
				}
			}
			if !has || len(mine) != 1 || mine[0] != pinned {
				t.Errorf("%s holds %s with repo digests %v (has=%v), want exactly %s", n, pinned, digests, has, pinned)
			}
		}
		if has, _ := c.nodeHas(t, batchNode, pinned); has {
			t.Errorf("%s (pool=batch) holds %s: -l pool=web excludes it", batchNode, pinned)
		}
	}

	// The workers ran where context cluster-b points, and cleaned up.
	if got := workers(); len(got) != 1 || got[0] != nsB {
		t.Errorf("worker Jobs were created in namespaces %v, want only %s (context cluster-b's)", got, nsB)
	}
	c.expectNoOrphans(t, nsB)
}

// watchWorkerNamespaces watches Coral's Jobs in every namespace from now on;
// the returned func stops the watch and lists the namespaces they were made in.
func (c *cluster) watchWorkerNamespaces(t *testing.T) func() []string {
	t.Helper()
	w, err := c.client.BatchV1().Jobs("").Watch(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=coral"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if j, ok := ev.Object.(*batchv1.Job); ok && ev.Type == watch.Added {
				mu.Lock()
				seen[j.Namespace] = true
				mu.Unlock()
			}
		}
	}()
	return func() []string {
		// The run is over, but its events may still be on the way.
		eventually(t, 10*time.Second, "a worker Job in the watch", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(seen) > 0
		})
		w.Stop()
		<-done
		return keys(seen)
	}
}

// twoClusterKubeconfig writes a kubeconfig whose contexts (name → default
// namespace) all reach the test cluster as its admin, and returns its path.
func (c *cluster) twoClusterKubeconfig(t *testing.T, contexts map[string]string) string {
	t.Helper()
	admin, err := clientcmd.LoadFromFile(c.env["KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	cur := admin.Contexts[admin.CurrentContext]
	if cur == nil {
		t.Fatalf("%s has no current context", c.env["KUBECONFIG"])
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = admin.Clusters[cur.Cluster]
	cfg.AuthInfos["e2e"] = admin.AuthInfos[cur.AuthInfo]
	for ctxName, ns := range contexts {
		cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "e2e", Namespace: ns}
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// kubectlCoral is `kubectl coral ARGS` as a user runs it: kubectl finds the
// built plugin on PATH and the kubeconfig through $KUBECONFIG.
func (c *cluster) kubectlCoral(kubeconfig string, args ...string) *exec.Cmd {
	kubectl := c.env["CORAL_KUBECTL"]
	if kubectl == "" {
		kubectl = "kubectl"
	}
	cmd := exec.Command(kubectl, append([]string{"coral"}, args...)...)
	cmd.Env = append(os.Environ(),
		"PATH="+c.binDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"KUBECONFIG="+kubeconfig,
		"CORAL_WORKER_IMAGE="+c.env["CORAL_WORKER_IMAGE"])
	return cmd
}

// runPipe runs `left | right` and returns what left wrote into the pipe,
// left's exit error, right's stdout and right's exit error (pipefail: each
// side's status is kept).
func runPipe(t *testing.T, left, right *exec.Cmd) (string, error, string, error) {
	t.Helper()
	pr, pw := io.Pipe()
	var piped, out, leftErr, rightErr bytes.Buffer
	left.Stdout, left.Stderr = pw, &leftErr
	right.Stdin = io.TeeReader(pr, &piped)
	right.Stdout, right.Stderr = &out, &rightErr
	if err := right.Start(); err != nil {
		t.Fatal(err)
	}
	lerr := left.Run()
	pw.Close()
	rerr := right.Wait()
	t.Logf("$ %s |\n  %s\n%s stderr:\n%s\n%s stderr:\n%s", strings.Join(left.Args, " "), strings.Join(right.Args, " "),
		left.Args[1:3], leftErr.String(), right.Args[1:4], rightErr.String())
	return piped.String(), lerr, out.String(), rerr
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
