package artifact

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// The label decisions; e2e/artifacts_test.go checks them on a real cluster.
func TestUnlabelRelabel(t *testing.T) {
	key := LabelKey("bert")
	digest := "sha256:" + "ab12cd34ef56" + "00000000000000000000000000000000000000000000000000000"
	want := LabelValue([]string{digest})
	mk := func(name, v string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": "gpu"}}}
		if v != "" {
			n.Labels[key] = v
		}
		return n
	}
	client := fake.NewClientset(mk("old", "000000000000"), mk("same", want), mk("none", ""), mk("fails", ""))
	client.PrependReactor("patch", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.PatchAction).GetName() == "fails" {
			return true, nil, errors.New("forbidden")
		}
		return false, nil, nil
	})
	nodes := client.CoreV1().Nodes()
	ctx := context.Background()
	label := func(n string) (string, bool) {
		node, _ := nodes.Get(ctx, n, metav1.GetOptions{})
		v, ok := node.Labels[key]
		return v, ok
	}

	cur, err := Labels(ctx, nodes, "bert")
	if err != nil || len(cur) != 2 || cur["old"] != "000000000000" {
		t.Fatalf("Labels = %v, %v", cur, err)
	}
	removed, errs := Unlabel(ctx, nodes, "bert", []string{"old", "same", "none", "fails"}, cur, want)
	if len(errs) != 0 || len(removed) != 1 || removed["old"] != "000000000000" {
		t.Fatalf("Unlabel removed %v, errs %v", removed, errs)
	}
	if _, ok := label("old"); ok {
		t.Error("a node about to change kept its old label")
	}
	if v, _ := label("same"); v != want {
		t.Error("a node already labelled with the run's value lost its label")
	}

	errs = Relabel(ctx, nodes, "bert", []NodeOutcome{
		{Node: "old", Succeeded: true, Digests: []string{digest}},
		{Node: "same", Succeeded: false},
		{Node: "none", Succeeded: false},
		{Node: "fails", Succeeded: true, Digests: []string{digest}},
	}, cur)
	if v, _ := label("old"); v != want {
		t.Errorf("full success: label %q, want %q", v, want)
	}
	if _, ok := label("same"); ok {
		t.Error("a node whose run failed kept its label")
	}
	if _, ok := label("none"); ok {
		t.Error("a failed node was labelled")
	}
	if len(errs) != 1 || errs[0].Node != "fails" || !errs[0].Set {
		t.Fatalf("errs %v", errs)
	}

	if errs := Restore(ctx, nodes, "bert", map[string]string{"same": want}); len(errs) != 0 {
		t.Fatal(errs)
	}
	if v, _ := label("same"); v != want {
		t.Error("Restore did not put the label back")
	}
}
