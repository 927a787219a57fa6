// Command krewmanifest renders krew/.krew.yaml, the krew-release-bot
// template, into a plugin manifest for release archives built here:
//
//	krewmanifest -template krew/.krew.yaml -tag v0.1.0 -dist _output/release -o _output/release/coral.yaml
//
// It evaluates the template the way krew-release-bot does (text/template;
// .TagName and .Version; addURIAndSha renders its URL as a template, then
// adds `uri:` and `sha256:` lines; indent), except that the sha256 comes from
// the archive in -dist named like the URL's last element instead of from a
// download. So the manifest made here is the one the bot will propose to
// krew-index for the same archives.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

func main() {
	tmpl := flag.String("template", "krew/.krew.yaml", "krew-release-bot template")
	tag := flag.String("tag", "", "release tag, e.g. v0.1.0")
	dist := flag.String("dist", "", "directory holding the release archives")
	out := flag.String("o", "", "manifest to write (default: stdout)")
	flag.Parse()
	if err := run(*tmpl, *tag, *dist, *out); err != nil {
		fmt.Fprintf(os.Stderr, "krewmanifest: %v\n", err)
		os.Exit(1)
	}
}

func run(tmplPath, tag, dist, out string) error {
	if tag == "" || dist == "" {
		return errors.New("need -tag and -dist")
	}
	text, err := os.ReadFile(tmplPath)
	if err != nil {
		return err
	}
	manifest, err := render(filepath.Base(tmplPath), string(text), tag, dist)
	if err != nil {
		return err
	}
	if out == "" {
		_, err = os.Stdout.Write(manifest)
		return err
	}
	return os.WriteFile(out, manifest, 0o644)
}

// values are what the bot gives a template.
type values struct {
	TagName string
	Version string
}

func newValues(tag string) values { return values{TagName: tag, Version: versionOf(tag)} }

// versionOf is the bot's .Version: the dotted number in the tag (v1.2.3 → 1.2.3).
func versionOf(tag string) string {
	if v := regexp.MustCompile(`\d+(\.\d+)+`).FindString(tag); v != "" {
		return v
	}
	return tag
}

// render evaluates the template for tag, with checksums of the archives in dist.
func render(name, text, tag, dist string) ([]byte, error) {
	funcs := template.FuncMap{
		"indent": indent,
		"addURIAndSha": func(rawURL, tag string) (string, error) {
			var u bytes.Buffer
			t, err := template.New("url").Parse(rawURL)
			if err != nil {
				return "", err
			}
			if err := t.Execute(&u, newValues(tag)); err != nil {
				return "", err
			}
			sum, err := sha256Of(dist, u.String())
			if err != nil {
				return "", err
			}
			// The bot's exact text: the template is expected to indent the
			// call by 4 spaces (or pipe it through indent).
			return fmt.Sprintf("uri: %s\n    sha256: %s", u.String(), sum), nil
		},
	}
	t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", name, err)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, newValues(tag)); err != nil {
		return nil, fmt.Errorf("rendering %s: %w", name, err)
	}
	if strings.Contains(buf.String(), "{{") {
		return nil, fmt.Errorf("rendering %s: a template action was left in the output", name)
	}
	return buf.Bytes(), nil
}

// indent is the bot's indent: sha256 lines lose addURIAndSha's 4 spaces and
// every line gets the given indentation (the first one from the template).
func indent(spaces int, v string) string {
	v = strings.ReplaceAll(v, "    sha256:", "sha256:")
	pad := strings.Repeat(" ", spaces)
	return strings.TrimSpace(pad + strings.ReplaceAll(v, "\n", "\n"+pad))
}

// sha256Of returns the lowercase hex sha256 of the archive in dist that the
// URL names.
func sha256Of(dist, rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	name := path.Base(u.Path)
	f, err := os.Open(filepath.Join(dist, name))
	if err != nil {
		return "", fmt.Errorf("%s names %s, which is not in %s: %w", rawURL, name, dist, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
