package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	mirrorlib "github.com/coral-dev/coral/pkg/mirror"
	"github.com/coral-dev/coral/pkg/mirror/mirrortest"
)

type result struct {
	stdout, stderr string
	code           int
	err            error
}

type runOpt func(*Options, *context.Context)

func withClient(c kubernetes.Interface) runOpt {
	return func(o *Options, _ *context.Context) {
		o.newClient = func() (kubernetes.Interface, error) { return c, nil }
	}
}

func withContext(ctx context.Context) runOpt {
	return func(_ *Options, c *context.Context) { *c = ctx }
}

// runMirror runs `kubectl coral mirror ARGS` as the root command would.
func runMirror(t *testing.T, stdin string, args []string, opts ...runOpt) result {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}
	flags := genericclioptions.NewConfigFlags(true)
	// No test reads the developer's kubeconfig or docker config.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(testKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	flags.KubeConfig = &kubeconfig
	if os.Getenv("DOCKER_CONFIG") == "" {
		t.Setenv("DOCKER_CONFIG", t.TempDir())
	}
	o := NewOptions(flags, streams)
	o.Progress = "plain"
	ctx := context.Background()
	for _, opt := range opts {
		opt(o, &ctx)
	}
	cmd := newCmd(o)
	cmd.SilenceErrors = true // the root command prints errors once
	flags.AddFlags(cmd.PersistentFlags())
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		errOut.WriteString("Error: " + err.Error() + "\n")
	}
	return result{stdout: out.String(), stderr: errOut.String(), code: cmdutil.Code(err), err: err}
}

func decodeReport(t *testing.T, r result) *mirrorlib.Report {
	t.Helper()
	var rep mirrorlib.Report
	if err := yaml.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stdout is not a report: %v\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	if rep.APIVersion != "coral.dev/v1alpha1" || rep.Kind != "MirrorReport" {
		t.Fatalf("report type: %s %s", rep.APIVersion, rep.Kind)
	}
	return &rep
}

var platforms = []string{"linux/amd64", "linux/arm64"}

// testKubeconfig points at no server: tests that need a cluster inject a
// fake clientset.
const testKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: none, user: {}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: default}}]
current-context: none
`

func TestMirrorCopiesThenFindsEverythingPresent(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	proxy := mirrortest.NewProxy(t, dst, nil)
	idxDigest := mirrortest.Push(t, src.Host+"/team/app:v1", mirrortest.Index(t, platforms, 32<<10, 2))
	imgDigest := mirrortest.Push(t, src.Host+"/tool:1.0", mirrortest.Image(t, "linux/amd64", 32<<10, 1))
	list := filepath.Join(t.TempDir(), "images.txt")
	if err := os.WriteFile(list, []byte("# images for the demo\n"+src.Host+"/tool:1.0\n\n"+src.Host+"/team/app:v1  # the app\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	r := runMirror(t, "", []string{"-f", list, src.Host + "/team/app:v1", "--to", proxy.Host + "/mirror", "-o", "json"})
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	rep := decodeReport(t, r)
	if rep.Summary.Total != 2 || rep.Summary.Copied != 2 {
		t.Fatalf("summary %+v (duplicates must be merged)", rep.Summary)
	}
	want := map[string]string{
		proxy.Host + "/mirror/team/app:v1": idxDigest.String(),
		proxy.Host + "/mirror/tool:1.0":    imgDigest.String(),
	}
	for _, res := range rep.Results {
		if want[res.Destination] != res.Digest || res.Bytes == 0 {
			t.Errorf("result %+v", res)
		}
		if got := mirrortest.Digest(t, strings.Replace(res.Destination, proxy.Host, dst.Host, 1)); got != res.Digest {
			t.Errorf("%s holds %q, want %s", res.Destination, got, res.Digest)
		}
	}
	if !strings.Contains(r.stderr, src.Host+"/team/app:v1 → "+proxy.Host+"/mirror/team/app:v1") {
		t.Errorf("the mapping must be printed on stderr:\n%s", r.stderr)
	}

	proxy.Reset()
	r = runMirror(t, "", []string{"-f", list, "--to", proxy.Host + "/mirror"})
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if w := proxy.Writes(); w != 0 {
		t.Fatalf("second run wrote %d times: %v", w, proxy.Counts())
	}
	if c := proxy.Counts(); c["GET blob"]+c["HEAD blob"] != 0 {
		t.Fatalf("second run touched blobs: %v", c)
	}
	for _, want := range []string{"SOURCE", "Present", "2 images: 0 copied, 2 present, 0 failed; 0 B sent"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestMirrorManifestsFromStdinDryRun(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	proxy := mirrortest.NewProxy(t, dst, nil)
	mirrortest.Push(t, src.Host+"/web:2", mirrortest.Index(t, platforms, 32<<10, 1))
	mirrortest.Push(t, src.Host+"/init:1", mirrortest.Image(t, "linux/amd64", 16<<10, 1))
	manifests := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers: [{name: init, image: ` + src.Host + `/init:1}]
      containers: [{name: web, image: ` + src.Host + `/web:2}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
`
	r := runMirror(t, manifests, []string{"-f", "-", "--to", proxy.Host, "--dry-run", "-o", "yaml"})
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	rep := decodeReport(t, r)
	if !rep.DryRun || rep.Summary.Planned != 2 || rep.Summary.Bytes < 2*32<<10+16<<10 {
		t.Fatalf("dry run report: %+v", rep)
	}
	if w := proxy.Writes(); w != 0 {
		t.Fatalf("--dry-run wrote: %v", proxy.Counts())
	}
	if mirrortest.Digest(t, dst.Host+"/web:2") != "" {
		t.Fatal("--dry-run created an image")
	}
}

func TestMirrorBadInputWritesNothing(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	proxy := mirrortest.NewProxy(t, dst, nil)
	mirrortest.Push(t, src.Host+"/app:v1", mirrortest.Image(t, "linux/amd64", 1024, 1))
	mirrortest.Push(t, src.Host+"/other/app:v1", mirrortest.Image(t, "linux/amd64", 1024, 1))
	good := src.Host + "/app:v1"
	to := proxy.Host
	empty := filepath.Join(t.TempDir(), "empty.txt")
	_ = os.WriteFile(empty, []byte("# nothing\n"), 0o600)
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	_ = os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	client := fake.NewSimpleClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "opaque", Namespace: "default"},
		Type:       corev1.SecretTypeOpaque,
	})

	tests := []struct {
		name string
		args []string
		opts []runOpt
		want string
	}{
		{name: "no --to", args: []string{good}, want: "--to is required"},
		{name: "--to without host", args: []string{good, "--to", "mirror"}, want: "--to: destination \"mirror\" must start with a registry host"},
		{name: "--to with tag", args: []string{good, "--to", to + "/x:v1"}, want: "--to: destination"},
		{name: "nothing to mirror", args: []string{"--to", to}, want: "nothing to mirror"},
		{name: "invalid reference", args: []string{"Not A Ref", "--to", to}, want: "invalid image reference"},
		{name: "empty file", args: []string{"-f", empty, "--to", to}, want: "no images found"},
		{name: "missing file", args: []string{"-f", "/nonexistent/images.txt", "--to", to}, want: "-f /nonexistent/images.txt"},
		{name: "jobs zero", args: []string{good, "--to", to, "--jobs", "0"}, want: "--jobs must be at least 1"},
		{name: "negative retries", args: []string{good, "--to", to, "--retries", "-1"}, want: "--retries"},
		{name: "bad regex", args: []string{src.Host + "/app", "--to", to, "--tags", "("}, want: "--tags \"(\" is not a valid regular expression"},
		{name: "bad semver", args: []string{src.Host + "/app", "--to", to, "--semver", "banana"}, want: "--semver \"banana\" is not a valid version range"},
		{name: "all-tags with tags", args: []string{src.Host + "/app", "--to", to, "--all-tags", "--tags", "x"}, want: "--all-tags"},
		{name: "tags on an image", args: []string{good, "--to", to, "--tags", "v"}, want: "drop its tag or digest"},
		{name: "bad platform", args: []string{good, "--to", to, "--platform", "linux"}, want: "--platform \"linux\""},
		{name: "missing platform", args: []string{good, "--to", to, "--platform", "linux/s390x"}, want: "--platform linux/s390x"},
		{name: "bad dry run", args: []string{good, "--to", to, "--dry-run=server"}, want: "--dry-run=server is not supported"},
		{name: "bad output", args: []string{good, "--to", to, "-o", "xml"}, want: "-o/--output"},
		{name: "bad progress", args: []string{good, "--to", to, "--progress", "loud"}, want: `--progress must be auto, bar, plain or none, got "loud"`},
		{name: "-A without --from-cluster", args: []string{good, "--to", to, "-A"}, want: "-A/--all-namespaces only applies to --from-cluster"},
		{name: "missing CA file", args: []string{good, "--to", to, "--registry-ca-file", "/nonexistent/ca.crt"}, want: "--registry-ca-file /nonexistent/ca.crt"},
		{name: "CA file without PEM", args: []string{good, "--to", to, "--registry-ca-file", notPEM}, want: "holds no PEM certificate"},
		{name: "insecure registry with scheme", args: []string{good, "--to", to, "--insecure-registry", "http://x"}, want: "--insecure-registry"},
		{name: "missing image", args: []string{good, src.Host + "/app:v2", "--to", to}, want: "app:v2: source: not found"},
		{name: "collision", args: []string{good, src.Host + "/app:v1", "127.0.0.1:1/app:v1", "--to", to}, want: "destination collision"},
		{name: "unreachable destination", args: []string{good, "--to", "127.0.0.1:1"}, want: "destination registry 127.0.0.1:1"},
		{name: "missing pull secret", args: []string{good, "--to", to, "--pull-secret", "regcred"}, opts: []runOpt{withClient(client)}, want: `--pull-secret regcred: no secret "regcred" in namespace "default"`},
		{name: "push secret of the wrong type", args: []string{good, "--to", to, "--push-secret", "default/opaque"}, opts: []runOpt{withClient(client)}, want: "--push-secret default/opaque: secret type is \"Opaque\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proxy.Reset()
			r := runMirror(t, "", tc.args, tc.opts...)
			if r.code != cmdutil.ExitBadInput {
				t.Fatalf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, r.stderr)
			}
			if w := proxy.Writes(); w != 0 {
				t.Errorf("bad input wrote to the destination: %v", proxy.Counts())
			}
			if r.stdout != "" {
				t.Errorf("bad input printed a report:\n%s", r.stdout)
			}
		})
	}
}

func TestMirrorPushSecretTLSAndHtpasswd(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t, mirrortest.WithTLS(), mirrortest.WithHtpasswd("coral", "pa55word"))
	want := mirrortest.Push(t, src.Host+"/app:v1", mirrortest.Index(t, platforms, 16<<10, 1))
	client := fake.NewSimpleClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "regcred", Namespace: "mirror-ns"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: dst.DockerConfigJSON()},
	})

	tests := []struct {
		name     string
		args     []string
		env      string // DOCKER_CONFIG
		wantCode int
		want     string
	}{
		{name: "untrusted CA", args: []string{"--push-secret", "regcred", "-n", "mirror-ns"}, wantCode: 2, want: "hint: a registry's certificate did not verify: pass its CA with --registry-ca-file"},
		{name: "no credentials", args: []string{"--registry-ca-file", dst.CAFile}, wantCode: 2, want: "--pull-secret / --push-secret"},
		{name: "push secret", args: []string{"--registry-ca-file", dst.CAFile, "--push-secret", "mirror-ns/regcred"}, wantCode: 0},
		{name: "docker config", args: []string{"--registry-ca-file", dst.CAFile}, env: dst.DockerConfig(t), wantCode: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("DOCKER_CONFIG", tc.env)
			}
			args := append([]string{src.Host + "/app:v1", "--to", dst.Host, "-o", "json"}, tc.args...)
			r := runMirror(t, "", args, withClient(client))
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d:\n%s", r.code, tc.wantCode, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, r.stderr)
			}
			if strings.Contains(r.stderr+r.stdout, "pa55word") {
				t.Fatal("the password leaked into the output")
			}
			if tc.wantCode == 0 {
				if res := decodeReport(t, r).Results[0]; res.Digest != want.String() {
					t.Fatalf("result %+v, want digest %s", res, want)
				}
			}
		})
	}
}

func TestMirrorFailureExits1AndInterruptExits130(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	mirrortest.Push(t, src.Host+"/app:good", mirrortest.Image(t, "linux/amd64", 1024, 1))
	mirrortest.Push(t, src.Host+"/app:bad", mirrortest.Image(t, "linux/amd64", 2048, 1))
	mirrortest.Push(t, src.Host+"/app:fresh", mirrortest.Image(t, "linux/amd64", 4096, 1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proxy := mirrortest.NewProxy(t, dst, func(r *http.Request) (int, http.Header, bool) {
		switch {
		case r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/manifests/bad"):
			return http.StatusBadRequest, nil, true
		case r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "/interrupt/"):
			cancel()
		}
		return 0, nil, false
	})

	r := runMirror(t, "", []string{src.Host + "/app:good", src.Host + "/app:bad", "--to", proxy.Host, "-o", "json"})
	if r.code != cmdutil.ExitFailed {
		t.Fatalf("exit %d, want 1:\n%s", r.code, r.stderr)
	}
	rep := decodeReport(t, r)
	if rep.Summary.Copied != 1 || rep.Summary.Failed != 1 || rep.Results[1].Message == "" {
		t.Fatalf("report %+v", rep)
	}
	if !strings.Contains(r.stderr, "failed  "+src.Host+"/app:bad") {
		t.Errorf("stderr should name the failure:\n%s", r.stderr)
	}

	// A fresh image: app:good's blobs would be mounted from the repository
	// the first run wrote, with no upload to interrupt.
	r = runMirror(t, "", []string{src.Host + "/app:fresh", "--to", proxy.Host + "/interrupt", "-o", "json"}, withContext(ctx))
	if r.code != cmdutil.ExitInterrupted {
		t.Fatalf("exit %d, want 130:\n%s", r.code, r.stderr)
	}
	if rep := decodeReport(t, r); rep.Summary.Failed != 1 {
		t.Fatalf("report %+v", rep)
	}
}

func TestMirrorFromCluster(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	want := mirrortest.Push(t, src.Host+"/web:1", mirrortest.Index(t, platforms, 16<<10, 1))
	mirrortest.Push(t, src.Host+"/sidecar:1", mirrortest.Image(t, "linux/amd64", 1024, 1))
	client := fake.NewSimpleClientset(
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "prod"},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: src.Host + "/web:1"}, {Name: "side", Image: src.Host + "/sidecar:1"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: "dev"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: src.Host + "/missing:1"}}}},
	)
	r := runMirror(t, "", []string{"--from-cluster", "-n", "prod", "--to", dst.Host + "/prod", "-o", "json"}, withClient(client))
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	rep := decodeReport(t, r)
	if rep.Summary.Copied != 2 || rep.Results[0].Digest != want.String() {
		t.Fatalf("report %+v", rep)
	}

	r = runMirror(t, "", []string{"--from-cluster", "-A", "--to", dst.Host + "/all"}, withClient(client))
	if r.code != 2 || !strings.Contains(r.stderr, src.Host+"/missing:1: source: not found") {
		t.Fatalf("-A must see the dev namespace's missing image: exit %d\n%s", r.code, r.stderr)
	}
}

func TestMirrorFromClusterUsesTheWorkloadsPullSecrets(t *testing.T) {
	private := mirrortest.Start(t, mirrortest.WithHtpasswd("puller", "s3cret"))
	dst := mirrortest.Start(t)
	login := remote.WithAuth(&authn.Basic{Username: "puller", Password: "s3cret"})
	want := mirrortest.Push(t, private.Host+"/team/api:v3", mirrortest.Image(t, "linux/amd64", 4096, 1), login)
	client := fake.NewSimpleClientset(
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "team-registry", Namespace: "team"},
			Type:       corev1.SecretTypeDockerConfigJson,
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: private.DockerConfigJSON()},
		},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "team"},
			Spec: corev1.PodSpec{
				ImagePullSecrets: []corev1.LocalObjectReference{{Name: "team-registry"}, {Name: "gone"}},
				Containers:       []corev1.Container{{Name: "api", Image: private.Host + "/team/api:v3"}},
			}},
	)
	r := runMirror(t, "", []string{"--from-cluster", "-n", "team", "--to", dst.Host + "/{registry}", "-o", "json"}, withClient(client))
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.stderr)
	}
	res := decodeReport(t, r).Results[0]
	wantDst := dst.Host + "/" + strings.ReplaceAll(private.Host, ":", "_") + "/team/api:v3"
	if res.Status != mirrorlib.StatusCopied || res.Digest != want.String() || res.Destination != wantDst {
		t.Fatalf("result %+v, want Copied to %s", res, wantDst)
	}
	if !strings.Contains(r.stderr, `warning: --from-cluster: skipping imagePullSecrets team/gone: no secret "gone"`) {
		t.Errorf("an unreadable pull secret must be a warning:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr+r.stdout, "s3cret") {
		t.Fatal("the password leaked")
	}
}

func TestHelpTeaches(t *testing.T) {
	cmd := NewCmdMirror(genericclioptions.NewConfigFlags(true), genericiooptions.NewTestIOStreamsDiscard())
	for _, want := range []string{"kubectl coral mirror -f images.txt", "--from-cluster --context prod-us -A", "--dry-run"} {
		if !strings.Contains(cmd.Example, want) {
			t.Errorf("Example lacks %q", want)
		}
	}
	if !cmd.SilenceUsage || cmd.RunE == nil {
		t.Error("want RunE and SilenceUsage")
	}
	var sb strings.Builder
	_ = json.NewEncoder(&sb).Encode(cmd.Flags().Lookup("to").Usage)
	if !strings.Contains(sb.String(), "Required") {
		t.Error("--to must say it is required")
	}
}
