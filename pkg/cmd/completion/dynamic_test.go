package completion

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// complete runs `ROOT __complete ARGS…` and returns the candidates (the
// lines before the directive), the directive line and stderr.
func complete(t *testing.T, root *cobra.Command, args ...string) (candidates []string, directive, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{cobra.ShellCompRequestCmd}, args...))
	if err := root.Execute(); err != nil {
		t.Fatalf("__complete %q: %v", args, err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	directive = lines[len(lines)-1]
	for _, l := range lines[:len(lines)-1] {
		candidates = append(candidates, strings.SplitN(l, "\t", 2)[0])
	}
	return candidates, directive, errOut.String()
}

// fakeCluster answers list calls from fixed names, honouring a selector of
// the form key=value against labels.
type fakeCluster struct {
	nodes      map[string]string // name → "key=value" label
	namespaces []string
	err        error
	// calls records resource and selector of every list.
	calls []string
}

func (f *fakeCluster) list(_ context.Context, resource, selector string) ([]string, error) {
	f.calls = append(f.calls, resource+"?"+selector)
	if f.err != nil {
		return nil, f.err
	}
	switch resource {
	case "nodes":
		var names []string
		for n, label := range f.nodes {
			if selector == "" || selector == label {
				names = append(names, n)
			}
		}
		return names, nil
	case "namespaces":
		return f.namespaces, nil
	}
	return nil, fmt.Errorf("unexpected resource %q", resource)
}

const kubeconfigYAML = `apiVersion: v1
kind: Config
clusters:
- name: prod-eu
  cluster: {server: "https://192.0.2.10:6443"}
- name: staging
  cluster: {server: "https://192.0.2.11:6443"}
users:
- name: alice
  user: {token: t}
- name: ci-bot
  user: {token: t}
contexts:
- name: prod
  context: {cluster: prod-eu, user: alice, namespace: shop}
- name: staging
  context: {cluster: staging, user: ci-bot, namespace: coral-system}
- name: staging-admin
  context: {cluster: staging, user: alice}
current-context: staging
`

// testTree builds a small tree shaped like Coral's: persistent kube flags
// on the root, a command with --nodes and -l, one without.
func testTree(t *testing.T, cluster *fakeCluster) *cobra.Command {
	t.Helper()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(kubeconfigYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &kubeconfig
	root := &cobra.Command{Use: "kubectl-coral", RunE: func(*cobra.Command, []string) error { return nil }}
	flags.AddFlags(root.PersistentFlags())
	group := &cobra.Command{Use: "prefetch"}
	images := &cobra.Command{Use: "images", RunE: func(*cobra.Command, []string) error { return nil }}
	images.Flags().StringSlice("nodes", nil, "node names")
	images.Flags().StringP("selector", "l", "", "node selector")
	group.AddCommand(images)
	other := &cobra.Command{Use: "other", RunE: func(*cobra.Command, []string) error { return nil }}
	other.Flags().String("output", "", "format")
	root.AddCommand(group, other)

	c := newCompleter(flags)
	c.list = cluster.list
	c.register(root)
	return root
}

func TestNodeNames(t *testing.T) {
	nodes := map[string]string{
		"web-1": "pool=web", "web-2": "pool=web", "web-3": "pool=web",
		"db-1": "pool=db",
	}
	tests := []struct {
		name         string
		args         []string
		want         []string
		wantSelector string
	}{
		{"all nodes, sorted", []string{"prefetch", "images", "--nodes", ""}, []string{"db-1", "web-1", "web-2", "web-3"}, ""},
		{"prefix", []string{"prefetch", "images", "--nodes", "we"}, []string{"web-1", "web-2", "web-3"}, ""},
		{"with =", []string{"prefetch", "images", "--nodes=d"}, []string{"db-1"}, ""},
		{"next element of a list", []string{"prefetch", "images", "--nodes", "web-1,"}, []string{"web-1,db-1", "web-1,web-2", "web-1,web-3"}, ""},
		{"prefix of the next element", []string{"prefetch", "images", "--nodes", "web-2,web-1,w"}, []string{"web-2,web-1,web-3"}, ""},
		{"names of an earlier --nodes left out", []string{"prefetch", "images", "--nodes", "web-1", "--nodes", "web"}, []string{"web-2", "web-3"}, ""},
		{"-l narrows", []string{"prefetch", "images", "-l", "pool=db", "--nodes", ""}, []string{"db-1"}, "pool=db"},
		{"no match", []string{"prefetch", "images", "--nodes", "gpu"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cluster := &fakeCluster{nodes: nodes}
			got, directive, _ := complete(t, testTree(t, cluster), tt.args...)
			if !slices.Equal(got, tt.want) {
				t.Errorf("candidates = %q, want %q", got, tt.want)
			}
			if directive != fmt.Sprintf(":%d", cobra.ShellCompDirectiveNoFileComp) {
				t.Errorf("directive = %s, want no file completion", directive)
			}
			if want := []string{"nodes?" + tt.wantSelector}; !slices.Equal(cluster.calls, want) {
				t.Errorf("list calls = %q, want %q", cluster.calls, want)
			}
		})
	}
}

func TestNothingPrintedWhenTheClusterFails(t *testing.T) {
	cluster := &fakeCluster{err: errors.New("dial tcp 192.0.2.10:6443: i/o timeout")}
	for _, args := range [][]string{
		{"prefetch", "images", "--nodes", ""},
		{"-n", "zz"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			got, directive, stderr := complete(t, testTree(t, cluster), args...)
			if len(got) != 0 {
				t.Errorf("candidates = %q, want none", got)
			}
			if directive != fmt.Sprintf(":%d", cobra.ShellCompDirectiveNoFileComp) {
				t.Errorf("directive = %s", directive)
			}
			if strings.Contains(stderr, "i/o timeout") || strings.Contains(stderr, "rror") {
				t.Errorf("stderr shows the error: %q", stderr)
			}
		})
	}
}

func TestKubeconfigAndNamespaces(t *testing.T) {
	tests := []struct {
		name    string
		cluster *fakeCluster
		args    []string
		want    []string
	}{
		{"contexts", &fakeCluster{}, []string{"other", "--context", ""}, []string{"prod", "staging", "staging-admin"}},
		{"contexts by prefix", &fakeCluster{}, []string{"--context", "stag"}, []string{"staging", "staging-admin"}},
		{"clusters", &fakeCluster{}, []string{"other", "--cluster", ""}, []string{"prod-eu", "staging"}},
		{"users", &fakeCluster{}, []string{"prefetch", "images", "--user", "c"}, []string{"ci-bot"}},
		{"namespaces from the cluster", &fakeCluster{namespaces: []string{"kube-system", "default", "coral-system"}},
			[]string{"prefetch", "images", "-n", ""}, []string{"coral-system", "default", "kube-system"}},
		{"namespaces by prefix", &fakeCluster{namespaces: []string{"kube-system", "kube-public", "default"}},
			[]string{"--namespace", "kube-p"}, []string{"kube-public"}},
		{"namespaces of the kubeconfig when listing is forbidden", &fakeCluster{err: errors.New("namespaces is forbidden")},
			[]string{"other", "-n", ""}, []string{"coral-system", "shop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, _ := complete(t, testTree(t, tt.cluster), tt.args...)
			if !slices.Equal(got, tt.want) {
				t.Errorf("candidates = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestExistingCompletionIsKept(t *testing.T) {
	flags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{Use: "kubectl-coral"}
	flags.AddFlags(root.PersistentFlags())
	sub := &cobra.Command{Use: "sub", Run: func(*cobra.Command, []string) {}}
	sub.Flags().StringSlice("nodes", nil, "")
	if err := sub.RegisterFlagCompletionFunc("nodes", cobra.FixedCompletions([]string{"mine"}, cobra.ShellCompDirectiveNoFileComp)); err != nil {
		t.Fatal(err)
	}
	root.AddCommand(sub)
	c := newCompleter(flags)
	c.list = (&fakeCluster{nodes: map[string]string{"n1": ""}}).list
	c.register(root)
	got, _, _ := complete(t, root, "sub", "--nodes", "")
	if !slices.Equal(got, []string{"mine"}) {
		t.Errorf("candidates = %q, want the command's own", got)
	}
}

// flagsFor returns ConfigFlags whose kubeconfig points at server.
func flagsFor(t *testing.T, server string) *genericclioptions.ConfigFlags {
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
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &path
	return flags
}

// TestListMetadata runs the production lister against an API server
// stand-in: one metadata-only list, served from the cache, with the
// selector, and bounded in time.
func TestListMetadata(t *testing.T) {
	var gotQuery, gotAccept string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/nodes" {
			http.NotFound(w, r)
			return
		}
		gotQuery, gotAccept = r.URL.RawQuery, r.Header.Get("Accept")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"PartialObjectMetadataList","apiVersion":"meta.k8s.io/v1","metadata":{},
			"items":[{"metadata":{"name":"web-2"}},{"metadata":{"name":"web-1"}}]}`)
	}))
	defer api.Close()

	flags := flagsFor(t, api.URL)
	names, err := newCompleter(flags).listMetadata(context.Background(), "nodes", "pool=web")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, []string{"web-2", "web-1"}) {
		t.Errorf("names = %q", names)
	}
	if !strings.Contains(gotQuery, "labelSelector=pool%3Dweb") || !strings.Contains(gotQuery, "resourceVersion=0") {
		t.Errorf("query = %q, want the selector and resourceVersion=0", gotQuery)
	}
	if !strings.Contains(gotAccept, "as=PartialObjectMetadataList") {
		t.Errorf("Accept = %q, want a metadata-only list", gotAccept)
	}
}

func TestListMetadataGivesUpInTime(t *testing.T) {
	release := make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer api.Close()
	defer close(release)

	flags := flagsFor(t, api.URL)
	c := newCompleter(flags)
	c.timeout = 200 * time.Millisecond
	root := &cobra.Command{Use: "kubectl-coral"}
	flags.AddFlags(root.PersistentFlags())
	sub := &cobra.Command{Use: "sub", Run: func(*cobra.Command, []string) {}}
	sub.Flags().StringSlice("nodes", nil, "")
	root.AddCommand(sub)
	c.register(root)

	start := time.Now()
	got, _, stderr := complete(t, root, "sub", "--nodes", "")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("completion took %v with a 200ms limit", took)
	}
	if len(got) != 0 || strings.Contains(stderr, "rror") {
		t.Errorf("candidates = %q, stderr = %q: want nothing", got, stderr)
	}
}
