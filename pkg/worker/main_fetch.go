package worker

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/artifact/artifacturl"
	"github.com/coral-dev/coral/pkg/report"
)

// rawSources collects --source values; they are parsed after the flags, so
// that the flag package never echoes a value (it may hold a password).
type rawSources []string

func (f *rawSources) String() string     { return fmt.Sprint(len(*f)) }
func (f *rawSources) Set(s string) error { *f = append(*f, s); return nil }

type sourceFlags []ArtifactSource

func mainFetch(ctx context.Context, args []string, stdout, stderr io.Writer, terminationPath string) int {
	fs := flag.NewFlagSet("coral-worker fetch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		raw         rawSources
		sources     sourceFlags
		dir         = fs.String("dir", "/artifact", "the artifact directory")
		extract     = fs.Bool("extract", false, "unpack tar / tar.gz sources")
		timeout     = fs.Duration("timeout", 30*time.Minute, "time limit per source, retries included")
		retries     = fs.Int("retries", 3, "retries for transient failures")
		backoff     = fs.Duration("backoff", time.Second, "first retry delay (doubles)")
		headerDir   = fs.String("header-dir", "", "directory of files: name = HTTP header, content = value")
		checksumURL = fs.String("checksum-url", "", "sha256sum-style file with the sources' checksums")
		s3Endpoint  = fs.String("s3-endpoint", "", "S3-compatible endpoint URL")
		s3Region    = fs.String("s3-region", "us-east-1", "S3 region")
		s3PathStyle = fs.Bool("s3-path-style", false, "path-style bucket addressing")
		s3CredsDir  = fs.String("s3-credentials-dir", "", "directory with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY[, AWS_SESSION_TOKEN]")
		queryDir    = fs.String("query-dir", "", "directory of URL queries (secret): file source-N for the N-th --source, checksum-url for --checksum-url")
	)
	fs.Var(&raw, "source", "URL or URL=SHA256 (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	for _, r := range raw {
		src, err := ParseArtifactSource(r)
		if err != nil {
			fmt.Fprintf(stderr, "coral-worker: %v\n", err)
			return 2
		}
		sources = append(sources, src)
	}
	if len(sources) == 0 {
		fmt.Fprintln(stderr, "coral-worker: no --source given")
		return 2
	}
	logf := logger(stderr)
	failAll := func(msg string) int {
		r := &report.WorkerReport{Version: report.WireVersion}
		for _, s := range sources {
			r.Items = append(r.Items, report.ItemResult{Item: s.URL, Status: report.StatusFailed, Message: msg})
		}
		return finish(r, nil, stdout, stderr, terminationPath)
	}
	header, err := readHeaderDir(*headerDir)
	if err != nil {
		return failAll(err.Error())
	}
	sum, err := artifacturl.ParseChecksum(*checksumURL)
	if *checksumURL != "" && err != nil {
		return failAll(err.Error())
	}
	if err := readQueryDir(*queryDir, sources, &sum.Query); err != nil {
		return failAll(err.Error())
	}
	o := FetchOptions{
		Dir: *dir, Extract: *extract, Retries: *retries, Backoff: *backoff, Timeout: *timeout, Logf: logf,
		HTTP: &HTTPFetcher{Client: &http.Client{Transport: http.DefaultTransport}, Header: header, ChecksumURL: sum.Public, ChecksumQuery: sum.Query},
	}
	for _, s := range sources {
		if strings.HasPrefix(s.URL, "s3://") {
			cfg := S3Config{Endpoint: *s3Endpoint, Region: *s3Region, PathStyle: *s3PathStyle, Retries: *retries}
			if err := LoadS3Credentials(*s3CredsDir, &cfg); err != nil {
				return failAll(err.Error())
			}
			if o.S3, err = NewS3Fetcher(ctx, cfg); err != nil {
				return failAll(err.Error())
			}
			break
		}
	}
	logf("fetching %d sources into %s", len(sources), *dir)
	return finish(Fetch(ctx, sources, o), nil, stdout, stderr, terminationPath)
}

// readQueryDir reads the run's query secret: file source-N holds the query
// of the N-th source, checksum-url that of the checksum URL. Queries are
// never logged.
func readQueryDir(dir string, sources sourceFlags, checksum *string) error {
	if dir == "" {
		return nil
	}
	read := func(name string, into *string) error {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the URL queries: %w", err)
		}
		*into = strings.TrimSpace(string(b))
		return nil
	}
	for i := range sources {
		if err := read(fmt.Sprintf("source-%d", i), &sources[i].Query); err != nil {
			return err
		}
	}
	return read("checksum-url", checksum)
}

// readHeaderDir reads a mounted secret of HTTP headers: each file's name is a
// header name, its content the value. Values are never logged.
func readHeaderDir(dir string) (http.Header, error) {
	h := http.Header{}
	if dir == "" {
		return h, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the header secret: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading the header secret: %w", err)
		}
		h.Set(e.Name(), strings.TrimSpace(string(b)))
	}
	return h, nil
}
