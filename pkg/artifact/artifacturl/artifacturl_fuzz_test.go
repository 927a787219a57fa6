package artifacturl

import (
	"net/url"
	"strings"
	"testing"
)

var seeds = []string{
	"https://m.example/models/bert.bin", "https://b.s3.amazonaws.com/k/m.bin?X-Amz-Signature=abc&X-Amz-Expires=60",
	"s3://bucket/llama/", "s3://bucket/a/w.bin", "https://user:pw@m.example/x", "https://tok@m.example/x",
	"http://[::1]:80/x?token=t#frag", "https://m.example/%zz?sig=s", "mailto:a@b", "https://m.example/.coral-tmp-x", "", "?", "//h/x?y",
}

// FuzzParse: any string is parsed or refused without a panic; a parsed
// source's public URL has no user info, query or fragment and parses to
// itself, and its shown form never holds the query.
func FuzzParse(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if _, err := Parse(withMarkers(raw)); err != nil && strings.Contains(err.Error(), "MARK") {
			t.Fatalf("%q: the error repeats a secret: %v", withMarkers(raw), err)
		}
		s, err := Parse(raw)
		if err != nil {
			return
		}
		u, err := url.Parse(s.Public)
		if err != nil || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			t.Fatalf("%q: public URL %q", raw, s.Public)
		}
		again, err := Parse(s.Public)
		if err != nil || again.Public != s.Public || again.Query != "" || again.FileName != s.FileName || again.Prefix != s.Prefix {
			t.Fatalf("%q: %q does not parse to itself: %+v %v", raw, s.Public, again, err)
		}
		noFrag, _, _ := strings.Cut(strings.ReplaceAll(raw, "MARK", ""), "#")
		before, q, _ := strings.Cut(noFrag, "?")
		if m, err := Parse(before + "?QMARK" + q); err == nil && (strings.Contains(m.Display(), "MARK") || strings.Contains(m.Public, "MARK") || !strings.Contains(m.URL(), "QMARK")) {
			t.Fatalf("%q: shown as %q, requested as %q", before+"?QMARK"+q, m.Display(), m.URL())
		}
		if s.Prefix == (s.FileName != "") || (s.FileName != "" && !validFileName(s.FileName)) {
			t.Fatalf("%q: prefix %v, file name %q", raw, s.Prefix, s.FileName)
		}
	})
}

// FuzzRedact: whatever the string, what Redact returns holds neither its
// query nor its password.
func FuzzRedact(f *testing.F) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if m := withMarkers(raw); strings.Contains(Redact(m), "MARK") {
			t.Fatalf("Redact(%q) = %q keeps a secret", m, Redact(m))
		}
		got := Redact(raw)
		if i := strings.Index(got, "?"); i >= 0 && got[i:] != "?…" {
			t.Fatalf("Redact(%q) = %q", raw, got)
		}
	})
}

// withMarkers puts a marked password and a marked query into a fuzzed URL,
// around whatever it holds already: none of the marks may come out.
func withMarkers(raw string) string {
	if strings.Contains(strings.ToUpper(raw), "MARK") {
		raw = strings.ReplaceAll(strings.ToUpper(raw), "MARK", "")
	}
	before, q, _ := strings.Cut(raw, "?")
	if scheme, rest, ok := strings.Cut(before, "://"); ok && !strings.ContainsAny(scheme, "/#") {
		before = scheme + "://u:PWMARK@" + rest
	}
	return before + "?QMARK" + q
}
