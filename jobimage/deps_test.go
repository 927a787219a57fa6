package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The worker image stays small: no Kubernetes client, no CLI printers, no
// cobra. (pkg/report's printing of -o once pulled cli-runtime and kustomize
// into the worker: a 48 MB binary instead of 22.6 MB.)
func TestWorkerHasNoHeavyDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/coral-dev/coral/jobimage").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/spf13/cobra", "k8s.io/client-go", "k8s.io/cli-runtime", "sigs.k8s.io/kustomize", "sigs.k8s.io/controller-runtime"} {
			if dep == banned || strings.HasPrefix(dep, banned+"/") {
				t.Errorf("the worker depends on %s", dep)
			}
		}
	}
}
