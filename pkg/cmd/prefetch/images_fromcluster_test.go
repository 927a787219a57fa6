package prefetch

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

func runFromCluster(t *testing.T, src kubernetes.Interface, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, "", func(streams genericiooptions.IOStreams, client *fake.Clientset) *cobra.Command {
		o := NewImagesOptions(genericclioptions.NewConfigFlags(false), streams)
		o.client = withNodeList(client)
		o.sourceClient = func() (kubernetes.Interface, error) { return src, nil }
		o.resolve = func(context.Context, string, authn.Keychain) (string, error) { return "", errors.New("offline") }
		return newCmdImages(o)
	}, args...)
}

// --from-cluster prefetches what another cluster's workloads run (the
// source stands for cluster A; the nodes are cluster B's).
func TestImagesFromCluster(t *testing.T) {
	src := fake.NewClientset(
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "i", Image: "reg.local/init:1"}},
			Containers:     []corev1.Container{{Name: "c", Image: "reg.local/web:2"}},
		}}}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "reg.local/other:3"}}}},
	)
	res := runFromCluster(t, src, "--from-cluster", "--from-namespace", "shop", "--dry-run=client", "-o", "yaml")
	if res.err != nil {
		t.Fatalf("%v\n%s", res.err, res.stderr)
	}
	for _, want := range []string{"--image=reg.local/init:1", "--image=reg.local/web:2"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("dry run lacks %s", want)
		}
	}
	if strings.Contains(res.stdout, "reg.local/other:3") {
		t.Error("--from-namespace shop read another namespace")
	}
	// All namespaces by default, plus images given as arguments.
	res = runFromCluster(t, src, "--from-cluster", "extra:1", "--dry-run=client", "-o", "yaml")
	for _, want := range []string{"reg.local/other:3", "reg.local/web:2", "--image=extra:1"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("all namespaces: dry run lacks %s", want)
		}
	}
	// Nothing to prefetch is bad input, with nothing created.
	res = runFromCluster(t, fake.NewClientset(), "--from-cluster")
	if cmdutil.Code(res.err) != cmdutil.ExitBadInput || !strings.Contains(res.err.Error(), "no pods or workloads") || len(res.writes) != 0 {
		t.Errorf("empty source: %v, writes %v", res.err, res.writes)
	}
	res = runFromCluster(t, src, "a:1", "--from-context", "x")
	if cmdutil.Code(res.err) != cmdutil.ExitBadInput || !strings.Contains(res.err.Error(), "only apply to --from-cluster") {
		t.Errorf("--from-context alone: %v", res.err)
	}
}

func TestImagesPersistBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"a:1", "--persist", "web", "--dry-run=client"}, "cannot be combined with --dry-run"},
		{[]string{"a:1", "--refresh-interval", "5m"}, "only apply to --persist"},
		{[]string{"a:1", "--wait=false"}, "only apply to --persist"},
		{[]string{"a:1", "--persist", "web", "--pin=best-effort"}, "not --pin=best-effort"},
		{[]string{"a:1", "--persist", "Not_A_Name"}, `--persist "Not_A_Name"`},
	} {
		res := runImages(t, "", tc.args...)
		if cmdutil.Code(res.err) != cmdutil.ExitBadInput || !strings.Contains(res.err.Error(), tc.want) || len(res.writes) != 0 {
			t.Errorf("%v: %v (writes %v), want exit 2 with %q", tc.args, res.err, res.writes, tc.want)
		}
	}
}
