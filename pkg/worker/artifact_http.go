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
)

// HTTPFetcher downloads http(s) sources: retries for 5xx, 429 and dropped
// connections, resuming with Range where the server allows it; none for
// 4xx answers.
type HTTPFetcher struct {
	Client *http.Client
	// Header is sent with every request (e.g. Authorization from a secret).
	Header http.Header
	// ChecksumURL, when set, is a sha256sum-style file listing the sources'
	// checksums ("<hex>  <file name>").
	ChecksumURL string
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
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}

type httpObject struct {
	f       *HTTPFetcher
	u       *url.URL
	retries int
	backoff time.Duration
}

func (h *HTTPFetcher) object(u *url.URL, o FetchOptions) remoteObject {
	return &httpObject{f: h, u: u, retries: o.Retries, backoff: o.Backoff}
}

func (h *HTTPFetcher) client() *http.Client {
	if h.Client != nil {
		return h.Client
	}
	return http.DefaultClient
}

func (o *httpObject) request(ctx context.Context, method string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, o.u.String(), nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range o.f.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("User-Agent", "coral-worker")
	return req, nil
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
	resp, err := o.f.client().Do(req)
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.f.ChecksumURL, nil)
	if err != nil {
		return "", err
	}
	for k, vs := range o.f.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := o.f.client().Do(req)
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
	resp, err := o.f.client().Do(req)
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
