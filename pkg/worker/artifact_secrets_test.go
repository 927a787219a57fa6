package worker

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/coral-dev/coral/pkg/report"
)

// headerLog is a real HTTP server that records the headers of every request
// and serves one file, or redirects to another server.
type headerLog struct {
	mu       sync.Mutex
	seen     []http.Header
	queries  []string
	data     []byte
	redirect string // when set: 302 to redirect + path
}

func (h *headerLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, r.Header.Clone())
	h.queries = append(h.queries, r.URL.RawQuery)
	h.mu.Unlock()
	if h.redirect != "" {
		http.Redirect(w, r, h.redirect+r.URL.Path, http.StatusFound)
		return
	}
	if h.data == nil {
		http.NotFound(w, r)
		return
	}
	w.Write(h.data)
}

func (h *headerLog) sawHeader(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hd := range h.seen {
		if hd.Get(name) != "" {
			return true
		}
	}
	return false
}

func serveHTTP(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// secretHeaders are what a --header-secret holds: Go itself strips only
// Authorization and Cookie on a redirect to another domain.
func secretHeaders() http.Header {
	return http.Header{"Authorization": {"Bearer SECRET-1"}, "X-Api-Key": {"SECRET-2"}, "Private-Token": {"SECRET-3"}}
}

func TestFetchDropsSecretHeadersOnCrossHostRedirect(t *testing.T) {
	data := randomBytes(5000)
	cdn := &headerLog{data: data}
	cdnSrv := serveHTTP(t, cdn)
	origin := &headerLog{redirect: cdnSrv.URL}
	originSrv := serveHTTP(t, origin)

	o := fetchOpts(t.TempDir())
	o.HTTP.Header = secretHeaders()
	res := fetch(t, o, ArtifactSource{URL: originSrv.URL + "/m.bin", Query: "sig=SECRET", SHA256: sum(data)})
	if res[0].Status != report.StatusDownloaded {
		t.Fatalf("got %+v", res[0])
	}
	if !origin.sawHeader("X-Api-Key") || !origin.sawHeader("Authorization") {
		t.Fatal("the origin itself must get the secret headers")
	}
	for _, h := range []string{"Authorization", "X-Api-Key", "Private-Token", "Referer"} {
		if cdn.sawHeader(h) {
			t.Errorf("the secret header %s followed a redirect to another host", h)
		}
	}

	// A redirect on the same host keeps them.
	same := &headerLog{data: data}
	mux := http.NewServeMux()
	mux.Handle("/final/", same)
	mux.HandleFunc("/start/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/final/"+filepath.Base(r.URL.Path), http.StatusFound)
	})
	sameSrv := serveHTTP(t, mux)
	o = fetchOpts(t.TempDir())
	o.HTTP.Header = secretHeaders()
	if res := fetch(t, o, ArtifactSource{URL: sameSrv.URL + "/start/m.bin"}); res[0].Status != report.StatusDownloaded {
		t.Fatalf("same-host redirect: %+v", res[0])
	}
	if !same.sawHeader("X-Api-Key") {
		t.Error("a redirect on the same host lost the headers")
	}
}

func TestFetchChecksumFileOnAnotherHostGetsNoSecretHeaders(t *testing.T) {
	data := randomBytes(3000)
	files := &headerLog{data: data}
	filesSrv := serveHTTP(t, files)
	sums := &headerLog{data: []byte(sum(data) + "  m.bin\n")}
	sumsSrv := serveHTTP(t, sums)

	o := fetchOpts(t.TempDir())
	o.HTTP.Header = secretHeaders()
	o.HTTP.ChecksumURL = sumsSrv.URL + "/SHA256SUMS"
	if res := fetch(t, o, ArtifactSource{URL: filesSrv.URL + "/m.bin"}); res[0].Status != report.StatusDownloaded {
		t.Fatalf("got %+v", res[0])
	}
	if !files.sawHeader("X-Api-Key") {
		t.Fatal("the source's host must get the headers")
	}
	if sums.sawHeader("X-Api-Key") || sums.sawHeader("Authorization") {
		t.Error("the secret headers went to the checksum file's host")
	}
}

// A pre-signed URL's query reaches the request and nothing else: not the
// worker's log, its reports (full and termination message), nor the node's
// manifest. The same for a user name and password, which the worker refuses.
func TestFetchKeepsURLQueriesOutOfLogsReportsAndManifest(t *testing.T) {
	data := randomBytes(4000)
	srvLog := &headerLog{data: data}
	srv := serveHTTP(t, srvLog)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // connection refused: Go's error names the whole URL

	for name, args := range map[string][]string{
		"query in the argument": {"--source=" + srv.URL + "/m.bin?X-Amz-Signature=SECRET&X-Amz-Credential=SECRET2"},
		"query from the secret": {"--source=" + srv.URL + "/m.bin", "--query-dir=" + queryDir(t, map[string]string{"source-0": "X-Amz-Signature=SECRET&X-Amz-Credential=SECRET2"})},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			term := filepath.Join(t.TempDir(), "termination")
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), append([]string{"fetch", "--dir=" + dir, "--backoff=1ms"}, args...), &stdout, &stderr, term)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			srvLog.mu.Lock()
			q := srvLog.queries[len(srvLog.queries)-1]
			srvLog.mu.Unlock()
			if q != "X-Amz-Signature=SECRET&X-Amz-Credential=SECRET2" {
				t.Errorf("the request lost its query: %q", q)
			}
			manifest, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
			tm, _ := os.ReadFile(term)
			for what, s := range map[string]string{"log": stderr.String(), "full report": stdout.String(), "termination message": string(tm), "manifest": string(manifest)} {
				if strings.Contains(s, "SECRET") {
					t.Errorf("the %s holds the URL's query:\n%s", what, s)
				}
			}
			if !strings.Contains(string(manifest), srv.URL+"/m.bin") {
				t.Errorf("the manifest does not name the source: %s", manifest)
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		term := filepath.Join(t.TempDir(), "termination")
		code := Main(context.Background(), []string{"fetch", "--dir=" + t.TempDir(), "--retries=0", "--source=" + closedURL + "/m.bin?sig=SECRET"}, &stdout, &stderr, term)
		tm, _ := os.ReadFile(term)
		if code != 1 || !strings.Contains(stdout.String(), "Failed") {
			t.Fatalf("exit %d\n%s", code, stdout.String())
		}
		if all := stdout.String() + stderr.String() + string(tm); strings.Contains(all, "SECRET") {
			t.Errorf("an error message holds the URL's query:\n%s", all)
		}
	})

	t.Run("user info", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), []string{"fetch", "--dir=" + t.TempDir(), "--source=" + strings.Replace(srv.URL, "://", "://user:SECRET@", 1) + "/m.bin"}, &stdout, &stderr, "")
		if code != 2 || !strings.Contains(stderr.String(), "user name or password") {
			t.Fatalf("a URL with a password: exit %d, %s", code, stderr.String())
		}
		if strings.Contains(stdout.String()+stderr.String(), "SECRET") {
			t.Errorf("the password was printed:\n%s%s", stdout.String(), stderr.String())
		}
	})
}

func queryDir(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A manifest written by an older worker, keyed by the whole URL, loses the
// keys that hold a query or a password at the next write.
func TestFetchDropsOldManifestKeysWithSecrets(t *testing.T) {
	data := randomBytes(1000)
	srv := serveHTTP(t, &headerLog{data: data})
	dir := t.TempDir()
	old := `{"items": {"https://h.example/m.bin?X-Amz-Signature=SECRET": {"path": "m.bin", "sha256": "00", "sizeBytes": 1},
		"https://user:SECRET@h.example/n.bin": {"path": "n.bin", "sha256": "00", "sizeBytes": 1},
		"https://h.example/kept.bin": {"path": "kept.bin", "sha256": "00", "sizeBytes": 1}}}`
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if res := fetch(t, fetchOpts(dir), ArtifactSource{URL: srv.URL + "/x.bin"}); res[0].Status != report.StatusDownloaded {
		t.Fatal(res[0])
	}
	b, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
	if strings.Contains(string(b), "SECRET") || !strings.Contains(string(b), "kept.bin") || !strings.Contains(string(b), "/x.bin") {
		t.Fatalf("manifest:\n%s", b)
	}
}
