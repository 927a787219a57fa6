package prefetch

import (
	"context"
	"fmt"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// The plugin reads and writes Coral's own objects (--persist, and unpin's
// look at the controller's pins) through client-go's dynamic client and
// converts them to the typed structs at the edge. It used to take
// controller-runtime's client for these few calls, which linked
// controller-runtime and prometheus into every run of the plugin: 1 MB of
// binary and ~2 MB of a dry run's peak RSS for a path most runs never take
// (docs/scale.md, "Memory on real-sized nodes").

// Resources of coral.dev/v1alpha1 the plugin touches, and their kinds.
const (
	imagePrefetches    = "imageprefetches"
	artifactPrefetches = "artifactprefetches"
	prefetchNodesRes   = "prefetchnodes"
)

var persistKinds = map[string]string{
	imagePrefetches:    "ImagePrefetch",
	artifactPrefetches: "ArtifactPrefetch",
	prefetchNodesRes:   "PrefetchNode",
}

// persistObject is one of Coral's typed objects.
type persistObject interface {
	metav1.Object
	runtime.Object
}

// PersistClient reads and writes Coral's objects.
type PersistClient struct {
	dyn dynamic.Interface
}

// NewPersistClient builds a PersistClient from a REST config.
func NewPersistClient(cfg *rest.Config) (*PersistClient, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &PersistClient{dyn: dyn}, nil
}

// newPersistClientFor wraps a dynamic client (tests pass a fake one).
func newPersistClientFor(dyn dynamic.Interface) *PersistClient { return &PersistClient{dyn: dyn} }

func (c *PersistClient) resource(res, namespace string) dynamic.ResourceInterface {
	r := c.dyn.Resource(coralv1.GroupVersion.WithResource(res))
	if namespace == "" {
		return r
	}
	return r.Namespace(namespace)
}

// get reads obj (by its namespace and name) into obj.
func (c *PersistClient) get(ctx context.Context, res string, obj persistObject) error {
	u, err := c.resource(res, obj.GetNamespace()).Get(ctx, obj.GetName(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	return fromUnstructured(u, obj)
}

// write creates obj, or updates it when update is set, and reads back
// what the API server stored (generation, resourceVersion, defaults).
func (c *PersistClient) write(ctx context.Context, res string, obj persistObject, update bool) error {
	u, err := toUnstructured(res, obj)
	if err != nil {
		return err
	}
	ri := c.resource(res, obj.GetNamespace())
	if update {
		u, err = ri.Update(ctx, u, metav1.UpdateOptions{})
	} else {
		u, err = ri.Create(ctx, u, metav1.CreateOptions{})
	}
	if err != nil {
		return err
	}
	return fromUnstructured(u, obj)
}

// prefetchNodes lists PrefetchNode records in namespace ("" for every
// namespace) matching the label selector ("" for all).
func (c *PersistClient) prefetchNodes(ctx context.Context, namespace, selector string) ([]coralv1.PrefetchNode, error) {
	var out []coralv1.PrefetchNode
	opts := metav1.ListOptions{LabelSelector: selector, Limit: 500}
	for {
		list, err := c.resource(prefetchNodesRes, namespace).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range list.Items {
			var rec coralv1.PrefetchNode
			if err := fromUnstructured(&list.Items[i], &rec); err != nil {
				return nil, err
			}
			out = append(out, rec)
		}
		if opts.Continue = list.GetContinue(); opts.Continue == "" {
			return out, nil
		}
	}
}

func toUnstructured(res string, obj persistObject) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(coralv1.GroupVersion.WithKind(persistKinds[res]))
	return u, nil
}

func fromUnstructured(u *unstructured.Unstructured, obj persistObject) error {
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), obj); err != nil {
		return fmt.Errorf("reading %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// isNoResource tells a 404 for the resource type itself (Coral's CRDs are
// not installed) from a 404 for an object or its namespace: the API server
// answers those with a Status naming what is missing, while a path it does
// not serve at all gets a plain "404 page not found", which client-go marks
// as an unexpected server response.
func isNoResource(err error) bool {
	return apierrors.IsNotFound(err) && apierrors.IsUnexpectedServerError(err)
}

// noCRDError says Coral's CRDs are not in the cluster.
type noCRDError struct {
	res string
	err error
}

func (e *noCRDError) Error() string {
	return fmt.Sprintf("the API server does not serve %s.%s: Coral's CRDs are not installed (kubectl coral install installs them and the controller)", e.res, coralv1.GroupVersion.Group)
}

func (e *noCRDError) Unwrap() error { return e.err }
