package diskcheck

import (
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
)

// Image is one image of a run: the reference as given and, when it was
// resolved before the run, its digest (of an index or a manifest).
type Image struct {
	Ref    string
	Digest string
}

// Platform is a node's os/arch (node.status.nodeInfo).
type Platform struct {
	OS           string
	Architecture string
}

func (p Platform) String() string { return p.OS + "/" + p.Architecture }

// NodePlatform reads a node's platform from its status.
func NodePlatform(n *corev1.Node) Platform {
	return Platform{OS: n.Status.NodeInfo.OperatingSystem, Architecture: n.Status.NodeInfo.Architecture}
}

// Blob is one stored piece of an image: a layer or the config, with its
// compressed size as the manifest declares it.
type Blob struct {
	Digest string
	Size   int64
}

// ImageSize is what one image weighs for one platform.
type ImageSize struct {
	// Manifest is the digest of the platform's image manifest.
	Manifest string
	Blobs    []Blob
}

// Bytes is the image's compressed size: config and layers.
func (s ImageSize) Bytes() int64 {
	var n int64
	for _, b := range s.Blobs {
		n += b.Size
	}
	return n
}

// Sizes holds image sizes by reference and platform. A single-platform
// image is stored under the zero Platform and serves every node.
type Sizes map[string]map[Platform]ImageSize

// For returns the size of ref on a node of platform p.
func (s Sizes) For(ref string, p Platform) (ImageSize, bool) {
	byP, ok := s[ref]
	if !ok {
		return ImageSize{}, false
	}
	if sz, ok := byP[p]; ok {
		return sz, true
	}
	sz, ok := byP[Platform{}]
	return sz, ok
}

// Need is what one node still needs for a run's images.
type Need struct {
	// Bytes is the compressed size of every blob the node needs, each blob
	// counted once even when several images share it.
	Bytes int64
	// Held are images the node reports holding already (not counted).
	Held []string
	// Unknown are images whose size for the node's platform is not known
	// (not counted): the check is then a lower bound of a lower bound.
	Unknown []string
}

// NodeNeed computes what a node of platform p that reports the images in
// held (node.status.images) needs for images. node.status.images lists at
// most 50 images by default (kubelet's nodeStatusMaxImages), so an image
// missing from it may still be on the node: Need errs on the large side
// there, and on the small side through compressed sizes.
func NodeNeed(images []Image, sizes Sizes, p Platform, held []corev1.ContainerImage) Need {
	have := map[string]bool{}
	for _, ci := range held {
		for _, n := range ci.Names {
			have[canonical(n)] = true
		}
	}
	var need Need
	seen := map[string]bool{}
	for _, img := range images {
		if isHeld(img, have) {
			need.Held = append(need.Held, img.Ref)
			continue
		}
		sz, ok := sizes.For(img.Ref, p)
		if !ok {
			need.Unknown = append(need.Unknown, img.Ref)
			continue
		}
		for _, b := range sz.Blobs {
			if b.Digest != "" && seen[b.Digest] {
				continue
			}
			seen[b.Digest] = true
			need.Bytes += b.Size
		}
	}
	sort.Strings(need.Held)
	sort.Strings(need.Unknown)
	return need
}

// isHeld says whether the node already holds img: by digest when it was
// resolved (the tag may have moved), by reference otherwise.
func isHeld(img Image, have map[string]bool) bool {
	r, err := name.ParseReference(img.Ref)
	if err != nil {
		return false
	}
	if img.Digest != "" {
		return have[r.Context().Name()+"@"+img.Digest]
	}
	return have[canonical(img.Ref)]
}

// canonical spells a reference one way (docker.io/library/x and x are the
// same repository) so node-reported names and run references compare.
func canonical(ref string) string {
	r, err := name.ParseReference(ref)
	if err != nil {
		return ref
	}
	switch r := r.(type) {
	case name.Digest:
		return r.Context().Name() + "@" + r.DigestStr()
	case name.Tag:
		return r.Context().Name() + ":" + r.TagStr()
	}
	return ref
}

// HeldFilter keeps, of a node's image list, only the entries NodeNeed can
// use for images: those with a name in one of their repositories. A node
// lists up to 50 images (11.1 KB in memory with a digest and a tag name
// each), so a run over thousands of nodes keeps a few entries each instead
// of all of them.
type HeldFilter map[string]bool

// NewHeldFilter is the filter for a run's image references.
func NewHeldFilter(refs []string) HeldFilter {
	f := HeldFilter{}
	for _, ref := range refs {
		if r, err := name.ParseReference(ref); err == nil {
			f[r.Context().Name()] = true
		}
	}
	return f
}

// Keep returns the entries of held that name one of the filter's
// repositories (nil when none does).
func (f HeldFilter) Keep(held []corev1.ContainerImage) []corev1.ContainerImage {
	var out []corev1.ContainerImage
	for _, ci := range held {
		for _, n := range ci.Names {
			if r, err := name.ParseReference(n); err == nil && f[r.Context().Name()] {
				out = append(out, ci)
				break
			}
		}
	}
	return out
}
