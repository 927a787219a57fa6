package worker

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParseArtifactSource: any --source value is parsed or refused without
// a panic; a parsed one has a public URL without user info or query, and its
// query and digest come back as given.
func FuzzParseArtifactSource(f *testing.F) {
	h := strings.Repeat("ab", 32)
	for _, s := range []string{
		"https://m.example/bert.bin", "https://m.example/bert.bin=" + h, "s3://b/llama/", "s3://b/k=" + strings.ToUpper(h),
		"https://b.s3.amazonaws.com/k?X-Amz-Signature=" + h, "https://u:p@h/x", "http://[::1]:8080/a%20b.bin?x=1#f", "ftp://x/y", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		src, err := ParseArtifactSource(s)
		if err != nil {
			return
		}
		u, err := url.Parse(src.URL)
		if err != nil {
			t.Fatalf("%q: public URL %q does not parse: %v", s, src.URL, err)
		}
		if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
			t.Fatalf("%q: public URL %q keeps user info, query or fragment", s, src.URL)
		}
		if src.SHA256 != "" && !isHex64(src.SHA256) {
			t.Fatalf("%q: digest %q", s, src.SHA256)
		}
		again, err := ParseArtifactSource(src.URL)
		if err != nil || again.URL != src.URL || again.Query != "" {
			t.Fatalf("%q: the public URL %q does not parse to itself: %+v %v", s, src.URL, again, err)
		}
		if src.Query != "" {
			if q, err := url.Parse(src.requestURL()); err != nil || q.RawQuery != src.Query {
				t.Fatalf("%q: the request URL lost its query", s)
			}
		}
	})
}
