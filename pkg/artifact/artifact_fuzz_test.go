package artifact

import (
	"path"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzValidateName: an accepted name is one directory under the root and
// makes a valid node label key.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"bert", "llama-3.1", "../etc", "a/b", "..", ".", "A", "a..b", "x_y.z-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) != nil {
			return
		}
		if d := Dir("", "", "/var/lib/coral/artifacts", name); path.Dir(d) != "/var/lib/coral/artifacts" || path.Base(d) != name {
			t.Fatalf("%q: directory %s is not one level under the root", name, d)
		}
		if errs := validation.IsQualifiedName(LabelKey(name)); len(errs) > 0 {
			t.Fatalf("%q: label key %s: %v", name, LabelKey(name), errs)
		}
	})
}
