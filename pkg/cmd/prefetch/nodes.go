package prefetch

import (
	"context"
	"fmt"
	"io"

	"github.com/coral-dev/coral/pkg/diskcheck"
	"github.com/coral-dev/coral/pkg/plan"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	kjson "sigs.k8s.io/json"
)

// nodePageSize is how many nodes one request of the node list asks for:
// client-go's and kubectl's chunk size. A page is decoded one node at a
// time (decodeNodeList), so it sets the number of requests, not the
// plugin's memory: listing 1000 nodes of 50 images each grows the heap by
// about the same at 500, 250 or 100 a page (BenchmarkListNodesPeakHeap).
const nodePageSize = 500

// listNodes lists every node, a page at a time, keeping of each only what
// planning (and, with nodeImages, the disk check) reads; o.nodes holds
// the result by name.
func (o *RunOptions) listNodes(ctx context.Context) ([]corev1.Node, error) {
	return o.listNodesPaged(ctx, nodePageSize)
}

// listNodesPaged streams one page after the other and keeps each node
// slimmed as it is read. client-go's List reads a page whole and decodes it
// whole before anything can be let go: 250 nodes of a real cluster are
// 2.8 MB on the wire, and listing 1000 that way grew the heap by 11.6 MB
// (4.6 MB streamed), the largest the plugin's heap ever was in a run of 1000.
// A continue token that expired mid-list (the API server keeps them ~5
// minutes) starts the list again, once.
func (o *RunOptions) listNodesPaged(ctx context.Context, pageSize int64) ([]corev1.Node, error) {
	var out []corev1.Node
	opts := metav1.ListOptions{Limit: pageSize}
	restarted := false
	for {
		cont, err := o.nodePage(ctx, opts, func(n *corev1.Node) { out = append(out, slimNode(n, o.nodeImages)) })
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
	for i := range out {
		o.nodes[out[i].Name] = &out[i]
	}
	return out, nil
}

// nodePage asks for one page of the node list as JSON and hands each node
// to keep as it is decoded; it returns the page's continue token.
func (o *RunOptions) nodePage(ctx context.Context, opts metav1.ListOptions, keep func(*corev1.Node)) (string, error) {
	body, err := o.client.CoreV1().RESTClient().Get().
		Resource("nodes").
		VersionedParams(&opts, scheme.ParameterCodec).
		SetHeader("Accept", "application/json").
		Stream(ctx)
	if err != nil {
		return "", err // an API error (Forbidden, Expired, …) as client-go makes it
	}
	defer body.Close()
	return decodeNodeList(body, keep)
}

// decodeNodeList reads a NodeList as the API server writes it in JSON and
// hands each item to keep as soon as it is decoded: the memory it needs is
// one node, whatever the page's size. Decoding follows client-go's rules
// (keys match case-sensitively, as sigs.k8s.io/json does).
func decodeNodeList(r io.Reader, keep func(*corev1.Node)) (string, error) {
	cont, err := readNodeList(kjson.NewDecoderCaseSensitivePreserveInts(r), keep)
	if err != nil {
		return "", fmt.Errorf("reading the node list: %w", err)
	}
	return cont, nil
}

func readNodeList(dec kjson.Decoder, keep func(*corev1.Node)) (cont string, err error) {
	// delim reads the next token, which must be the delimiter want; a JSON
	// null stands for an empty list where nullOK.
	delim := func(want rune, nullOK bool) (null bool, err error) {
		t, err := dec.Token()
		if err != nil {
			return false, err
		}
		if t == nil && nullOK {
			return true, nil
		}
		if d, ok := t.(fmt.Stringer); !ok || d.String() != string(want) {
			return false, fmt.Errorf("got %v where %q belongs", t, want)
		}
		return false, nil
	}
	if _, err := delim('{', false); err != nil {
		return "", err
	}
	items := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", err
		}
		switch key, _ := t.(string); key {
		case "kind":
			var kind string
			if err := dec.Decode(&kind); err != nil {
				return "", err
			}
			if kind != "NodeList" {
				return "", fmt.Errorf("the API server sent a %s", kind)
			}
		case "metadata":
			var meta metav1.ListMeta
			if err := dec.Decode(&meta); err != nil {
				return "", err
			}
			cont = meta.Continue
		case "items":
			items = true
			null, err := delim('[', true)
			if err != nil {
				return "", err
			}
			if null {
				continue // "items": null, a list of none
			}
			for dec.More() {
				var n corev1.Node
				if err := dec.Decode(&n); err != nil {
					return "", err
				}
				keep(&n)
			}
			if _, err := delim(']', false); err != nil {
				return "", err
			}
		default: // apiVersion, and whatever a newer API server adds
			var skip any
			if err := dec.Decode(&skip); err != nil {
				return "", err
			}
		}
	}
	if _, err := delim('}', false); err != nil {
		return "", err
	}
	if !items {
		return "", fmt.Errorf("the API server's answer holds no items")
	}
	return cont, nil
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
