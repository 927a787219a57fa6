package artifact

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"bert", "llama-3.1", "a", "a_b", strings.Repeat("a", 63)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "../etc", "Bert", "-a", "a-", "a/b", ".", "..", strings.Repeat("a", 64), "a b"} {
		if ValidateName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func node(annotations map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: annotations}}
}

func TestDirAndHostRoot(t *testing.T) {
	tests := []struct {
		ann        map[string]string
		root, want string
	}{
		{nil, "", "/var/lib/coral/artifacts/bert"},
		{nil, "/data", "/data/bert"},
		{map[string]string{AnnotationHostRoot: "/srv/nodes/n1"}, "", "/srv/nodes/n1/var/lib/coral/artifacts/bert"},
		{map[string]string{AnnotationHostRoot: "/", AnnotationRoot: "/mnt/a"}, "/data", "/mnt/a/bert"},
		{map[string]string{AnnotationHostRoot: "srv/../x"}, "", "/x/var/lib/coral/artifacts/bert"},
	}
	for _, tt := range tests {
		if got := NodeDir(node(tt.ann), tt.root, "bert"); got != tt.want {
			t.Errorf("NodeDir(%v, %q) = %s, want %s", tt.ann, tt.root, got, tt.want)
		}
	}
	if HostRoot(node(nil)) != "" || HostRoot(node(map[string]string{AnnotationHostRoot: "/"})) != "" {
		t.Error("no host root is \"\"")
	}
}

func TestLabelValue(t *testing.T) {
	a, b := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	if got := LabelValue([]string{a}); got != strings.Repeat("1", 12) {
		t.Errorf("one source: %s", got)
	}
	if LabelValue([]string{a, b}) != LabelValue([]string{b, a}) || len(LabelValue([]string{a, b})) != 12 {
		t.Error("several sources: order must not matter, 12 hex digits")
	}
	if LabelKey("bert") != "artifacts.coral.dev/bert" {
		t.Error(LabelKey("bert"))
	}
}
