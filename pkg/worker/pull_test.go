package worker

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/coral-dev/coral/pkg/report"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Without an expected digest (--no-resolve, or a registry the plugin cannot
// reach) the worker must ask the registry: a tag that moved is pulled anew,
// and only an image that already was what the registry serves is Present.
func TestPullWithoutExpectedDigestAsksTheRegistry(t *testing.T) {
	f := newFakeRuntime()
	// stale: the node holds old bytes under the tag; the registry serves new ones.
	f.images["reg.local/stale:latest"] = &runtimeapi.Image{Id: "sha256:imgold", RepoDigests: []string{"reg.local/stale@" + dg("old")}, Size: 42}
	f.remote["reg.local/stale:latest"] = dg("new")
	// current: the node already holds exactly what the registry serves.
	f.remote["reg.local/current:latest"] = dg("current")
	cur := dg("current")
	f.images["reg.local/current:latest"] = &runtimeapi.Image{Id: "sha256:img" + cur[7:15], RepoDigests: []string{"reg.local/current@" + cur}, Size: 42}
	// pinned by digest in the reference: never asks the registry.
	byDigest := "reg.local/fixed@" + dg("fixed")
	f.images[byDigest] = &runtimeapi.Image{Id: "sha256:imgfixed", RepoDigests: []string{byDigest}, Size: 42}
	c := dial(t, f)

	items := []Item{{Image: "reg.local/stale:latest"}, {Image: "reg.local/current:latest"}, {Image: byDigest}}
	r := Pull(context.Background(), c, items, fastOpts())

	if got := r.Items[0]; got.Status != report.StatusPulled || got.Digest != dg("new") {
		t.Errorf("stale tag: got %s digest %s, want Pulled %s (a moved tag must be pulled)", got.Status, got.Digest, dg("new"))
	}
	if got := r.Items[1]; got.Status != report.StatusPresent || got.Digest != cur {
		t.Errorf("current tag: got %s digest %s, want Present %s", got.Status, got.Digest, cur)
	}
	if got := r.Items[2]; got.Status != report.StatusPresent {
		t.Errorf("digest reference: got %s %q, want Present", got.Status, got.Message)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pulls["reg.local/stale:latest"] != 1 || f.pulls["reg.local/current:latest"] != 1 {
		t.Errorf("pulls = %v: every tag without an expected digest must be asked for once", f.pulls)
	}
	if f.pulls[byDigest] != 0 {
		t.Errorf("a digest reference already on the node was pulled again")
	}
}

// A tag whose registry cannot be reached is not "Present" just because some
// bytes are there under the name: the node's copy cannot be confirmed.
func TestPullWithoutExpectedDigestRegistryDown(t *testing.T) {
	f := newFakeRuntime()
	f.images["reg.local/app:latest"] = &runtimeapi.Image{Id: "sha256:imgold", RepoDigests: []string{"reg.local/app@" + dg("old")}}
	f.failures["reg.local/app:latest"] = []error{status.Error(codes.NotFound, "failed to resolve reference: reg.local/app:latest: not found")}
	c := dial(t, f)
	r := Pull(context.Background(), c, []Item{{Image: "reg.local/app:latest"}}, fastOpts())
	if got := r.Items[0]; got.Status != report.StatusFailed || !strings.Contains(got.Message, "not found") {
		t.Errorf("got %s %q, want Failed (not found)", got.Status, got.Message)
	}
}

func TestClassifySocketErrorsAreNotUnauthorized(t *testing.T) {
	for _, err := range []error{
		status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial unix /run/containerd/containerd.sock: connect: permission denied"`),
		errors.New(`dial unix /run/containerd/containerd.sock: connect: permission denied`),
	} {
		if c := classify(err); c != classRuntime {
			t.Errorf("classify(%v) = %d, want classRuntime", err, c)
		}
		msg := describe(err, context.Background(), 0)
		if strings.Contains(msg, "--pull-secret") || !strings.Contains(msg, "runtime socket") {
			t.Errorf("describe(%v) = %q: must point at the socket, not at pull secrets", err, msg)
		}
	}
	// A registry's refusal still is.
	if c := classify(status.Error(codes.Unknown, "pull access denied, repository does not exist or may require authorization")); c != classUnauthorized {
		t.Errorf("registry denial classified %d, want classUnauthorized", c)
	}
}

func TestRepoDigestPrefersTheExpectedDigest(t *testing.T) {
	img := &runtimeapi.Image{RepoDigests: []string{
		"other.local/app@" + dg("x"),
		"reg.local/app@" + dg("platform"),
		"reg.local/app@" + dg("index"),
	}}
	if got := repoDigest(img, "reg.local/app:v1", dg("index")); got != dg("index") {
		t.Errorf("with expected: got %s, want %s", got, dg("index"))
	}
	if got := repoDigest(img, "reg.local/app:v1", ""); got != dg("platform") {
		t.Errorf("without expected: got %s, want the repository's first %s", got, dg("platform"))
	}
	if got := repoDigest(img, "elsewhere.local/app:v1", ""); got != dg("x") {
		t.Errorf("no repository match: got %s, want the first %s", got, dg("x"))
	}
}
