package mirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ErrPlainHTTP is returned for a plain-http request to a registry that was
// not named insecure.
var ErrPlainHTTP = errors.New("plain http refused")

// newTransport builds the HTTP stack every registry request goes through,
// under go-containerregistry's auth layers:
//
//	retry (429/5xx, Retry-After) → byte counting → TLS/insecure routing → net
func newTransport(o *options, counted *atomic.Int64) http.RoundTripper {
	var rt http.RoundTripper
	if o.base != nil {
		rt = o.base
	} else {
		rt = &hostRouter{
			secure:   newHTTPTransport(&tls.Config{RootCAs: o.rootCAs, MinVersion: tls.VersionTLS12}),
			insecure: newHTTPTransport(&tls.Config{InsecureSkipVerify: true}), //nolint:gosec // only for --insecure-registry hosts
			hosts:    o.insecureHosts,
		}
	}
	rt = &countingTransport{inner: rt, total: counted}
	return &retryTransport{inner: rt, attempts: o.retries, base: o.retryBase, maxWait: o.retryMaxWait}
}

// newHTTPTransport is go-containerregistry's default transport (the one
// crane uses) with our TLS settings.
func newHTTPTransport(tc *tls.Config) *http.Transport {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tc
	return t
}

// hostRouter sends requests for registries named insecure through a
// transport that skips TLS verification, and refuses plain http to any other
// registry that is not on loopback.
type hostRouter struct {
	secure, insecure http.RoundTripper
	hosts            []string
}

func (h *hostRouter) isInsecure(host string) bool {
	name := host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		name = hn
	}
	for _, want := range h.hosts {
		if want == host || want == name {
			return true
		}
	}
	return false
}

func (h *hostRouter) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	insecure := h.isInsecure(host)
	if req.URL.Scheme == "http" && !insecure && !isLoopback(host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("%w to %s: if this registry has no TLS, name it with --insecure-registry %s", ErrPlainHTTP, host, host)
	}
	if insecure {
		return h.insecure.RoundTrip(req)
	}
	return h.secure.RoundTrip(req)
}

// counterKey carries the per-image byte counter in a request's context.
type counterKey struct{}

func withCounter(ctx context.Context, c *atomic.Int64) context.Context {
	return context.WithValue(ctx, counterKey{}, c)
}

// countingTransport counts the bytes of request bodies sent (blob and
// manifest uploads), in total and for the image whose context it carries.
type countingTransport struct {
	inner http.RoundTripper
	total *atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return c.inner.RoundTrip(req)
	}
	item, _ := req.Context().Value(counterKey{}).(*atomic.Int64)
	r := req.Clone(req.Context())
	r.Body = &countingBody{ReadCloser: req.Body, total: c.total, item: item}
	return c.inner.RoundTrip(r)
}

type countingBody struct {
	io.ReadCloser
	total, item *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if b.total != nil {
			b.total.Add(int64(n))
		}
		if b.item != nil {
			b.item.Add(int64(n))
		}
	}
	return n, err
}

// retryTransport retries what a registry asks to be retried: 429 Too Many
// Requests for any request whose body can be replayed, transient 5xx and
// network errors for reads. It waits as long as Retry-After says (capped at
// maxWait), otherwise backs off exponentially with jitter, and gives up when
// the request's context ends.
type retryTransport struct {
	inner    http.RoundTripper
	attempts int
	base     time.Duration
	maxWait  time.Duration
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 1; ; attempt++ {
		r := req
		if attempt > 1 && req.Body != nil && req.Body != http.NoBody {
			body, err := req.GetBody()
			if err != nil {
				return nil, fmt.Errorf("replaying request body: %w", err)
			}
			r = req.Clone(ctx)
			r.Body = body
		}
		resp, err := t.inner.RoundTrip(r)
		if attempt >= t.attempts || !t.shouldRetry(req, resp, err) {
			return resp, err
		}
		wait := t.backoff(attempt)
		if resp != nil {
			if ra, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				wait = min(ra, t.maxWait)
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}

func (t *retryTransport) backoff(attempt int) time.Duration {
	d := t.base << (attempt - 1)
	if d <= 0 || d > t.maxWait {
		d = t.maxWait
	}
	// ±20% jitter so that parallel copies do not retry in lockstep.
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func (t *retryTransport) shouldRetry(req *http.Request, resp *http.Response, err error) bool {
	if req.Context().Err() != nil || !replayable(req) {
		return false
	}
	read := req.Method == http.MethodGet || req.Method == http.MethodHead
	if err != nil {
		return read && !errors.Is(err, ErrPlainHTTP) && !isTLSError(err) && !isPermanentNetError(err)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		return true // the request was refused, not processed: safe to resend
	case http.StatusServiceUnavailable:
		return read || resp.Header.Get("Retry-After") != ""
	case http.StatusRequestTimeout, http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout:
		return read
	}
	return false
}

// isPermanentNetError: nobody listens, or the name does not resolve.
// Retrying would only delay the answer.
func isPermanentNetError(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsNotFound
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

func isTLSError(err error) bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		recordHeader     tls.RecordHeaderError
		certVerify       *tls.CertificateVerificationError
	)
	return errors.As(err, &unknownAuthority) || errors.As(err, &recordHeader) || errors.As(err, &certVerify)
}

// retryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		d := at.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}
