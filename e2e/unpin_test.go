package e2e

import (
	"testing"

	"github.com/coral-dev/coral/pkg/report"
)

// TestUnpin: a one-shot --pin run pins an image on coral-node-1
// (containerd 2.x), as the runtime reports over CRI; kubectl coral unpin
// releases it (the runtime no longer reports it pinned, the image stays),
// and a node that does not hold the image has nothing to release.
func TestUnpin(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	const node, other = "coral-node-1", "coral-node-2"
	img, digest := c.pushRandomImage(t, c.env["CORAL_REGISTRY"], "unpin", nil)

	if r := c.coral(t, nil, "prefetch", "images", img, "--pin", "--nodes", node, "-n", ns, "-o", "json"); r.code != 0 {
		t.Fatalf("prefetch --pin: exit %d\n%s", r.code, r.stdout)
	}
	if !c.criPinned(t, node, img) {
		t.Fatalf("%s: the runtime does not report %s pinned after prefetch --pin", node, img)
	}

	r := c.coral(t, nil, "unpin", img, "--nodes", node+","+other, "-n", ns, "-o", "json")
	if r.code != 0 || r.report == nil {
		t.Fatalf("unpin: exit %d\n%s", r.code, r.stdout)
	}
	got := byNodeImage(r.report)
	if res := got[node][img]; res.Status != report.StatusPresent || res.Pinned || res.Message != "unpinned" {
		t.Errorf("%s: %+v, want Present, unpinned", node, res)
	}
	if res := got[other][img]; res.Status != report.StatusSkipped || res.Message != "not on the node" {
		t.Errorf("%s: %+v, want Skipped: not on the node", other, res)
	}
	if c.criPinned(t, node, img) {
		t.Errorf("%s: the runtime still reports %s pinned after unpin", node, img)
	}
	if !c.nodeHolds(t, node, img, digest) {
		t.Errorf("%s: unpin removed the image itself; it should only release the pin", node)
	}
	c.expectNoOrphans(t, ns)

	// Again: nothing pinned, nothing to do, still success.
	if r := c.coral(t, nil, "unpin", img, "--nodes", node, "-n", ns); r.code != 0 {
		t.Errorf("second unpin: exit %d\n%s", r.code, r.stdout)
	}
}
