package mirror_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	mirrorlib "github.com/coral-dev/coral/pkg/mirror"
	"github.com/coral-dev/coral/pkg/mirror/mirrortest"
)

var twoPlatforms = []string{"linux/amd64", "linux/arm64"}

func newMirror(t *testing.T, opts ...mirrorlib.Option) *mirrorlib.Mirror {
	t.Helper()
	// Tests never read the developer's docker config.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	m, err := mirrorlib.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func run(t *testing.T, m *mirrorlib.Mirror, to string, sources ...string) (*mirrorlib.Report, error) {
	t.Helper()
	dst, err := mirrorlib.ParseDestination(to)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	plan, err := m.Plan(ctx, sources, dst)
	if err != nil {
		return nil, err
	}
	return m.Copy(ctx, plan)
}

func TestCopyMultiPlatformIndexKeepsDigestAndSecondRunSendsNothing(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	proxy := mirrortest.NewProxy(t, dst, nil)

	want := mirrortest.Push(t, src.Host+"/team/app:v1", mirrortest.Index(t, twoPlatforms, 64<<10, 3))

	rep, err := run(t, newMirror(t), proxy.Host+"/mirror", src.Host+"/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	res := rep.Results[0]
	if res.Status != mirrorlib.StatusCopied || res.Digest != want.String() || res.SourceDigest != "" {
		t.Fatalf("first run: got %+v, want Copied %s", res, want)
	}
	if res.Destination != proxy.Host+"/mirror/team/app:v1" {
		t.Errorf("destination = %s", res.Destination)
	}
	if res.Bytes < 2*3*64<<10 {
		t.Errorf("bytes = %d, want at least the six layers", res.Bytes)
	}
	if got := mirrortest.Digest(t, dst.Host+"/mirror/team/app:v1"); got != want.String() {
		t.Fatalf("destination digest %s, want the source's %s", got, want)
	}
	if uploads := proxy.Counts()["PATCH upload"]; uploads != 8 { // 2×(3 layers + config)
		t.Errorf("first run uploaded %d blobs, want 8", uploads)
	}

	proxy.Reset()
	rep, err = run(t, newMirror(t), proxy.Host+"/mirror", src.Host+"/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if res := rep.Results[0]; res.Status != mirrorlib.StatusPresent || res.Bytes != 0 {
		t.Fatalf("second run: got %+v, want Present with 0 bytes", res)
	}
	counts := proxy.Counts()
	if proxy.Writes() != 0 || counts["HEAD blob"] != 0 || counts["GET blob"] != 0 {
		t.Fatalf("second run must not touch blobs or write: %v", counts)
	}
	if counts["HEAD manifest"] != 1 {
		t.Errorf("second run: want exactly one manifest HEAD at the destination, got %v", counts)
	}
}

func TestPinnedImageAlreadyMirroredNeedsNoSource(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	want := mirrortest.Push(t, src.Host+"/app:v1", mirrortest.Image(t, "linux/amd64", 1024, 1))
	var down atomic.Bool
	proxy := mirrortest.NewProxy(t, src, func(*http.Request) (int, http.Header, bool) {
		if down.Load() {
			return http.StatusServiceUnavailable, nil, true
		}
		return 0, nil, false
	})
	pinned := proxy.Host + "/app:v1@" + want.String()
	if _, err := run(t, newMirror(t), dst.Host, pinned); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	proxy.Reset()
	rep, err := run(t, newMirror(t), dst.Host, pinned)
	if err != nil {
		t.Fatalf("the source is down, but the destination already holds the pinned digest: %v", err)
	}
	if res := rep.Results[0]; res.Status != mirrorlib.StatusPresent || res.Digest != want.String() || res.Destination != dst.Host+"/app:v1" {
		t.Fatalf("%+v", res)
	}
	if n := len(proxy.Counts()); n != 0 {
		t.Fatalf("the source was asked: %v", proxy.Counts())
	}
}

func TestCopySharedBlobsAreSentOnce(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	proxy := mirrortest.NewProxy(t, dst, nil)
	idx := mirrortest.Index(t, twoPlatforms, 32<<10, 2)
	want := mirrortest.Push(t, src.Host+"/app:v1", idx)
	mirrortest.Push(t, src.Host+"/app:v1-again", idx)

	rep, err := run(t, newMirror(t, mirrorlib.WithJobs(1)), proxy.Host, src.Host+"/app:v1", src.Host+"/app:v1-again")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Status != mirrorlib.StatusCopied || r.Digest != want.String() {
			t.Errorf("%+v", r)
		}
	}
	if up := proxy.Counts()["PATCH upload"]; up != 6 {
		t.Errorf("two tags of one index uploaded %d blobs, want 6 (each once)", up)
	}
}

func TestCopyMountsBlobsAcrossDestinationRepositories(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	proxy := mirrortest.NewProxy(t, dst, nil)
	idx := mirrortest.Index(t, twoPlatforms, 32<<10, 3)
	want := mirrortest.Push(t, src.Host+"/team-a/base:v1", idx)
	mirrortest.Push(t, src.Host+"/team-b/base:v1", idx)

	rep, err := run(t, newMirror(t, mirrorlib.WithJobs(1)), proxy.Host+"/m", src.Host+"/team-a/base:v1", src.Host+"/team-b/base:v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Results {
		if r.Status != mirrorlib.StatusCopied || r.Digest != want.String() {
			t.Fatalf("%+v", r)
		}
		if got := mirrortest.Digest(t, strings.Replace(r.Destination, proxy.Host, dst.Host, 1)); got != want.String() {
			t.Fatalf("%s holds %q", r.Destination, got)
		}
	}
	c := proxy.Counts()
	if c["PATCH upload"] != 8 || c["POST mount"] < 8 {
		t.Fatalf("the second repository must mount the 8 blobs the first one received: %v", c)
	}
	if second := rep.Results[1].Bytes; second > 8<<10 {
		t.Errorf("the second image sent %d bytes; only its manifests should be sent", second)
	}
}

func TestPlatformSubset(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	idx := mirrortest.Index(t, []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}, 16<<10, 1)
	srcDigest := mirrortest.Push(t, src.Host+"/app:v1", idx)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	child := map[string]string{}
	for _, d := range im.Manifests {
		child[d.Platform.String()] = d.Digest.String()
	}

	tests := []struct {
		name      string
		platforms []string
		wantErr   error
		// wantDigest "" means: a new digest, not the source's.
		wantDigest  string
		wantEntries int
	}{
		{name: "one platform keeps that image's digest", platforms: []string{"linux/arm64"}, wantDigest: child["linux/arm64"]},
		{name: "arm64/v8 matches plain arm64", platforms: []string{"linux/arm64/v8"}, wantDigest: child["linux/arm64"]},
		{name: "two platforms make a new index", platforms: []string{"linux/amd64,linux/arm/v7"}, wantEntries: 2},
		{name: "all platforms keep the index", platforms: []string{"linux/amd64", "linux/arm64", "linux/arm/v7"}, wantDigest: srcDigest.String()},
		{name: "absent platform is an error", platforms: []string{"windows/amd64"}, wantErr: mirrorlib.ErrPlatform},
	}
	t.Run("by digest, the destination names the subset's digest", func(t *testing.T) {
		ps, _ := mirrorlib.ParsePlatforms([]string{"linux/arm64"})
		rep, err := run(t, newMirror(t, mirrorlib.WithPlatforms(ps...)), dst.Host+"/bydigest", src.Host+"/app@"+srcDigest.String())
		if err != nil {
			t.Fatal(err)
		}
		res := rep.Results[0]
		if res.Status != mirrorlib.StatusCopied || res.Destination != dst.Host+"/bydigest/app@"+child["linux/arm64"] {
			t.Fatalf("%+v", res)
		}
		if mirrortest.Digest(t, res.Destination) != child["linux/arm64"] {
			t.Fatal("destination does not hold the arm64 image")
		}
	})
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := mirrorlib.ParsePlatforms(tc.platforms)
			if err != nil {
				t.Fatal(err)
			}
			to := dst.Host + "/case" + string(rune('a'+i))
			rep, err := run(t, newMirror(t, mirrorlib.WithPlatforms(ps...)), to, src.Host+"/app:v1")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			res := rep.Results[0]
			got := mirrortest.Digest(t, to+"/app:v1")
			if got != res.Digest || res.Status != mirrorlib.StatusCopied {
				t.Fatalf("destination holds %s, report says %+v", got, res)
			}
			if tc.wantDigest != "" {
				if got != tc.wantDigest {
					t.Fatalf("digest %s, want %s", got, tc.wantDigest)
				}
				if got != srcDigest.String() && (res.SourceDigest != srcDigest.String() || !strings.Contains(res.Message, "platform subset")) {
					t.Errorf("a changed digest must be said: %+v", res)
				}
				return
			}
			if got == srcDigest.String() || res.SourceDigest != srcDigest.String() || !strings.Contains(res.Message, "digest differs") {
				t.Fatalf("subset index must have a new digest and say so: %+v", res)
			}
			ref, _ := name.ParseReference(to + "/app:v1")
			dIdx, err := remote.Index(ref)
			if err != nil {
				t.Fatal(err)
			}
			dm, _ := dIdx.IndexManifest()
			if len(dm.Manifests) != tc.wantEntries {
				t.Fatalf("destination index has %d manifests, want %d", len(dm.Manifests), tc.wantEntries)
			}
			for _, d := range dm.Manifests {
				if d.Digest.String() != child[d.Platform.String()] {
					t.Errorf("child %s digest changed", d.Platform)
				}
			}
		})
	}
}

func TestRetryAfterFrom429Source(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	want := mirrortest.Push(t, src.Host+"/app:v1", mirrortest.Index(t, twoPlatforms, 16<<10, 1))

	var manifest429, blob429 atomic.Int32
	proxy := mirrortest.NewProxy(t, src, func(r *http.Request) (int, http.Header, bool) {
		kind := mirrortest.Classify(r)
		if kind == "GET manifest" && manifest429.Add(1) == 1 ||
			kind == "GET blob" && blob429.Add(1) <= 2 {
			return http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}, true
		}
		return 0, nil, false
	})

	start := time.Now()
	rep, err := run(t, newMirror(t), dst.Host, proxy.Host+"/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if res := rep.Results[0]; res.Status != mirrorlib.StatusCopied || res.Digest != want.String() {
		t.Fatalf("got %+v", res)
	}
	if took < 2*time.Second {
		t.Errorf("took %s: Retry-After: 1 was not honoured (two waits expected before the first blob)", took)
	}
	if c := proxy.Counts(); c["GET manifest"] < 2 || c["GET blob"] < 3 {
		t.Errorf("expected retried requests, got %v", c)
	}
}

func TestTLSAndHtpasswdDestination(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t, mirrortest.WithTLS(), mirrortest.WithHtpasswd("mirror", "s3cret"))
	want := mirrortest.Push(t, src.Host+"/app:v1", mirrortest.Index(t, twoPlatforms, 16<<10, 1))
	login := authn.NewMultiKeychain(staticKeychain{dst.Host: &authn.Basic{Username: "mirror", Password: "s3cret"}})
	wrong := staticKeychain{dst.Host: &authn.Basic{Username: "mirror", Password: "wrong"}}

	tests := []struct {
		name    string
		opts    []mirrorlib.Option
		wantErr error
	}{
		{name: "untrusted certificate", opts: []mirrorlib.Option{mirrorlib.WithDestinationKeychain(login)}, wantErr: mirrorlib.ErrUntrusted},
		{name: "no credentials", opts: []mirrorlib.Option{mirrorlib.WithCAFiles(dst.CAFile)}, wantErr: mirrorlib.ErrUnauthorized},
		{name: "wrong password", opts: []mirrorlib.Option{mirrorlib.WithCAFiles(dst.CAFile), mirrorlib.WithDestinationKeychain(wrong)}, wantErr: mirrorlib.ErrUnauthorized},
		{name: "CA and login", opts: []mirrorlib.Option{mirrorlib.WithCAFiles(dst.CAFile), mirrorlib.WithDestinationKeychain(login)}},
		{name: "insecure registry skips verification", opts: []mirrorlib.Option{mirrorlib.WithInsecureRegistries(dst.Host), mirrorlib.WithDestinationKeychain(login)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := run(t, newMirror(t, tc.opts...), dst.Host, src.Host+"/app:v1")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "wrong") {
					t.Fatalf("error leaks a password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			res := rep.Results[0]
			if (res.Status != mirrorlib.StatusCopied && res.Status != mirrorlib.StatusPresent) || res.Digest != want.String() {
				t.Fatalf("got %+v", res)
			}
		})
	}
	ref, _ := name.ParseReference(dst.Host + "/app:v1")
	d, err := remote.Head(ref, remote.WithAuth(&authn.Basic{Username: "mirror", Password: "s3cret"}), remote.WithTransport(dst.Client().Transport))
	if err != nil || d.Digest != want {
		t.Fatalf("destination: %v %v, want %s", d, err, want)
	}
}

type staticKeychain map[string]authn.Authenticator

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if a, ok := k[r.RegistryStr()]; ok {
		return a, nil
	}
	return authn.Anonymous, nil
}

func TestPlanProblemsWriteNothing(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	proxy := mirrortest.NewProxy(t, dst, nil)
	mirrortest.Push(t, src.Host+"/a/app:v1", mirrortest.Image(t, "linux/amd64", 1024, 1))
	mirrortest.Push(t, src.Host+"/b/app:v1", mirrortest.Image(t, "linux/amd64", 1024, 1))
	mirrortest.Push(t, src.Host+"/app:v1", mirrortest.Image(t, "linux/amd64", 1024, 1))

	tests := []struct {
		name    string
		to      string
		sources []string
		wantErr error
		want    string
	}{
		{name: "missing tag", to: proxy.Host, sources: []string{src.Host + "/app:v1", src.Host + "/app:nope"}, wantErr: mirrorlib.ErrNotFound, want: "app:nope"},
		{name: "two sources one destination", to: proxy.Host + "/m", sources: []string{src.Host + "/app:v1", "127.0.0.2:1/app:v1"}, wantErr: mirrorlib.ErrCollision},
		{name: "unreachable source registry", to: proxy.Host, sources: []string{"127.0.0.1:1/x:1", "127.0.0.1:1/y:1", src.Host + "/app:v1"}, wantErr: mirrorlib.ErrUnreachable, want: "source registry 127.0.0.1:1 (for 127.0.0.1:1/x:1, 127.0.0.1:1/y:1)"},
		{name: "unreachable destination", to: "127.0.0.1:1", sources: []string{src.Host + "/app:v1"}, wantErr: mirrorlib.ErrUnreachable, want: "destination registry 127.0.0.1:1"},
		{name: "invalid reference", to: proxy.Host, sources: []string{"UPPER/Case:v1"}, want: "invalid image reference"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proxy.Reset()
			_, err := run(t, newMirror(t), tc.to, tc.sources...)
			if err == nil {
				t.Fatal("want an error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
			if w := proxy.Writes(); w != 0 {
				t.Errorf("planning wrote to the destination: %v", proxy.Counts())
			}
		})
	}
}

func TestDryRunEstimateWritesNothing(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	proxy := mirrortest.NewProxy(t, dst, nil)
	idx := mirrortest.Index(t, twoPlatforms, 32<<10, 2)
	mirrortest.Push(t, src.Host+"/app:v1", idx)
	other := mirrortest.Image(t, "linux/amd64", 32<<10, 1)
	mirrortest.Push(t, src.Host+"/tool:v1", other)
	mirrortest.Push(t, dst.Host+"/tool:v1", other) // already there

	m := newMirror(t)
	to, _ := mirrorlib.ParseDestination(proxy.Host)
	plan, err := m.Plan(context.Background(), []string{src.Host + "/app:v1", src.Host + "/tool:v1"}, to)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Estimate(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	rep := plan.DryRunReport()
	if proxy.Writes() != 0 {
		t.Fatalf("dry run wrote: %v", proxy.Counts())
	}
	if !rep.DryRun || rep.Results[0].Status != mirrorlib.StatusPlanned || rep.Results[1].Status != mirrorlib.StatusPresent {
		t.Fatalf("report: %+v", rep)
	}
	total := blobBytes(t, idx)
	if got := rep.Results[0].Bytes; got < total || got > total+8<<10 {
		t.Errorf("estimated %d bytes, want the blobs' %d plus manifests", got, total)
	}
	if mirrortest.Digest(t, dst.Host+"/app:v1") != "" {
		t.Fatal("dry run created the image")
	}
}

func blobBytes(t *testing.T, idx v1.ImageIndex) int64 {
	im, _ := idx.IndexManifest()
	var n int64
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		mf, _ := img.Manifest()
		n += mf.Config.Size
		for _, l := range mf.Layers {
			n += l.Size
		}
	}
	return n
}

func TestTagFilterExpandsRepositories(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	img := mirrortest.Image(t, "linux/amd64", 1024, 1)
	for _, tag := range []string{"1.0.0", "1.2.0", "1.3.0-rc.1", "2.0.0", "latest"} {
		mirrortest.Push(t, src.Host+"/app:"+tag, img)
	}
	tests := []struct {
		name          string
		all           bool
		regex, semver string
		want          []string
		wantErr       string
	}{
		{name: "semver range", semver: ">=1.1, <3", want: []string{"1.2.0", "2.0.0"}},
		{name: "regex", regex: `^1\.`, want: []string{"1.0.0", "1.2.0", "1.3.0-rc.1"}},
		{name: "regex and semver", regex: `^1\.`, semver: "^1", want: []string{"1.0.0", "1.2.0"}},
		{name: "all tags", all: true, want: []string{"1.0.0", "1.2.0", "1.3.0-rc.1", "2.0.0", "latest"}},
		{name: "nothing matches", semver: ">=9", wantErr: `no tag of ` + src.Host + `/app matches --semver ">=9" (it has 5 tags)`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := mirrorlib.NewTagFilter(tc.all, tc.regex, tc.semver)
			if err != nil {
				t.Fatal(err)
			}
			to := dst.Host + "/t" + string(rune('a'+i))
			rep, err := run(t, newMirror(t, mirrorlib.WithTagFilter(f)), to, src.Host+"/app")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rep.Results {
				if r.Status != mirrorlib.StatusCopied {
					t.Errorf("%+v", r)
				}
				got = append(got, strings.TrimPrefix(r.Destination, to+"/app:"))
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("copied %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("tag filter rejects image references", func(t *testing.T) {
		f, _ := mirrorlib.NewTagFilter(true, "", "")
		_, err := run(t, newMirror(t, mirrorlib.WithTagFilter(f)), dst.Host, src.Host+"/app:1.0.0")
		if err == nil || !strings.Contains(err.Error(), "drop its tag or digest") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestCopyStopsOnCancel(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	mirrortest.Push(t, src.Host+"/app:v1", mirrortest.Index(t, twoPlatforms, 16<<10, 1))
	mirrortest.Push(t, src.Host+"/app:v2", mirrortest.Index(t, twoPlatforms, 16<<10, 1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proxy := mirrortest.NewProxy(t, dst, func(r *http.Request) (int, http.Header, bool) {
		if r.Method == http.MethodPatch {
			cancel() // the user pressed Ctrl-C while the first blob was on its way
		}
		return 0, nil, false
	})
	m := newMirror(t, mirrorlib.WithJobs(1))
	to, _ := mirrorlib.ParseDestination(proxy.Host)
	plan, err := m.Plan(ctx, []string{src.Host + "/app:v1", src.Host + "/app:v2"}, to)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := m.Copy(ctx, plan)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if rep.Summary.Failed != 2 || !strings.Contains(rep.Results[1].Message, "interrupted") {
		t.Fatalf("report: %+v", rep)
	}
}

func TestKeepGoingFalseStopsAfterFirstFailure(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t)
	for _, tag := range []string{"a", "b", "c"} {
		mirrortest.Push(t, src.Host+"/app:"+tag, mirrortest.Image(t, "linux/amd64", 1024, 1))
	}
	proxy := mirrortest.NewProxy(t, dst, func(r *http.Request) (int, http.Header, bool) {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/manifests/a") {
			return http.StatusBadRequest, nil, true
		}
		return 0, nil, false
	})
	tests := []struct {
		keepGoing  bool
		wantFailed int
		wantCopied int
	}{
		{keepGoing: true, wantFailed: 1, wantCopied: 2},
		{keepGoing: false, wantFailed: 3, wantCopied: 0},
	}
	for _, tc := range tests {
		t.Run(map[bool]string{true: "keep going", false: "stop"}[tc.keepGoing], func(t *testing.T) {
			to := proxy.Host + "/" + map[bool]string{true: "kg", false: "stop"}[tc.keepGoing]
			rep, err := run(t, newMirror(t, mirrorlib.WithJobs(1), mirrorlib.WithKeepGoing(tc.keepGoing)), to,
				src.Host+"/app:a", src.Host+"/app:b", src.Host+"/app:c")
			if err != nil {
				t.Fatal(err)
			}
			if rep.Summary.Failed != tc.wantFailed || rep.Summary.Copied != tc.wantCopied {
				t.Fatalf("summary %+v, results %+v", rep.Summary, rep.Results)
			}
		})
	}
}
