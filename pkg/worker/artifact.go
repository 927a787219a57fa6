package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/coral-dev/coral/pkg/artifact/artifacturl"
	"github.com/coral-dev/coral/pkg/report"
)

// Artifacts land in one directory per name. In it, each source's file (or
// extracted tree) and a manifest that records, per source, what is there.
const (
	// ManifestFile records source, digest, size and time of each item.
	ManifestFile = ".coral-manifest.json"
	// tmpPrefix marks files being written; never visible under a final name.
	tmpPrefix = ".coral-tmp-"
)

// ArtifactSource is one source to fetch, with an optional expected sha256 (hex).
type ArtifactSource struct {
	// URL is the public URL: no user info, no query. It is what the worker
	// logs, reports and records in the manifest.
	URL    string
	SHA256 string
	// Query is the URL's query, sent with the request and nowhere else
	// (pre-signed URLs keep their credentials there).
	Query string
}

// requestURL is the URL to request: the public URL and its query.
func (s ArtifactSource) requestURL() string {
	if s.Query != "" {
		return s.URL + "?" + s.Query
	}
	return s.URL
}

// ParseArtifactSource parses the worker's --source value: URL or
// URL=SHA256. A query in the URL is split off into Query (a digest cannot
// follow a query: a signature in it may look like one; queries come through
// --query-dir). URLs with a user name or password are refused.
func ParseArtifactSource(s string) (ArtifactSource, error) {
	raw, sum := s, ""
	if i := strings.LastIndex(s, "="); i > 0 && !strings.Contains(s, "?") && isHex64(s[i+1:]) {
		raw, sum = s[:i], s[i+1:]
	}
	src, err := artifacturl.Parse(raw)
	if err != nil {
		return ArtifactSource{}, fmt.Errorf("--source: %w", err)
	}
	return ArtifactSource{URL: src.Public, Query: src.Query, SHA256: strings.ToLower(sum)}, nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// FetchOptions tune Fetch.
type FetchOptions struct {
	// Dir is the artifact's directory on the node (mounted into the worker).
	Dir string
	// Extract unpacks tar / tar.gz sources into a directory named after the archive.
	Extract bool
	// Retries for transient failures (5xx, 429, dropped connections).
	Retries int
	// Backoff is the first retry delay (doubles).
	Backoff time.Duration
	// Timeout bounds one source, retries included.
	Timeout time.Duration
	// HTTP fetches http(s) sources.
	HTTP *HTTPFetcher
	// S3 fetches s3:// sources.
	S3 *S3Fetcher
	// Logf receives progress lines (never credentials). Nil discards.
	Logf func(format string, args ...any)
}

// Manifest is the record of an artifact directory.
type Manifest struct {
	Items map[string]ManifestItem `json:"items"`
}

// ManifestItem is one source's record.
type ManifestItem struct {
	// Path is the file (or extracted directory) relative to the artifact directory.
	Path      string    `json:"path"`
	SHA256    string    `json:"sha256"`
	SizeBytes int64     `json:"sizeBytes"`
	ETag      string    `json:"etag,omitempty"`
	Extracted bool      `json:"extracted,omitempty"`
	Time      time.Time `json:"time"`
}

// ReadManifest reads dir's manifest; a missing one is empty.
func ReadManifest(dir string) (*Manifest, error) {
	m := &Manifest{Items: map[string]ManifestItem{}}
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("reading %s: %w", ManifestFile, err)
	}
	if m.Items == nil {
		m.Items = map[string]ManifestItem{}
	}
	return m, nil
}

func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, ManifestFile, b)
}

// writeFileAtomic writes data to dir/name through a synced temp file and a rename.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return explainFS(err, dir)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return explainFS(err, dir)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return explainFS(err, dir)
	}
	if err := f.Close(); err != nil {
		return explainFS(err, dir)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return explainFS(err, dir)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// explainFS turns file-system errors into messages that say what is wrong.
func explainFS(err error, dir string) error {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("no space left on the node's disk under %s: %w", dir, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EROFS):
		return fmt.Errorf("cannot write to %s on the node: %w", dir, err)
	}
	return err
}

// removeStale deletes temp files left by a worker that died mid-download.
func removeStale(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// Fetch brings every source into o.Dir and returns one result per source.
// The manifest is updated after each success; a failure leaves whatever was
// there before intact.
func Fetch(ctx context.Context, sources []ArtifactSource, o FetchOptions) *report.WorkerReport {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	r := &report.WorkerReport{Version: report.WireVersion, Items: make([]report.ItemResult, len(sources))}
	fail := func(i int, msg string) {
		r.Items[i] = report.ItemResult{Item: sources[i].URL, Status: report.StatusFailed, Message: msg}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		for i := range sources {
			fail(i, explainFS(err, o.Dir).Error())
		}
		return r
	}
	removeStale(o.Dir)
	m, err := ReadManifest(o.Dir)
	if err != nil {
		logf("ignoring an unreadable manifest: %v", err)
		m = &Manifest{Items: map[string]ManifestItem{}}
	}
	// Older workers keyed items by the whole URL, query and user info
	// included: such records are dropped (they are never looked up again).
	for k := range m.Items {
		if artifacturl.Redact(k) != k {
			delete(m.Items, k)
		}
	}
	for i, src := range sources {
		start := time.Now()
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if o.Timeout > 0 {
			sctx, cancel = context.WithTimeout(ctx, o.Timeout)
		}
		res := fetchOne(sctx, src, m, o, logf)
		cancel()
		res.Item = src.URL
		res.DurationMs = time.Since(start).Milliseconds()
		if res.Status == report.StatusFailed && errors.Is(sctx.Err(), context.DeadlineExceeded) {
			res.Message = fmt.Sprintf("timed out after %s: %s", o.Timeout, res.Message)
		}
		r.Items[i] = res
		if res.Status.Succeeded() {
			if err := writeManifest(o.Dir, m); err != nil {
				r.Items[i] = report.ItemResult{Item: src.URL, Status: report.StatusFailed, Message: "writing the manifest: " + err.Error()}
			}
		}
		logf("%s %s sha256:%s %d bytes %s", src.URL, r.Items[i].Status, strings.TrimPrefix(r.Items[i].Digest, "sha256:"), r.Items[i].SizeBytes, r.Items[i].Message)
	}
	return r
}

func fetchOne(ctx context.Context, src ArtifactSource, m *Manifest, o FetchOptions, logf func(string, ...any)) report.ItemResult {
	u, err := url.Parse(src.URL)
	if err != nil {
		return report.ItemResult{Status: report.StatusFailed, Message: err.Error()}
	}
	prev, had := m.Items[src.URL]
	if had && src.SHA256 != "" && prev.SHA256 == src.SHA256 && present(o.Dir, prev) {
		return report.ItemResult{Status: report.StatusPresent, Digest: "sha256:" + prev.SHA256, SizeBytes: prev.SizeBytes}
	}
	var obj remoteObject
	switch u.Scheme {
	case "http", "https":
		if o.HTTP == nil {
			return failed("no HTTP fetcher")
		}
		obj = o.HTTP.object(u, src.Query, o)
	case "s3":
		if o.S3 == nil {
			return failed("no S3 fetcher")
		}
		if strings.HasSuffix(u.Path, "/") || u.Path == "" {
			return o.S3.fetchPrefix(ctx, u, src, m, o, logf)
		}
		obj = o.S3.object(u, o)
	default:
		return failed(fmt.Sprintf("unsupported scheme %q", u.Scheme))
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		name = "artifact"
	}
	return fetchObject(ctx, obj, src, name, m, o, prev, had)
}

func failed(msg string) report.ItemResult {
	return report.ItemResult{Status: report.StatusFailed, Message: msg}
}

// present says whether a manifest item's content is still on disk.
func present(dir string, it ManifestItem) bool {
	fi, err := os.Stat(filepath.Join(dir, it.Path))
	if err != nil {
		return false
	}
	if it.Extracted {
		return fi.IsDir()
	}
	return fi.Mode().IsRegular() && fi.Size() == it.SizeBytes
}

// remoteObject is one downloadable object.
type remoteObject interface {
	// unchanged asks the origin (conditional request) whether the object
	// still has prev's version; false when it cannot tell.
	unchanged(ctx context.Context, prev ManifestItem) (bool, error)
	// expectedSHA256 is a checksum the origin publishes for the object ("" if none).
	expectedSHA256(ctx context.Context) (string, error)
	// download writes the object into f and returns its ETag. When it could
	// stream every byte through h in order (hashed), the caller need not
	// read the file again.
	download(ctx context.Context, f *os.File, h hash.Hash) (etag string, hashed bool, err error)
}

// fetchObject downloads obj beside its target, verifies it, syncs it and
// renames it into place; or reports Present when the origin says it is
// unchanged.
func fetchObject(ctx context.Context, obj remoteObject, src ArtifactSource, name string, m *Manifest, o FetchOptions, prev ManifestItem, had bool) report.ItemResult {
	if had && src.SHA256 == "" && present(o.Dir, prev) {
		if same, err := obj.unchanged(ctx, prev); err == nil && same {
			return report.ItemResult{Status: report.StatusPresent, Digest: "sha256:" + prev.SHA256, SizeBytes: prev.SizeBytes}
		}
	}
	want := src.SHA256
	if want == "" {
		w, err := obj.expectedSHA256(ctx)
		if err != nil {
			return failed(err.Error())
		}
		want = w
		if want != "" && had && prev.SHA256 == want && present(o.Dir, prev) {
			return report.ItemResult{Status: report.StatusPresent, Digest: "sha256:" + prev.SHA256, SizeBytes: prev.SizeBytes}
		}
	}
	// name may hold sub-directories (objects under an S3 prefix): the temp
	// file goes beside its target, so the rename stays on one file system.
	dir := filepath.Join(o.Dir, filepath.Dir(name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return failed(explainFS(err, o.Dir).Error())
	}
	f, err := os.CreateTemp(dir, tmpPrefix+filepath.Base(name)+"-*")
	if err != nil {
		return failed(explainFS(err, o.Dir).Error())
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close()
			os.RemoveAll(tmp)
		}
	}()
	h := newAsyncHash(sha256.New())
	defer h.Close()
	etag, hashed, err := obj.download(ctx, f, h)
	if err != nil {
		return failed(explainFS(err, o.Dir).Error())
	}
	if err := f.Sync(); err != nil {
		return failed(explainFS(err, o.Dir).Error())
	}
	var sum string
	var size int64
	if hashed {
		sum = hex.EncodeToString(h.Sum(nil))
		fi, err := f.Stat()
		if err != nil {
			return failed(err.Error())
		}
		size = fi.Size()
	} else if sum, size, err = hashFile(f); err != nil {
		return failed(err.Error())
	}
	if err := f.Close(); err != nil {
		return failed(explainFS(err, o.Dir).Error())
	}
	if want != "" && sum != want {
		return failed(fmt.Sprintf("checksum mismatch: downloaded sha256:%s, expected sha256:%s; the previous content is left as it was", sum, want))
	}
	item := ManifestItem{Path: name, SHA256: sum, SizeBytes: size, ETag: etag, Time: time.Now().UTC().Truncate(time.Second)}
	if o.Extract {
		dirName, err := extractInto(o.Dir, tmp, name)
		if err != nil {
			return failed(err.Error())
		}
		item.Path, item.Extracted = dirName, true
	} else if err := os.Rename(tmp, filepath.Join(o.Dir, name)); err != nil {
		return failed(explainFS(err, o.Dir).Error())
	}
	committed = true
	os.Remove(tmp) // extracted: the archive itself is not kept
	if err := syncDir(dir); err != nil {
		return failed(explainFS(err, o.Dir).Error())
	}
	m.Items[src.URL] = item
	return report.ItemResult{Status: report.StatusDownloaded, Digest: "sha256:" + sum, SizeBytes: size}
}

func hashFile(f *os.File) (string, int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, err
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// treeDigest is the digest of several files: sha256 over sorted "sha256  path" lines.
func treeDigest(files map[string]string) string {
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s  %s\n", files[k], k)
	}
	return hex.EncodeToString(h.Sum(nil))
}
