package prefetch

import (
	"context"
	"strings"
	"testing"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func runArtifacts(t *testing.T, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, "", func(streams genericiooptions.IOStreams, client *fake.Clientset) *cobra.Command {
		o := NewArtifactsOptions(genericclioptions.NewConfigFlags(false), streams)
		o.client = withNodeList(client)
		return newCmdArtifacts(o)
	}, args...)
}

func TestArtifactsBadInputCreatesNothing(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no sources", []string{"--name", "bert"}, "no sources given"},
		{"no name", []string{"https://m.example/bert.bin"}, "--name is required"},
		{"unsafe name", []string{"https://m.example/bert.bin", "--name", "../etc"}, "artifact name"},
		{"unsupported scheme", []string{"ftp://m.example/bert.bin", "--name", "bert"}, `unsupported scheme "ftp"`},
		{"malformed URL", []string{"https://m.example/%zz", "--name", "bert"}, "not a valid URL"},
		{"URL without a file", []string{"https://m.example/", "--name", "bert"}, "names no file"},
		{"sha256 not hex", []string{"https://m.example/bert.bin", "--name", "bert", "--sha256", "xyz"}, "64 hex digits"},
		{"sha256 count mismatch", []string{"https://m.example/a.bin", "https://m.example/b.bin", "--name", "bert", "--sha256", sum}, "given 1 times for 2 sources"},
		{"sha256 with an s3 prefix", []string{"s3://b/p/", "--name", "bert", "--sha256", sum}, "is a prefix"},
		{"extract with an s3 prefix", []string{"s3://b/p/", "--name", "bert", "--extract"}, "is a prefix"},
		{"s3 without bucket", []string{"s3:///k", "--name", "bert"}, "no bucket"},
		{"two sources, one file name", []string{"https://a.example/x.bin", "https://b.example/x.bin", "--name", "bert"}, "both be saved"},
		{"relative dest root", []string{"https://m.example/bert.bin", "--name", "bert", "--dest-root", "var/lib"}, "--dest-root"},
		{"bad s3 endpoint", []string{"s3://b/k", "--name", "bert", "--s3-endpoint", "minio:9000"}, "--s3-endpoint"},
		{"missing s3 secret", []string{"s3://b/k", "--name", "bert", "--s3-secret", "nope"}, "no such secret"},
		{"malformed s3 secret", []string{"s3://b/k", "--name", "bert", "--s3-secret", "opaque"}, "AWS_ACCESS_KEY_ID"},
		{"missing header secret", []string{"https://m.example/bert.bin", "--name", "bert", "--header-secret", "nope"}, "no such secret"},
		{"password in a source", []string{"https://user:S3CR3T@m.example/bert.bin", "--name", "bert"}, "user name or password"},
		{"token in a source's user", []string{"https://S3CR3T@m.example/bert.bin", "--name", "bert"}, "--header-secret"},
		{"password in the checksum URL", []string{"https://m.example/bert.bin", "--name", "bert", "--checksum-url", "https://u:S3CR3T@m.example/SUMS"}, "user name or password"},
		{"password in the s3 endpoint", []string{"s3://b/k", "--name", "bert", "--s3-endpoint", "https://u:S3CR3T@minio:9000"}, "--s3-secret"},
		{"query on an s3 source", []string{"s3://b/k?versionId=S3CR3T", "--name", "bert"}, "no query"},
		{"selector matches no node", []string{"https://m.example/bert.bin", "--name", "bert", "-l", "pool=gpu"}, "no node matched"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runArtifacts(t, tt.args...)
			if cmdutil.Code(r.err) != cmdutil.ExitBadInput || !strings.Contains(r.err.Error(), tt.want) {
				t.Fatalf("err = %v (exit %d), want exit 2 with %q", r.err, cmdutil.Code(r.err), tt.want)
			}
			if len(r.writes) > 0 {
				t.Fatalf("bad input wrote to the cluster: %v", r.writes)
			}
			if strings.Contains(r.err.Error()+r.stdout+r.stderr, "S3CR3T") {
				t.Fatalf("the message repeats a secret: %v", r.err)
			}
		})
	}
}

func TestArtifactsDryRun(t *testing.T) {
	r := runArtifacts(t, "https://m.example/bert.tar.gz", "--name", "bert", "--extract", "--sha256", strings.Repeat("0", 64), "--nodes", "web-2", "--dry-run=client", "-o", "yaml")
	if r.err != nil || len(r.writes) > 0 {
		t.Fatalf("err %v, writes %v", r.err, r.writes)
	}
	for _, want := range []string{"nodeName: web-2", "path: /var/lib/coral/artifacts/bert", "type: DirectoryOrCreate", "--extract", "--source=https://m.example/bert.tar.gz=" + strings.Repeat("0", 64)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry-run output lacks %q", want)
		}
	}
	if strings.Contains(r.stdout, "cri.sock") {
		t.Error("an artifact worker must not mount the runtime socket")
	}
}

// A pre-signed URL's query stays out of the Jobs: it goes to the worker
// through the run's query secret, mounted as files.
func TestArtifactsQueryStaysOutOfJobs(t *testing.T) {
	r := runArtifacts(t, "https://b.s3.amazonaws.com/m/bert.bin?X-Amz-Signature=S3CR3T&X-Amz-Expires=600", "--name", "bert",
		"--checksum-url", "https://b.s3.amazonaws.com/m/SUMS?X-Amz-Signature=S3CR3T2", "--nodes", "web-1", "--dry-run=client", "-o", "yaml")
	if r.err != nil || len(r.writes) > 0 {
		t.Fatalf("err %v, writes %v", r.err, r.writes)
	}
	if strings.Contains(r.stdout+r.stderr, "S3CR3T") {
		t.Fatalf("the Job holds the URL's query:\n%s", r.stdout)
	}
	for _, want := range []string{"--source=https://b.s3.amazonaws.com/m/bert.bin", "--checksum-url=https://b.s3.amazonaws.com/m/SUMS", "--query-dir=/var/run/coral/queries", "-queries"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry-run output lacks %q", want)
		}
	}
}

// runArtifactsPersist runs `prefetch artifacts args…` with a fake cluster
// whose API server knows Coral's types; controller, when set, plays the
// controller's part once the object exists.
func runArtifactsPersist(t *testing.T, controller func(cl *PersistClient), args ...string) (cmdResult, *PersistClient) {
	t.Helper()
	// An empty scheme: the fake keeps Coral's objects unstructured, as the
	// API server sends them.
	lists := map[schema.GroupVersionResource]string{}
	for res, kind := range persistKinds {
		lists[coralv1.GroupVersion.WithResource(res)] = kind + "List"
	}
	cl := newPersistClientFor(dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), lists))
	if controller != nil {
		go controller(cl)
	}
	r := runCmd(t, "", func(streams genericiooptions.IOStreams, client *fake.Clientset) *cobra.Command {
		o := NewArtifactsOptions(genericclioptions.NewConfigFlags(false), streams)
		o.client = withNodeList(client)
		o.persistClient = cl
		return newCmdArtifacts(o)
	}, args...)
	return r, cl
}

func TestArtifactsPersistBadInput(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--persist", "bert", "--dry-run=client"}, "cannot be combined with --dry-run"},
		{[]string{"--wait=false"}, "only apply to --persist"},
		{[]string{"--wait-timeout", "5m"}, "only apply to --persist"},
		{[]string{"--persist", "Not_A_Name"}, `--persist "Not_A_Name"`},
		{[]string{"--persist", "bert", "--keep-jobs"}, "--keep-jobs"},
		{[]string{"--persist", "bert", "--worker-image-pull-secret", "reg"}, "--worker-image-pull-secret"},
	} {
		r, cl := runArtifactsPersist(t, nil, append([]string{"https://m.example/bert.bin", "--name", "bert"}, tt.args...)...)
		if cmdutil.Code(r.err) != cmdutil.ExitBadInput || !strings.Contains(r.err.Error(), tt.want) {
			t.Errorf("%v: err = %v (exit %d), want exit 2 with %q", tt.args, r.err, cmdutil.Code(r.err), tt.want)
		}
		list, err := cl.resource(artifactPrefetches, "").List(context.Background(), metav1.ListOptions{})
		if err != nil || len(list.Items) > 0 || len(r.writes) > 0 {
			t.Errorf("%v: bad input wrote %d objects, %v (%v)", tt.args, len(list.Items), r.writes, err)
		}
	}
	// A query would be stored in the object, readable by whoever reads it.
	r, _ := runArtifactsPersist(t, nil, "https://m.example/bert.bin?X-Amz-Signature=S3CR3T", "--name", "bert", "--persist", "bert")
	if cmdutil.Code(r.err) != cmdutil.ExitBadInput || !strings.Contains(r.err.Error(), "has a query") || strings.Contains(r.err.Error(), "S3CR3T") {
		t.Errorf("pre-signed URL: err = %v, want exit 2 without the secret", r.err)
	}
}

// --persist --wait=false writes the ArtifactPrefetch the flags describe,
// and no Job.
func TestArtifactsPersistWritesTheObject(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	r, cl := runArtifactsPersist(t, nil, "https://m.example/models/bert.tar.gz", "--name", "bert", "--sha256", sum, "--extract",
		"-l", "pool=gpu", "--persist", "bert-gpu", "--wait=false", "--timeout", "2h", "--source-timeout", "20m", "--max-nodes-in-flight", "7")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.writes) > 0 {
		t.Errorf("--persist ran something itself: %v", r.writes)
	}
	if !strings.Contains(r.stderr, "artifactprefetch.coral.dev/bert-gpu written in namespace default") {
		t.Errorf("stderr: %s", r.stderr)
	}
	got := coralv1.ArtifactPrefetch{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "bert-gpu"}}
	if err := cl.get(context.Background(), artifactPrefetches, &got); err != nil {
		t.Fatal(err)
	}
	sp := got.Spec
	if sp.Name != "bert" || len(sp.Sources) != 1 || sp.Sources[0].URL != "https://m.example/models/bert.tar.gz" || sp.Sources[0].SHA256 != sum || !sp.Extract {
		t.Errorf("spec: %+v", sp)
	}
	if sp.Nodes.Selector == nil || sp.Nodes.Selector.MatchLabels["pool"] != "gpu" || sp.S3 != nil || sp.Root != "/var/lib/coral/artifacts" {
		t.Errorf("spec nodes/s3/root: %+v", sp)
	}
	if sp.NodeTimeout.Duration != 2*time.Hour || sp.SourceTimeout.Duration != 20*time.Minute || sp.MaxNodesInFlight != 7 {
		t.Errorf("spec run settings: %+v", sp)
	}
}

// --persist waits for the controller and reports from its records, with
// the exit code of a one-shot run.
func TestArtifactsPersistWaitsAndReports(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	url := "https://m.example/bert.bin"
	controller := func(state string) func(*PersistClient) {
		return func(cl *PersistClient) {
			ctx := context.Background()
			obj := coralv1.ArtifactPrefetch{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "bert"}}
			for cl.get(ctx, artifactPrefetches, &obj) != nil {
				time.Sleep(50 * time.Millisecond)
			}
			for i, node := range []string{"web-1", "web-2"} {
				status := "Downloaded"
				if i == 1 && state == "Failed" {
					status = "Failed"
				}
				rec := &coralv1.PrefetchNode{
					ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "art.bert." + node, Labels: map[string]string{"coral.dev/artifactprefetch": "bert"}},
					Prefetch:   coralv1.PrefetchRef{Kind: "ArtifactPrefetch", Name: "bert"}, Node: node,
					Results: []coralv1.NodeItem{{Ref: url, Digest: "sha256:" + sum, Status: status}},
				}
				if err := cl.write(ctx, prefetchNodesRes, rec, false); err != nil {
					panic(err)
				}
			}
			ready := metav1.ConditionTrue
			if state == "Failed" {
				ready = metav1.ConditionFalse
			}
			obj.Status.ObservedGeneration = obj.Generation
			obj.Status.Conditions = []metav1.Condition{
				{Type: coralv1.ConditionReady, Status: ready, Reason: "X", LastTransitionTime: metav1.Now()},
				{Type: coralv1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: "Idle", LastTransitionTime: metav1.Now()},
			}
			u, err := toUnstructured(artifactPrefetches, &obj)
			if err == nil {
				_, err = cl.resource(artifactPrefetches, "default").UpdateStatus(ctx, u, metav1.UpdateOptions{})
			}
			if err != nil {
				panic(err)
			}
		}
	}
	r, _ := runArtifactsPersist(t, controller("Ready"), url, "--name", "bert", "--sha256", sum, "--persist", "bert", "-o", "json")
	if r.err != nil {
		t.Fatalf("err = %v\n%s", r.err, r.stderr)
	}
	if !strings.Contains(r.stdout, `"kind": "ArtifactReport"`) || !strings.Contains(r.stdout, `"downloaded": 2`) || !strings.Contains(r.stdout, `"source": "`+url+`"`) {
		t.Errorf("report:\n%s", r.stdout)
	}
	r, _ = runArtifactsPersist(t, controller("Failed"), url, "--name", "bert", "--sha256", sum, "--persist", "bert", "-o", "json")
	if cmdutil.Code(r.err) != cmdutil.ExitFailed || !strings.Contains(r.stdout, `"failed": 1`) {
		t.Errorf("a failed node: err = %v (exit %d), want 1\n%s", r.err, cmdutil.Code(r.err), r.stdout)
	}
}
