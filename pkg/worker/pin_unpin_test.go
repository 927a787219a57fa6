package worker

import (
	"context"
	"testing"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/coral-dev/coral/pkg/report"
)

func TestUnpin(t *testing.T) {
	f := newFakeRuntime()
	f.remote["reg.local/app:v1"] = dg("app")
	ci := &containerdImages{labels: map[string]map[string]string{}}
	names := func(ref string) []string {
		img := f.images[ref]
		return append(append([]string{img.Id}, img.RepoTags...), img.RepoDigests...)
	}
	f.onPull = func(ref string) {
		for _, n := range names(ref) {
			ci.labels[n] = map[string]string{}
		}
	}
	f.pinned = func(ref string) bool {
		ci.mu.Lock()
		defer ci.mu.Unlock()
		for _, n := range names(ref) {
			if ci.labels[n][pinLabel] != pinValue {
				return false
			}
		}
		return true
	}
	f.extra = func(s *grpcServer) { imagesapi.RegisterImagesServer(s, ci) }
	c := dial(t, f)
	o := fastOpts()
	o.Pin = true
	if it := Pull(context.Background(), c, []Item{{Image: "reg.local/app:v1"}}, o).Items[0]; !it.Pinned {
		t.Fatalf("setup: not pinned: %+v", it)
	}
	r := UnpinAll(context.Background(), c, []Item{{Image: "reg.local/app:v1"}, {Image: "reg.local/other:v1"}})
	if got := r.Items[0]; got.Status != report.StatusPresent || got.Pinned || got.Message != "unpinned" {
		t.Errorf("held image: %+v, want Present, unpinned", got)
	}
	if got := r.Items[1]; got.Status != report.StatusSkipped {
		t.Errorf("image not on the node: %+v, want Skipped", got)
	}
	if f.pinned("reg.local/app:v1") {
		t.Error("the runtime still reports the image pinned")
	}
	for n, l := range ci.labels {
		if l[pinLabel] == pinValue {
			t.Errorf("name %s still carries the pin label", n)
		}
	}
	// Unpinning again is harmless.
	if got := UnpinAll(context.Background(), c, []Item{{Image: "reg.local/app:v1"}}).Items[0]; got.Status != report.StatusPresent {
		t.Errorf("second unpin: %+v", got)
	}
}
