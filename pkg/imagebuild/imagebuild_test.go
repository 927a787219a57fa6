package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
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

// The layer is gzip (every runtime pulls it) and compressed harder than
// go-containerregistry's default (BestSpeed), which stored the worker at 8.60
// MB instead of 7.53 MB. The payload is 2 MB of a real Go binary: this test's.
func TestLayerIsGzipAtLayerCompression(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	data = data[:min(len(data), 2<<20)]
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := Image(Binary{Platform: "linux/amd64", Path: bin}, "coral-worker")
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := layers[0].MediaType()
	if mt != types.OCILayer {
		t.Errorf("media type %s, want %s (gzip)", mt, types.OCILayer)
	}
	size, err := layers[0].Size()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	if m.Layers[0].Size != size {
		t.Errorf("manifest says %d bytes, the layer has %d", m.Layers[0].Size, size)
	}

	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatalf("the stored layer is not gzip: %v", err)
	}
	tarBytes, err := io.ReadAll(zr)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(tarBytes))
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	if body, _ := io.ReadAll(tr); !bytes.Equal(body, data) {
		t.Fatal("the layer does not hold the binary")
	}

	var fast bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&fast, gzip.BestSpeed)
	zw.Write(tarBytes)
	zw.Close()
	if size >= int64(fast.Len()) {
		t.Errorf("stored layer %d bytes, not smaller than gzip BestSpeed's %d", size, fast.Len())
	}
	t.Logf("2 MiB of a Go binary: %d bytes at level %d, %d at BestSpeed", size, LayerCompression, fast.Len())
}
