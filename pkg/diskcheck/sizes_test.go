package diskcheck

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	corev1 "k8s.io/api/core/v1"
)

// blobsOf is what the image's manifest declares, computed from the image
// itself (not from the registry's answer).
func blobsOf(t *testing.T, img v1.Image) (int64, []Blob) {
	t.Helper()
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cd, _ := img.ConfigName()
	total := int64(len(cfg))
	blobs := []Blob{{Digest: cd.String(), Size: int64(len(cfg))}}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		n, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		total += n
		blobs = append(blobs, Blob{Digest: d.String(), Size: n})
	}
	return total, blobs
}

func push(t *testing.T, ref string, w remote.Taggable) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	switch w := w.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(r, w)
	case v1.Image:
		err = remote.Write(r, w)
	}
	if err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

func TestImageSizesFromARegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	single, _ := random.Image(3000, 3)
	amd, _ := random.Image(5000, 2)
	arm, _ := random.Image(700, 4)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	push(t, host+"/team/single:v1", single)
	push(t, host+"/team/multi:v1", idx)
	idxDigest, _ := idx.Digest()
	singleDigest, _ := single.Digest()

	linuxAMD, linuxARM, s390 := Platform{"linux", "amd64"}, Platform{"linux", "arm64"}, Platform{"linux", "s390x"}
	images := []Image{
		{Ref: host + "/team/single:v1", Digest: singleDigest.String()},
		{Ref: host + "/team/multi:v1"}, // by tag (--no-resolve)
		{Ref: host + "/team/absent:v1"},
	}
	sizes, errs := ImageSizes(context.Background(), images, []Platform{linuxAMD, linuxARM, s390}, SizeOptions{})
	if len(errs) != 1 || errs[0].Ref != host+"/team/absent:v1" {
		t.Fatalf("errors %v, want one for team/absent", errs)
	}

	for _, tc := range []struct {
		ref  string
		p    Platform
		img  v1.Image
		want bool
	}{
		{host + "/team/single:v1", linuxAMD, single, true},
		{host + "/team/single:v1", s390, single, true}, // one manifest serves every node
		{host + "/team/multi:v1", linuxAMD, amd, true},
		{host + "/team/multi:v1", linuxARM, arm, true},
		{host + "/team/multi:v1", s390, nil, false}, // no such platform in the index
	} {
		got, ok := sizes.For(tc.ref, tc.p)
		if ok != tc.want {
			t.Errorf("%s for %s: found=%v, want %v", tc.ref, tc.p, ok, tc.want)
			continue
		}
		if !ok {
			continue
		}
		total, blobs := blobsOf(t, tc.img)
		d, _ := tc.img.Digest()
		if got.Bytes() != total || got.Manifest != d.String() || len(got.Blobs) != len(blobs) {
			t.Errorf("%s for %s: %d bytes in %d blobs (manifest %s), want %d in %d (%s)", tc.ref, tc.p, got.Bytes(), len(got.Blobs), got.Manifest, total, len(blobs), d)
		}
	}

	// The same index resolved to its digest gives the same answer.
	byDigest, errs := ImageSizes(context.Background(), []Image{{Ref: host + "/team/multi:v1", Digest: idxDigest.String()}}, []Platform{linuxARM}, SizeOptions{})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	a, _ := byDigest.For(host+"/team/multi:v1", linuxARM)
	b, _ := sizes.For(host+"/team/multi:v1", linuxARM)
	if a.Manifest != b.Manifest || a.Bytes() != b.Bytes() {
		t.Errorf("by digest %+v, by tag %+v", a, b)
	}
}

func TestNodeNeed(t *testing.T) {
	sizes := Sizes{
		"reg.example/a:v1": {Platform{}: {Blobs: []Blob{{"sha256:cfga", 10}, {"sha256:base", 1000}, {"sha256:a", 200}}}},
		"reg.example/b:v1": {Platform{}: {Blobs: []Blob{{"sha256:cfgb", 20}, {"sha256:base", 1000}, {"sha256:b", 300}}}},
		"nginx:1.27":       {Platform{"linux", "amd64"}: {Blobs: []Blob{{"sha256:n1", 5000}}}, Platform{"linux", "arm64"}: {Blobs: []Blob{{"sha256:n2", 4000}}}},
		"reg.example/pinned@sha256:" + strings.Repeat("d", 64): {Platform{}: {Blobs: []Blob{{"sha256:p", 7}}}},
	}
	amd, arm := Platform{"linux", "amd64"}, Platform{"linux", "arm64"}
	dig := "sha256:" + strings.Repeat("e", 64)
	for _, tc := range []struct {
		name    string
		images  []Image
		p       Platform
		held    []corev1.ContainerImage
		bytes   int64
		heldOut []string
		unknown []string
	}{
		{name: "shared base layer counted once", images: []Image{{Ref: "reg.example/a:v1"}, {Ref: "reg.example/b:v1"}}, p: amd, bytes: 10 + 1000 + 200 + 20 + 300},
		{name: "platform picks the manifest", images: []Image{{Ref: "nginx:1.27"}}, p: arm, bytes: 4000},
		{name: "unknown platform and unknown image are listed, not counted", images: []Image{{Ref: "nginx:1.27"}, {Ref: "reg.example/gone:v1"}, {Ref: "reg.example/a:v1"}},
			p: Platform{"linux", "s390x"}, bytes: 1210, unknown: []string{"nginx:1.27", "reg.example/gone:v1"}},
		{name: "held by tag under docker.io's long name", images: []Image{{Ref: "nginx:1.27"}, {Ref: "reg.example/a:v1"}}, p: amd,
			held: []corev1.ContainerImage{{Names: []string{"docker.io/library/nginx:1.27", "docker.io/library/nginx@sha256:" + strings.Repeat("1", 64)}}}, bytes: 1210, heldOut: []string{"nginx:1.27"}},
		{name: "resolved digest: held only when the node has those bytes", images: []Image{{Ref: "nginx:1.27", Digest: dig}}, p: amd,
			held: []corev1.ContainerImage{{Names: []string{"docker.io/library/nginx:1.27", "docker.io/library/nginx@sha256:" + strings.Repeat("1", 64)}}}, bytes: 5000},
		{name: "resolved digest held", images: []Image{{Ref: "nginx:1.27", Digest: dig}}, p: amd,
			held: []corev1.ContainerImage{{Names: []string{"docker.io/library/nginx@" + dig}}}, bytes: 0, heldOut: []string{"nginx:1.27"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := NodeNeed(tc.images, sizes, tc.p, tc.held)
			if n.Bytes != tc.bytes || strings.Join(n.Held, ",") != strings.Join(tc.heldOut, ",") || strings.Join(n.Unknown, ",") != strings.Join(tc.unknown, ",") {
				t.Errorf("got %+v, want bytes %d held %v unknown %v", n, tc.bytes, tc.heldOut, tc.unknown)
			}
			// What a node keeps after HeldFilter gives the same need, and
			// the images of other repositories are dropped.
			var refs []string
			for _, im := range tc.images {
				refs = append(refs, im.Ref)
			}
			others := []corev1.ContainerImage{
				{Names: []string{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause@sha256:" + strings.Repeat("2", 64)}},
				{Names: []string{"docker.io/library/nginx-extra:1.27"}}, {Names: []string{"reg.example/a/sub:v1"}},
			}
			kept := NewHeldFilter(refs).Keep(append(append([]corev1.ContainerImage{}, others...), tc.held...))
			if len(kept) != len(tc.held) {
				t.Errorf("filter kept %v of %v", kept, tc.held)
			}
			if f := NodeNeed(tc.images, sizes, tc.p, kept); f.Bytes != n.Bytes || strings.Join(f.Held, ",") != strings.Join(n.Held, ",") {
				t.Errorf("filtered need %+v, unfiltered %+v", f, n)
			}
		})
	}
}
