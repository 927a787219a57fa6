package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func newRegistry(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func mustParse(t *testing.T, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := Run(context.Background(), args, &out, &errOut)
	return strings.TrimSpace(out.String()), err
}

func TestBinary(t *testing.T) {
	reg := newRegistry(t)
	bin := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(bin, []byte("not really a binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	ref := reg + "/coral/pause:v1"
	out, err := run(t, "binary", "--ref", ref, "--binary", bin, "--platform", "linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, reg+"/coral/pause@sha256:") {
		t.Fatalf("output %q: want the pushed reference with its digest", out)
	}
	img, err := remote.Image(mustParse(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != "/pause" {
		t.Errorf("entrypoint %q, want /pause", got)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	// Same binary, same digest: the layer carries no timestamps.
	again, err := run(t, "binary", "--ref", ref, "--binary", bin, "--platform", "linux/amd64")
	if err != nil || again != out {
		t.Errorf("second push gave %q (%v), want %q", again, err, out)
	}
}

func TestRandomIndexAndDigestAndDelete(t *testing.T) {
	reg := newRegistry(t)
	ref := reg + "/samples/multi:v1"
	out, err := run(t, "random", "--ref", ref, "--layers", "2", "--layer-size", "1000",
		"--platforms", "linux/amd64,linux/arm64", "--seed", "7")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(mustParse(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 {
		t.Fatalf("got %s with %d manifests, want an OCI index of 2", im.MediaType, len(im.Manifests))
	}
	for i, arch := range []string{"amd64", "arm64"} {
		if p := im.Manifests[i].Platform; p == nil || p.Architecture != arch {
			t.Errorf("manifest %d: platform %v, want linux/%s", i, p, arch)
		}
	}

	d, err := run(t, "digest", ref)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out, "@"+d) {
		t.Errorf("digest %q does not match pushed %q", d, out)
	}
	// The same seed gives the same digest.
	again, err := run(t, "random", "--ref", reg+"/samples/other:v1", "--layers", "2", "--layer-size", "1000",
		"--platforms", "linux/amd64,linux/arm64", "--seed", "7")
	if err != nil || !strings.HasSuffix(again, "@"+d) {
		t.Errorf("same seed pushed %q (%v), want digest %s", again, err, d)
	}

	if _, err := run(t, "delete", ref); err != nil {
		t.Fatal(err)
	}
	// (The distribution registry also drops the tags of a deleted manifest;
	// this in-process one keeps them, so ask by digest.)
	if _, err := run(t, "digest", reg+"/samples/multi@"+d); err == nil {
		t.Error("digest after delete succeeded, want an error")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"bogus"},
		{"binary", "--ref", "x"},
		{"random"},
		{"random", "--ref", "127.0.0.1:1/x:v1", "--platforms", "linux"},
		{"digest"},
	} {
		_, err := run(t, args...)
		if _, ok := err.(usageError); !ok {
			t.Errorf("%q: got %v, want a usage error", args, err)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for ref, want := range map[string]bool{
		"127.0.0.1:5000/a:b": true,
		"localhost:5000/a":   true,
		"[::1]:5000/a":       true,
		"example.com/a":      false,
		"10.0.0.1:5000/a":    false,
	} {
		if got := isLoopback(ref); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", ref, got, want)
		}
	}
}
