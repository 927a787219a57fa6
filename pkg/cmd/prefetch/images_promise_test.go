package prefetch

import (
	"context"
	"github.com/coral-dev/coral/pkg/source"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/report"
	"github.com/coral-dev/coral/pkg/run"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
)

// The run's promise is "every image, with the resolved bytes, on every
// selected node" (and pinned with --pin): a mismatch or a pin that did not
// take is a failure; --pin=best-effort only reports it.
func TestResultsBrokenPromiseFails(t *testing.T) {
	const want, other = "sha256:aaaa", "sha256:bbbb"
	njs := []run.NodeJob{{Node: "n1", Items: []string{"a:1", "b:1", "c:1"}, Expected: []string{want, want, ""}}}
	nrs := []run.NodeResult{{Node: "n1", Items: []report.ItemResult{
		{Item: "a:1", Status: report.StatusPulled, Digest: other, Pinned: true},
		{Item: "b:1", Status: report.StatusPresent, Digest: want, Pinned: false, Message: "not pinned: the runtime ignores the pin label"},
		{Item: "c:1", Status: report.StatusPulled, Digest: other, Pinned: true},
	}}}
	for _, tc := range []struct {
		pin  string
		want []report.Status
	}{
		{"", []report.Status{report.StatusFailed, report.StatusPresent, report.StatusPulled}},
		{pinStrict, []report.Status{report.StatusFailed, report.StatusFailed, report.StatusPulled}},
		{pinBestEffort, []report.Status{report.StatusFailed, report.StatusPresent, report.StatusPulled}},
	} {
		o := &ImagesOptions{Pin: tc.pin}
		rows := o.results(&plan.Plan{}, njs, nrs)
		for i, r := range rows {
			if r.Status != tc.want[i] {
				t.Errorf("pin=%q %s: status %s (%q), want %s", tc.pin, r.Image, r.Status, r.Message, tc.want[i])
			}
		}
		if !rows[0].DigestMismatch || !strings.Contains(rows[0].Message, "did the tag move") {
			t.Errorf("pin=%q: mismatch not explained: %+v", tc.pin, rows[0])
		}
		if tc.pin == pinStrict && !strings.Contains(rows[1].Message, "best-effort") {
			t.Errorf("strict pin failure does not point at --pin=best-effort: %q", rows[1].Message)
		}
		rep := report.NewReport(report.KindPrefetchReport, "x", timeZero, timeZero, rows)
		if rep.AllSucceeded() {
			t.Errorf("pin=%q: report with a digest mismatch counts as success", tc.pin)
		}
	}
}

func TestFailOnSkipped(t *testing.T) {
	rows := []report.Result{
		{Node: "n1", Image: "a:1", Status: report.StatusPulled},
		{Node: "n2", Image: "a:1", Status: report.StatusSkipped, Message: "node is not Ready"},
	}
	for _, strict := range []bool{false, true} {
		o := &RunOptions{IOStreams: genericiooptions.NewTestIOStreamsDiscard(), FailOnSkipped: strict}
		err := o.finish(&outcome{report: report.NewReport(report.KindPrefetchReport, "x", timeZero, timeZero, rows)})
		if got, want := cmdutil.Code(err), map[bool]int{false: 0, true: 1}[strict]; got != want {
			t.Errorf("--fail-on-skipped=%v: exit %d, want %d (%v)", strict, got, want, err)
		}
	}
}

// An image the registry says does not exist fails before anything is
// created, with advice; resolved against a real registry.
func TestImagesManifestUnknownIsBadInput(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(host + "/team/app:v1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	res := runCmd(t, "", func(streams genericiooptions.IOStreams, client *fake.Clientset) *cobra.Command {
		o := NewImagesOptions(genericclioptions.NewConfigFlags(false), streams)
		o.client = withNodeList(client)
		o.resolve = func(ctx context.Context, r string, kc authn.Keychain) (string, error) {
			return source.ResolveDigest(ctx, r, authn.DefaultKeychain)
		}
		return newCmdImages(o)
	}, host+"/team/app:v1", host+"/team/app:nope", host+"/team/absent:v1")
	if cmdutil.Code(res.err) != cmdutil.ExitBadInput {
		t.Fatalf("exit %d (%v), want 2", cmdutil.Code(res.err), res.err)
	}
	msg := res.err.Error()
	for _, s := range []string{"app:nope", "absent:v1", "--no-resolve"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error does not mention %q: %s", s, msg)
		}
	}
	if strings.Contains(msg, "team/app:v1:") {
		t.Errorf("an existing image is listed as missing: %s", msg)
	}
	if len(res.writes) != 0 {
		t.Errorf("writes before the error: %v", res.writes)
	}
}

var timeZero time.Time
