// Command coral-worker runs inside Coral's Jobs: it pulls images through the
// node's container runtime and reports per image. It is built static and
// shipped in an image FROM scratch (see assemble/).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/coral-dev/coral/pkg/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := worker.Main(ctx, os.Args[1:], os.Stdout, os.Stderr, worker.DefaultTerminationPath)
	stop()
	os.Exit(code)
}
