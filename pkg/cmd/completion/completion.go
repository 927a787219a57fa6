// Package completion holds `kubectl coral completion SHELL` and the dynamic
// completion of flag values (contexts, namespaces, node names) for the whole
// command tree.
package completion

import (
	"context"
	"fmt"
	"strings"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Shells are the shells a script can be printed for.
var Shells = []string{"bash", "zsh", "fish", "powershell"}

// Options holds everything `kubectl coral completion` needs.
type Options struct {
	genericiooptions.IOStreams

	Shell          string
	NoDescriptions bool

	// Set by Complete: the program whose script is printed.
	root *cobra.Command
}

// NewCmdCompletion builds `kubectl coral completion SHELL`.
func NewCmdCompletion(streams genericiooptions.IOStreams) *cobra.Command {
	o := &Options{IOStreams: streams}
	cmd := &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print a shell completion script. Completion covers commands, flags, and the
values of --context, --cluster, --user, -n/--namespace (from your kubeconfig
and the cluster) and --nodes (node names, asked from the cluster with a ` + fmt.Sprint(APITimeout) + `
time limit; -l narrows them).

Coral is called in two ways; each completes through a different route.

kubectl coral ...
  kubectl (1.26 and later) completes a plugin's arguments by running an
  executable named kubectl_complete-coral that it finds on PATH. Every release
  archive holds one. krew does not put it on PATH; create it once:

    printf '#!/usr/bin/env sh\nexec kubectl-coral __complete "$@"\n' \
      > "${KREW_ROOT:-$HOME/.krew}/bin/kubectl_complete-coral"
    chmod +x "${KREW_ROOT:-$HOME/.krew}/bin/kubectl_complete-coral"

  and enable kubectl's own completion (see: kubectl completion --help).
  This command's script is not needed for that.

kubectl-coral ...
  Load the script this command prints, as in the examples. Bash needs the
  bash-completion package; zsh needs compinit (autoload -U compinit; compinit).`,
		Example: `  # Bash, this shell only
  source <(kubectl-coral completion bash)

  # Bash, every new shell (Linux; on macOS: $(brew --prefix)/etc/bash_completion.d/)
  kubectl-coral completion bash > /etc/bash_completion.d/kubectl-coral

  # Zsh, every new shell
  kubectl-coral completion zsh > "${fpath[1]}/_kubectl-coral"

  # Fish
  kubectl-coral completion fish > ~/.config/fish/completions/kubectl-coral.fish

  # PowerShell, this session
  kubectl-coral completion powershell | Out-String | Invoke-Expression`,
		Args:                  cobra.MaximumNArgs(1),
		DisableFlagsInUseLine: true,
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return Shells, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: cmdutil.RunE(o),
	}
	cmd.Flags().BoolVar(&o.NoDescriptions, "no-descriptions", false, "leave out the one-line descriptions of commands and flags")
	return cmd
}

// Complete takes the shell from the arguments, and the program (cmd's
// root) whose script Run prints.
func (o *Options) Complete(cmd *cobra.Command, args []string) error {
	o.root = cmd.Root()
	if len(args) > 0 {
		o.Shell = args[0]
	}
	return nil
}

// Validate checks that the shell is one Coral has a script for.
func (o *Options) Validate() error {
	if o.Shell == "" {
		return cmdutil.BadInputf("name a shell: kubectl coral completion %s", strings.Join(Shells, "|"))
	}
	for _, s := range Shells {
		if o.Shell == s {
			return nil
		}
	}
	return cmdutil.BadInputf("no completion script for shell %q: use one of %s", o.Shell, strings.Join(Shells, ", "))
}

// Run prints the script for the kubectl-coral program.
func (o *Options) Run(context.Context) error {
	root, desc := o.root, !o.NoDescriptions
	switch o.Shell {
	case "bash":
		return root.GenBashCompletionV2(o.Out, desc)
	case "zsh":
		if desc {
			return root.GenZshCompletion(o.Out)
		}
		return root.GenZshCompletionNoDesc(o.Out)
	case "fish":
		return root.GenFishCompletion(o.Out, desc)
	case "powershell":
		if desc {
			return root.GenPowerShellCompletionWithDesc(o.Out)
		}
		return root.GenPowerShellCompletion(o.Out)
	}
	return cmdutil.BadInputf("no completion script for shell %q", o.Shell)
}
