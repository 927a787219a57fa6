// Command kindcluster starts or removes the e2e kind cluster outside a test
// run (see docs/kind.md):
//
//	go run ./e2e/cmd/kindcluster up     # cluster + registries; writes _output/kind/env
//	go run ./e2e/cmd/kindcluster down   # deletes the cluster and the registry containers
//
// `up` is what CORAL_E2E_PROVIDER=kind go test ./e2e/ does first; run alone,
// it serves the nodes' CRI sockets (CORAL_CRI_* in the env file) until
// interrupted, so crictl can look at the nodes meanwhile.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/coral-dev/coral/e2e/provider"
)

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: go run ./e2e/cmd/kindcluster up|down")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, file, _, _ := runtime.Caller(0)
	k := provider.NewKind(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	if os.Args[1] == "down" {
		if err := k.Down(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "kindcluster down: %v\n", err)
			os.Exit(1)
		}
		return
	}
	c, err := k.Up(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kindcluster up: %v\n", err)
		os.Exit(1)
	}
	defer c.Close()
	fmt.Printf("kind cluster up: source %s (CRI sockets served until Ctrl-C)\n", filepath.Join(k.StateDir, "env"))
	<-ctx.Done()
}
