package main

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// platformImage is one image of what gets pushed, with the platform it is for.
type platformImage struct {
	platform v1.Platform
	image    v1.Image
}

// imageFrom builds an OCI image of layers for platform, with config cfg.
func imageFrom(platform v1.Platform, cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layers...)
	if err != nil {
		return nil, fmt.Errorf("appending layers: %w", err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cf = cf.DeepCopy()
	// containerd refuses a single-manifest image whose config names another
	// platform (or none), so every image says what it is for.
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting config: %w", err)
	}
	return img, nil
}

// push writes one image as is, or several as an OCI index, to ref and returns
// the digest of what was pushed.
func push(ctx context.Context, ref name.Reference, imgs []platformImage, opts []remote.Option) (v1.Hash, error) {
	if len(imgs) == 1 {
		if err := remote.Write(ref, imgs[0].image, opts...); err != nil {
			return v1.Hash{}, fmt.Errorf("pushing %s: %w", ref, err)
		}
		return imgs[0].image.Digest()
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, pi := range imgs {
		p := pi.platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        pi.image,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	if err := remote.WriteIndex(ref, idx, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("pushing index %s: %w", ref, err)
	}
	return idx.Digest()
}

// printPushed prints REF@DIGEST, the line scripts read.
func printPushed(w interface{ Write([]byte) (int, error) }, ref name.Reference, d v1.Hash) {
	fmt.Fprintf(w, "%s@%s\n", ref.Context().Name(), d)
}
