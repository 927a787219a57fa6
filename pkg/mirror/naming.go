package mirror

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// ErrCollision is returned when two sources would be written to one
// destination.
var ErrCollision = errors.New("destination collision")

// Destination is where images go: a registry and an optional path prefix.
//
// A source REGISTRY/PATH:TAG is copied to DEST/PATH:TAG (DEST/PREFIX/PATH:TAG),
// a source REGISTRY/PATH@DIGEST to DEST/PATH@DIGEST, and a source with both a
// tag and a digest to DEST/PATH:TAG, holding exactly that digest. The source
// registry is dropped; Docker Hub's implicit "library/" is kept:
//
//	nginx:1.27                      → registry.local:5000/library/nginx:1.27
//	quay.io/org/app@sha256:…        → registry.local:5000/org/app@sha256:…
//	ghcr.io/org/app:v1 (--to r/m)   → r/m/org/app:v1
//
// The prefix may hold {registry}, replaced by the source registry (Docker
// Hub as docker.io, a port as _PORT), which keeps images of many registries
// apart and matches containerd's per-registry mirror configuration:
//
//	quay.io/org/app:v1 (--to r/{registry}) → r/quay.io/org/app:v1
type Destination struct {
	registry name.Registry
	prefix   string
}

// ParseDestination parses "HOST[:PORT][/PREFIX]". The host must be explicit
// (contain a dot or a port, or be localhost) so that a typo never sends images
// to Docker Hub, and there must be no tag or digest.
func ParseDestination(to string, insecure ...string) (Destination, error) {
	to = strings.TrimSuffix(strings.TrimSpace(to), "/")
	if to == "" {
		return Destination{}, errors.New("empty destination: want HOST[:PORT][/PREFIX], e.g. registry.local:5000/mirror")
	}
	if strings.Contains(to, "://") {
		return Destination{}, fmt.Errorf("destination %q: drop the scheme, want HOST[:PORT][/PREFIX] (use --insecure-registry for plain http)", to)
	}
	host, prefix, _ := strings.Cut(to, "/")
	if !looksLikeHost(host) {
		return Destination{}, fmt.Errorf("destination %q must start with a registry host (with a dot or a port, or localhost), e.g. registry.local:5000/%s", to, to)
	}
	if strings.ContainsAny(prefix, "@:") {
		return Destination{}, fmt.Errorf("destination %q: want a registry and optional path, without tag or digest", to)
	}
	if rest := strings.ReplaceAll(prefix, RegistryPlaceholder, ""); strings.ContainsAny(rest, "{}") {
		return Destination{}, fmt.Errorf("destination %q: the only placeholder is %s", to, RegistryPlaceholder)
	}
	reg, err := name.NewRegistry(host, nameOpts(host, insecure)...)
	if err != nil {
		return Destination{}, fmt.Errorf("destination %q: %w", to, err)
	}
	if prefix != "" {
		if _, err := name.NewRepository(host+"/"+strings.ReplaceAll(prefix, RegistryPlaceholder, "registry"), name.StrictValidation); err != nil {
			return Destination{}, fmt.Errorf("destination %q: invalid path %q (lowercase letters, digits, '.', '_', '-' and '/'): %w", to, prefix, err)
		}
	}
	return Destination{registry: reg, prefix: prefix}, nil
}

// String returns the destination as given, normalized.
func (d Destination) String() string {
	if d.prefix == "" {
		return d.registry.String()
	}
	return d.registry.String() + "/" + d.prefix
}

// Registry returns the destination registry.
func (d Destination) Registry() name.Registry { return d.registry }

// Map returns where src goes. A tag+digest source keeps its tag.
func (d Destination) Map(src name.Reference, original string) (name.Reference, error) {
	p := src.Context().RepositoryStr()
	if d.prefix != "" {
		p = strings.ReplaceAll(d.prefix, RegistryPlaceholder, registryPath(src.Context().Registry)) + "/" + p
	}
	repo := d.registry.Repo(p)
	switch r := src.(type) {
	case name.Tag:
		return repo.Tag(r.TagStr()), nil
	case name.Digest:
		if tag := tagOf(original); tag != "" {
			return repo.Tag(tag), nil
		}
		return repo.Digest(r.DigestStr()), nil
	}
	return nil, fmt.Errorf("unsupported reference %T", src)
}

// RegistryPlaceholder in a destination path stands for the source registry
// (see Destination).
const RegistryPlaceholder = "{registry}"

// registryPath spells a registry as a path component: Docker Hub as
// docker.io, a port after an underscore (registry.local_5000), lowercase.
func registryPath(r name.Registry) string {
	h := r.RegistryStr()
	if h == name.DefaultRegistry {
		h = "docker.io"
	}
	return strings.ToLower(strings.NewReplacer(":", "_", "[", "", "]", "").Replace(h))
}

// tagOf returns the tag of a "repo:tag@digest" reference, or "".
func tagOf(ref string) string {
	before, _, ok := strings.Cut(ref, "@")
	if !ok {
		return ""
	}
	last := before[strings.LastIndex(before, "/")+1:]
	if _, tag, ok := strings.Cut(last, ":"); ok {
		return tag
	}
	return ""
}

func looksLikeHost(h string) bool {
	return h == "localhost" || strings.ContainsAny(h, ".:") || strings.HasPrefix(h, "[")
}

func nameOpts(host string, insecure []string) []name.Option {
	hn := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hn = h
	}
	for _, i := range insecure {
		if i == host || i == hn {
			return []name.Option{name.Insecure}
		}
	}
	return nil
}

// parseSource parses an image reference, marking registries named insecure.
func parseSource(s string, insecure []string) (name.Reference, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %w", s, err)
	}
	if opts := nameOpts(ref.Context().RegistryStr(), insecure); len(opts) > 0 {
		return name.ParseReference(s, opts...)
	}
	return ref, nil
}

// parseRepository parses a repository source for tag expansion.
func parseRepository(s string, insecure []string) (name.Repository, error) {
	repo, err := name.NewRepository(s)
	if err != nil {
		if _, rerr := name.ParseReference(s); rerr == nil {
			return name.Repository{}, fmt.Errorf("%q names an image, not a repository: drop its tag or digest to expand tags", s)
		}
		return name.Repository{}, fmt.Errorf("invalid repository %q: %w", s, err)
	}
	if opts := nameOpts(repo.RegistryStr(), insecure); len(opts) > 0 {
		return name.NewRepository(s, opts...)
	}
	return repo, nil
}

// collisions returns an error listing every destination that two or more
// sources map to.
func collisions(items []*Item) error {
	by := map[string][]string{}
	for _, it := range items {
		k := it.Destination.String()
		by[k] = append(by[k], it.Original)
	}
	var lines []string
	for dst, srcs := range by {
		if len(srcs) > 1 {
			lines = append(lines, fmt.Sprintf("%s ← %s", dst, strings.Join(srcs, ", ")))
		}
	}
	if len(lines) == 0 {
		return nil
	}
	sort.Strings(lines)
	return fmt.Errorf("%w: these sources would overwrite each other (add {registry} to the destination path, e.g. --to HOST/{registry}, or mirror them in separate runs):\n  %s",
		ErrCollision, strings.Join(lines, "\n  "))
}
