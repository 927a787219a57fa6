package mirror

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Kinds of failure that callers branch on (e.g. to suggest a flag).
var (
	// ErrUnreachable: the registry could not be reached at all.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrUntrusted: the registry's TLS certificate did not verify.
	ErrUntrusted = errors.New("registry certificate not trusted")
	// ErrUnauthorized: the registry refused the credentials (or their absence).
	ErrUnauthorized = errors.New("registry refused the credentials")
	// ErrNotFound: the image or repository does not exist.
	ErrNotFound = errors.New("not found")
	// ErrPlatform: the image does not have the platforms asked for.
	ErrPlatform = errors.New("platform not available")

	errNoLayer = errors.New("index child is neither an image nor an index")
)

// kindError attaches a kind to an error without hiding it.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.kind.Error() + ": " + e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// explain classifies err. side is "source" or "destination".
func explain(err error, side string) error {
	if err == nil {
		return nil
	}
	var (
		terr  *transport.Error
		uae   x509.UnknownAuthorityError
		cve   *x509.CertificateInvalidError
		hne   x509.HostnameError
		opErr *net.OpError
		dnsEr *net.DNSError
	)
	switch {
	case errors.As(err, &uae), errors.As(err, &cve), errors.As(err, &hne):
		return &kindError{ErrUntrusted, err}
	case errors.Is(err, ErrPlainHTTP):
		return err
	case errors.As(err, &terr):
		switch terr.StatusCode {
		case http.StatusUnauthorized:
			return &kindError{ErrUnauthorized, err}
		case http.StatusForbidden:
			if side == "destination" {
				return &kindError{ErrUnauthorized, err}
			}
		case http.StatusNotFound:
			return &kindError{ErrNotFound, err}
		}
		return err
	case errors.As(err, &dnsEr), errors.As(err, &opErr):
		return &kindError{ErrUnreachable, err}
	}
	// Token exchanges wrap their errors in plain strings.
	if strings.Contains(err.Error(), "UNAUTHORIZED") {
		return &kindError{ErrUnauthorized, err}
	}
	return err
}

// itemError is a planning problem with one item.
type itemError struct {
	item *Item
	side string
	reg  name.Registry // set when the problem may be the registry's, not the image's
	err  error
}

func (e *itemError) Error() string {
	return fmt.Sprintf("%s: %s: %v", e.item.Original, e.side, e.err)
}

func (e *itemError) Unwrap() error { return e.err }

// registryWide reports whether err is about a whole registry rather than
// one image.
func registryWide(err error) bool {
	return errors.Is(err, ErrUnreachable) || errors.Is(err, ErrUntrusted) ||
		errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrPlainHTTP)
}

// groupByRegistry turns per-item errors into problems, saying a registry-wide
// problem once per registry instead of once per image.
func groupByRegistry(items []*Item, errs []error) []error {
	type group struct {
		first error
		srcs  []string
	}
	groups := map[string]*group{}
	var keys []string
	var problems []error
	for i, err := range errs {
		if err == nil {
			continue
		}
		var ie *itemError
		if errors.As(err, &ie) && ie.reg.RegistryStr() != "" && registryWide(ie.err) {
			k := ie.side + " registry " + ie.reg.RegistryStr()
			g, ok := groups[k]
			if !ok {
				g = &group{first: ie.err}
				groups[k] = g
				keys = append(keys, k)
			}
			g.srcs = append(g.srcs, items[i].Original)
			continue
		}
		problems = append(problems, err)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := groups[k]
		which := strings.Join(g.srcs, ", ")
		if len(g.srcs) > 3 {
			which = strings.Join(g.srcs[:3], ", ") + fmt.Sprintf(" and %d more", len(g.srcs)-3)
		}
		problems = append(problems, &registryError{where: k, images: which, err: g.first})
	}
	return problems
}

// registryError is a registry-wide planning problem.
type registryError struct {
	where, images string
	err           error
}

func (e *registryError) Error() string {
	return fmt.Sprintf("%s (for %s): %v", e.where, e.images, e.err)
}

func (e *registryError) Unwrap() error { return e.err }
