package nodelist

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A page is decoded as it streams in: every node reaches keep, the continue
// token is read wherever it stands, and an answer cut short or not a node
// list is an error, never a shorter list.
func TestDecode(t *testing.T) {
	full := `{"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":"abc"},"items":[` +
		`{"metadata":{"name":"a","labels":{"pool":"web"}},"status":{"nodeInfo":{"architecture":"arm64"}}},` +
		`{"metadata":{"name":"b"},"spec":{"unschedulable":true},"newField":{"x":[1,2]}}]}`
	for _, tc := range []struct {
		name, body string
		names      string
		cont, rv   string
		err        string
	}{
		{name: "a page", body: full, names: `["a" "b"]`, cont: "abc", rv: "9"},
		{name: "metadata after the items", body: `{"items":[{"metadata":{"name":"a"}}],"kind":"NodeList","metadata":{"continue":"x"}}`, names: `["a"]`, cont: "x"},
		{name: "the last page", body: `{"kind":"NodeList","metadata":{},"items":[{"metadata":{"name":"z"}}]}`, names: `["z"]`},
		{name: "no nodes", body: `{"kind":"NodeList","metadata":{},"items":[]}`, names: "[]"},
		{name: "items null", body: `{"kind":"NodeList","metadata":{},"items":null}`, names: "[]"},
		{name: "keys match case-sensitively, as client-go's", body: `{"items":[{"metadata":{"Name":"a"}}]}`, names: `[""]`},
		{name: "cut short mid-node", body: full[:len(full)/2], err: "reading the node list"},
		{name: "cut short after a node", body: strings.TrimSuffix(full, "]}") + ",", err: "reading the node list"},
		{name: "not a node list", body: `{"kind":"Status","status":"Failure"}`, err: "the API server sent a Status"},
		{name: "no items", body: `{"kind":"NodeList","metadata":{}}`, err: "holds no items"},
		{name: "not an object", body: `[1]`, err: "where '{' belongs"},
		{name: "a node of the wrong shape", body: `{"items":[{"metadata":{"name":7}}]}`, err: "cannot unmarshal number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var names []string
			meta, err := Decode(strings.NewReader(tc.body), func(n *corev1.Node) { names = append(names, n.Name) })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one saying %q (nodes %v)", err, tc.err, names)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%q", names); got != tc.names || meta.Continue != tc.cont || meta.ResourceVersion != tc.rv {
				t.Errorf("nodes %q continue %q resourceVersion %q, want %q %q %q", got, meta.Continue, meta.ResourceVersion, tc.names, tc.cont, tc.rv)
			}
		})
	}
}
