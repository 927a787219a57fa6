package mirror

import (
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// blobHomes remembers, for each destination registry, a repository that
// holds each blob this run has written there. go-containerregistry mounts a
// blob from the source repository's path when the registries are the same;
// with this, an image whose blobs another image of the run already wrote to
// a different destination repository mounts them (one POST) instead of
// sending them again: base layers shared by many images cross the network
// once per registry.
type blobHomes struct {
	mu sync.Mutex
	at map[string]map[v1.Hash]name.Repository // registry → blob → repository
}

func (b *blobHomes) lookup(repo name.Repository, h v1.Hash) (name.Repository, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	home, ok := b.at[repo.RegistryStr()][h]
	if !ok || home.Name() == repo.Name() {
		return name.Repository{}, false
	}
	return home, true
}

func (b *blobHomes) add(repo name.Repository, hs []v1.Hash) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.at == nil {
		b.at = map[string]map[v1.Hash]name.Repository{}
	}
	reg := repo.RegistryStr()
	if b.at[reg] == nil {
		b.at[reg] = map[v1.Hash]name.Repository{}
	}
	for _, h := range hs {
		if _, ok := b.at[reg][h]; !ok {
			b.at[reg][h] = repo
		}
	}
}

// mountPlan collects the blobs of one image copy and offers mounts for them.
type mountPlan struct {
	homes *blobHomes
	dst   name.Repository
	mu    sync.Mutex
	blobs []v1.Hash
}

func (p *mountPlan) layer(l v1.Layer) v1.Layer {
	h, err := l.Digest()
	if err != nil {
		return l
	}
	p.mu.Lock()
	p.blobs = append(p.blobs, h)
	p.mu.Unlock()
	home, ok := p.homes.lookup(p.dst, h)
	if !ok {
		return l
	}
	if ml, ok := l.(*remote.MountableLayer); ok {
		l = ml.Layer
	}
	return &remote.MountableLayer{Layer: l, Reference: home.Digest(h.String())}
}

// done records the blobs as present in the destination repository.
func (p *mountPlan) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.homes.add(p.dst, p.blobs)
}

// wrap returns t with its layers (and configs) offering mounts.
func (p *mountPlan) wrap(t remote.Taggable) remote.Taggable {
	switch x := t.(type) {
	case *remote.Descriptor:
		switch {
		case x.MediaType.IsIndex():
			if idx, err := x.ImageIndex(); err == nil {
				return &mountIndex{base: idx, p: p}
			}
		case x.MediaType.IsImage():
			if img, err := x.Image(); err == nil {
				return &mountImage{Image: img, p: p}
			}
		}
		return t // schema 1, artifacts: as they are
	case v1.ImageIndex:
		return &mountIndex{base: x, p: p}
	case v1.Image:
		return &mountImage{Image: x, p: p}
	}
	return t
}

type mountImage struct {
	v1.Image
	p *mountPlan
}

func (i *mountImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for k, l := range ls {
		out[k] = i.p.layer(l)
	}
	return out, nil
}

// ConfigLayer lets go-containerregistry mount the config blob too.
func (i *mountImage) ConfigLayer() (v1.Layer, error) {
	cl, err := partial.ConfigLayer(i.Image)
	if err != nil {
		return nil, err
	}
	return i.p.layer(cl), nil
}

// mountIndex is an index whose images offer mounts. (It cannot embed
// v1.ImageIndex: the field would shadow the ImageIndex method.)
type mountIndex struct {
	base v1.ImageIndex
	p    *mountPlan
}

var _ v1.ImageIndex = (*mountIndex)(nil)

func (x *mountIndex) MediaType() (types.MediaType, error)       { return x.base.MediaType() }
func (x *mountIndex) Digest() (v1.Hash, error)                  { return x.base.Digest() }
func (x *mountIndex) Size() (int64, error)                      { return x.base.Size() }
func (x *mountIndex) IndexManifest() (*v1.IndexManifest, error) { return x.base.IndexManifest() }
func (x *mountIndex) RawManifest() ([]byte, error)              { return x.base.RawManifest() }

func (x *mountIndex) Image(h v1.Hash) (v1.Image, error) {
	img, err := x.base.Image(h)
	if err != nil {
		return nil, err
	}
	return &mountImage{Image: img, p: x.p}, nil
}

func (x *mountIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	idx, err := x.base.ImageIndex(h)
	if err != nil {
		return nil, err
	}
	return &mountIndex{base: idx, p: x.p}, nil
}

// Layer serves non-image children (e.g. artifacts) as the base does.
func (x *mountIndex) Layer(h v1.Hash) (v1.Layer, error) {
	if wl, ok := x.base.(interface {
		Layer(v1.Hash) (v1.Layer, error)
	}); ok {
		return wl.Layer(h)
	}
	return nil, errNoLayer
}
