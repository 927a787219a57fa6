// Package prefetch holds `kubectl coral prefetch …`.
package prefetch

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
)

// NewCmdPrefetch builds `kubectl coral prefetch`.
func NewCmdPrefetch(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "prefetch",
		Short: "Bring images or artifacts onto nodes ahead of a rollout",
		Long: `Bring images or files onto nodes before workloads need them, with one
short-lived Job per node: for images its pod talks to that node's container
runtime; for artifacts it writes into one directory on the node's disk.`,
		Example: `  kubectl coral prefetch images nginx:1.27 -l pool=web
  kubectl coral prefetch artifacts https://models.example.com/bert.tar.gz --name bert --sha256 9f2c… -l pool=gpu`,
		Args: cobra.ArbitraryArgs,
		RunE: cmdutil.RequireSubcommand,
	}
	cmd.AddCommand(NewCmdImages(flags, streams))
	cmd.AddCommand(NewCmdArtifacts(flags, streams))
	return cmd
}

// explainKubeconfig turns kubeconfig loading errors into one line that
// says what to change.
func explainKubeconfig(err error) error {
	if clientcmd.IsEmptyConfig(err) {
		return errors.New("no kubeconfig found: set KUBECONFIG, pass --kubeconfig, or run inside a cluster")
	}
	msg := err.Error()
	if strings.Contains(msg, "context") && (strings.Contains(msg, "does not exist") || strings.Contains(msg, "not found")) {
		return fmt.Errorf("%s (list the contexts with: kubectl config get-contexts)", msg)
	}
	return fmt.Errorf("reading the kubeconfig: %s", msg)
}

// explainAPI turns a failed API call into a message without client-go's
// noise: unreachable servers, authentication, authorization.
func explainAPI(err error, doing string) error {
	var ue *url.Error
	var ne net.Error
	switch {
	case errors.As(err, &ue):
		return fmt.Errorf("%s: cannot reach the API server at %s: %v (check --context, --kubeconfig and that the cluster is up)", doing, hostOf(ue.URL), rootCause(ue.Err))
	case errors.As(err, &ne):
		return fmt.Errorf("%s: cannot reach the API server: %v (check --context, --kubeconfig and that the cluster is up)", doing, ne)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%s: the API server did not accept your credentials (Unauthorized): log in again or check --context", doing)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%s: %v (see the RBAC section of the README for what Coral needs)", doing, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Scheme + "://" + u.Host
	}
	return raw
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
