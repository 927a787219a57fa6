package prefetch

import (
	"bytes"
	"io"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// withNodeList gives a fake clientset the one REST call a run makes
// outside the typed clients: the node list, which the plugin streams
// (nodePage). The nodes come from the fake's own objects, encoded as the
// API server encodes them; every other REST path answers 404, as a
// proxy the fake has no node for would. It is a real REST client over an
// in-memory transport: the disk check's reads run at once, and
// client-go's rest/fake client keeps the last request in a field.
func withNodeList(c *fake.Clientset) kubernetes.Interface {
	rc, err := rest.RESTClientFor(&rest.Config{
		Host:    "http://api.test",
		APIPath: "/api",
		ContentConfig: rest.ContentConfig{
			GroupVersion:         &corev1.SchemeGroupVersion,
			NegotiatedSerializer: scheme.Codecs.WithoutConversion(),
		},
		RateLimiter: flowcontrol.NewFakeAlwaysRateLimiter(),
		Transport: roundTripper(func(req *http.Request) (*http.Response, error) {
			if req.Method != http.MethodGet || req.URL.Path != "/api/v1/nodes" {
				return &http.Response{StatusCode: http.StatusNotFound, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(nil))}, nil
			}
			list, err := c.CoreV1().Nodes().List(req.Context(), metav1.ListOptions{})
			if err != nil {
				return nil, err
			}
			list.Kind, list.APIVersion = "NodeList", "v1"
			body, err := runtime.Encode(scheme.Codecs.LegacyCodec(corev1.SchemeGroupVersion), list)
			if err != nil {
				return nil, err
			}
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(bytes.NewReader(body))}, nil
		}),
	})
	if err != nil {
		panic(err) // a constant configuration
	}
	return &nodeListClientset{Clientset: c, core: nodeListCore{CoreV1Interface: c.CoreV1(), rc: rc}}
}

type nodeListClientset struct {
	*fake.Clientset
	core nodeListCore
}

func (c *nodeListClientset) CoreV1() typedcorev1.CoreV1Interface { return c.core }

type nodeListCore struct {
	typedcorev1.CoreV1Interface
	rc rest.Interface
}

func (c nodeListCore) RESTClient() rest.Interface { return c.rc }

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
