package imagebuild

import (
	"archive/tar"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"log"
)

func TestIndexIsReproducibleAndRunnable(t *testing.T) {
	dir := t.TempDir()
	amd := filepath.Join(dir, "amd64")
	arm := filepath.Join(dir, "arm64")
	os.WriteFile(amd, []byte("\x7fELF amd64 program"), 0o755)
	os.WriteFile(arm, []byte("\x7fELF arm64 program"), 0o755)
	bins := []Binary{{Platform: "linux/arm64", Path: arm}, {Platform: "linux/amd64", Path: amd}}
	a, err := Index(bins, "coral-worker")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Index(bins, "coral-worker")
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("same inputs, different digests: %s %s", da, db)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref, _ := name.ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/coral-worker:test")
	if err := remote.WriteIndex(ref, a); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	im, _ := got.IndexManifest()
	if len(im.Manifests) != 2 || im.Manifests[0].Platform.Architecture != "amd64" || im.Manifests[1].Platform.Architecture != "arm64" {
		t.Fatalf("manifests %+v", im.Manifests)
	}
	img, err := got.Image(im.Manifests[1].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if cf.Config.Entrypoint[0] != "/coral-worker" || cf.Architecture != "arm64" || cf.OS != "linux" {
		t.Fatalf("config %+v", cf.Config)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1 (FROM scratch)", len(layers))
	}
	rc, _ := layers[0].Uncompressed()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(tr)
	if h.Name != "coral-worker" || h.Mode != 0o755 || string(body) != "\x7fELF arm64 program" {
		t.Fatalf("layer entry %s %o %q", h.Name, h.Mode, body)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Fatal("the layer must hold only the binary")
	}
}

func TestParseBinary(t *testing.T) {
	if _, err := ParseBinary("linux/amd64"); err == nil {
		t.Error("missing path accepted")
	}
	if b, err := ParseBinary("linux/arm64=/x"); err != nil || b.Platform != "linux/arm64" || b.Path != "/x" {
		t.Errorf("got %+v %v", b, err)
	}
}
