// Package cmd builds Coral's command tree. Run is the program's one door:
// cmd/kubectl-coral only calls it.
package cmd

import (
	"context"
	"errors"
	"fmt"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/cmd/completion"
	"github.com/coral-dev/coral/pkg/cmd/gc"
	"github.com/coral-dev/coral/pkg/cmd/inject"
	"github.com/coral-dev/coral/pkg/cmd/install"
	"github.com/coral-dev/coral/pkg/cmd/mirror"
	"github.com/coral-dev/coral/pkg/cmd/prefetch"
	"github.com/coral-dev/coral/pkg/cmd/version"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	// Every client-go auth plugin (exec, OIDC, cloud providers' helpers) a
	// kubeconfig may name.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

// NewRootCmd builds `kubectl coral`.
func NewRootCmd(streams genericiooptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	root := &cobra.Command{
		Use:   "kubectl-coral",
		Short: "Put images and artifacts on your nodes before a rollout needs them",
		Long: `Coral prefetches container images (and artifacts) onto Kubernetes nodes and
mirrors images into your own registries.

A prefetch launches one short-lived Job per selected node. Its pod talks to that
node's container runtime over CRI, pulls the images, reports per image and exits.
Coral watches the Jobs, prints one report, deletes what it created, and exits
non-zero when anything failed:

  0    every image is on every selected node
  1    some images failed on some nodes (see the report)
  2    bad input: nothing was created
  130  interrupted: everything created was deleted`,
		Example: `  # Prefetch two images onto the nodes of one pool
  kubectl coral prefetch images nginx:1.27 registry.example.com/team/api:v3 -l pool=web

  # Prefetch every image a chart uses, as JSON for a script
  helm template ./chart | kubectl coral prefetch images -f - -o json`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE:          cmdutil.RequireSubcommand,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl coral"},
	}
	flags.AddFlags(root.PersistentFlags())
	root.AddCommand(prefetch.NewCmdPrefetch(flags, streams))
	root.AddCommand(prefetch.NewCmdUnpin(flags, streams))
	root.AddCommand(inject.NewCmdInject(flags, streams))
	root.AddCommand(mirror.NewCmdMirror(flags, streams))
	root.AddCommand(gc.NewCmdGC(flags, streams))
	root.AddCommand(version.NewCmdVersion(streams))
	root.AddCommand(install.NewCmdInstall(flags, streams), install.NewCmdUninstall(flags, streams))
	// Ours replaces cobra's default completion command.
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(completion.NewCmdCompletion(streams))
	// Last: it completes flags of every command added above.
	completion.Register(root, flags)
	return root
}

// Run executes the command line args and returns an error carrying the exit
// code (see cmdutil.Code). ctx is cancelled on SIGINT/SIGTERM by the caller.
func Run(ctx context.Context, streams genericiooptions.IOStreams, args []string) error {
	root := NewRootCmd(streams)
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return cmdutil.BadInputf("%v\nSee '%s --help'.", err, c.CommandPath())
	})
	// started is set once a command's own code runs: an error before that
	// is cobra's (unknown command, wrong arguments), bad input by nature.
	started := false
	root.PersistentPreRun = func(*cobra.Command, []string) { started = true }
	err := root.ExecuteContext(ctx)
	if err == nil {
		return nil
	}
	ee := exitError(ctx, err, started)
	if ee.Err != nil {
		fmt.Fprintf(streams.ErrOut, "error: %s\n", ee.Err)
	}
	return ee
}

// exitError gives every error its exit code. A command's ExitError keeps
// its code, except that anything after Ctrl-C is an interrupt (130): a
// lookup cut short is not "bad input". An error without a code is bad
// input (2) only before a command ran; after, it may follow writes, so it
// is a failure (1), never a false "nothing was created".
func exitError(ctx context.Context, err error, started bool) *cmdutil.ExitError {
	var ee *cmdutil.ExitError
	if !errors.As(err, &ee) {
		code := cmdutil.ExitFailed
		if !started {
			code = cmdutil.ExitBadInput
		}
		ee = &cmdutil.ExitError{Code: code, Err: err}
	}
	if ctx.Err() != nil && started && ee.Code != cmdutil.ExitOK && ee.Code != cmdutil.ExitInterrupted {
		msg := "interrupted"
		if ee.Err != nil {
			msg += ": " + ee.Err.Error()
		}
		ee = &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.New(msg)}
	}
	return ee
}
