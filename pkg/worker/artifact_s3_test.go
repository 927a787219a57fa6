package worker

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/coral-dev/coral/internal/testservers"
	"github.com/coral-dev/coral/pkg/report"
)

// versitygw is a real S3-compatible server that checks SigV4 signatures.
// The tests start it on a free loopback port. hack/install-test-servers.sh
// installs it (make test runs it); without it the tests fail, unless
// CORAL_SKIP_S3=1 asks to skip them.
func versitygwBinary(t *testing.T) string {
	t.Helper()
	return testservers.Versitygw(t)
}

const (
	s3Access = "coral-test-access"
	s3Secret = "coral-test-secret-key"
)

// startS3 starts versitygw and returns its endpoint.
func startS3(t *testing.T) string {
	t.Helper()
	bin := versitygwBinary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	root := t.TempDir()
	cmd := exec.Command(bin, "--access", s3Access, "--secret", s3Secret, "--port", addr, "posix", root)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "http://" + addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("versitygw did not start: %s", logs.String())
	return ""
}

func s3Client(t *testing.T, endpoint, access, secret string) *S3Fetcher {
	t.Helper()
	f, err := NewS3Fetcher(context.Background(), S3Config{Endpoint: endpoint, PathStyle: true, AccessKeyID: access, SecretAccessKey: secret, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func put(t *testing.T, f *S3Fetcher, bucket, key string, data []byte, withChecksum bool) {
	t.Helper()
	in := &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}
	if withChecksum {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmSha256
	}
	if _, err := f.client.PutObject(context.Background(), in); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func TestFetchS3(t *testing.T) {
	ep := startS3(t)
	admin := s3Client(t, ep, s3Access, s3Secret)
	ctx := context.Background()
	if _, err := admin.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("models")}); err != nil {
		t.Fatal(err)
	}
	small := randomBytes(100 << 10)
	large := randomBytes(5<<20 + 123)
	put(t, admin, "models", "bert/model.bin", small, true)
	put(t, admin, "models", "llama/part-1.bin", large, false)
	put(t, admin, "models", "llama/sub/part-2.bin", small, false)

	dir := t.TempDir()
	f := s3Client(t, ep, s3Access, s3Secret)
	f.PartSize = 1 << 20 // exercise ranged parallel GETs
	o := FetchOptions{Dir: dir, Retries: 1, Backoff: time.Millisecond, Timeout: 30 * time.Second, S3: f}

	t.Run("object, sha256 given", func(t *testing.T) {
		res := Fetch(ctx, []ArtifactSource{{URL: "s3://models/llama/part-1.bin", SHA256: sum(large)}}, o).Items
		if res[0].Status != report.StatusDownloaded || res[0].Digest != "sha256:"+sum(large) {
			t.Fatalf("%+v", res[0])
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "part-1.bin")); !bytes.Equal(b, large) {
			t.Fatal("content differs")
		}
		res = Fetch(ctx, []ArtifactSource{{URL: "s3://models/llama/part-1.bin", SHA256: sum(large)}}, o).Items
		if res[0].Status != report.StatusPresent {
			t.Fatalf("rerun: %+v", res[0])
		}
	})

	t.Run("store's own checksum is verified", func(t *testing.T) {
		u, _ := url.Parse("s3://models/bert/model.bin")
		want, err := f.object(u, o).expectedSHA256(ctx)
		if err != nil || want != sum(small) {
			t.Fatalf("checksum from the store = %q, %v; want %s", want, err, sum(small))
		}
		res := Fetch(ctx, []ArtifactSource{{URL: "s3://models/bert/model.bin"}}, o).Items
		if res[0].Status != report.StatusDownloaded || res[0].Digest != "sha256:"+sum(small) {
			t.Fatalf("%+v", res[0])
		}
	})

	t.Run("prefix", func(t *testing.T) {
		pdir := t.TempDir()
		po := o
		po.Dir = pdir
		res := Fetch(ctx, []ArtifactSource{{URL: "s3://models/llama/"}}, po).Items
		if res[0].Status != report.StatusDownloaded || res[0].SizeBytes != int64(len(large)+len(small)) {
			t.Fatalf("%+v", res[0])
		}
		if b, _ := os.ReadFile(filepath.Join(pdir, "sub", "part-2.bin")); !bytes.Equal(b, small) {
			t.Fatal("sub/part-2.bin differs")
		}
		again := Fetch(ctx, []ArtifactSource{{URL: "s3://models/llama/"}}, po).Items
		if again[0].Status != report.StatusPresent || again[0].Digest != res[0].Digest {
			t.Fatalf("rerun: %+v (first digest %s)", again[0], res[0].Digest)
		}
	})

	t.Run("wrong credentials", func(t *testing.T) {
		bad := s3Client(t, ep, s3Access, "not-the-secret")
		bo := o
		bo.S3 = bad
		bo.Dir = t.TempDir()
		res := Fetch(ctx, []ArtifactSource{{URL: "s3://models/bert/model.bin"}}, bo).Items
		if res[0].Status != report.StatusFailed || !strings.Contains(res[0].Message, "unauthorized") || !strings.Contains(res[0].Message, "--s3-secret") {
			t.Fatalf("%+v", res[0])
		}
	})

	t.Run("missing object", func(t *testing.T) {
		res := Fetch(ctx, []ArtifactSource{{URL: "s3://models/nope.bin"}, {URL: "s3://nobucket/x"}}, o).Items
		for _, r := range res {
			if r.Status != report.StatusFailed || !strings.Contains(r.Message, "not found") {
				t.Errorf("%+v", r)
			}
		}
	})
}

func TestLoadS3Credentials(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "AWS_ACCESS_KEY_ID"), []byte("AK\n"), 0o400)
	os.WriteFile(filepath.Join(dir, "AWS_SECRET_ACCESS_KEY"), []byte("SK"), 0o400)
	var c S3Config
	if err := LoadS3Credentials(dir, &c); err != nil || c.AccessKeyID != "AK" || c.SecretAccessKey != "SK" || c.SessionToken != "" {
		t.Fatalf("%+v %v", c, err)
	}
	os.Remove(filepath.Join(dir, "AWS_SECRET_ACCESS_KEY"))
	if err := LoadS3Credentials(dir, &c); err == nil {
		t.Fatal("a missing secret key must be an error")
	}
}
