// Package artifacturl holds the rules for artifact source URLs: which URLs
// Coral fetches, and how a URL is shown, stored and passed on without its
// secrets (user info, and the query, where pre-signed URLs keep their
// credentials). It has no dependencies beyond the standard library, so the
// worker can use it too.
package artifacturl

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// Source is one parsed artifact source.
//
// A source's query string is treated as a secret: pre-signed URLs (S3, GCS,
// Azure SAS, CDN tokens) carry their credentials there. It travels apart from
// the rest of the URL: Public is what Coral shows, stores and passes in Job
// arguments; Query reaches only the request itself (through a Secret the run
// mounts into the worker).
type Source struct {
	// Public is the URL without query, fragment or user info.
	Public string
	// Query is the raw query string, without '?' ("" when none).
	Query string
	// Scheme is http, https or s3.
	Scheme string
	// Prefix is true for s3://bucket/prefix/: every object under the prefix.
	Prefix bool
	// FileName is the name the source is saved under in the artifact
	// directory ("" for a prefix).
	FileName string
}

// Display is how a source is shown in reports, logs and messages: the public
// URL, with "?…" when a query was left out.
func (s Source) Display() string {
	if s.Query != "" {
		return s.Public + "?…"
	}
	return s.Public
}

// URL is the full URL, query included: for the request only.
func (s Source) URL() string {
	if s.Query != "" {
		return s.Public + "?" + s.Query
	}
	return s.Public
}

// ErrUserInfo says a URL holds a user name or password.
var ErrUserInfo = errors.New("holds a user name or password")

// Parse parses and checks an artifact source: http(s)://host/path/file,
// s3://bucket/key or s3://bucket/prefix/. Its errors never repeat the URL's
// secrets.
func Parse(raw string) (Source, error) {
	shown := Redact(raw)
	u, err := url.Parse(raw)
	if err != nil {
		return Source{}, fmt.Errorf("source %q is not a valid URL", shown)
	}
	if u.User != nil {
		return Source{}, fmt.Errorf("source %q %w: Coral does not put credentials in URLs, where Jobs, logs and reports would show them; put them in a Secret instead (--header-secret with a key Authorization and a value such as \"Basic <base64 of user:password>\", or --s3-secret for s3://)", shown, ErrUserInfo)
	}
	if u.Opaque != "" {
		return Source{}, fmt.Errorf("source %q is not a URL Coral can fetch: want http(s)://host/path or s3://bucket/key", shown)
	}
	s := Source{Scheme: u.Scheme, Query: u.RawQuery}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return Source{}, fmt.Errorf("source %q has no host", shown)
		}
		b := path.Base(u.Path)
		if b == "/" || b == "." || b == ".." || strings.HasSuffix(u.Path, "/") {
			return Source{}, fmt.Errorf("source %q names no file: give the URL of a file", shown)
		}
		s.FileName = b
	case "s3":
		if u.Host == "" {
			return Source{}, fmt.Errorf("source %q has no bucket: use s3://bucket/key or s3://bucket/prefix/", shown)
		}
		if u.RawQuery != "" {
			return Source{}, fmt.Errorf("source %q: s3:// sources take no query; credentials go in --s3-secret", shown)
		}
		if strings.HasSuffix(u.Path, "/") || u.Path == "" {
			s.Prefix = true
		} else {
			b := path.Base(u.Path)
			if b == "." || b == ".." {
				return Source{}, fmt.Errorf("source %q names no object", shown)
			}
			s.FileName = b
		}
	default:
		return Source{}, fmt.Errorf("source %q: unsupported scheme %q (use http://, https:// or s3://)", shown, u.Scheme)
	}
	if s.FileName != "" && !validFileName(s.FileName) {
		return Source{}, fmt.Errorf("source %q: its file name %q cannot be a file in the artifact directory", shown, s.FileName)
	}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	s.Public = u.String()
	return s, nil
}

// validFileName: one path component Coral may create; not one of Coral's own
// names (.coral-manifest.json, .coral-tmp-…).
func validFileName(n string) bool {
	return n != "" && n != "." && n != ".." && !strings.ContainsAny(n, "/\x00") && !strings.HasPrefix(n, ".coral-")
}

// ParseChecksum parses a --checksum-url: an http(s) URL without user info,
// whose query, like a source's, is a secret.
func ParseChecksum(raw string) (Source, error) {
	shown := Redact(raw)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Source{}, fmt.Errorf("--checksum-url %q: want an http(s) URL", shown)
	}
	if u.User != nil {
		return Source{}, fmt.Errorf("--checksum-url %q %w: put credentials in --header-secret instead", shown, ErrUserInfo)
	}
	s := Source{Scheme: u.Scheme, Query: u.RawQuery, FileName: path.Base(u.Path)}
	u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
	s.Public = u.String()
	return s, nil
}

var userInfoRE = regexp.MustCompile(`//[^/?#]*@`)

// Redact returns a URL fit to show or store: no user info, and "?…" in place
// of a query. It never returns a query or password, even for a string that
// does not parse.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		s, _, cut := strings.Cut(raw, "?")
		s, _, _ = strings.Cut(s, "#")
		s = userInfoRE.ReplaceAllString(s, "//")
		if cut {
			s += "?…"
		}
		return s
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	q := u.RawQuery != "" || u.ForceQuery
	u.RawQuery, u.ForceQuery = "", false
	s := u.String()
	if u.Opaque != "" {
		// an opaque URL (scheme:rest) may hide anything after the scheme
		return u.Scheme + ":…"
	}
	if q {
		s += "?…"
	}
	return s
}

// SameOrigin says whether two URLs have the same scheme, host and port: only
// then may a request to b carry headers meant for a.
func SameOrigin(a, b *url.URL) bool {
	return a != nil && b != nil && strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host)
}
