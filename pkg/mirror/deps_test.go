package mirror_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The library stays a library: no CLI framework, no Kubernetes client.
func TestNoHeavyDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/coral-dev/coral/pkg/mirror").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/spf13/cobra", "k8s.io/client-go", "k8s.io/cli-runtime", "k8s.io/api/"} {
			if dep == banned || strings.HasPrefix(dep, banned) {
				t.Errorf("pkg/mirror depends on %s", dep)
			}
		}
	}
}
