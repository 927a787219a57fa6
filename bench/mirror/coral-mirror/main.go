// Command coral-mirror runs `kubectl coral mirror` on its own. The benchmark
// uses it only while the mirror command is not yet part of kubectl-coral.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/cmd/mirror"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	flags := genericclioptions.NewConfigFlags(true)
	cmd := mirror.NewCmdMirror(flags, genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	cmd.SilenceErrors = true
	flags.AddFlags(cmd.PersistentFlags())
	cmd.SetArgs(os.Args[1:])
	err := cmd.ExecuteContext(ctx)
	stop()
	var ee *cmdutil.ExitError
	if err != nil {
		if !errors.As(err, &ee) || ee.Err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
		}
	}
	os.Exit(cmdutil.Code(err))
}
