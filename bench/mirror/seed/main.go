// Command seed pushes a random two-platform image index to a registry, for
// the mirror benchmark: incompressible layers of realistic, uneven sizes.
//
//	go run ./bench/mirror/seed -ref 127.0.0.1:5000/bench/app:v1 -mb 200
package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Shares of one platform's size per layer, like a base, a runtime, deps, app.
var shares = []float64{0.50, 0.25, 0.15, 0.08, 0.02}

func main() {
	ref := flag.String("ref", "", "where to push, HOST/REPO:TAG")
	mb := flag.Int("mb", 200, "total size of all layers, in MiB")
	flag.Parse()
	if *ref == "" {
		fmt.Fprintln(os.Stderr, "seed: -ref is required")
		os.Exit(2)
	}
	if err := run(*ref, int64(*mb)<<20); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

func run(ref string, total int64) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	start := time.Now()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		for _, share := range shares {
			b := make([]byte, int64(share*float64(total/2)))
			if _, err := rand.Read(b); err != nil {
				return err
			}
			if img, err = mutate.AppendLayers(img, static.NewLayer(b, types.OCILayer)); err != nil {
				return err
			}
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = p.OS, p.Architecture
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	if err := remote.WriteIndex(r, idx, remote.WithJobs(8)); err != nil {
		return fmt.Errorf("pushing %s: %w", ref, err)
	}
	d, _ := idx.Digest()
	fmt.Printf("seeded %s@%s (%d MiB) in %s\n", ref, d, total>>20, time.Since(start).Round(time.Millisecond))
	return nil
}
