package completion

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/version"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// APITimeout bounds every API request made to complete a word: a shell
// waiting on TAB must not hang on an unreachable cluster.
const APITimeout = 3 * time.Second

// NodesFlag is the flag whose values are node names, on whichever command
// defines it (`prefetch images --nodes a,b`).
const NodesFlag = "nodes"

// Register adds dynamic completion to a built command tree:
//
//   - --context, --cluster and --user from the kubeconfig;
//   - -n/--namespace from the API server (names of namespaces; when listing
//     them is not allowed, the namespaces the kubeconfig's contexts name);
//   - --nodes, on every command that defines it, from the API server: names
//     of nodes not yet on the line, matching -l/--selector when given, for
//     each comma-separated element.
//
// Call it once, after every command is added. Flags that already have a
// completion function keep it. Completion never prints errors: a cluster
// that cannot be reached yields no candidates (set BASH_COMP_DEBUG_FILE to
// see why).
func Register(root *cobra.Command, flags *genericclioptions.ConfigFlags) {
	newCompleter(flags).register(root)
}

// completer completes words from the kubeconfig and the API server.
type completer struct {
	flags   *genericclioptions.ConfigFlags
	timeout time.Duration
	// list returns the names of the cluster-scoped resource ("nodes",
	// "namespaces") that match the label selector; replaced in tests.
	list func(ctx context.Context, resource, selector string) ([]string, error)
}

func newCompleter(flags *genericclioptions.ConfigFlags) *completer {
	c := &completer{flags: flags, timeout: APITimeout}
	c.list = c.listMetadata
	return c
}

func (c *completer) register(root *cobra.Command) {
	kubeconfig := map[string]cobra.CompletionFunc{
		"context":   c.fromKubeconfig(contextNames),
		"cluster":   c.fromKubeconfig(clusterNames),
		"user":      c.fromKubeconfig(userNames),
		"namespace": c.namespaces,
	}
	for name, fn := range kubeconfig {
		registerIfFree(root, name, fn)
	}
	walk(root, func(cmd *cobra.Command) {
		if cmd.LocalFlags().Lookup(NodesFlag) != nil {
			registerIfFree(cmd, NodesFlag, c.nodes)
		}
	})
}

func registerIfFree(cmd *cobra.Command, flag string, fn cobra.CompletionFunc) {
	if cmd.Flag(flag) == nil {
		return
	}
	if _, taken := cmd.GetFlagCompletionFunc(flag); taken {
		return
	}
	if err := cmd.RegisterFlagCompletionFunc(flag, fn); err != nil {
		cobra.CompDebugln("registering completion for --"+flag+": "+err.Error(), false)
	}
}

func walk(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, sub := range cmd.Commands() {
		walk(sub, fn)
	}
}

// nodes completes the last element of a comma-separated list of node names.
func (c *completer) nodes(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	prefix, partial := "", toComplete
	if i := strings.LastIndex(toComplete, ","); i >= 0 {
		prefix, partial = toComplete[:i+1], toComplete[i+1:]
	}
	// Names already given, in this word or in an earlier --nodes.
	chosen := strings.Split(prefix, ",")
	if earlier, err := cmd.Flags().GetStringSlice(NodesFlag); err == nil {
		chosen = append(chosen, earlier...)
	}
	selector := ""
	if f := cmd.Flags().Lookup("selector"); f != nil && f.Changed {
		selector = f.Value.String()
	}
	names := c.names(cmd, "nodes", selector)
	var out []cobra.Completion
	for _, n := range names {
		if strings.HasPrefix(n, partial) && !slices.Contains(chosen, n) {
			out = append(out, prefix+n)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// namespaces completes -n/--namespace.
func (c *completer) namespaces(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	names := c.names(cmd, "namespaces", "")
	if names == nil {
		// Listing namespaces is often forbidden to ordinary users: offer the
		// ones their kubeconfig's contexts use.
		names = c.kubeconfigNames(contextNamespaces)
	}
	return withPrefix(names, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// names lists a cluster-scoped resource, or returns nil when it cannot.
func (c *completer) names(cmd *cobra.Command, resource, selector string) []string {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	names, err := c.list(ctx, resource, selector)
	if err != nil {
		cobra.CompDebugln("listing "+resource+": "+err.Error(), false)
		return nil
	}
	slices.Sort(names)
	return names
}

// listMetadata lists names through the metadata API: one small request
// even on a cluster of thousands of nodes, served from the API server's
// cache (resourceVersion 0).
func (c *completer) listMetadata(ctx context.Context, resource, selector string) ([]string, error) {
	cfg, err := c.flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.Timeout == 0 || cfg.Timeout > c.timeout {
		cfg.Timeout = c.timeout
	}
	cfg.WarningHandler = rest.NoWarnings{}
	cfg.UserAgent = "kubectl-coral/" + version.Version + " (completion)"
	client, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	gvr := schema.GroupVersionResource{Version: "v1", Resource: resource}
	list, err := client.Resource(gvr).List(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: "0"})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(list.Items))
	for _, item := range list.Items {
		names = append(names, item.Name)
	}
	return names, nil
}

// kubeconfigField picks names out of a kubeconfig.
type kubeconfigField func(clientcmdapi.Config) []string

func contextNames(c clientcmdapi.Config) []string { return slices.Sorted(maps.Keys(c.Contexts)) }
func clusterNames(c clientcmdapi.Config) []string { return slices.Sorted(maps.Keys(c.Clusters)) }
func userNames(c clientcmdapi.Config) []string    { return slices.Sorted(maps.Keys(c.AuthInfos)) }

func contextNamespaces(c clientcmdapi.Config) []string {
	var names []string
	for _, ctx := range c.Contexts {
		if ctx != nil && ctx.Namespace != "" {
			names = append(names, ctx.Namespace)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// kubeconfigNames reads the kubeconfig the command line points at
// (--kubeconfig, $KUBECONFIG, ~/.kube/config), or returns nil.
func (c *completer) kubeconfigNames(field kubeconfigField) []string {
	raw, err := c.flags.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		cobra.CompDebugln("reading the kubeconfig: "+err.Error(), false)
		return nil
	}
	return field(raw)
}

func (c *completer) fromKubeconfig(field kubeconfigField) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return withPrefix(c.kubeconfigNames(field), toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

func withPrefix(names []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}
