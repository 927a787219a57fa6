// Command assemble turns static worker binaries into a multi-platform OCI
// image FROM scratch (no shell, no OS) and pushes it to a registry or writes
// it as an OCI layout. No Docker engine is needed.
//
//	go run ./jobimage/assemble --binary linux/amd64=bin/w-amd64 --binary linux/arm64=bin/w-arm64 --push 127.0.0.1:5000/coral-worker:v0.1.0
//	go run ./jobimage/assemble --binary linux/amd64=bin/w-amd64 --oci-layout _output/worker-layout
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/coral-dev/coral/pkg/imagebuild"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

type binaries []imagebuild.Binary

func (b *binaries) String() string { return fmt.Sprint(len(*b)) }
func (b *binaries) Set(s string) error {
	bin, err := imagebuild.ParseBinary(s)
	if err != nil {
		return err
	}
	*b = append(*b, bin)
	return nil
}

func main() {
	var bins binaries
	flag.Var(&bins, "binary", "os/arch=PATH of a static binary (repeatable)")
	push := flag.String("push", "", "push the index to this reference")
	ociLayout := flag.String("oci-layout", "", "write the index to this OCI layout directory")
	insecure := flag.Bool("insecure", false, "allow plain http to the registry")
	binName := flag.String("name", "coral-worker", "the binary's file name in the image (its entrypoint)")
	flag.Parse()
	if err := run(bins, *binName, *push, *ociLayout, *insecure); err != nil {
		fmt.Fprintln(os.Stderr, "assemble:", err)
		os.Exit(1)
	}
}

func run(bins binaries, binName, push, ociLayout string, insecure bool) error {
	if push == "" && ociLayout == "" {
		return fmt.Errorf("give --push REF or --oci-layout DIR")
	}
	idx, err := imagebuild.Index(bins, binName)
	if err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	if ociLayout != "" {
		p, err := layout.Write(ociLayout, empty.Index)
		if err != nil {
			return err
		}
		if err := p.AppendIndex(idx); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s (%s)\n", ociLayout, d)
	}
	if push != "" {
		var opts []name.Option
		if insecure {
			opts = append(opts, name.Insecure)
		}
		ref, err := name.ParseReference(push, opts...)
		if err != nil {
			return err
		}
		if err := remote.WriteIndex(ref, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		fmt.Fprintf(os.Stderr, "pushed %s@%s\n", ref, d)
		// The last line of stdout is the reference to use.
		fmt.Println(ref.String())
	}
	return nil
}
