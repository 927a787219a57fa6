package prefetch

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/run"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func readyNode(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: map[string]string{"kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/" + name + ".sock"}},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
	}
}

type cmdResult struct {
	err            error
	stdout, stderr string
	writes         []string // every non-dry-run write to the cluster
}

// runImages runs `prefetch images args…` against a fake cluster. The real
// engine on a real cluster is the e2e suite's job; here the point is what
// happens before anything would be created.
func runImages(t *testing.T, stdin string, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, stdin, func(streams genericiooptions.IOStreams, client *fake.Clientset) *cobra.Command {
		o := NewImagesOptions(genericclioptions.NewConfigFlags(false), streams)
		o.client = withNodeList(client)
		o.resolve = func(context.Context, string, authn.Keychain) (string, error) { return "", errors.New("offline") }
		return newCmdImages(o)
	}, args...)
}

func runCmd(t *testing.T, stdin string, build func(genericiooptions.IOStreams, *fake.Clientset) *cobra.Command, args ...string) cmdResult {
	t.Helper()
	client := fake.NewClientset(
		readyNode("web-1", map[string]string{"pool": "web"}),
		readyNode("web-2", map[string]string{"pool": "web"}),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "opaque", Namespace: "default"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"user": []byte("x")}},
	)
	var out, errb bytes.Buffer
	cmd := build(genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errb}, client)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err := cmd.ExecuteContext(context.Background())
	var writes []string
	for _, a := range client.Actions() {
		switch a.GetVerb() {
		case "create", "update", "patch", "delete", "delete-collection":
			if c, ok := a.(k8stesting.CreateActionImpl); ok && len(c.CreateOptions.DryRun) > 0 {
				continue
			}
			writes = append(writes, a.GetVerb()+" "+a.GetResource().Resource)
		}
	}
	return cmdResult{err: err, stdout: out.String(), stderr: errb.String(), writes: writes}
}

func TestImagesBadInputCreatesNothing(t *testing.T) {
	dir := t.TempDir()
	notYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(notYAML, []byte("apiVersion: v1\nkind: Pod\nspec: [oops\n"), 0o644)
	badImage := filepath.Join(dir, "deployment.yaml")
	os.WriteFile(badImage, []byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers: [{name: a, image: 'nginx:1.27'}, {name: b, image: 'reg.local//app:v1'}]\n"), 0o644)
	unreadable := filepath.Join(dir, "secret.txt")
	os.WriteFile(unreadable, []byte("nginx\n"), 0o000)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no images", nil, "no images given"},
		{"invalid reference", []string{"Not A Ref"}, "invalid image reference"},
		{"reference a runtime refuses", []string{"reg.local/app/:v1"}, "invalid image reference"},
		{"invalid image in a manifest", []string{"-f", badImage}, `Deployment: invalid image reference "reg.local//app:v1"`},
		{"missing file", []string{"-f", filepath.Join(dir, "nope.txt")}, "no such file"},
		{"not YAML", []string{"-f", notYAML}, "not valid YAML or JSON"},
		{"bad selector", []string{"nginx", "-l", "pool in (web"}, "--selector"},
		{"selector matches no node", []string{"nginx", "-l", "pool=gpu"}, "no node matched"},
		{"unknown node", []string{"nginx", "--nodes", "web-9"}, `unknown node "web-9"`},
		{"missing pull secret", []string{"nginx", "--pull-secret", "nope"}, "no such secret"},
		{"pull secret of the wrong type", []string{"nginx", "--pull-secret", "opaque"}, "kubernetes.io/dockerconfigjson"},
		{"timeout zero", []string{"nginx", "--timeout", "0s"}, "--timeout"},
		{"max nodes in flight", []string{"nginx", "--max-nodes-in-flight", "0"}, "--max-nodes-in-flight"},
		{"negative wait-cleanup", []string{"nginx", "--wait-cleanup", "-1s"}, "--wait-cleanup"},
		{"max pulls per node", []string{"nginx", "--max-pulls-per-node", "-1"}, "--max-pulls-per-node"},
		{"unknown output", []string{"nginx", "-o", "xml"}, "unknown output format"},
		{"bad runtime endpoint", []string{"nginx", "--runtime-endpoint", "tcp://1.2.3.4:1"}, "only unix://"},
		{"bad dry-run", []string{"nginx", "--dry-run=maybe"}, "--dry-run"},
	}
	if os.Getuid() != 0 { // root reads anything
		tests = append(tests, struct {
			name string
			args []string
			want string
		}{"unreadable file", []string{"-f", unreadable}, "permission denied"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runImages(t, "", tt.args...)
			if cmdutil.Code(r.err) != cmdutil.ExitBadInput || !strings.Contains(r.err.Error(), tt.want) {
				t.Fatalf("err = %v (exit %d), want exit 2 with %q", r.err, cmdutil.Code(r.err), tt.want)
			}
			if len(r.writes) > 0 {
				t.Fatalf("bad input wrote to the cluster: %v", r.writes)
			}
		})
	}
}

func TestImagesDryRunPrintsJobsFromStdinManifests(t *testing.T) {
	manifest := "apiVersion: apps/v1\nkind: Deployment\nspec: {template: {spec: {containers: [{name: a, image: 'reg.local/a:1'}], initContainers: [{name: b, image: 'reg.local/b:2'}]}}}\n"
	r := runImages(t, manifest, "-f", "-", "-l", "pool=web", "--dry-run=client", "-o", "yaml")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.writes) > 0 {
		t.Fatalf("dry run wrote: %v", r.writes)
	}
	for _, want := range []string{"kind: JobList", "nodeName: web-1", "nodeName: web-2", "--image=reg.local/a:1", "--image=reg.local/b:2", "path: /run/web-1.sock"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry-run output lacks %q", want)
		}
	}
	if !strings.Contains(r.stderr, "cannot resolve reg.local/a:1") {
		t.Errorf("no warning for an unresolvable image: %s", r.stderr)
	}
	if strings.Count(r.stdout, "hostNetwork: true") != 2 {
		t.Errorf("the workers should run in the node's network by default:\n%s", r.stdout)
	}
	r = runImages(t, manifest, "-f", "-", "-l", "pool=web", "--dry-run=client", "-o", "yaml", "--host-network=false")
	if r.err != nil || strings.Contains(r.stdout, "hostNetwork") {
		t.Errorf("--host-network=false: err %v, output still asks for hostNetwork:\n%s", r.err, r.stdout)
	}
}

// The same harness sees writes when there are some: a run whose nodes never
// report creates its Jobs, fails every node at --timeout and deletes them.
func TestImagesRunWritesAreSeen(t *testing.T) {
	r := runImages(t, "", "reg.local/a:1", "-l", "pool=web", "--timeout", "1s", "--progress=none", "-o", "json")
	if cmdutil.Code(r.err) != cmdutil.ExitFailed {
		t.Fatalf("err = %v, want exit 1", r.err)
	}
	joined := strings.Join(r.writes, ",")
	if strings.Count(joined, "create jobs") != 2 || !strings.Contains(joined, "delete-collection jobs") {
		t.Fatalf("writes %v: want two Jobs created and then deleted", r.writes)
	}
	if !strings.Contains(r.stdout, `"failed": 2`) || !strings.Contains(r.stdout, "--timeout=1s") {
		t.Fatalf("report:\n%s", r.stdout)
	}
}

// A node that got other bytes than were resolved is flagged.
func TestResultsFlagDigestMismatch(t *testing.T) {
	o := NewImagesOptions(genericclioptions.NewConfigFlags(false), genericiooptions.IOStreams{})
	o.images = []string{"reg.local/a:1"}
	resolved, other := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	njs := []run.NodeJob{{Node: "n1", Items: o.images, Expected: []string{resolved}}, {Node: "n2", Items: o.images, Expected: []string{resolved}}}
	rows := o.results(&plan.Plan{Skipped: []plan.Skip{{Node: "n3", Reason: "node is cordoned"}}}, njs, []run.NodeResult{
		{Node: "n1", Items: []report.ItemResult{{Status: report.StatusPulled, Digest: resolved}}},
		{Node: "n2", Items: []report.ItemResult{{Status: report.StatusPulled, Digest: other}}},
	})
	if len(rows) != 3 {
		t.Fatalf("%d rows", len(rows))
	}
	if rows[0].DigestMismatch {
		t.Error("n1 holds the resolved digest")
	}
	if !rows[1].DigestMismatch || !strings.Contains(rows[1].Message, "did the tag move") {
		t.Errorf("n2 holds other bytes: %+v", rows[1])
	}
	if rows[2].Status != report.StatusSkipped || rows[2].Message != "node is cordoned" {
		t.Errorf("skipped node: %+v", rows[2])
	}
}
