package prefetch

import (
	"context"

	"github.com/coral-dev/coral/pkg/diskcheck"
	"github.com/coral-dev/coral/pkg/nodelist"
	"github.com/coral-dev/coral/pkg/plan"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// nodePageSize is how many nodes one request of the node list asks for:
// client-go's and kubectl's chunk size. A page is decoded one node at a
// time (nodelist.Get), so it sets the number of requests, not the
// plugin's memory: listing 1000 nodes of 50 images each grows the heap by
// about the same at 500, 250 or 100 a page (BenchmarkListNodesPeakHeap).
const nodePageSize = 500

// listNodes lists every node, a page at a time, keeping of each only what
// planning (and, with nodeImages, the disk check) reads; o.nodes holds
// the result by name.
func (o *RunOptions) listNodes(ctx context.Context) ([]*corev1.Node, error) {
	return o.listNodesPaged(ctx, nodePageSize)
}

// listNodesPaged streams one page after the other and keeps each node
// slimmed as it is read. client-go's List reads a page whole and decodes it
// whole before anything can be let go: 250 nodes of a real cluster are
// 2.8 MB on the wire, and listing 1000 that way grew the heap by 11.6 MB
// (4.6 MB streamed), the largest the plugin's heap ever was in a run of 1000.
// A continue token that expired mid-list (the API server keeps them ~5
// minutes) starts the list again, once.
func (o *RunOptions) listNodesPaged(ctx context.Context, pageSize int64) ([]*corev1.Node, error) {
	var out []*corev1.Node
	opts := metav1.ListOptions{Limit: pageSize}
	restarted := false
	for {
		cont, err := o.nodePage(ctx, opts, func(n *corev1.Node) {
			s := slimNode(n, o.nodeImages)
			out = append(out, &s)
		})
		if apierrors.IsResourceExpired(err) && !restarted {
			out, opts.Continue, restarted = nil, "", true
			continue
		}
		if err != nil {
			return nil, err
		}
		if opts.Continue = cont; cont == "" {
			break
		}
	}
	o.nodes = make(map[string]*corev1.Node, len(out))
	for _, n := range out {
		o.nodes[n.Name] = n
	}
	return out, nil
}

// nodePage asks for one page of the node list and hands each node to keep
// as it is decoded (nodelist.Get); it returns the page's continue token.
func (o *RunOptions) nodePage(ctx context.Context, opts metav1.ListOptions, keep func(*corev1.Node)) (string, error) {
	meta, err := nodelist.Get(ctx, o.client.CoreV1().RESTClient(), opts, keep)
	return meta.Continue, err // an API error (Forbidden, Expired, …) as client-go makes it
}

// slimNode copies what Coral reads from a Node (plan.SlimNode) and, with a
// filter, the images it keeps for the disk check.
func slimNode(n *corev1.Node, images diskcheck.HeldFilter) corev1.Node {
	s := plan.SlimNode(n)
	if images != nil {
		s.Status.Images = images.Keep(n.Status.Images)
	}
	return s
}
