package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func runDigest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var reg registryFlags
	fl := flag.NewFlagSet("digest", flag.ContinueOnError)
	reg.register(fl)
	if err := parseFlags(fl, args, stderr, 1); err != nil {
		return err
	}
	r, err := reg.parseRef(fl.Arg(0))
	if err != nil {
		return err
	}
	desc, err := remote.Head(r, reg.remoteOptions(ctx)...)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", r, err)
	}
	fmt.Fprintln(stdout, desc.Digest)
	return nil
}

func runDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var reg registryFlags
	fl := flag.NewFlagSet("delete", flag.ContinueOnError)
	reg.register(fl)
	if err := parseFlags(fl, args, stderr, 1); err != nil {
		return err
	}
	r, err := reg.parseRef(fl.Arg(0))
	if err != nil {
		return err
	}
	opts := reg.remoteOptions(ctx)
	// The distribution registry deletes manifests by digest only.
	if _, ok := r.(name.Digest); !ok {
		desc, err := remote.Head(r, opts...)
		if err != nil {
			return fmt.Errorf("fetching %s: %w", r, err)
		}
		r = r.Context().Digest(desc.Digest.String())
	}
	if err := remote.Delete(r, opts...); err != nil {
		return fmt.Errorf("deleting %s: %w", r, err)
	}
	fmt.Fprintf(stdout, "deleted %s\n", r)
	return nil
}
