package prefetch

import (
	"context"
	"errors"
	"strings"
	"testing"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes/fake"
)

var (
	digestA = "sha256:" + strings.Repeat("a", 64)
	digestB = "sha256:" + strings.Repeat("b", 64)
)

// pinRecord is an ImagePrefetch's record of one node holding ref pinned.
func pinRecord(ns, obj, node, ref, digest string) coralv1.PrefetchNode {
	return coralv1.PrefetchNode{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "img." + obj + "." + node},
		Prefetch:   coralv1.PrefetchRef{Kind: "ImagePrefetch", Name: obj}, Node: node, State: coralv1.NodeStateReady,
		Results: []coralv1.NodeItem{{Ref: ref, Digest: digest, Status: "Pulled", Pinned: true}},
	}
}

// runUnpin runs `unpin args…` against a fake cluster whose controller
// records are recs; tags resolve through digests (others fail).
func runUnpin(t *testing.T, recs []coralv1.PrefetchNode, recErr error, digests map[string]string, args ...string) cmdResult {
	t.Helper()
	return runCmd(t, "", func(streams genericiooptions.IOStreams, client *fake.Clientset) *cobra.Command {
		o := NewUnpinOptions(genericclioptions.NewConfigFlags(false), streams)
		o.client = withNodeList(client)
		o.pinRecords = func(context.Context) ([]coralv1.PrefetchNode, error) { return recs, recErr }
		o.resolve = func(_ context.Context, ref string, _ authn.Keychain) (string, error) {
			if d, ok := digests[ref]; ok {
				return d, nil
			}
			return "", errors.New("offline")
		}
		return newCmdUnpin(o)
	}, args...)
}

func TestUnpinBadInputCreatesNothing(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no images", nil, "no images given"},
		{"invalid reference", []string{"Not A Ref"}, "invalid image reference"},
		{"bad selector", []string{"nginx", "-l", "pool in (web"}, "--selector"},
		{"unknown node", []string{"nginx", "--nodes", "web-9"}, `unknown node "web-9"`},
		{"bad runtime endpoint", []string{"nginx", "--runtime-endpoint", "tcp://1.2.3.4:1"}, "only unix://"},
		{"timeout zero", []string{"nginx", "--timeout", "0s"}, "--timeout"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runUnpin(t, nil, nil, nil, tt.args...)
			if cmdutil.Code(r.err) != cmdutil.ExitBadInput || !strings.Contains(r.err.Error(), tt.want) {
				t.Fatalf("err = %v (exit %d), want exit 2 with %q", r.err, cmdutil.Code(r.err), tt.want)
			}
			if len(r.writes) > 0 {
				t.Fatalf("bad input wrote to the cluster: %v", r.writes)
			}
		})
	}
}

// The Jobs are prefetch's Jobs with the worker's verb switched to unpin.
func TestUnpinDryRunPrintsUnpinJobs(t *testing.T) {
	r := runUnpin(t, nil, nil, nil, "reg.local/a:1", "reg.local/b:2", "-l", "pool=web", "--dry-run=client", "-o", "yaml")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.writes) > 0 {
		t.Fatalf("dry run wrote: %v", r.writes)
	}
	for _, want := range []string{"kind: JobList", "nodeName: web-1", "nodeName: web-2", "- unpin", "--image=reg.local/a:1", "--image=reg.local/b:2", "path: /run/web-1.sock"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "- pull") || strings.Contains(r.stdout, "--pin") {
		t.Errorf("an unpin Job pulls or pins:\n%s", r.stdout)
	}
}

// A pin an ImagePrefetch holds is refused by name or by digest, before
// anything is created; one on a node the run does not select is not.
func TestUnpinRefusesControllerPins(t *testing.T) {
	recs := []coralv1.PrefetchNode{
		pinRecord("coral-system", "web", "web-1", "reg.local/a:v1", digestA),
		pinRecord("team", "cache", "web-2", "reg.local/c:1", digestB),
	}
	digests := map[string]string{"reg.local/a:latest": digestA, "reg.local/a:v1": digestA}
	for _, tt := range []struct {
		name  string
		args  []string
		wants []string // in the error; none: not refused
	}{
		{"same name", []string{"reg.local/a:v1"}, []string{"node web-1, reg.local/a:v1: pinned by imageprefetch coral-system/web", "kubectl delete imageprefetch"}},
		{"same digest, another tag", []string{"reg.local/a:latest"}, []string{"node web-1, reg.local/a:latest: pinned by imageprefetch coral-system/web (as reg.local/a:v1, the same image)"}},
		{"two objects", []string{"reg.local/a:v1", "reg.local/c:1"}, []string{"coral-system/web", "node web-2, reg.local/c:1: pinned by imageprefetch team/cache"}},
		{"node not selected", []string{"reg.local/a:v1", "--nodes", "web-2"}, nil},
		{"another image", []string{"reg.local/d:1"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runUnpin(t, recs, nil, digests, append(tt.args, "--dry-run=client")...)
			if len(r.writes) > 0 {
				t.Fatalf("wrote: %v", r.writes)
			}
			if tt.wants == nil {
				if r.err != nil {
					t.Fatalf("refused: %v", r.err)
				}
				if !strings.Contains(r.stdout, "created (client dry run)") {
					t.Fatalf("no Job planned:\n%s", r.stdout)
				}
				return
			}
			if cmdutil.Code(r.err) != cmdutil.ExitBadInput {
				t.Fatalf("err = %v (exit %d), want exit 2", r.err, cmdutil.Code(r.err))
			}
			for _, w := range tt.wants {
				if !strings.Contains(r.err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, r.err)
				}
			}
		})
	}
}

func TestUnpinCannotCheckControllerPins(t *testing.T) {
	r := runUnpin(t, nil, errors.New(`prefetchnodes.coral.dev is forbidden: User "dev" cannot list resource "prefetchnodes"`), nil, "reg.local/a:1")
	if cmdutil.Code(r.err) != cmdutil.ExitBadInput || !strings.Contains(r.err.Error(), "list on prefetchnodes.coral.dev") {
		t.Fatalf("err = %v (exit %d), want exit 2 saying what permission is missing", r.err, cmdutil.Code(r.err))
	}
	if len(r.writes) > 0 {
		t.Fatalf("wrote: %v", r.writes)
	}
}

// A real run (no worker ever reports on a fake cluster): the Jobs are
// created, every node fails at --timeout, the Jobs are deleted, exit 1.
func TestUnpinRunsThroughTheEngine(t *testing.T) {
	r := runUnpin(t, nil, nil, nil, "reg.local/a:1", "-l", "pool=web", "--timeout", "1s", "--progress=none", "-o", "json")
	if cmdutil.Code(r.err) != cmdutil.ExitFailed {
		t.Fatalf("err = %v, want exit 1", r.err)
	}
	joined := strings.Join(r.writes, ",")
	if strings.Count(joined, "create jobs") != 2 || !strings.Contains(joined, "delete-collection jobs") {
		t.Fatalf("writes %v: want two Jobs created and then deleted", r.writes)
	}
	if !strings.Contains(r.stdout, `"failed": 2`) || !strings.Contains(r.stdout, `"image": "reg.local/a:1"`) {
		t.Fatalf("report:\n%s", r.stdout)
	}
}

func TestControllerPinsIgnoresWhatIsNotAPin(t *testing.T) {
	notPinned := pinRecord("ns", "web", "n1", "reg.local/a:1", digestA)
	notPinned.Results[0].Pinned = false
	artifact := pinRecord("ns", "model", "n1", "reg.local/a:1", digestA)
	artifact.Prefetch.Kind = "ArtifactPrefetch"
	otherNode := pinRecord("ns", "web", "n2", "reg.local/a:1", digestA)
	expectedOnly := pinRecord("ns", "web", "n1", "reg.local/a:v1", "")
	expectedOnly.Results[0].ExpectedDigest = digestB

	got := controllerPins([]string{"n1"}, []string{"reg.local/a:1"}, map[string]string{"reg.local/a:1": digestA}, []coralv1.PrefetchNode{notPinned, artifact, otherNode})
	if len(got) != 0 {
		t.Errorf("held: %v, want none", got)
	}
	// A record without the node's digest is matched on the digest it asked for.
	got = controllerPins([]string{"n1"}, []string{"reg.local/a:2"}, map[string]string{"reg.local/a:2": digestB}, []coralv1.PrefetchNode{expectedOnly})
	if len(got) != 1 || !strings.Contains(got[0], "ns/web") {
		t.Errorf("held: %v, want the pin of ns/web", got)
	}
	// Unresolved: only the very name counts.
	if got := controllerPins([]string{"n1"}, []string{"reg.local/a:2"}, nil, []coralv1.PrefetchNode{expectedOnly}); len(got) != 0 {
		t.Errorf("held: %v, want none (not resolved, another name)", got)
	}
}
