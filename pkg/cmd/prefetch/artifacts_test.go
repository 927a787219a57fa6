package prefetch

import (
	"strings"
	"testing"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
)

func runArtifacts(t *testing.T, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, "", func(streams genericiooptions.IOStreams, client *fake.Clientset) *cobra.Command {
		o := NewArtifactsOptions(genericclioptions.NewConfigFlags(false), streams)
		o.client = client
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
