package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path"
	"runtime"

	"github.com/coral-dev/coral/pkg/imagebuild"
	v1 "github.com/google/go-containerregistry/pkg/v1"
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
		// The same assembly as the worker image (FROM scratch, one layer).
		img, err := imagebuild.Image(imagebuild.Binary{Platform: w.platform.OS + "/" + w.platform.Architecture, Path: w.file}, entry[1:])
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
