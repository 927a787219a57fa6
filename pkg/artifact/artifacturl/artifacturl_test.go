package artifacturl

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in                  string
		public, query, file string
		prefix              bool
		err                 string
	}{
		{in: "https://m.example/models/bert.bin", public: "https://m.example/models/bert.bin", file: "bert.bin"},
		{in: "https://b.s3.amazonaws.com/k/m.bin?X-Amz-Signature=SECRET&X-Amz-Expires=60", public: "https://b.s3.amazonaws.com/k/m.bin", query: "X-Amz-Signature=SECRET&X-Amz-Expires=60", file: "m.bin"},
		{in: "https://m.example/bert.bin#frag", public: "https://m.example/bert.bin", file: "bert.bin"},
		{in: "s3://bucket/llama/", public: "s3://bucket/llama/", prefix: true},
		{in: "s3://bucket", public: "s3://bucket", prefix: true},
		{in: "s3://bucket/a/w.bin", public: "s3://bucket/a/w.bin", file: "w.bin"},
		{in: "https://user:SECRET@m.example/bert.bin", err: "user name or password"},
		{in: "https://TOKEN@m.example/bert.bin", err: "user name or password"},
		{in: "ftp://m.example/x", err: `unsupported scheme "ftp"`},
		{in: "https://m.example/%zz", err: "not a valid URL"},
		{in: "https://m.example/", err: "names no file"},
		{in: "https://m.example/dir/", err: "names no file"},
		{in: "https:///x.bin", err: "no host"},
		{in: "s3:///k", err: "no bucket"},
		{in: "s3://b/k?versionId=1", err: "no query"},
		{in: "https://m.example/.coral-manifest.json", err: "cannot be a file"},
		{in: "mailto:x@y", err: "not a URL Coral can fetch"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Parse(%q) = %+v, %v; want error %q", tt.in, got, err, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("the error repeats the secret: %v", err)
			}
			continue
		}
		if err != nil || got.Public != tt.public || got.Query != tt.query || got.FileName != tt.file || got.Prefix != tt.prefix {
			t.Errorf("Parse(%q) = %+v, %v", tt.in, got, err)
		}
		if got.URL() != strings.Split(tt.in, "#")[0] {
			t.Errorf("URL() = %s", got.URL())
		}
		if strings.Contains(got.Display(), "SECRET") || strings.Contains(got.Public, "SECRET") {
			t.Errorf("shown form leaks: %s", got.Display())
		}
	}
	if _, err := Parse("https://u:p@h/x"); !errors.Is(err, ErrUserInfo) {
		t.Error("userinfo must be ErrUserInfo")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://h/p/f.bin":                      "https://h/p/f.bin",
		"https://u:SECRET@h/p?sig=SECRET":        "https://h/p?…",
		"https://h/p?":                           "https://h/p?…",
		"https://h/p%zz?sig=SECRET":              "https://h/p%zz?…",
		"https://u:SECRET@h/p%zz":                "https://h/p%zz",
		"scheme:SECRET":                          "scheme:…",
		"https://h/p#SECRET":                     "https://h/p",
		"http://[::1]:80/x?token=SECRET#SECRET2": "http://[::1]:80/x?…",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	p := func(s string) *url.URL { u, _ := url.Parse(s); return u }
	if !SameOrigin(p("https://a.example/x"), p("https://A.example/y?z")) {
		t.Error("same host, other path")
	}
	for _, other := range []string{"http://a.example/x", "https://a.example:8443/x", "https://cdn.a.example/x", "https://b.example/x"} {
		if SameOrigin(p("https://a.example/x"), p(other)) {
			t.Errorf("%s is another origin", other)
		}
	}
}
