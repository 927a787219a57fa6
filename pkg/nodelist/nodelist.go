// Package nodelist reads the API server's node list one node at a time.
//
// client-go reads a list answer whole and decodes it whole before any of it
// can be let go: the nodes of a real cluster list up to 50 images each, and
// 1000 of them are megabytes of body and more of decoded objects, most of
// which Coral never reads. Here each node is handed on as soon as it is
// decoded, so the memory a list needs is one node plus what the caller
// keeps of each: the plugin's planning (a page at a time) and the
// controller's Node informer (Slimmed) both keep plan.SlimNode.
package nodelist

import (
	"context"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	kjson "sigs.k8s.io/json"
)

// Get asks for one page of the node list (opts: limit, continue, resource
// version, selectors) as JSON and hands each node to keep as it is
// decoded. It returns the page's list metadata: its resource version and
// continue token. c is a client of the core v1 API
// (clientset.CoreV1().RESTClient()); its errors are client-go's own API
// errors (Forbidden, Expired, …), so callers can tell them apart.
func Get(ctx context.Context, c rest.Interface, opts metav1.ListOptions, keep func(*corev1.Node)) (metav1.ListMeta, error) {
	body, err := c.Get().
		Resource("nodes").
		VersionedParams(&opts, scheme.ParameterCodec).
		SetHeader("Accept", "application/json").
		Stream(ctx)
	if err != nil {
		return metav1.ListMeta{}, err
	}
	defer body.Close()
	return Decode(body, keep)
}

// Decode reads a NodeList as the API server writes it in JSON and hands
// each item to keep as soon as it is decoded. Decoding follows client-go's
// rules (keys match case-sensitively, as sigs.k8s.io/json does). An answer
// cut short, or anything but a NodeList, is an error: never a shorter list.
func Decode(r io.Reader, keep func(*corev1.Node)) (metav1.ListMeta, error) {
	meta, err := read(kjson.NewDecoderCaseSensitivePreserveInts(r), keep)
	if err != nil {
		return metav1.ListMeta{}, fmt.Errorf("reading the node list: %w", err)
	}
	return meta, nil
}

func read(dec kjson.Decoder, keep func(*corev1.Node)) (meta metav1.ListMeta, err error) {
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
		return meta, err
	}
	items := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return meta, err
		}
		switch key, _ := t.(string); key {
		case "kind":
			var kind string
			if err := dec.Decode(&kind); err != nil {
				return meta, err
			}
			if kind != "NodeList" {
				return meta, fmt.Errorf("the API server sent a %s", kind)
			}
		case "metadata":
			if err := dec.Decode(&meta); err != nil {
				return meta, err
			}
		case "items":
			items = true
			null, err := delim('[', true)
			if err != nil {
				return meta, err
			}
			if null {
				continue // "items": null, a list of none
			}
			for dec.More() {
				var n corev1.Node
				if err := dec.Decode(&n); err != nil {
					return meta, err
				}
				keep(&n)
			}
			if _, err := delim(']', false); err != nil {
				return meta, err
			}
		default: // apiVersion, and whatever a newer API server adds
			var skip any
			if err := dec.Decode(&skip); err != nil {
				return meta, err
			}
		}
	}
	if _, err := delim('}', false); err != nil {
		return meta, err
	}
	if !items {
		return meta, fmt.Errorf("the API server's answer holds no items")
	}
	return meta, nil
}

// Slimmed is the ListerWatcher of an informer of every node that keeps
// only part of each (Slim). Its List streams the answer through Get and
// keeps Slim of each node as it is decoded, so an informer's first list
// (and every relist) never holds the cluster's whole node list at once;
// its Watch is Watcher's.
//
// A reflector whose API server serves streaming lists (WatchList) never
// calls List: the first state comes as watch events, one node at a time,
// and the informer's transform slims each. List is the path of API servers
// without it (before Kubernetes 1.34, or with etcd older than 3.5), where
// the reflector lists, from the watch cache, in one answer.
//
// The list asks for every node: Slimmed adds no selector to opts, so it
// serves an informer whose Watcher adds none either.
type Slimmed struct {
	// Client is a client of the core v1 API.
	Client rest.Interface
	// Watcher opens the informer's watches.
	Watcher toolscache.ListerWatcherWithContext
	// Slim returns what the informer keeps of a node.
	Slim func(*corev1.Node) corev1.Node
}

var _ toolscache.ListerWatcherWithContext = (*Slimmed)(nil)

// ListWithContext lists one page of nodes (every node when opts has no
// limit, or when the API server answers from its watch cache), each kept
// as Slim returns it.
func (s *Slimmed) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	var items []corev1.Node
	meta, err := Get(ctx, s.Client, opts, func(n *corev1.Node) { items = append(items, s.Slim(n)) })
	if err != nil {
		return nil, err
	}
	return &corev1.NodeList{ListMeta: meta, Items: items}, nil
}

// WatchWithContext is Watcher's.
func (s *Slimmed) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return s.Watcher.WatchWithContext(ctx, opts)
}

// List is ListWithContext for callers without a context.
func (s *Slimmed) List(opts metav1.ListOptions) (runtime.Object, error) {
	return s.ListWithContext(context.Background(), opts)
}

// Watch is WatchWithContext for callers without a context.
func (s *Slimmed) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return s.WatchWithContext(context.Background(), opts)
}
