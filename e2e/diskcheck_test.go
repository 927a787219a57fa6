package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/diskcheck"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// containerdFs is what the filesystem holding a node's containerd root
// says about itself (the image filesystem kubelet reports).
func containerdFs(t *testing.T, c *cluster, node string) (avail, capacity int64) {
	t.Helper()
	dir := filepath.Join(c.env["CORAL_CLUSTER_DIR"], "nodes", node, "containerd", "root")
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return int64(st.Bavail) * st.Frsize, int64(st.Blocks) * st.Frsize
}

// kubeletGCThreshold reads imageGCHighThresholdPercent from the node's
// kubelet config file, as the harness wrote it.
func kubeletGCThreshold(t *testing.T, c *cluster, node string) int {
	t.Helper()
	path := filepath.Join(c.env["CORAL_CLUSTER_DIR"], "nodes", node, "kubelet", "config.yaml")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "imageGCHighThresholdPercent:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return n
		}
	}
	return diskcheck.DefaultImageGCHighThresholdPercent
}

// The numbers the check reads through the API server's node proxy are the
// kubelets' own: capacity equals the filesystem's, available is within a
// small margin of it (other programs write to the same disk, and kubelet's
// stats are a few seconds old), the GC threshold is the kubelet config's.
func TestDiskCheckReadsKubelets(t *testing.T) {
	c := getCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	disks := diskcheck.ReadNodes(ctx, c.client.CoreV1().RESTClient(), c.nodes, diskcheck.ReadOptions{})
	if len(disks) != len(c.nodes) {
		t.Fatalf("%d answers for %d nodes", len(disks), len(c.nodes))
	}
	for _, d := range disks {
		if d.Err != nil || d.ThresholdErr != nil {
			t.Errorf("%s: %v / %v", d.Node, d.Err, d.ThresholdErr)
			continue
		}
		avail, capacity := containerdFs(t, c, d.Node)
		t.Logf("%s: kubelet says %d of %d bytes free (%s of %s), statfs says %d of %d; GC threshold %d%%",
			d.Node, d.ImageFs.AvailableBytes, d.ImageFs.CapacityBytes, diskcheck.HumanBytes(d.ImageFs.AvailableBytes), diskcheck.HumanBytes(d.ImageFs.CapacityBytes), avail, capacity, d.HighThresholdPercent)
		if d.ImageFs.CapacityBytes != capacity {
			t.Errorf("%s: capacity %d, the filesystem has %d", d.Node, d.ImageFs.CapacityBytes, capacity)
		}
		if diff := d.ImageFs.AvailableBytes - avail; diff > capacity/100 || -diff > capacity/100 {
			t.Errorf("%s: available %d, the filesystem has %d (more than 1%% of capacity apart)", d.Node, d.ImageFs.AvailableBytes, avail)
		}
		if want := kubeletGCThreshold(t, c, d.Node); d.HighThresholdPercent != want {
			t.Errorf("%s: GC threshold %d%%, the kubelet config says %d%%", d.Node, d.HighThresholdPercent, want)
		}
	}
	// A node that does not exist is an error for that node only.
	bad := diskcheck.ReadNodes(ctx, c.client.CoreV1().RESTClient(), []string{"no-such-node"}, diskcheck.ReadOptions{})
	if bad[0].Err == nil {
		t.Errorf("no error for a node that does not exist")
	}
}

// A run whose image fits is checked with the kubelets' numbers and goes on.
func TestDiskCheckFitsThenPulls(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	img, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "diskfit", nil)
	res := c.coral(t, nil, "prefetch", "images", img, "-n", ns, "-o", "json", "--progress=none")
	if res.code != 0 || res.report == nil {
		t.Fatalf("exit %d\n%s", res.code, res.stdout)
	}
	if want := fmt.Sprintf("disk check: %d node(s) checked, %d fit", len(c.nodes), len(c.nodes)); !strings.Contains(res.stderr, want) {
		t.Errorf("stderr lacks %q", want)
	}
	for _, r := range res.report.Results {
		if r.Status != report.StatusPulled && r.Status != report.StatusPresent {
			t.Errorf("%s on %s: %s %s", r.Image, r.Node, r.Status, r.Message)
		}
	}

	// Once the kubelets list the image in their node status, the check
	// counts nothing for it.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		nodes, err := c.client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		listed := 0
		for _, n := range nodes.Items {
			for _, ci := range n.Status.Images {
				if slices.Contains(ci.Names, img) {
					listed++
					break
				}
			}
		}
		if listed == len(nodes.Items) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2m, %d of %d nodes list %s in their status", listed, len(nodes.Items), img)
		}
		time.Sleep(2 * time.Second)
	}
	res = c.coral(t, nil, "prefetch", "images", img, "-n", ns, "--dry-run=client", "-o", "name")
	if res.code != 0 || !strings.Contains(res.stderr, fmt.Sprintf("%d node(s) checked, each already holds the images", len(c.nodes))) {
		t.Errorf("a held image is counted again: exit %d", res.code)
	}
}

// hugeManifest is an image manifest whose one layer declares size bytes:
// the registry serves it like any other, and only manifests are read
// before a run, so the check sees an image bigger than any node's disk.
type hugeManifest struct{ raw []byte }

func (h hugeManifest) RawManifest() ([]byte, error)        { return h.raw, nil }
func (h hugeManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// An image bigger than the nodes' image filesystems stops the run before
// any Job, naming every node with the kubelets' numbers; --skip-disk-check
// lets it through.
func TestDiskCheckRefusesWhatCannotFit(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	_, capacity := containerdFs(t, c, c.nodes[0])

	// go-containerregistry's registry accepts a manifest whose layers it
	// does not hold (the cluster's registry would not); the plugin runs on
	// this machine, so 127.0.0.1 reaches it. Nothing is ever pulled.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	cfg, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfgRaw, _ := cfg.RawConfigFile()
	cfgName, _ := cfg.ConfigName()
	huge := 2 * capacity
	m := v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(cfgRaw)), Digest: cfgName},
		Layers: []v1.Descriptor{{MediaType: types.OCILayer, Size: huge, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}}},
	}
	raw, _ := json.Marshal(m)
	ref := ln.Addr().String() + "/e2e/huge:v1"
	r, _ := name.ParseReference(ref)
	if err := remote.Put(r, hugeManifest{raw}); err != nil {
		t.Fatal(err)
	}

	res := c.coral(t, nil, "prefetch", "images", ref, "-n", ns, "--progress=none")
	if res.code != 2 {
		t.Fatalf("exit %d, want 2 (refused before any Job)\n%s", res.code, res.stdout)
	}
	for _, want := range append([]string{
		fmt.Sprintf("%d of %d node(s) cannot hold", len(c.nodes), len(c.nodes)),
		"needs at least " + diskcheck.HumanBytes(huge+int64(len(cfgRaw))),
		"free of " + diskcheck.HumanBytes(capacity),
		"--skip-disk-check",
	}, c.nodes...) {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if n := c.jobsLeft(t, ns); n != 0 {
		t.Errorf("%d Jobs created by a refused run", n)
	}

	// Opting out: the Jobs would be created (a dry run, so nothing is pulled).
	res = c.coral(t, nil, "prefetch", "images", ref, "-n", ns, "--skip-disk-check", "--dry-run=client", "-o", "name")
	if res.code != 0 || strings.Contains(res.stderr, "disk check") {
		t.Fatalf("--skip-disk-check: exit %d\n%s", res.code, res.stderr)
	}
	if got := strings.Count(res.stdout, "job"); got != len(c.nodes) {
		t.Errorf("--skip-disk-check --dry-run printed %d Jobs, want %d:\n%s", got, len(c.nodes), res.stdout)
	}
}

// Without get on nodes/proxy the real API server answers 403: the check
// degrades to a warning that names the RBAC it needs, and the run goes on.
func TestDiskCheckForbiddenIsAWarning(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	ctx := context.Background()
	sa := "node-lister"
	if _, err := c.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-nodes"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}},
	}
	if _, err := c.client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.client.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
	}
	if _, err := c.client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.client.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})

	img, _ := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "diskrbac", nil)
	res := c.coral(t, nil, "prefetch", "images", img, "-n", ns, "--as", "system:serviceaccount:"+ns+":"+sa, "--dry-run=client", "-o", "name")
	if res.code != 0 {
		t.Fatalf("exit %d, want 0 (a warning only)\n%s", res.code, res.stdout)
	}
	for _, want := range []string{"warning: disk check", "forbidden", "nodes/proxy", fmt.Sprintf("%d nodes", len(c.nodes))} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
}
