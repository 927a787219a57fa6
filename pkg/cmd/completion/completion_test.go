package completion_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coral-dev/coral/pkg/cmd"
	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// run runs the real command line `kubectl-coral ARGS…`.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	err := cmd.Run(t.Context(), streams, args)
	return out.String(), errOut.String(), cmdutil.Code(err)
}

// candidates runs `kubectl-coral __complete ARGS…` and returns the words
// offered.
func candidates(t *testing.T, args ...string) []string {
	t.Helper()
	out, stderr, code := run(t, append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %q: exit %d: %s", args, code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !strings.HasPrefix(lines[len(lines)-1], ":") {
		t.Fatalf("no directive in %q", out)
	}
	var words []string
	for _, l := range lines[:len(lines)-1] {
		words = append(words, strings.SplitN(l, "\t", 2)[0])
	}
	return words
}

// kubeconfigFor writes a kubeconfig pointing at server and sets KUBECONFIG.
func kubeconfigFor(t *testing.T, server string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: %q}}]
users: [{name: test, user: {token: t}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
`, server)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", path)
}

// TestCompletionOfTheRealTree completes commands, flags and node names of
// the command tree kubectl-coral runs, against an API server stand-in.
func TestCompletionOfTheRealTree(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/nodes":
			fmt.Fprint(w, `{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":{},
				"items":[{"metadata":{"name":"node-b"}},{"metadata":{"name":"node-a"}}]}`)
		case "/api/v1/namespaces":
			fmt.Fprint(w, `{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":{},
				"items":[{"metadata":{"name":"default"}},{"metadata":{"name":"coral-system"}}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer api.Close()
	kubeconfigFor(t, api.URL)

	tests := []struct {
		name string
		args []string
		// want must all be offered; exact also means nothing else is.
		want  []string
		exact bool
	}{
		{"commands", []string{""}, []string{"completion", "mirror", "prefetch", "version"}, false},
		{"subcommands", []string{"prefetch", ""}, []string{"images"}, false},
		{"flags", []string{"prefetch", "images", "--no"}, []string{"--nodes", "--no-resolve"}, true},
		{"node names", []string{"prefetch", "images", "nginx:1.27", "--nodes", ""}, []string{"node-a", "node-b"}, true},
		{"node names after a comma", []string{"prefetch", "images", "--nodes", "node-b,"}, []string{"node-b,node-a"}, true},
		{"namespaces", []string{"prefetch", "images", "-n", "c"}, []string{"coral-system"}, true},
		{"contexts", []string{"mirror", "--context", ""}, []string{"test"}, true},
		{"shells", []string{"completion", ""}, []string{"bash", "zsh", "fish", "powershell"}, true},
		{"version output formats", []string{"version", "-o", ""}, []string{"json", "yaml"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := candidates(t, tt.args...)
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("%q not offered; got %q", w, got)
				}
			}
			if tt.exact && len(got) != len(tt.want) {
				t.Errorf("got %q, want exactly %q", got, tt.want)
			}
		})
	}
}

func TestCompletionScripts(t *testing.T) {
	tests := []struct {
		shell string
		want  string
	}{
		{"bash", "__start_kubectl-coral"},
		{"zsh", "#compdef kubectl-coral"},
		{"fish", "complete -c kubectl-coral"},
		{"powershell", "Register-ArgumentCompleter"},
	}
	for _, tt := range tests {
		t.Run(tt.shell, func(t *testing.T) {
			out, stderr, code := run(t, "completion", tt.shell)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("script for %s does not contain %q", tt.shell, tt.want)
			}
			noDesc, _, _ := run(t, "completion", tt.shell, "--no-descriptions")
			if noDesc == "" {
				t.Errorf("--no-descriptions printed nothing")
			}
		})
	}
}

func TestCompletionBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no shell", []string{"completion"}, "name a shell: kubectl coral completion bash|zsh|fish|powershell"},
		{"unknown shell", []string{"completion", "tcsh"}, `no completion script for shell "tcsh": use one of bash, zsh, fish, powershell`},
		{"two shells", []string{"completion", "bash", "zsh"}, "accepts at most 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, code := run(t, tt.args...)
			if code != cmdutil.ExitBadInput {
				t.Errorf("exit %d, want %d", code, cmdutil.ExitBadInput)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr = %q, want it to contain %q", stderr, tt.want)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
		})
	}
}
