// Command kubectl-coral is the Coral kubectl plugin.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/coral-dev/coral/pkg/cmd"
	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func main() {
	// A run mostly waits on the API server and its live heap is small (8–11
	// MB at 1000 nodes), but Go's default GOGC=100 lets the heap grow to twice
	// that between collections, a good part of the process's peak RSS. At 50
	// the peak heap is 1.5× the live one, for a few more collections of a
	// small heap (docs/scale.md, "Memory"). GOGC in the environment still wins.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()
	err := cmd.Run(ctx, genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(cmdutil.Code(err))
}
