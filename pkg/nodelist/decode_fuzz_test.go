package nodelist

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
)

// FuzzDecode encodes a node list as the API server does, then cuts
// it at a fuzzed byte: the whole answer decodes to exactly its nodes and
// continue token, and an answer cut short anywhere is an error — never a
// shorter list taken for the whole. Any bytes at all never panic.
func FuzzDecode(f *testing.F) {
	f.Add(3, "web-", "tok", 0, []byte(`{"items":[]}`))
	f.Add(1, "n", "", 17, []byte(`{"kind":"NodeList","items":[{"metadata":{"name":"a"}}]}`))
	f.Add(5, "gpu-é", "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ", 400, []byte(`[`))
	f.Fuzz(func(t *testing.T, count int, prefix, cont string, cut int, raw []byte) {
		_, _ = Decode(bytes.NewReader(raw), func(*corev1.Node) {})

		if !utf8.ValidString(prefix) || !utf8.ValidString(cont) {
			return // JSON carries text: the encoder would replace the bytes
		}
		count = min(max(count, 0), 20)
		list := &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}, ListMeta: metav1.ListMeta{Continue: cont}}
		var want []string
		for i := range count {
			name := fmt.Sprintf("%s%d", prefix, i)
			want = append(want, name)
			list.Items = append(list.Items, corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"k": prefix}}})
		}
		body, err := runtime.Encode(scheme.Codecs.LegacyCodec(corev1.SchemeGroupVersion), list)
		if err != nil {
			t.Skip(err)
		}
		whole := len(bytes.TrimRight(body, " \n"))
		if cut < 0 {
			cut = -cut
		}
		cut %= len(body) + 1
		var got []string
		meta, err := Decode(bytes.NewReader(body[:cut]), func(n *corev1.Node) { got = append(got, n.Name) })
		switch {
		case cut < whole && err == nil:
			t.Fatalf("cut at %d of %d: no error, %d of %d nodes", cut, len(body), len(got), count)
		case cut >= whole && err != nil:
			t.Fatalf("whole answer: %v", err)
		case cut >= whole && (strings.Join(got, "\x00") != strings.Join(want, "\x00") || meta.Continue != cont):
			t.Fatalf("nodes %q continue %q, want %q %q", got, meta.Continue, want, cont)
		}
	})
}
