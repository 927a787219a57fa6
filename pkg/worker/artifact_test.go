package worker

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coral-dev/coral/internal/testservers"
	"github.com/coral-dev/coral/pkg/report"
)

// origin is a real HTTP server (Range, ETag, If-None-Match via
// http.ServeContent) with fault injection per path.
type origin struct {
	mu       sync.Mutex
	files    map[string][]byte
	faults   map[string][]string // path → faults for the next requests: "drop", "500", "404", "403"
	requests []string            // "METHOD path range"
}

func newOrigin(t *testing.T) (*origin, *httptest.Server) {
	o := &origin{files: map[string][]byte{}, faults: map[string][]string{}}
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	return o, srv
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.requests = append(o.requests, strings.TrimSpace(r.Method+" "+r.URL.Path+" "+r.Header.Get("Range")))
	data, ok := o.files[r.URL.Path]
	var fault string
	if f := o.faults[r.URL.Path]; len(f) > 0 {
		fault, o.faults[r.URL.Path] = f[0], f[1:]
	}
	o.mu.Unlock()
	switch fault {
	case "500":
		http.Error(w, "boom", http.StatusInternalServerError)
		return
	case "403":
		http.Error(w, "no", http.StatusForbidden)
		return
	case "drop":
		// send headers and half the body, then cut the connection
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Header().Set("ETag", etagOf(data))
		w.WriteHeader(http.StatusOK)
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", etagOf(data))
	http.ServeContent(w, r, "", time.Unix(0, 0), bytes.NewReader(data))
}

func etagOf(b []byte) string { s := sha256.Sum256(b); return `"` + hex.EncodeToString(s[:8]) + `"` }

func (o *origin) count(sub string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, r := range o.requests {
		if strings.Contains(r, sub) {
			n++
		}
	}
	return n
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func fetchOpts(dir string) FetchOptions {
	return FetchOptions{Dir: dir, Retries: 3, Backoff: 5 * time.Millisecond, Timeout: 10 * time.Second, HTTP: &HTTPFetcher{}}
}

func fetch(t *testing.T, o FetchOptions, srcs ...ArtifactSource) []report.ItemResult {
	t.Helper()
	return Fetch(context.Background(), srcs, o).Items
}

// visible lists the files a reader of the directory would see (no temp files).
func visible(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func TestFetchHTTPDownloadVerifyPresent(t *testing.T) {
	og, srv := newOrigin(t)
	data := randomBytes(3 << 20)
	og.files["/models/bert.bin"] = data
	dir := t.TempDir()
	src := ArtifactSource{URL: srv.URL + "/models/bert.bin", SHA256: sum(data)}

	res := fetch(t, fetchOpts(dir), src)
	if res[0].Status != report.StatusDownloaded || res[0].Digest != "sha256:"+sum(data) || res[0].SizeBytes != int64(len(data)) {
		t.Fatalf("got %+v", res[0])
	}
	got, _ := os.ReadFile(filepath.Join(dir, "bert.bin"))
	if !bytes.Equal(got, data) {
		t.Fatal("content differs")
	}
	m, err := ReadManifest(dir)
	if err != nil || m.Items[src.URL].SHA256 != sum(data) || m.Items[src.URL].SizeBytes != int64(len(data)) || m.Items[src.URL].Time.IsZero() {
		t.Fatalf("manifest %+v %v", m, err)
	}
	if v := visible(t, dir); strings.Join(v, ",") != ManifestFile+",bert.bin" {
		t.Fatalf("directory holds %v", v)
	}

	// Same digest again: Present, and the origin is not even asked.
	before := og.count("GET")
	res = fetch(t, fetchOpts(dir), src)
	if res[0].Status != report.StatusPresent || og.count("GET") != before {
		t.Fatalf("rerun: %+v, %d new GETs", res[0], og.count("GET")-before)
	}

	// Without --sha256: the ETag answers (304), nothing is downloaded.
	res = fetch(t, fetchOpts(dir), ArtifactSource{URL: src.URL})
	if res[0].Status != report.StatusPresent || og.count("GET") != before {
		t.Fatalf("conditional rerun: %+v, %d new GETs", res[0], og.count("GET")-before)
	}
}

func TestFetchHTTPResumesAfterDrop(t *testing.T) {
	og, srv := newOrigin(t)
	data := randomBytes(2 << 20)
	og.files["/a.bin"] = data
	og.faults["/a.bin"] = []string{"drop"}
	dir := t.TempDir()
	res := fetch(t, fetchOpts(dir), ArtifactSource{URL: srv.URL + "/a.bin", SHA256: sum(data)})
	if res[0].Status != report.StatusDownloaded {
		t.Fatalf("got %+v", res[0])
	}
	if og.count(fmt.Sprintf("bytes=%d-", len(data)/2)) != 1 {
		t.Fatalf("no ranged resume from the byte where the connection dropped; requests: %v", og.requests)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "a.bin"))
	if !bytes.Equal(got, data) {
		t.Fatal("resumed content differs")
	}
}

func TestFetchHTTPRetriesAndPermanentErrors(t *testing.T) {
	og, srv := newOrigin(t)
	data := randomBytes(1000)
	og.files["/ok"] = data
	og.faults["/ok"] = []string{"500", "500"}
	og.faults["/forbidden"] = []string{"403", "403", "403"}
	dir := t.TempDir()
	res := fetch(t, fetchOpts(dir),
		ArtifactSource{URL: srv.URL + "/ok"},
		ArtifactSource{URL: srv.URL + "/missing"},
		ArtifactSource{URL: srv.URL + "/forbidden"},
	)
	if res[0].Status != report.StatusDownloaded || og.count("GET /ok") != 3 {
		t.Errorf("500 twice then 200: %+v after %d GETs", res[0], og.count("GET /ok"))
	}
	if res[1].Status != report.StatusFailed || !strings.Contains(res[1].Message, "404") || og.count("GET /missing") != 1 {
		t.Errorf("404: %+v after %d GETs (want exactly 1)", res[1], og.count("GET /missing"))
	}
	if res[2].Status != report.StatusFailed || !strings.Contains(res[2].Message, "403") || og.count("GET /forbidden") != 1 {
		t.Errorf("403: %+v after %d GETs (want exactly 1)", res[2], og.count("GET /forbidden"))
	}
}

func TestFetchChecksumMismatchKeepsOldContent(t *testing.T) {
	og, srv := newOrigin(t)
	v1, v2 := randomBytes(5000), randomBytes(6000)
	og.files["/f.bin"] = v1
	dir := t.TempDir()
	url := srv.URL + "/f.bin"
	if res := fetch(t, fetchOpts(dir), ArtifactSource{URL: url, SHA256: sum(v1)}); res[0].Status != report.StatusDownloaded {
		t.Fatal(res[0])
	}
	og.files["/f.bin"] = v2 // the origin changed; the user still expects a digest that is neither
	res := fetch(t, fetchOpts(dir), ArtifactSource{URL: url, SHA256: strings.Repeat("ab", 32)})
	if res[0].Status != report.StatusFailed || !strings.Contains(res[0].Message, "checksum mismatch") {
		t.Fatalf("got %+v", res[0])
	}
	got, _ := os.ReadFile(filepath.Join(dir, "f.bin"))
	if !bytes.Equal(got, v1) {
		t.Fatal("the old content was not kept")
	}
	if v := visible(t, dir); len(v) != 2 {
		t.Fatalf("partial files visible: %v", v)
	}
	m, _ := ReadManifest(dir)
	if m.Items[url].SHA256 != sum(v1) {
		t.Fatal("the manifest no longer describes what is on disk")
	}
}

func TestFetchChecksumFile(t *testing.T) {
	og, srv := newOrigin(t)
	data := randomBytes(4000)
	og.files["/rel/tool.tar"] = data
	og.files["/rel/SHA256SUMS"] = []byte(fmt.Sprintf("%s  other\n%s *tool.tar\n", strings.Repeat("0", 64), sum(data)))
	o := fetchOpts(t.TempDir())
	o.HTTP.ChecksumURL = srv.URL + "/rel/SHA256SUMS"
	if res := fetch(t, o, ArtifactSource{URL: srv.URL + "/rel/tool.tar"}); res[0].Status != report.StatusDownloaded {
		t.Fatal(res[0])
	}
	og.files["/rel/tool.tar"] = randomBytes(4001)
	dir2 := t.TempDir()
	o.Dir = dir2
	if res := fetch(t, o, ArtifactSource{URL: srv.URL + "/rel/tool.tar"}); res[0].Status != report.StatusFailed || !strings.Contains(res[0].Message, "checksum mismatch") {
		t.Fatal(res[0])
	}
}

func tarball(t *testing.T, entries []tar.Header, bodies map[string]string, gz bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	var tw *tar.Writer
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		tw = tar.NewWriter(zw)
	} else {
		tw = tar.NewWriter(&buf)
	}
	for _, h := range entries {
		h := h
		body := bodies[h.Name]
		h.Size = int64(len(body))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

func TestFetchExtract(t *testing.T) {
	og, srv := newOrigin(t)
	good := tarball(t, []tar.Header{
		{Name: "model/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "model/weights.bin", Typeflag: tar.TypeReg},
		{Name: "model/latest", Typeflag: tar.TypeSymlink, Linkname: "weights.bin"},
	}, map[string]string{"model/weights.bin": "w1"}, true)
	og.files["/bert.tar.gz"] = good
	dir := t.TempDir()
	o := fetchOpts(dir)
	o.Extract = true
	res := fetch(t, o, ArtifactSource{URL: srv.URL + "/bert.tar.gz", SHA256: sum(good)})
	if res[0].Status != report.StatusDownloaded {
		t.Fatal(res[0])
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bert", "model", "latest")); err != nil || string(b) != "w1" {
		t.Fatalf("extracted tree: %q %v (dir holds %v)", b, err, visible(t, dir))
	}

	evil := map[string][]tar.Header{
		"dotdot":        {{Name: "../escape", Typeflag: tar.TypeReg}},
		"absolute":      {{Name: "/etc/evil", Typeflag: tar.TypeReg}},
		"symlink-out":   {{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "../../outside"}},
		"symlink-abs":   {{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc"}},
		"through-link":  {{Name: "d", Typeflag: tar.TypeSymlink, Linkname: "."}, {Name: "d/x", Typeflag: tar.TypeReg}},
		"device":        {{Name: "dev", Typeflag: tar.TypeChar}},
		"hardlink-out":  {{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}},
		"nested-dotdot": {{Name: "a/../../b", Typeflag: tar.TypeReg}},
	}
	for name, entries := range evil {
		t.Run(name, func(t *testing.T) {
			bad := tarball(t, entries, nil, false)
			og.mu.Lock()
			og.files["/bert.tar.gz"] = bad
			og.mu.Unlock()
			res := fetch(t, o, ArtifactSource{URL: srv.URL + "/bert.tar.gz", SHA256: sum(bad)})
			if res[0].Status != report.StatusFailed {
				t.Fatalf("a malicious archive was accepted: %+v", res[0])
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "bert", "model", "weights.bin")); string(b) != "w1" {
				t.Fatal("the previous tree was not kept")
			}
			for _, v := range visible(t, dir) {
				if strings.Contains(v, tmpPrefix) {
					t.Fatalf("staging left visible: %v", v)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape")); err == nil {
		t.Fatal("a file escaped the directory")
	}
}

// mountTmpfs mounts a small tmpfs (root only), for disk-full and read-only faults.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		testservers.Missing(t, "CORAL_SKIP_ROOT", fmt.Sprintf("mounting a tmpfs for a disk fault: %v %s", err, out),
			"run the tests as root (CI does)")
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func TestFetchDiskFullAndReadOnly(t *testing.T) {
	og, srv := newOrigin(t)
	og.files["/big.bin"] = randomBytes(1 << 20)
	full := mountTmpfs(t, "size=256k")
	res := fetch(t, fetchOpts(full), ArtifactSource{URL: srv.URL + "/big.bin"})
	if res[0].Status != report.StatusFailed || !strings.Contains(res[0].Message, "no space left") {
		t.Fatalf("disk full: %+v", res[0])
	}
	if og.count("GET /big.bin") != 1 {
		t.Errorf("a full disk is not transient: %d GETs", og.count("GET /big.bin"))
	}
	if v := visible(t, full); len(v) != 0 {
		t.Fatalf("partial file left: %v", v)
	}
	ro := mountTmpfs(t, "size=1m,ro")
	res = fetch(t, fetchOpts(ro), ArtifactSource{URL: srv.URL + "/big.bin"})
	if res[0].Status != report.StatusFailed || !strings.Contains(res[0].Message, "cannot write to") {
		t.Fatalf("read-only: %+v", res[0])
	}
}

func TestParseArtifactSource(t *testing.T) {
	h := strings.Repeat("a", 64)
	for in, want := range map[string]ArtifactSource{
		"https://x/y.tgz":                {URL: "https://x/y.tgz"},
		"https://x/y.tgz=" + h:           {URL: "https://x/y.tgz", SHA256: h},
		"https://x/y?sig=abc":            {URL: "https://x/y", Query: "sig=abc"},
		"https://x/y?sig=" + h:           {URL: "https://x/y", Query: "sig=" + h},
		"s3://b/k=" + strings.ToUpper(h): {URL: "s3://b/k", SHA256: h},
	} {
		got, err := ParseArtifactSource(in)
		if err != nil || got != want {
			t.Errorf("ParseArtifactSource(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
}
