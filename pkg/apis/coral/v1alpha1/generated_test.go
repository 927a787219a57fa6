package v1alpha1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestGeneratedFilesAreCurrent runs controller-gen (the version pinned in
// hack/tools/go.mod) into a temporary directory and compares its output with
// the committed deepcopy code and CRDs: it fails when the types changed and
// `make manifests` was not run.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs controller-gen")
	}
	_, here, _, _ := runtime.Caller(0)
	pkgDir := filepath.Dir(here)
	root := filepath.Join(pkgDir, "..", "..", "..", "..")
	// Read the inputs here so that go test's cache is keyed on them (the
	// generator runs in a child process, whose reads go test cannot see).
	srcs, _ := filepath.Glob(filepath.Join(pkgDir, "*.go"))
	srcs = append(srcs, filepath.Join(root, "hack", "tools", "go.mod"))
	for _, s := range srcs {
		if _, err := os.ReadFile(s); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	cmd := exec.Command("go", "-C", filepath.Join(root, "hack", "tools"), "run", "sigs.k8s.io/controller-tools/cmd/controller-gen",
		"object", "paths="+pkgDir, "output:object:dir="+out,
		"crd", "output:crd:dir="+filepath.Join(out, "crd"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("controller-gen: %v\n%s", err, b)
	}
	compare := func(generated, committed string) {
		t.Helper()
		want, err := os.ReadFile(generated)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(committed)
		if err != nil {
			t.Fatalf("%v (run make manifests)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make manifests and commit the result", committed)
		}
	}
	compare(filepath.Join(out, "zz_generated.deepcopy.go"), filepath.Join(pkgDir, "zz_generated.deepcopy.go"))
	crds, err := filepath.Glob(filepath.Join(out, "crd", "*.yaml"))
	if err != nil || len(crds) == 0 {
		t.Fatalf("controller-gen wrote no CRDs (%v)", err)
	}
	committed, _ := filepath.Glob(filepath.Join(root, "config", "crd", "*.yaml"))
	if len(committed) != len(crds) {
		t.Errorf("config/crd has %d files, controller-gen makes %d: run make manifests", len(committed), len(crds))
	}
	for _, c := range crds {
		compare(c, filepath.Join(root, "config", "crd", filepath.Base(c)))
	}
}
