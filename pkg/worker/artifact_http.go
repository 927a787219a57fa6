package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/artifact/artifacturl"
)

// HTTPFetcher downloads http(s) sources: retries for 5xx, 429 and dropped
// connections, resuming with Range where the server allows it; none for
// 4xx answers.
//
// Header holds secrets (a --header-secret): it is sent only to the source's
// own origin (scheme, host and port), never to another host a redirect leads
// to, nor to a checksum file on another host. No Referer is sent either: it
// would carry a pre-signed URL's query to the redirect's target.
type HTTPFetcher struct {
	Client *http.Client
	// Header is sent with requests to the source's origin (e.g. Authorization from a secret).
	Header http.Header
	// ChecksumURL, when set, is a sha256sum-style file listing the sources'
	// checksums ("<hex>  <file name>"); ChecksumQuery is its query (secret).
	ChecksumURL   string
	ChecksumQuery string
}

// httpStatusError is a non-2xx answer.
type httpStatusError struct {
	code int
	url  string
}

func (e *httpStatusError) Error() string {
	msg := fmt.Sprintf("GET %s: %d %s", redactURL(e.url), e.code, http.StatusText(e.code))
	switch e.code {
	case http.StatusUnauthorized, http.StatusForbidden:
		msg += " (check the credentials: --header-secret)"
	case http.StatusNotFound:
		msg += " (no such file at the source)"
	}
	return msg
}

func (e *httpStatusError) transient() bool {
	return e.code >= 500 || e.code == http.StatusTooManyRequests || e.code == http.StatusRequestTimeout
}

// redactURL drops credentials and query (signed URLs) from a URL for messages.
func redactURL(raw string) string { return artifacturl.Redact(raw) }

type httpObject struct {
	f       *HTTPFetcher
	u       *url.URL // public: no query
	query   string   // secret
	retries int
	backoff time.Duration
}

func (h *HTTPFetcher) object(u *url.URL, query string, o FetchOptions) remoteObject {
	return &httpObject{f: h, u: u, query: query, retries: o.Retries, backoff: o.Backoff}
}

// do sends req with the secret headers where they belong (see HTTPFetcher),
// and keeps URLs in its errors free of queries and passwords.
func (h *HTTPFetcher) do(req *http.Request, origin *url.URL) (*http.Response, error) {
	if artifacturl.SameOrigin(req.URL, origin) {
		for k, vs := range h.Header {
			for _, v := range vs {
				req.Header.Add(k, v)
			}
		}
	}
	req.Header.Set("User-Agent", "coral-worker")
	c := http.DefaultClient
	if h.Client != nil {
		c = h.Client
	}
	cc := *c
	next := c.CheckRedirect
	cc.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		r.Header.Del("Referer")
		if !artifacturl.SameOrigin(r.URL, origin) {
			for k := range h.Header {
				r.Header.Del(k)
			}
			r.Header.Del("Authorization")
			r.Header.Del("Cookie")
		}
		if next != nil {
			return next(r, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	resp, err := cc.Do(req)
	return resp, redactErr(err)
}

func (o *httpObject) request(ctx context.Context, method string) (*http.Request, error) {
	u := *o.u
	u.RawQuery = o.query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	return req, redactErr(err)
}

// redactErr keeps the URL of a *url.Error free of queries and passwords.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = redactURL(ue.URL)
	}
	return err
}

func (o *httpObject) unchanged(ctx context.Context, prev ManifestItem) (bool, error) {
	if prev.ETag == "" {
		return false, nil
	}
	req, err := o.request(ctx, http.MethodHead)
	if err != nil {
		return false, err
	}
	req.Header.Set("If-None-Match", prev.ETag)
	resp, err := o.f.do(req, o.u)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return true, nil
	}
	return resp.StatusCode == http.StatusOK && resp.Header.Get("ETag") == prev.ETag, nil
}

// expectedSHA256 reads the checksum file, if one was given, and finds the
// line for this source's file name.
func (o *httpObject) expectedSHA256(ctx context.Context) (string, error) {
	if o.f.ChecksumURL == "" {
		return "", nil
	}
	full := o.f.ChecksumURL
	if o.f.ChecksumQuery != "" {
		full += "?" + o.f.ChecksumQuery
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, full, nil)
	if err != nil {
		return "", fmt.Errorf("the checksum URL: %w", redactErr(err))
	}
	// The headers go to the checksum file only on the source's own origin.
	resp, err := o.f.do(req, o.u)
	if err != nil {
		return "", fmt.Errorf("reading the checksum file: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("reading the checksum file: %w", &httpStatusError{code: resp.StatusCode, url: o.f.ChecksumURL})
	}
	base := path.Base(o.u.Path)
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<20))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && strings.TrimPrefix(fields[1], "*") == base && isHex64(fields[0]) {
			return strings.ToLower(fields[0]), nil
		}
	}
	return "", fmt.Errorf("the checksum file %s has no line for %s", redactURL(o.f.ChecksumURL), base)
}

// download GETs the object through h into f. After a dropped connection or a
// transient answer it retries with backoff; when the server honours Range
// (206, same ETag) it resumes where it stopped, otherwise it starts over.
func (o *httpObject) download(ctx context.Context, f *os.File, h hash.Hash) (string, bool, error) {
	var written int64
	var etag string
	delay := o.backoff
	if delay <= 0 {
		delay = time.Second
	}
	for attempt := 0; ; attempt++ {
		n, tag, err := o.get(ctx, f, h, written, etag)
		written += n
		if tag != "" {
			etag = tag
		}
		if err == nil {
			return etag, true, nil
		}
		var se *httpStatusError
		retriable := ctx.Err() == nil && (!errors.As(err, &se) || se.transient()) && !isFSError(err)
		if !retriable || attempt >= o.retries {
			if attempt > 0 {
				return "", false, fmt.Errorf("%w (after %d attempts)", err, attempt+1)
			}
			return "", false, err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return "", false, err
		}
		delay *= 2
	}
}

// errRestart says the server ignored Range: the file must start over.
var errRestart = errors.New("restart")

// get performs one GET from offset (resuming when > 0) and returns how many
// bytes it appended.
func (o *httpObject) get(ctx context.Context, f *os.File, h hash.Hash, offset int64, etag string) (int64, string, error) {
	req, err := o.request(ctx, http.MethodGet)
	if err != nil {
		return 0, "", err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		if etag != "" {
			req.Header.Set("If-Range", etag)
		}
	}
	resp, err := o.f.do(req, o.u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && offset > 0:
		// resuming
	case resp.StatusCode == http.StatusOK:
		if offset > 0 {
			// The server sent the whole object again: start over.
			if err := f.Truncate(0); err != nil {
				return 0, "", err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return 0, "", err
			}
			h.Reset()
			n, tag, err := o.copy(f, h, resp)
			return n - offset, tag, err
		}
	default:
		return 0, "", &httpStatusError{code: resp.StatusCode, url: o.u.String()}
	}
	return o.copy(f, h, resp)
}

func (o *httpObject) copy(f *os.File, h hash.Hash, resp *http.Response) (int64, string, error) {
	n, err := io.CopyBuffer(io.MultiWriter(fsWriter{f}, h), resp.Body, make([]byte, 1<<20))
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return n, resp.Header.Get("ETag"), fmt.Errorf("reading %s: %w", redactURL(o.u.String()), err)
	}
	return n, resp.Header.Get("ETag"), nil
}

// fsWriter marks errors of the local file, which are never retried.
type fsWriter struct{ w io.Writer }

type fsError struct{ err error }

func (e *fsError) Error() string { return e.err.Error() }
func (e *fsError) Unwrap() error { return e.err }

func (w fsWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		err = &fsError{err}
	}
	return n, err
}

func isFSError(err error) bool {
	var fe *fsError
	return errors.As(err, &fe)
}
