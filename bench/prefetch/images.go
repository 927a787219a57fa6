package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// benchImage is one image of the set: its tag, digest, and layer digests
// (the blobs a pull must download).
type benchImage struct {
	Ref    string
	Digest string
	Layers []string
	Bytes  int64 // compressed layer bytes
}

// makeImages builds count images of layers random layers of layerSize bytes
// each (gzip, fastest level: random data does not shrink) and pushes them to
// registry. The same seed gives the same digests, so repeated runs re-use the
// registry's blobs instead of piling up new ones.
func makeImages(ctx context.Context, registry, repo string, count, layers int, layerSize int64, seed uint64) ([]benchImage, error) {
	out := make([]benchImage, count)
	errs := make([]error, count)
	sem := make(chan struct{}, max(1, runtime.NumCPU()))
	var wg sync.WaitGroup
	for i := range count {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i], errs[i] = makeImage(ctx, fmt.Sprintf("%s/%s/img-%d:v1", registry, repo, i+1), layers, layerSize, seed+uint64(i)*1000)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func makeImage(ctx context.Context, ref string, layers int, layerSize int64, seed uint64) (benchImage, error) {
	bi := benchImage{Ref: ref}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return bi, err
	}
	var ls []v1.Layer
	for j := range layers {
		l, n, err := randomLayer(seed+uint64(j), layerSize)
		if err != nil {
			return bi, err
		}
		d, err := l.Digest()
		if err != nil {
			return bi, err
		}
		ls = append(ls, l)
		bi.Layers = append(bi.Layers, d.String())
		bi.Bytes += n
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		return bi, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return bi, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Cmd = []string{"/random"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return bi, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if err := remote.Write(r, img, remote.WithContext(ctx), remote.WithJobs(4)); err != nil {
		return bi, fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		return bi, err
	}
	bi.Digest = d.String()
	return bi, nil
}

// randomLayer returns a gzip layer holding one file of size random bytes,
// compressed once into memory (so the digest and the upload read the same
// bytes), and its compressed size.
func randomLayer(seed uint64, size int64) (v1.Layer, int64, error) {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	rng := rand.NewChaCha8(key)
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, 0, err
	}
	tw := tar.NewWriter(zw)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("random/%016x", seed), Mode: 0o644, Size: size}); err != nil {
		return nil, 0, err
	}
	if _, err := io.CopyN(tw, rng, size); err != nil {
		return nil, 0, err
	}
	if err := tw.Close(); err != nil {
		return nil, 0, err
	}
	if err := zw.Close(); err != nil {
		return nil, 0, err
	}
	b := gz.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
	return l, int64(len(b)), err
}
