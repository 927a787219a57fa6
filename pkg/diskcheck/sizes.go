package diskcheck

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// SizeOptions tune ImageSizes.
type SizeOptions struct {
	// Remote are the registry options (credentials: remote.WithAuthFromKeychain
	// with the keychain used for digest resolution).
	Remote []remote.Option
	// Concurrency bounds the images looked up at once (default 8).
	Concurrency int
	// Timeout bounds one image's lookups (default 20s).
	Timeout time.Duration
}

// SizeError is an image whose size could not be read.
type SizeError struct {
	Ref string
	Err error
}

func (e *SizeError) Error() string { return fmt.Sprintf("%s: %v", e.Ref, e.Err) }
func (e *SizeError) Unwrap() error { return e.Err }

// ImageSizes reads each image's manifest (by digest when it is known) and,
// for an index, the manifest of each of platforms, and returns their
// compressed sizes. Only manifests are read, never a layer: one request per
// image plus one per platform of an index. Images that cannot be read are
// returned as errors (sorted by reference); the others still count.
func ImageSizes(ctx context.Context, images []Image, platforms []Platform, o SizeOptions) (Sizes, []*SizeError) {
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Timeout <= 0 {
		o.Timeout = 20 * time.Second
	}
	out := Sizes{}
	var errs []*SizeError
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.Concurrency)
	for _, img := range images {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			ictx, cancel := context.WithTimeout(ctx, o.Timeout)
			defer cancel()
			byP, err := imageSize(ictx, img, platforms, o.Remote)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, &SizeError{Ref: img.Ref, Err: err})
				return
			}
			out[img.Ref] = byP
		}()
	}
	wg.Wait()
	sort.Slice(errs, func(i, j int) bool { return errs[i].Ref < errs[j].Ref })
	return out, errs
}

func imageSize(ctx context.Context, img Image, platforms []Platform, ropts []remote.Option) (map[Platform]ImageSize, error) {
	ref, err := name.ParseReference(img.Ref)
	if err != nil {
		return nil, err
	}
	if img.Digest != "" {
		if ref, err = name.NewDigest(ref.Context().Name() + "@" + img.Digest); err != nil {
			return nil, err
		}
	}
	desc, err := remote.Get(ref, append(append([]remote.Option{}, ropts...), remote.WithContext(ctx))...)
	if err != nil {
		return nil, err
	}
	out := map[Platform]ImageSize{}
	if !desc.MediaType.IsIndex() {
		im, err := desc.Image()
		if err != nil {
			return nil, err
		}
		sz, err := manifestSize(im)
		if err != nil {
			return nil, err
		}
		out[Platform{}] = sz
		return out, nil
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, p := range platforms {
		d, ok := pick(im, p)
		if !ok {
			continue // the node cannot pull it either; NodeNeed reports it unknown
		}
		child, err := idx.Image(d)
		if err != nil {
			return nil, fmt.Errorf("%s manifest: %w", p, err)
		}
		sz, err := manifestSize(child)
		if err != nil {
			return nil, fmt.Errorf("%s manifest: %w", p, err)
		}
		out[p] = sz
	}
	return out, nil
}

// pick chooses an index's image manifest for a platform, as a runtime
// would: the first entry of that os/arch (nodes do not report a variant).
func pick(im *v1.IndexManifest, p Platform) (v1.Hash, bool) {
	for _, m := range im.Manifests {
		if m.Platform == nil || !m.MediaType.IsImage() {
			continue
		}
		if m.Platform.OS == p.OS && m.Platform.Architecture == p.Architecture {
			return m.Digest, true
		}
	}
	return v1.Hash{}, false
}

// manifestSize sums the config and layer sizes the manifest declares.
func manifestSize(img v1.Image) (ImageSize, error) {
	m, err := img.Manifest()
	if err != nil {
		return ImageSize{}, err
	}
	d, err := img.Digest()
	if err != nil {
		return ImageSize{}, err
	}
	sz := ImageSize{Manifest: d.String(), Blobs: []Blob{{Digest: m.Config.Digest.String(), Size: m.Config.Size}}}
	for _, l := range m.Layers {
		sz.Blobs = append(sz.Blobs, Blob{Digest: l.Digest.String(), Size: l.Size})
	}
	return sz, nil
}
