package mirror

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Option configures a Mirror. Options validate their own arguments.
type Option func(*options) error

type options struct {
	jobs          int
	platforms     []v1.Platform
	srcKeychain   authn.Keychain
	dstKeychain   authn.Keychain
	insecureHosts []string
	rootCAs       *x509.CertPool
	base          http.RoundTripper
	retries       int
	retryBase     time.Duration
	retryMaxWait  time.Duration
	keepGoing     bool
	userAgent     string
	progress      func(Progress)
	progressEvery time.Duration
	tags          TagFilter
}

// Defaults, in one place.
const (
	DefaultJobs         = 4
	DefaultRetries      = 5
	DefaultRetryBase    = 250 * time.Millisecond
	DefaultRetryMaxWait = 60 * time.Second
)

func defaultOptions() *options {
	return &options{
		jobs:          DefaultJobs,
		srcKeychain:   authn.DefaultKeychain,
		dstKeychain:   authn.DefaultKeychain,
		retries:       DefaultRetries,
		retryBase:     DefaultRetryBase,
		retryMaxWait:  DefaultRetryMaxWait,
		keepGoing:     true,
		userAgent:     "coral-mirror",
		progressEvery: 250 * time.Millisecond,
	}
}

// WithJobs sets how many images are copied at once; each image also uploads
// up to n blobs at once. The default is DefaultJobs.
func WithJobs(n int) Option {
	return func(o *options) error {
		if n <= 0 {
			return fmt.Errorf("jobs must be at least 1, got %d", n)
		}
		o.jobs = n
		return nil
	}
}

// WithPlatforms copies only the given platforms of multi-platform images.
// The destination then holds a different (smaller) index, so its digest
// differs from the source's; with one platform the destination holds that
// platform's image manifest, whose digest is the source's child digest.
func WithPlatforms(ps ...v1.Platform) Option {
	return func(o *options) error {
		for _, p := range ps {
			if p.OS == "" || p.Architecture == "" {
				return fmt.Errorf("platform %q: want os/arch[/variant]", p.String())
			}
		}
		o.platforms = append([]v1.Platform(nil), ps...)
		return nil
	}
}

// WithSourceKeychain sets the credentials used to read sources. The default
// is authn.DefaultKeychain (the user's docker config and credential helpers).
func WithSourceKeychain(kc authn.Keychain) Option {
	return func(o *options) error {
		if kc == nil {
			return errors.New("source keychain is nil")
		}
		o.srcKeychain = kc
		return nil
	}
}

// WithDestinationKeychain sets the credentials used to write the destination.
// The default is authn.DefaultKeychain.
func WithDestinationKeychain(kc authn.Keychain) Option {
	return func(o *options) error {
		if kc == nil {
			return errors.New("destination keychain is nil")
		}
		o.dstKeychain = kc
		return nil
	}
}

// WithInsecureRegistries allows plain http and unverified TLS for the named
// registries ("host" or "host:port"). Every other registry must present a
// certificate that verifies; plain http is otherwise allowed only on
// loopback addresses (localhost, 127.0.0.0/8, ::1), as Docker does.
func WithInsecureRegistries(hosts ...string) Option {
	return func(o *options) error {
		for _, h := range hosts {
			h = strings.TrimSpace(h)
			if h == "" || strings.Contains(h, "/") {
				return fmt.Errorf("insecure registry %q: want host or host:port", h)
			}
			o.insecureHosts = append(o.insecureHosts, h)
		}
		return nil
	}
}

// WithCAFiles trusts the PEM certificates in files, in addition to the
// system roots, when verifying registries.
func WithCAFiles(files ...string) Option {
	return func(o *options) error {
		if len(files) == 0 {
			return nil
		}
		pool := o.rootCAs
		if pool == nil {
			var err error
			if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
		}
		for _, f := range files {
			pem, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("reading CA file: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("CA file %s holds no PEM certificate", f)
			}
		}
		o.rootCAs = pool
		return nil
	}
}

// WithRetries sets how often a request that met 429 or a transient 5xx (or a
// network error, for reads) is tried in all, the first backoff, and the
// longest wait, which also caps a server's Retry-After.
func WithRetries(attempts int, base, maxWait time.Duration) Option {
	return func(o *options) error {
		if attempts < 1 {
			return fmt.Errorf("retries: attempts must be at least 1, got %d", attempts)
		}
		if base <= 0 || maxWait < base {
			return fmt.Errorf("retries: want 0 < base (%s) <= max wait (%s)", base, maxWait)
		}
		o.retries, o.retryBase, o.retryMaxWait = attempts, base, maxWait
		return nil
	}
}

// WithKeepGoing says whether Copy goes on after an image failed (the
// default) or stops starting new copies.
func WithKeepGoing(keepGoing bool) Option {
	return func(o *options) error {
		o.keepGoing = keepGoing
		return nil
	}
}

// WithTagFilter expands repository sources into their tags. See TagFilter.
func WithTagFilter(f TagFilter) Option {
	return func(o *options) error {
		o.tags = f
		return nil
	}
}

// WithProgress calls fn from one goroutine, at most every interval and once
// more when Copy ends, with the progress so far. The library prints nothing.
func WithProgress(fn func(Progress), interval time.Duration) Option {
	return func(o *options) error {
		if interval <= 0 {
			return fmt.Errorf("progress interval must be positive, got %s", interval)
		}
		o.progress, o.progressEvery = fn, interval
		return nil
	}
}

// WithUserAgent sets the User-Agent sent to registries.
func WithUserAgent(ua string) Option {
	return func(o *options) error {
		o.userAgent = ua
		return nil
	}
}

// WithBaseTransport replaces the innermost HTTP transport (tests, proxies).
// TLS settings from WithCAFiles and WithInsecureRegistries then do not apply.
func WithBaseTransport(rt http.RoundTripper) Option {
	return func(o *options) error {
		if rt == nil {
			return errors.New("base transport is nil")
		}
		o.base = rt
		return nil
	}
}

// isLoopback reports whether host ("host" or "host:port") names this machine.
func isLoopback(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
