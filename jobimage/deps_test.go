package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// banned are packages the worker must not link, with why.
var banned = map[string]string{
	// pkg/report's printing of -o once pulled cli-runtime and kustomize into
	// the worker: a 48 MB binary instead of 22.6 MB.
	"github.com/spf13/cobra":         "a CLI framework",
	"k8s.io/client-go":               "a Kubernetes client",
	"k8s.io/cli-runtime":             "kubectl's printers",
	"sigs.k8s.io/kustomize":          "kustomize",
	"sigs.k8s.io/controller-runtime": "the controller's runtime",
	// A package that calls reflect.Value.MethodByName with a name not known
	// at link time makes the linker keep every exported method of every
	// type that reaches an interface: with html/template (via grpc's
	// golang.org/x/net/trace) the worker weighed 22.6 MB instead of 14.5 MB.
	"golang.org/x/net/trace": "grpc tracing (build with -tags grpcnotrace)",
	"text/template":          "templates (reflection by method name)",
	"html/template":          "templates (reflection by method name)",
	"net/http/pprof":         "a profiling server",
	"expvar":                 "a debug server",
}

// The worker image stays small: no Kubernetes client, no CLI printers, no
// cobra, nothing that defeats the linker's dead-code elimination.
func TestWorkerHasNoHeavyDependencies(t *testing.T) {
	tags := workerTags(t)
	out, err := exec.Command("go", "list", "-deps", "-tags", tags, "github.com/coral-dev/coral/jobimage").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps -tags %q: %v\n%s", tags, err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for b, why := range banned {
			if dep == b || strings.HasPrefix(dep, b+"/") {
				t.Errorf("the worker (built with -tags %q) depends on %s: %s", tags, dep, why)
			}
		}
	}
}

// workerTags returns the build tags the Makefile builds the worker with
// (WORKER_TAGS), and fails when the jobimage recipe does not use them.
func workerTags(t *testing.T) string {
	t.Helper()
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^WORKER_TAGS\s*:?=\s*(.*)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile sets no WORKER_TAGS")
	}
	tags := strings.Join(strings.Fields(string(m[1])), ",")
	if !strings.Contains(tags, "grpcnotrace") {
		t.Errorf("WORKER_TAGS = %q: without grpcnotrace grpc links golang.org/x/net/trace and html/template", tags)
	}
	build := regexp.MustCompile(`(?m)^\s.*\$\(GO\) build .*\./jobimage\b.*$`).FindAll(mk, -1)
	if len(build) == 0 {
		t.Fatal("no `$(GO) build … ./jobimage` in the Makefile")
	}
	for _, line := range build {
		if !strings.Contains(string(line), "-tags '$(WORKER_TAGS)'") {
			t.Errorf("the Makefile builds the worker without -tags '$(WORKER_TAGS)':\n%s", strings.TrimSpace(string(line)))
		}
	}
	return tags
}
