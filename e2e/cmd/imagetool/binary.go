package main

import (
	"archive/tar"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func runBinary(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		reg                          registryFlags
		ref, bin, binArm64, entry, p string
	)
	fl := flag.NewFlagSet("binary", flag.ContinueOnError)
	reg.register(fl)
	fl.StringVar(&ref, "ref", "", "where to push, e.g. 127.0.0.1:5000/coral/pause:v1 (required)")
	fl.StringVar(&bin, "binary", "", "static binary for --platform (required)")
	fl.StringVar(&binArm64, "binary-arm64", "", "static binary for linux/arm64; pushes an index of both")
	fl.StringVar(&entry, "entrypoint", "", "path of the binary in the image (default /<name of --binary>)")
	fl.StringVar(&p, "platform", "linux/"+runtime.GOARCH, "platform of --binary")
	if err := parseFlags(fl, args, stderr, 0); err != nil {
		return err
	}
	if ref == "" || bin == "" {
		return usageError{"binary: --ref and --binary are required"}
	}
	if entry == "" {
		entry = "/" + path.Base(bin)
	}
	if !path.IsAbs(entry) {
		return usageError{fmt.Sprintf("binary: --entrypoint %q must be an absolute path", entry)}
	}
	platform, err := parsePlatform(p)
	if err != nil {
		return err
	}
	r, err := reg.parseRef(ref)
	if err != nil {
		return err
	}

	want := []struct {
		platform v1.Platform
		file     string
	}{{platform, bin}}
	if binArm64 != "" {
		want = append(want, struct {
			platform v1.Platform
			file     string
		}{v1.Platform{OS: "linux", Architecture: "arm64"}, binArm64})
	}
	var imgs []platformImage
	for _, w := range want {
		layer, err := binaryLayer(w.file, entry)
		if err != nil {
			return err
		}
		img, err := imageFrom(w.platform, v1.Config{Entrypoint: []string{entry}}, layer)
		if err != nil {
			return err
		}
		imgs = append(imgs, platformImage{w.platform, img})
	}
	d, err := push(ctx, r, imgs, reg.remoteOptions(ctx))
	if err != nil {
		return err
	}
	printPushed(stdout, r, d)
	return nil
}

// binaryLayer is a gzipped tar layer holding file at entry (mode 0755), with
// zero timestamps so the same binary always gives the same digest.
func binaryLayer(file, entry string) (v1.Layer, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading binary: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     entry[1:],
		Mode:     0o755,
		Size:     int64(len(data)),
		Format:   tar.FormatPAX,
	}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
