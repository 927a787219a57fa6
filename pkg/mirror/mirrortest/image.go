package mirrortest

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image returns a random image for platform p ("" for none) with layers
// layers of size bytes each.
func Image(t testing.TB, p string, size, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers)
	if err != nil {
		t.Fatal(err)
	}
	if p == "" {
		return img
	}
	plat, err := v1.ParsePlatform(p)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Index returns a random OCI index with one image per platform.
func Index(t testing.TB, platforms []string, size, layers int64) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        Image(t, p, size, layers),
			Descriptor: v1.Descriptor{Platform: plat},
		})
	}
	return idx
}

// Push writes an image or index to ref ("HOST/REPO:TAG") on a plain-http or
// trusted registry, anonymously or with opts.
func Push(t testing.TB, ref string, x any, opts ...remote.Option) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	var h v1.Hash
	switch v := x.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(r, v, opts...)
		if err == nil {
			h, err = v.Digest()
		}
	case v1.Image:
		err = remote.Write(r, v, opts...)
		if err == nil {
			h, err = v.Digest()
		}
	default:
		t.Fatalf("cannot push %T", x)
	}
	if err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return h
}

// Digest returns the digest ref resolves to, or "" when it does not exist.
func Digest(t testing.TB, ref string, opts ...remote.Option) string {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(r, opts...)
	if err != nil {
		return ""
	}
	return d.Digest.String()
}
