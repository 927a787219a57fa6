package mirror

import (
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// ParsePlatforms parses "os/arch[/variant]" values, each possibly a
// comma-separated list, as given to --platform.
func ParsePlatforms(values []string) ([]v1.Platform, error) {
	var out []v1.Platform
	seen := map[string]bool{}
	for _, v := range values {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			p, err := v1.ParsePlatform(s)
			if err != nil || p.OS == "" || p.Architecture == "" {
				return nil, fmt.Errorf("--platform %q: want os/arch[/variant], e.g. linux/amd64 or linux/arm/v7", s)
			}
			if !seen[p.String()] {
				seen[p.String()] = true
				out = append(out, *p)
			}
		}
	}
	return out, nil
}

func wanted(have *v1.Platform, want []v1.Platform) bool {
	if have == nil {
		return false
	}
	for _, w := range want {
		if have.Satisfies(w) {
			return true
		}
		// linux/arm64/v8 is what most indexes call plain linux/arm64.
		if w.Architecture == "arm64" && w.Variant == "v8" && have.Variant == "" {
			w.Variant = ""
			if have.Satisfies(w) {
				return true
			}
		}
	}
	return false
}

func platformList(ps []v1.Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// selectPlatforms narrows what will be written to the platforms asked for.
// For an index: one platform writes that platform's image manifest (its
// digest is the source's child digest); several write a new, smaller index
// (a new digest). A single-platform image is copied as is when it matches.
func (m *Mirror) selectPlatforms(it *Item, desc *remote.Descriptor) error {
	want := m.o.platforms
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return fmt.Errorf("reading index: %w", err)
		}
		var keep []v1.Descriptor
		var have []string
		for _, d := range im.Manifests {
			if d.Platform != nil && d.Platform.OS != "unknown" {
				have = append(have, d.Platform.String())
			}
			if wanted(d.Platform, want) {
				keep = append(keep, d)
			}
		}
		if len(keep) == 0 {
			return &kindError{ErrPlatform, fmt.Errorf("--platform %s: the index has only %s", platformList(want), strings.Join(have, ", "))}
		}
		for _, d := range keep {
			it.Platforms = append(it.Platforms, d.Platform.String())
		}
		var notes []string
		if missing := missingPlatforms(keep, want); missing != "" {
			notes = append(notes, "not in source: "+missing)
		}
		defer func() { it.Note = strings.Join(notes, "; ") }()
		if len(keep) == 1 && keep[0].MediaType.IsImage() {
			img, err := idx.Image(keep[0].Digest)
			if err != nil {
				return err
			}
			it.taggable, it.Digest = img, keep[0].Digest
			notes = append(notes, fmt.Sprintf("platform subset: the destination holds the %s image manifest, not the source index %s", keep[0].Platform, desc.Digest))
			return nil
		}
		if len(keep) == len(im.Manifests) {
			return nil // every platform wanted: the whole index, digest kept
		}
		keepSet := map[v1.Hash]bool{}
		for _, d := range keep {
			keepSet[d.Digest] = true
		}
		sub := mutate.RemoveManifests(idx, func(d v1.Descriptor) bool { return !keepSet[d.Digest] })
		h, err := sub.Digest()
		if err != nil {
			return fmt.Errorf("computing the subset index: %w", err)
		}
		it.taggable, it.Digest = sub, h
		notes = append(notes, fmt.Sprintf("platform subset: a new index with %d of %d manifests, so its digest differs from the source's %s", len(keep), len(im.Manifests), desc.Digest))
		return nil
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return fmt.Errorf("reading image config: %w", err)
		}
		p := cf.Platform()
		if !wanted(p, want) {
			got := "an unknown platform"
			if p != nil {
				got = p.String()
			}
			return &kindError{ErrPlatform, fmt.Errorf("--platform %s: it is a single-platform image for %s", platformList(want), got)}
		}
		return nil
	}
	return fmt.Errorf("--platform: cannot select platforms of a %s", desc.MediaType)
}

func missingPlatforms(keep []v1.Descriptor, want []v1.Platform) string {
	var miss []string
	for _, w := range want {
		found := false
		for _, d := range keep {
			if wanted(d.Platform, []v1.Platform{w}) {
				found = true
				break
			}
		}
		if !found {
			miss = append(miss, w.String())
		}
	}
	return strings.Join(miss, ",")
}
