package mirror

import (
	"context"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sync/errgroup"
)

// blob is one thing an image needs at the destination.
type blob struct {
	digest v1.Hash
	size   int64
}

// Estimate fills each item's Bytes with what Copy would send: the sizes of
// the manifests and of the blobs the destination repository lacks (a blob
// shared by several images counts once). It only reads.
func (m *Mirror) Estimate(ctx context.Context, plan *Plan) error {
	needs := make([][]blob, len(plan.Items))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(min(4*m.o.jobs, 32))
	for i, it := range plan.Items {
		if it.Present {
			continue
		}
		g.Go(func() error {
			bs, err := blobsOf(it.taggable)
			if err != nil {
				return fmt.Errorf("%s: reading manifests: %w", it.Original, err)
			}
			needs[i] = bs
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	type key struct {
		repo   string
		digest v1.Hash
	}
	owner := map[key]int{} // first item that needs the blob in that repository
	var keys []key
	for i, it := range plan.Items {
		for _, b := range needs[i] {
			k := key{it.Destination.Context().Name(), b.digest}
			if _, ok := owner[k]; !ok {
				owner[k] = i
				keys = append(keys, k)
			}
		}
	}
	sizes := map[key]int64{}
	for i, it := range plan.Items {
		for _, b := range needs[i] {
			sizes[key{it.Destination.Context().Name(), b.digest}] = b.size
		}
	}
	missing := make([]bool, len(keys))
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(min(4*m.o.jobs, 32))
	for j, k := range keys {
		g.Go(func() error {
			repo := plan.Items[owner[k]].Destination.Context()
			ok, err := m.blobExists(gctx, repo, k.digest)
			if err != nil {
				return fmt.Errorf("looking for %s in %s: %w", k.digest, repo, explain(err, "destination"))
			}
			missing[j] = !ok
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for j, k := range keys {
		if missing[j] {
			plan.Items[owner[k]].Bytes += sizes[k]
		}
	}
	return nil
}

func (m *Mirror) blobExists(ctx context.Context, repo name.Repository, h v1.Hash) (bool, error) {
	l, err := m.dstPuller.Layer(ctx, repo.Digest(h.String()))
	if err != nil {
		return false, err
	}
	return partial.Exists(l)
}

// blobsOf lists the manifests (as pseudo-blobs, always sent) and blobs of t.
func blobsOf(t remote.Taggable) ([]blob, error) {
	switch x := t.(type) {
	case *remote.Descriptor:
		switch {
		case x.MediaType.IsIndex():
			idx, err := x.ImageIndex()
			if err != nil {
				return nil, err
			}
			return blobsOfIndex(idx)
		case x.MediaType.IsImage():
			img, err := x.Image()
			if err != nil {
				return nil, err
			}
			return blobsOfImage(img)
		}
		return []blob{{x.Digest, x.Size}}, nil
	case v1.ImageIndex:
		return blobsOfIndex(x)
	case v1.Image:
		return blobsOfImage(x)
	}
	return nil, fmt.Errorf("unsupported artifact %T", t)
}

func blobsOfIndex(idx v1.ImageIndex) ([]blob, error) {
	d, err := idx.Digest()
	if err != nil {
		return nil, err
	}
	sz, err := idx.Size()
	if err != nil {
		return nil, err
	}
	out := []blob{{d, sz}}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, c := range im.Manifests {
		switch {
		case c.MediaType.IsIndex():
			child, err := idx.ImageIndex(c.Digest)
			if err != nil {
				return nil, err
			}
			bs, err := blobsOfIndex(child)
			if err != nil {
				return nil, err
			}
			out = append(out, bs...)
		case c.MediaType.IsImage():
			child, err := idx.Image(c.Digest)
			if err != nil {
				return nil, err
			}
			bs, err := blobsOfImage(child)
			if err != nil {
				return nil, err
			}
			out = append(out, bs...)
		default:
			out = append(out, blob{c.Digest, c.Size})
		}
	}
	return out, nil
}

func blobsOfImage(img v1.Image) ([]blob, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	sz, err := img.Size()
	if err != nil {
		return nil, err
	}
	mf, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	out := []blob{{d, sz}, {mf.Config.Digest, mf.Config.Size}}
	for _, l := range mf.Layers {
		if !l.MediaType.IsDistributable() {
			continue
		}
		out = append(out, blob{l.Digest, l.Size})
	}
	return out, nil
}
