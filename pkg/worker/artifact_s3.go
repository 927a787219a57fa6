package worker

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/coral-dev/coral/pkg/report"
)

// S3Config says where and as whom to reach S3 or an S3-compatible store.
type S3Config struct {
	// Endpoint of an S3-compatible store ("" = AWS).
	Endpoint string
	Region   string
	// PathStyle addresses buckets as endpoint/bucket (most S3-compatible stores).
	PathStyle bool
	// Static credentials; empty means the SDK's default chain (env, IRSA,
	// instance profile).
	AccessKeyID, SecretAccessKey, SessionToken string
	// Retries for transient errors (the SDK's retryer).
	Retries int
	// HTTPClient, when set, is used for every request (tests, custom CAs).
	HTTPClient *http.Client
}

// LoadS3Credentials reads credentials from a mounted secret directory:
// files AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optional AWS_SESSION_TOKEN.
func LoadS3Credentials(dir string, c *S3Config) error {
	if dir == "" {
		return nil
	}
	read := func(n string, required bool) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if errors.Is(err, os.ErrNotExist) && !required {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("reading the S3 secret: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	var err error
	if c.AccessKeyID, err = read("AWS_ACCESS_KEY_ID", true); err != nil {
		return err
	}
	if c.SecretAccessKey, err = read("AWS_SECRET_ACCESS_KEY", true); err != nil {
		return err
	}
	c.SessionToken, err = read("AWS_SESSION_TOKEN", false)
	return err
}

// S3Fetcher downloads s3:// sources: one object (ranged parallel GETs for
// large ones) or every object under a prefix.
type S3Fetcher struct {
	client *s3.Client
	// PartSize and Concurrency shape ranged downloads of large objects.
	PartSize    int64
	Concurrency int
}

// NewS3Fetcher builds a client for cfg.
func NewS3Fetcher(ctx context.Context, cfg S3Config) (*S3Fetcher, error) {
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(region),
		awsconfig.WithRetryMaxAttempts(cfg.Retries + 1),
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, awsconfig.WithHTTPClient(cfg.HTTPClient))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("configuring S3: %w", err)
	}
	client := s3.NewFromConfig(ac, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Verify what the store offers, but do not require checksums it may not keep.
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	return &S3Fetcher{client: client, PartSize: 16 << 20, Concurrency: 4}, nil
}

// explainS3 turns SDK errors into messages that say what to fix.
func explainS3(err error, what string) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "InvalidToken", "ExpiredToken":
			return fmt.Errorf("unauthorized: %s: %s (%s); check the credentials in --s3-secret", what, ae.ErrorCode(), ae.ErrorMessage())
		case "NoSuchKey", "NotFound":
			return fmt.Errorf("not found: %s", what)
		case "NoSuchBucket":
			return fmt.Errorf("not found: %s: the bucket does not exist", what)
		}
		return fmt.Errorf("%s: %s: %s", what, ae.ErrorCode(), ae.ErrorMessage())
	}
	return fmt.Errorf("%s: %w", what, err)
}

type s3Object struct {
	f           *S3Fetcher
	bucket, key string
	head        *s3.HeadObjectOutput
}

func splitS3(u *url.URL) (string, string) { return u.Host, strings.TrimPrefix(u.Path, "/") }

func (f *S3Fetcher) object(u *url.URL, _ FetchOptions) remoteObject {
	b, k := splitS3(u)
	return &s3Object{f: f, bucket: b, key: k}
}

func (o *s3Object) what() string { return fmt.Sprintf("s3://%s/%s", o.bucket, o.key) }

func (o *s3Object) stat(ctx context.Context) (*s3.HeadObjectOutput, error) {
	if o.head != nil {
		return o.head, nil
	}
	h, err := o.f.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &o.bucket, Key: &o.key, ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		return nil, explainS3(err, o.what())
	}
	o.head = h
	return h, nil
}

func (o *s3Object) unchanged(ctx context.Context, prev ManifestItem) (bool, error) {
	h, err := o.stat(ctx)
	if err != nil {
		return false, err
	}
	return prev.ETag != "" && aws.ToString(h.ETag) == prev.ETag && aws.ToInt64(h.ContentLength) == prev.SizeBytes, nil
}

// expectedSHA256 is the object's full-object SHA-256 when the store keeps
// one (not for multipart composites, which end in "-N").
func (o *s3Object) expectedSHA256(ctx context.Context) (string, error) {
	h, err := o.stat(ctx)
	if err != nil {
		return "", err
	}
	c := aws.ToString(h.ChecksumSHA256)
	if c == "" || strings.Contains(c, "-") || h.ChecksumType == types.ChecksumTypeComposite {
		return "", nil
	}
	raw, err := base64.StdEncoding.DecodeString(c)
	if err != nil || len(raw) != 32 {
		return "", nil
	}
	return hex.EncodeToString(raw), nil
}

// download streams small objects through h; large ones are fetched as
// ranged parts in parallel (then the caller hashes the file).
func (o *s3Object) download(ctx context.Context, f *os.File, h hash.Hash) (string, bool, error) {
	head, err := o.stat(ctx)
	if err != nil {
		return "", false, err
	}
	size := aws.ToInt64(head.ContentLength)
	etag := aws.ToString(head.ETag)
	if size <= o.f.PartSize || o.f.Concurrency <= 1 {
		out, err := o.f.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &o.bucket, Key: &o.key, IfMatch: head.ETag})
		if err != nil {
			return "", false, explainS3(err, o.what())
		}
		defer out.Body.Close()
		n, err := io.CopyBuffer(io.MultiWriter(fsWriter{f}, h), out.Body, make([]byte, 1<<20))
		if err != nil {
			return "", false, fmt.Errorf("reading %s: %w", o.what(), err)
		}
		if n != size {
			return "", false, fmt.Errorf("reading %s: got %d bytes, want %d", o.what(), n, size)
		}
		return etag, true, nil
	}
	if err := f.Truncate(size); err != nil {
		return "", false, err
	}
	// Parts land out of order; a hasher follows behind, reading each part
	// back (from the page cache) as soon as it and all before it are in, so
	// verifying overlaps the download instead of following it.
	var parts []part
	for off := int64(0); off < size; off += o.f.PartSize {
		parts = append(parts, part{off: off, end: min(off+o.f.PartSize, size) - 1, done: make(chan struct{})})
	}
	work := make(chan *part)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	for i := 0; i < o.f.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for p := range work {
				if err := o.getRange(pctx, f, head.ETag, p.off, p.end, buf); err != nil {
					fail(err)
					continue
				}
				close(p.done)
			}
		}()
	}
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		buf := make([]byte, 1<<20)
		for i := range parts {
			select {
			case <-parts[i].done:
			case <-pctx.Done():
				return
			}
			r := io.NewSectionReader(f, parts[i].off, parts[i].end-parts[i].off+1)
			if _, err := io.CopyBuffer(h, r, buf); err != nil {
				fail(fmt.Errorf("verifying %s: %w", o.what(), err))
				return
			}
		}
	}()
	for i := range parts {
		select {
		case work <- &parts[i]:
		case <-pctx.Done():
		}
	}
	close(work)
	wg.Wait()
	<-hashed
	if firstErr != nil {
		return "", false, firstErr
	}
	return etag, true, nil
}

type part struct {
	off, end int64
	done     chan struct{}
}

func (o *s3Object) getRange(ctx context.Context, f *os.File, etag *string, off, end int64, buf []byte) error {
	rng := fmt.Sprintf("bytes=%d-%d", off, end)
	out, err := o.f.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &o.bucket, Key: &o.key, Range: &rng, IfMatch: etag})
	if err != nil {
		return explainS3(err, o.what())
	}
	defer out.Body.Close()
	w := io.NewOffsetWriter(f, off)
	n, err := io.CopyBuffer(fsWriter{w}, out.Body, buf)
	if err != nil {
		return fmt.Errorf("reading %s: %w", o.what(), err)
	}
	if n != end-off+1 {
		return fmt.Errorf("reading %s %s: got %d bytes", o.what(), rng, n)
	}
	return nil
}

// fetchPrefix brings every object under an s3://bucket/prefix/ into the
// directory, keeping the key layout below the prefix. The item's digest is
// the digest of the sorted list of object digests.
func (f *S3Fetcher) fetchPrefix(ctx context.Context, u *url.URL, src ArtifactSource, m *Manifest, o FetchOptions, logf func(string, ...any)) report.ItemResult {
	bucket, prefix := splitS3(u)
	files := map[string]string{}
	var total int64
	downloaded := false
	p := s3.NewListObjectsV2Paginator(f.client, &s3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return failed(explainS3(err, "listing "+src.URL).Error())
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			rel := strings.TrimPrefix(key, prefix)
			if rel == "" || strings.HasSuffix(rel, "/") {
				continue
			}
			if _, err := safeJoin(o.Dir, rel); err != nil || strings.HasPrefix(filepath.Base(rel), ".coral-") {
				return failed(fmt.Sprintf("object %q: its name cannot be a file in the artifact directory", key))
			}
			objURL := fmt.Sprintf("s3://%s/%s", bucket, key)
			prev, had := m.Items[objURL]
			objSrc := ArtifactSource{URL: objURL}
			res := fetchObject(ctx, &s3Object{f: f, bucket: bucket, key: key}, objSrc, rel, m, FetchOptions{Dir: o.Dir}, prev, had)
			if res.Status == report.StatusFailed {
				return failed(fmt.Sprintf("%s: %s", key, res.Message))
			}
			if res.Status == report.StatusDownloaded {
				downloaded = true
			}
			files[rel] = strings.TrimPrefix(res.Digest, "sha256:")
			total += res.SizeBytes
			logf("%s %s", objURL, res.Status)
		}
	}
	if len(files) == 0 {
		return failed(fmt.Sprintf("not found: no object under %s", src.URL))
	}
	st := report.StatusPresent
	if downloaded {
		st = report.StatusDownloaded
	}
	return report.ItemResult{Status: st, Digest: "sha256:" + treeDigest(files), SizeBytes: total, Message: fmt.Sprintf("%d objects", len(files))}
}
