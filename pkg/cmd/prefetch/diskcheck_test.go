package prefetch

import (
	"context"
	"github.com/coral-dev/coral/pkg/source"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/diskcheck"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
)

// The kubelet side (summary and configz through the node proxy) is read
// for real in e2e/diskcheck_test.go; here the nodes' numbers are given, and
// the image sizes come from a real registry, to show what the command does
// with each verdict before anything is created.
func TestImagesDiskCheck(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/app:v1"
	img, err := random.Image(256*1024, 2) // about 512 KiB compressed
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}

	const mib = 1 << 20
	roomy := diskcheck.NodeDisk{ImageFs: diskcheck.FsStats{AvailableBytes: 600 * mib, CapacityBytes: 1000 * mib}, HighThresholdPercent: 85}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "nodes/proxy"}, "web-1", nil)
	for _, tc := range []struct {
		name    string
		disks   map[string]diskcheck.NodeDisk
		args    []string
		code    int
		says    []string // in the error (exit 2) or on stderr
		notRead bool
		creates bool
	}{
		{name: "both fit", disks: map[string]diskcheck.NodeDisk{"web-1": roomy, "web-2": roomy},
			says: []string{"disk check: 2 node(s) checked, 2 fit", diskcheck.HumanBytes(size)}},
		{name: "a node that cannot hold the image stops the run", code: cmdutil.ExitBadInput,
			disks: map[string]diskcheck.NodeDisk{"web-1": roomy, "web-2": {ImageFs: diskcheck.FsStats{AvailableBytes: 100 * 1024, CapacityBytes: 1000 * mib}, HighThresholdPercent: 85}},
			says:  []string{"1 of 2 node(s) cannot hold", "web-2: needs at least " + diskcheck.HumanBytes(size) + ", 100.0 KiB free of 1000.0 MiB", "--skip-disk-check", "-l SELECTOR"}},
		{name: "crossing the GC threshold is a warning", disks: map[string]diskcheck.NodeDisk{"web-1": roomy, "web-2": {ImageFs: diskcheck.FsStats{AvailableBytes: 150*mib + 100*1024, CapacityBytes: 1000 * mib}, HighThresholdPercent: 85}},
			says: []string{"warning: disk check: node web-2 needs at least", "already 85% used", "image GC starts at 85%", "1 fit"}},
		{name: "crossing the GC threshold with these pulls", disks: map[string]diskcheck.NodeDisk{"web-1": roomy, "web-2": {ImageFs: diskcheck.FsStats{AvailableBytes: 160*mib + 300*1024, CapacityBytes: 1000 * mib}, HighThresholdPercent: 85}},
			says: []string{"node web-2 needs at least", "from 84% to 85% used", "image GC starts at 85%"}},
		{name: "forbidden is a warning naming the RBAC", disks: map[string]diskcheck.NodeDisk{"web-1": {Err: forbidden}, "web-2": {Err: forbidden}},
			says: []string{"2 nodes (web-1, web-2)", "forbidden", "nodes/proxy", `verbs: ["get"]`}},
		{name: "--skip-disk-check reads nothing", args: []string{"--skip-disk-check"}, notRead: true},
		{name: "a sample when there are more nodes than --disk-check-nodes", args: []string{"--disk-check-nodes=1"}, disks: map[string]diskcheck.NodeDisk{"web-1": roomy, "web-2": roomy},
			says: []string{"a random sample of 1 of 2 nodes (--disk-check-nodes)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var read []string
			res := runCmd(t, "", func(streams genericiooptions.IOStreams, client *fake.Clientset) *cobra.Command {
				o := NewImagesOptions(genericclioptions.NewConfigFlags(false), streams)
				o.client = withNodeList(client)
				o.resolve = func(ctx context.Context, r string, kc authn.Keychain) (string, error) {
					return source.ResolveDigest(ctx, r, authn.DefaultKeychain)
				}
				o.disk.read = func(_ context.Context, nodes []string) []diskcheck.NodeDisk {
					var out []diskcheck.NodeDisk
					for _, n := range nodes {
						read = append(read, n)
						d := tc.disks[n]
						d.Node = n
						out = append(out, d)
					}
					return out
				}
				return newCmdImages(o)
			}, append([]string{ref, "--dry-run=client", "-o", "name"}, tc.args...)...)
			if got := cmdutil.Code(res.err); got != tc.code {
				t.Fatalf("exit %d (%v), want %d\nstderr: %s", got, res.err, tc.code, res.stderr)
			}
			all := res.stderr
			if res.err != nil {
				all += res.err.Error()
			}
			t.Logf("%s", all)
			for _, s := range tc.says {
				if !strings.Contains(all, s) {
					t.Errorf("output lacks %q:\n%s", s, all)
				}
			}
			if tc.notRead && len(read) > 0 {
				t.Errorf("nodes read with --skip-disk-check: %v", read)
			}
			if !tc.notRead && len(read) == 0 {
				t.Errorf("no node was read")
			}
			if tc.code != 0 && res.stdout != "" {
				t.Errorf("a refused run printed Jobs: %s", res.stdout)
			}
			if len(res.writes) != 0 {
				t.Errorf("writes: %v", res.writes)
			}
		})
	}
}
