package worker

import (
	"context"
	"strings"
	"sync"
	"testing"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/coral-dev/coral/pkg/report"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// containerdImages is containerd's images API over the same fake socket:
// labels per image name; the CRI side reports Pinned when honour is set and
// every name carries the label, as containerd 1.6.26+/2.x do.
type containerdImages struct {
	imagesapi.UnimplementedImagesServer
	mu         sync.Mutex
	labels     map[string]map[string]string
	namespaces []string
}

func (c *containerdImages) ns(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	c.namespaces = append(c.namespaces, md.Get("containerd-namespace")...)
}

func (c *containerdImages) Get(ctx context.Context, req *imagesapi.GetImageRequest) (*imagesapi.GetImageResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ns(ctx)
	l, ok := c.labels[req.Name]
	if !ok {
		return nil, status.Error(codes.NotFound, "image not found")
	}
	cp := map[string]string{}
	for k, v := range l {
		cp[k] = v
	}
	return &imagesapi.GetImageResponse{Image: &imagesapi.Image{Name: req.Name, Labels: cp}}, nil
}

func (c *containerdImages) Update(ctx context.Context, req *imagesapi.UpdateImageRequest) (*imagesapi.UpdateImageResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ns(ctx)
	if len(req.UpdateMask.GetPaths()) != 1 || req.UpdateMask.Paths[0] != "labels."+pinLabel {
		return nil, status.Error(codes.InvalidArgument, "only the pin label may change")
	}
	c.labels[req.Image.Name][pinLabel] = req.Image.Labels[pinLabel]
	return &imagesapi.UpdateImageResponse{Image: req.Image}, nil
}

func TestPullPin(t *testing.T) {
	for _, honour := range []bool{true, false} {
		name := "runtime honours pins"
		if !honour {
			name = "runtime ignores pins (containerd 1.6.20)"
		}
		t.Run(name, func(t *testing.T) {
			f := newFakeRuntime()
			f.remote["reg.local/app:v1"] = dg("app")
			ci := &containerdImages{labels: map[string]map[string]string{}}
			f.onPull = func(ref string) {
				img := f.images[ref]
				for _, n := range append(append([]string{img.Id}, img.RepoTags...), img.RepoDigests...) {
					ci.labels[n] = map[string]string{}
				}
			}
			f.pinned = func(ref string) bool {
				if !honour {
					return false
				}
				ci.mu.Lock()
				defer ci.mu.Unlock()
				img := f.images[ref]
				for _, n := range append(append([]string{img.Id}, img.RepoTags...), img.RepoDigests...) {
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
			it := Pull(context.Background(), c, []Item{{Image: "reg.local/app:v1"}}, o).Items[0]
			if it.Status != report.StatusPulled {
				t.Fatalf("%+v", it)
			}
			if honour && (!it.Pinned || it.Message != "") {
				t.Fatalf("want pinned: %+v", it)
			}
			if !honour && (it.Pinned || !strings.Contains(it.Message, "not pinned") || !strings.Contains(it.Message, "1.6.26")) {
				t.Fatalf("want a clear 'not pinned': %+v", it)
			}
			for n, l := range ci.labels {
				if l[pinLabel] != pinValue {
					t.Errorf("name %s not labelled", n)
				}
			}
			for _, ns := range ci.namespaces {
				if ns != "k8s.io" {
					t.Errorf("containerd namespace %q, want k8s.io (CRI's)", ns)
				}
			}
		})
	}
}
