package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func runRandom(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		reg            registryFlags
		ref, platforms string
		layers, size   int64
		seed           uint64
	)
	fl := flag.NewFlagSet("random", flag.ContinueOnError)
	reg.register(fl)
	fl.StringVar(&ref, "ref", "", "where to push (required)")
	fl.Int64Var(&layers, "layers", 1, "number of layers per image")
	fl.Int64Var(&size, "layer-size", 100<<10, "bytes of random content per layer (before compression; random data does not compress)")
	fl.StringVar(&platforms, "platforms", "linux/"+runtime.GOARCH, "comma-separated platforms; more than one pushes an index")
	fl.Uint64Var(&seed, "seed", 0, "seed for the content (0: random); the same seed and sizes give the same digest")
	if err := parseFlags(fl, args, stderr, 0); err != nil {
		return err
	}
	if ref == "" {
		return usageError{"random: --ref is required"}
	}
	if layers < 1 || size < 0 {
		return usageError{"random: --layers must be >= 1 and --layer-size >= 0"}
	}
	r, err := reg.parseRef(ref)
	if err != nil {
		return err
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewChaCha8(seedBytes(seed)))

	var imgs []platformImage
	for _, ps := range strings.Split(platforms, ",") {
		p, err := parsePlatform(strings.TrimSpace(ps))
		if err != nil {
			return err
		}
		var ls []v1.Layer
		for i := int64(0); i < layers; i++ {
			l, err := randomLayer(rng, size)
			if err != nil {
				return err
			}
			ls = append(ls, l)
		}
		img, err := imageFrom(p, v1.Config{Cmd: []string{"/random"}}, ls...)
		if err != nil {
			return err
		}
		imgs = append(imgs, platformImage{p, img})
	}
	d, err := push(ctx, r, imgs, reg.remoteOptions(ctx))
	if err != nil {
		return err
	}
	printPushed(stdout, r, d)
	return nil
}

func seedBytes(seed uint64) (b [32]byte) {
	for i := range 8 {
		b[i] = byte(seed >> (8 * i))
	}
	return b
}

// randomLayer is a layer holding one file of size random bytes. Compression
// uses gzip.BestSpeed: random data does not shrink, so a higher level only
// burns CPU.
func randomLayer(rng *rand.Rand, size int64) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     fmt.Sprintf("random/%016x", rng.Uint64()),
		Mode:     0o644,
		Size:     size,
		Format:   tar.FormatPAX,
	}); err != nil {
		return nil, err
	}
	chunk := make([]byte, 64<<10)
	for left := size; left > 0; {
		n := min(left, int64(len(chunk)))
		for i := int64(0); i < n; i += 8 {
			v := rng.Uint64()
			for j := int64(0); j < 8 && i+j < n; j++ {
				chunk[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := tw.Write(chunk[:n]); err != nil {
			return nil, err
		}
		left -= n
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestSpeed))
}
