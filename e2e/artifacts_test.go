package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/coral-dev/coral/internal/testservers"
	"github.com/coral-dev/coral/pkg/artifact"
	"github.com/coral-dev/coral/pkg/imagebuild"
	"github.com/coral-dev/coral/pkg/inject"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// fileServer serves files over real HTTP (Range, ETag) on the address the
// nodes report, which worker pods can reach.
func fileServer(t *testing.T, c *cluster, files map[string][]byte) string {
	t.Helper()
	ip := c.env["CORAL_NODE_IP"]
	if ip == "" {
		t.Fatal("the env file names no CORAL_NODE_IP")
	}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		sum := sha256.Sum256(b)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
		http.ServeContent(w, r, "", time.Unix(0, 0), bytes.NewReader(b))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// artifactDir is where an artifact lives on a node of the local cluster
// (each node's host root stands for its "/").
func (c *cluster) artifactDir(node, name string) string {
	root := c.env["CORAL_HOST_ROOT_"+strings.ToUpper(strings.ReplaceAll(node, "-", "_"))]
	return filepath.Join(root, "var/lib/coral/artifacts", name)
}

// artifactName returns a fresh artifact name and removes its labels and
// directories from every node when the test ends.
func (c *cluster) artifactName(t *testing.T, prefix string) string {
	name := fmt.Sprintf("%s-%05d", prefix, mrand.IntN(100000))
	t.Cleanup(func() {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{"artifacts.coral.dev/" + name: nil}}})
		for _, n := range c.nodes {
			c.client.CoreV1().Nodes().Patch(context.Background(), n, types.MergePatchType, patch, metav1.PatchOptions{})
			os.RemoveAll(c.artifactDir(n, name))
		}
	})
	return name
}

func TestPrefetchArtifactsHTTP(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	model := make([]byte, 3<<20)
	rand.Read(model)
	base := fileServer(t, c, map[string][]byte{"/models/bert.bin": model})
	name := c.artifactName(t, "bert")
	url := base + "/models/bert.bin"

	res := c.coral(t, nil, "prefetch", "artifacts", url, "--name", name, "--sha256", hexSum(model), "-l", "pool=web", "-n", ns, "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stdout)
	}
	var rep report.PrefetchReport
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil || rep.Kind != "ArtifactReport" {
		t.Fatalf("report: %v\n%s", err, res.stdout)
	}
	if rep.Summary.Downloaded != 2 || rep.Summary.Failed != 0 {
		t.Errorf("summary %+v", rep.Summary)
	}
	for _, n := range webNodes {
		got, err := os.ReadFile(filepath.Join(c.artifactDir(n, name), "bert.bin"))
		if err != nil || !bytes.Equal(got, model) {
			t.Errorf("%s: the file is not in its artifact directory (%v)", n, err)
		}
		node, _ := c.client.CoreV1().Nodes().Get(context.Background(), n, metav1.GetOptions{})
		if v := node.Labels["artifacts.coral.dev/"+name]; v != hexSum(model)[:12] {
			t.Errorf("%s: label %q, want %q", n, v, hexSum(model)[:12])
		}
	}
	if _, err := os.Stat(c.artifactDir(batchNode, name)); err == nil {
		t.Errorf("%s is not in pool=web but got the artifact", batchNode)
	}
	node3, _ := c.client.CoreV1().Nodes().Get(context.Background(), batchNode, metav1.GetOptions{})
	if _, ok := node3.Labels["artifacts.coral.dev/"+name]; ok {
		t.Errorf("%s was labelled", batchNode)
	}
	if n := c.jobsLeft(t, ns); n != 0 {
		t.Errorf("%d Jobs left", n)
	}

	// Again: Present, nothing downloaded.
	res = c.coral(t, nil, "prefetch", "artifacts", url, "--name", name, "--sha256", hexSum(model), "-l", "pool=web", "-n", ns, "-o", "json")
	json.Unmarshal([]byte(res.stdout), &rep)
	if res.code != 0 || rep.Summary.Present != 2 {
		t.Errorf("rerun: exit %d, summary %+v", res.code, rep.Summary)
	}

	// A wrong digest: Failed, exit 1, the verified content stays.
	res = c.coral(t, nil, "prefetch", "artifacts", url, "--name", name, "--sha256", strings.Repeat("0", 64), "--nodes", "coral-node-1", "-n", ns, "-o", "json")
	json.Unmarshal([]byte(res.stdout), &rep)
	if res.code != 1 || rep.Results[0].Status != report.StatusFailed || !strings.Contains(rep.Results[0].Message, "checksum mismatch") {
		t.Errorf("mismatch: exit %d, %+v", res.code, rep.Results)
	}
	if got, _ := os.ReadFile(filepath.Join(c.artifactDir("coral-node-1", name), "bert.bin")); !bytes.Equal(got, model) {
		t.Error("a failed download damaged the previous content")
	}
	// The label promises what a full success brought; after a failed run
	// the node is not labelled until a run succeeds again.
	if v, ok := c.artifactLabel(t, "coral-node-1", name); ok {
		t.Errorf("coral-node-1 keeps label %s after a failed run", v)
	}
	if v, _ := c.artifactLabel(t, "coral-node-2", name); v != hexSum(model)[:12] {
		t.Errorf("coral-node-2 was not in the failed run, but its label is %q", v)
	}
	ents, _ := os.ReadDir(c.artifactDir("coral-node-1", name))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".coral-tmp") {
			t.Errorf("partial file left: %s", e.Name())
		}
	}
}

// pushSumfileImage builds e2e/cmd/sumfile statically and pushes it as an
// image FROM scratch to the local registry.
func (c *cluster) pushSumfileImage(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sumfile")
	build := exec.Command("go", "build", "-o", bin, "./e2e/cmd/sumfile")
	build.Dir = repoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building sumfile: %v\n%s", err, out)
	}
	img, err := imagebuild.Image(imagebuild.Binary{Platform: "linux/" + runtime.GOARCH, Path: bin}, "sumfile")
	if err != nil {
		t.Fatal(err)
	}
	ref := fmt.Sprintf("%s/e2e/sumfile:%05d", c.env["CORAL_REGISTRY"], mrand.IntN(100000))
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

// An artifact on one node, injected into a Deployment: its pods run only on
// that node and read the file at the mount path.
func TestInjectArtifactIntoDeployment(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	data := make([]byte, 1<<20)
	rand.Read(data)
	base := fileServer(t, c, map[string][]byte{"/weights.bin": data})
	art := c.artifactName(t, "weights")
	holder := "coral-node-2"

	// Injecting an artifact no node holds is refused.
	res := c.coral(t, nil, "inject", "artifact", art, "deployment/reader", "-n", ns)
	if res.code != 2 || !strings.Contains(res.stderr, "no node holds") {
		t.Fatalf("inject before prefetch: exit %d, %s", res.code, res.stderr)
	}

	res = c.coral(t, nil, "prefetch", "artifacts", base+"/weights.bin", "--name", art, "--sha256", hexSum(data), "--nodes", holder, "-n", ns)
	if res.code != 0 {
		t.Fatalf("prefetch: exit %d", res.code)
	}

	image := c.pushSumfileImage(t)
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "reader"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "reader"}},
				Spec: corev1.PodSpec{
					Containers:  []corev1.Container{{Name: "reader", Image: image, Args: []string{"/models/weights/weights.bin"}}},
					Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
				},
			},
		},
	}
	if _, err := c.client.AppsV1().Deployments(ns).Create(context.Background(), deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res = c.coral(t, nil, "inject", "artifact", art, "deployment/reader", "--mount-path", "/models/weights", "-n", ns)
	if res.code != 0 {
		t.Fatalf("inject: exit %d\n%s", res.code, res.stderr)
	}
	// Injecting again changes nothing.
	res = c.coral(t, nil, "inject", "artifact", art, "deployment/reader", "--mount-path", "/models/weights", "-n", ns)
	if res.code != 0 || !strings.Contains(res.stderr, "unchanged") {
		t.Fatalf("second inject: exit %d, %s", res.code, res.stderr)
	}

	want := "sha256 " + hexSum(data) + " /models/weights/weights.bin"
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pods, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=reader"})
		if err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil || !hasVolume(p.Spec, inject.VolumeName(art)) {
				continue // a pod of the template before the injection
			}
			if p.Spec.NodeName != "" && p.Spec.NodeName != holder {
				t.Fatalf("pod %s runs on %s, which does not hold the artifact", p.Name, p.Spec.NodeName)
			}
			if p.Status.Phase != corev1.PodRunning {
				continue
			}
			logs, err := c.client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(context.Background())
			if err == nil && strings.Contains(string(logs), want) {
				ready++
			}
		}
		if ready == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the injected pods did not all run on %s and read the artifact (%d of 2)", holder, ready)
		}
		time.Sleep(time.Second)
	}
}

func hasVolume(spec corev1.PodSpec, name string) bool {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}

// The S3 example on the local cluster: every object under a prefix of a real
// S3-compatible store (versitygw, SigV4 checked), credentials from a Secret.
func TestPrefetchArtifactsS3Prefix(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	bin := testservers.Versitygw(t)
	l, err := net.Listen("tcp", net.JoinHostPort(c.env["CORAL_NODE_IP"], "0"))
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	const access, secret = "e2e-access", "e2e-secret-key-123"
	gw := exec.Command(bin, "--access", access, "--secret", secret, "--port", addr, "posix", t.TempDir())
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Process.Kill(); gw.Wait() })
	endpoint := "http://" + addr
	var s3c *s3.Client
	for i := 0; ; i++ {
		s3c = s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
			Credentials: credentials.NewStaticCredentialsProvider(access, secret, "")})
		if _, err = s3c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("ml-models")}); err == nil {
			break
		}
		if i > 50 {
			t.Fatalf("versitygw did not come up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	objects := map[string][]byte{"llama/config.json": []byte(`{"layers": 2}`), "llama/weights/part-0.bin": make([]byte, 2<<20)}
	rand.Read(objects["llama/weights/part-0.bin"])
	for k, v := range objects {
		if _, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("ml-models"), Key: aws.String(k), Body: bytes.NewReader(v)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "s3-creds"},
		StringData: map[string]string{"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	art := c.artifactName(t, "llama")
	res := c.coral(t, nil, "prefetch", "artifacts", "s3://ml-models/llama/", "--name", art, "--s3-secret", "s3-creds", "--s3-endpoint", endpoint, "-l", "pool=batch", "-n", ns, "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stdout)
	}
	for k, v := range objects {
		got, err := os.ReadFile(filepath.Join(c.artifactDir(batchNode, art), strings.TrimPrefix(k, "llama/")))
		if err != nil || !bytes.Equal(got, v) {
			t.Errorf("%s on %s: %v", k, batchNode, err)
		}
	}
	if strings.Contains(res.stdout+res.stderr, secret) {
		t.Error("the S3 secret appears in Coral's output")
	}

	// Wrong credentials: a clear unauthorized message, exit 1.
	c.client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "s3-wrong"},
		StringData: map[string]string{"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": "wrong"},
	}, metav1.CreateOptions{})
	res = c.coral(t, nil, "prefetch", "artifacts", "s3://ml-models/llama/config.json", "--name", art+"-x", "--s3-secret", "s3-wrong", "--s3-endpoint", endpoint, "-l", "pool=batch", "-n", ns, "-o", "json")
	if res.code != 1 || !strings.Contains(res.stdout, "unauthorized") {
		t.Errorf("wrong credentials: exit %d\n%s", res.code, res.stdout)
	}
	os.RemoveAll(c.artifactDir(batchNode, art+"-x"))

	// A secret without the keys: exit 2 before anything is created.
	c.client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "s3-bad"}, StringData: map[string]string{"user": "x"},
	}, metav1.CreateOptions{})
	res = c.coral(t, nil, "prefetch", "artifacts", "s3://ml-models/llama/", "--name", art, "--s3-secret", "s3-bad", "--s3-endpoint", endpoint, "-n", ns)
	if res.code != 2 || !strings.Contains(res.stderr, "AWS_ACCESS_KEY_ID") || c.jobsLeft(t, ns) != 0 {
		t.Errorf("malformed secret: exit %d, %s", res.code, res.stderr)
	}
}

func (c *cluster) artifactLabel(t *testing.T, node, name string) (string, bool) {
	t.Helper()
	n, err := c.client.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := n.Labels[artifact.LabelKey(name)]
	return v, ok
}

// A node's label says what is on its disk: a run that replaces part of an
// artifact and then fails leaves the node unlabelled (its content is mixed);
// a later full success labels it with the new content.
func TestArtifactLabelFollowsTheDisk(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	a1, a2, b1 := make([]byte, 64<<10), make([]byte, 64<<10), make([]byte, 64<<10)
	rand.Read(a1)
	rand.Read(a2)
	rand.Read(b1)
	var mu sync.Mutex
	files := map[string][]byte{"/a.bin": a1, "/b.bin": b1}
	base := lockedFileServer(t, c, &mu, files)
	name := c.artifactName(t, "mixed")
	const node = "coral-node-1"
	run := func() result {
		return c.coral(t, nil, "prefetch", "artifacts", base+"/a.bin", base+"/b.bin", "--name", name, "--nodes", node, "--retries", "0", "-n", ns, "-o", "json")
	}
	if res := run(); res.code != 0 {
		t.Fatalf("first run: exit %d\n%s", res.code, res.stdout)
	}
	want := artifact.LabelValue([]string{"sha256:" + hexSum(a1), "sha256:" + hexSum(b1)})
	if v, _ := c.artifactLabel(t, node, name); v != want {
		t.Fatalf("after a full success: label %q, want %q", v, want)
	}

	// a.bin changes at the origin and b.bin disappears: the node gets the
	// new a.bin and keeps the old b.bin, a mix no label describes.
	mu.Lock()
	files["/a.bin"] = a2
	delete(files, "/b.bin")
	mu.Unlock()
	if res := run(); res.code != 1 {
		t.Fatalf("partial update: exit %d, want 1\n%s", res.code, res.stdout)
	}
	if got, _ := os.ReadFile(filepath.Join(c.artifactDir(node, name), "a.bin")); !bytes.Equal(got, a2) {
		t.Fatal("the first source was not updated: the test does not set up a mixed node")
	}
	if v, ok := c.artifactLabel(t, node, name); ok {
		t.Errorf("the node's content is mixed, but it keeps the label %s=%s", artifact.LabelKey(name), v)
	}

	mu.Lock()
	files["/b.bin"] = b1
	mu.Unlock()
	if res := run(); res.code != 0 {
		t.Fatalf("recovery: exit %d\n%s", res.code, res.stdout)
	}
	want = artifact.LabelValue([]string{"sha256:" + hexSum(a2), "sha256:" + hexSum(b1)})
	if v, _ := c.artifactLabel(t, node, name); v != want {
		t.Errorf("after the recovery: label %q, want %q", v, want)
	}
}

// lockedFileServer is fileServer over a map the test changes between runs.
func lockedFileServer(t *testing.T, c *cluster, mu *sync.Mutex, files map[string][]byte) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(c.env["CORAL_NODE_IP"], "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b, ok := files[r.URL.Path]
		mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		sum := sha256.Sum256(b)
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
		http.ServeContent(w, r, "", time.Unix(0, 0), bytes.NewReader(b))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// A label that cannot be written fails the run: the artifact is on the
// node, but workloads injected with it would never be sent there.
func TestArtifactLabelWriteFailureExits1(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	ctx := context.Background()
	user := fmt.Sprintf("e2e-coral-nolabel-%05d", mrand.IntN(100000))
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "list", "watch", "delete", "deletecollection"}},
		{APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}, // no patch
	}}
	if _, err := c.client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: user},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}}}
	if _, err := c.client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.client.RbacV1().ClusterRoleBindings().Delete(ctx, user, metav1.DeleteOptions{})
		c.client.RbacV1().ClusterRoles().Delete(ctx, user, metav1.DeleteOptions{})
	})
	data := make([]byte, 32<<10)
	rand.Read(data)
	base := fileServer(t, c, map[string][]byte{"/w.bin": data})
	name := c.artifactName(t, "nolabel")
	const node = "coral-node-2"
	res := c.coral(t, nil, "prefetch", "artifacts", base+"/w.bin", "--name", name, "--sha256", hexSum(data), "--nodes", node, "-n", ns, "--as", user, "-o", "json")
	if res.code != 1 || !strings.Contains(res.stderr, "label") {
		t.Fatalf("a label that could not be written: exit %d, want 1\nstderr: %s", res.code, res.stderr)
	}
	if got, _ := os.ReadFile(filepath.Join(c.artifactDir(node, name), "w.bin")); !bytes.Equal(got, data) {
		t.Error("the artifact itself should be on the node")
	}
	if _, ok := c.artifactLabel(t, node, name); ok {
		t.Error("the node is labelled though the label write was forbidden")
	}
	if !strings.Contains(res.stdout, "not labelled") {
		t.Errorf("the report does not say the node is not labelled:\n%s", res.stdout)
	}
}

// A pre-signed URL's query reaches the request and nothing else: not the
// Job, the worker's log, the report, the node's manifest; the Secret that
// carried it is gone after the run. A password in a URL is refused.
func TestPrefetchArtifactsSignedURL(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	ctx := context.Background()
	secret := fmt.Sprintf("SIG%016x", mrand.Uint64())
	data := make([]byte, 256<<10)
	rand.Read(data)
	l, err := net.Listen("tcp", net.JoinHostPort(c.env["CORAL_NODE_IP"], "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("X-Amz-Signature") != secret {
			http.Error(w, "signature does not match", http.StatusForbidden)
			return
		}
		http.ServeContent(w, r, "", time.Unix(0, 0), bytes.NewReader(data))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	signed := "http://" + l.Addr().String() + "/models/m.bin?X-Amz-Expires=600&X-Amz-Signature=" + secret
	name := c.artifactName(t, "signed")
	const node = "coral-node-1"

	res := c.coral(t, nil, "prefetch", "artifacts", signed, "--name", name, "--nodes", node, "-n", ns, "--keep-jobs", "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stdout)
	}
	if got, _ := os.ReadFile(filepath.Join(c.artifactDir(node, name), "m.bin")); !bytes.Equal(got, data) {
		t.Fatal("the file is not on the node")
	}
	leaks := map[string]string{"output": res.stdout + res.stderr}
	manifest, _ := os.ReadFile(filepath.Join(c.artifactDir(node, name), ".coral-manifest.json"))
	leaks["the node's manifest"] = string(manifest)
	jobs, err := c.client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=coral"})
	if err != nil || len(jobs.Items) != 1 {
		t.Fatalf("--keep-jobs kept %d Jobs (%v)", len(jobs.Items), err)
	}
	b, _ := json.Marshal(jobs.Items)
	leaks["the Job"] = string(b)
	pods, _ := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=coral"})
	for _, p := range pods.Items {
		logs, err := c.client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			t.Fatalf("reading the worker log: %v", err)
		}
		leaks["the worker log"] += string(logs)
		b, _ := json.Marshal(p)
		leaks["the pod"] += string(b)
	}
	for where, s := range leaks {
		if strings.Contains(s, secret) {
			t.Errorf("%s holds the URL's signature", where)
		}
	}
	secrets, _ := c.client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=coral"})
	if len(secrets.Items) != 0 {
		t.Errorf("the run left %d secrets behind", len(secrets.Items))
	}

	res = c.coral(t, nil, "prefetch", "artifacts", "http://user:"+secret+"@"+l.Addr().String()+"/models/m.bin", "--name", name, "--nodes", node, "-n", ns)
	if res.code != 2 || !strings.Contains(res.stderr, "--header-secret") || strings.Contains(res.stdout+res.stderr, secret) {
		t.Errorf("a URL with a password: exit %d, want 2 with advice and without the password\n%s", res.code, res.stderr)
	}
}

// --extract on a node: the second version of an archive replaces the first
// tree in one exchange (renameat2 under the worker's seccomp profile), and
// nothing of the staging is left.
func TestPrefetchArtifactsExtractReplacesTree(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	archive := func(body string) []byte {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
		tw.WriteHeader(&tar.Header{Name: "bin/tool", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(body))})
		tw.Write([]byte(body))
		tw.WriteHeader(&tar.Header{Name: "current", Typeflag: tar.TypeSymlink, Linkname: "bin/tool"})
		tw.Close()
		gz.Close()
		return buf.Bytes()
	}
	var mu sync.Mutex
	files := map[string][]byte{"/tools.tar.gz": archive("v1")}
	base := lockedFileServer(t, c, &mu, files)
	name := c.artifactName(t, "tools")
	const node = "coral-node-3"
	for _, v := range []string{"v1", "v2"} {
		mu.Lock()
		files["/tools.tar.gz"] = archive(v)
		sum := hexSum(files["/tools.tar.gz"])
		mu.Unlock()
		res := c.coral(t, nil, "prefetch", "artifacts", base+"/tools.tar.gz", "--name", name, "--extract", "--sha256", sum, "--nodes", node, "-n", ns, "-o", "json")
		if res.code != 0 {
			t.Fatalf("%s: exit %d\n%s", v, res.code, res.stdout)
		}
		if b, err := os.ReadFile(filepath.Join(c.artifactDir(node, name), "tools", "current")); err != nil || string(b) != v {
			t.Fatalf("%s: the tree holds %q (%v)", v, b, err)
		}
		if l, _ := c.artifactLabel(t, node, name); l != sum[:12] {
			t.Errorf("%s: label %q, want %q", v, l, sum[:12])
		}
	}
	ents, _ := os.ReadDir(c.artifactDir(node, name))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".coral-tmp") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
