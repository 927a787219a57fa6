// Command imagetool builds and pushes the images the e2e tests and the local
// cluster need, without Docker: everything goes through go-containerregistry.
//
//	imagetool binary  --ref REF --binary PATH [--binary-arm64 PATH] [--entrypoint /x]
//	imagetool random  --ref REF [--layers N] [--layer-size BYTES] [--platforms linux/amd64,...]
//	imagetool digest  REF
//	imagetool delete  REF
//
// Every subcommand accepts --username/--password (basic auth) and --insecure
// (plain http; implied for loopback registries). binary and random print the
// pushed reference with its digest (REF@sha256:...) on stdout.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintln(os.Stderr, "imagetool:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "imagetool:", err)
		os.Exit(1)
	}
}

const usage = `usage: imagetool COMMAND [flags]

commands:
  binary   push an image FROM scratch holding one static binary (its entrypoint)
  random   push an image (or, with several --platforms, an index) of random layers
  digest   print the digest of REF
  delete   delete the manifest REF points to (a tag is resolved to its digest first)

Run 'imagetool COMMAND -h' for the flags of a command.`

// usageError marks mistakes in the command line (exit code 2).
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// Run is the whole program: it parses args and runs one subcommand.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{usage}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "binary":
		return runBinary(ctx, rest, stdout, stderr)
	case "random":
		return runRandom(ctx, rest, stdout, stderr)
	case "digest":
		return runDigest(ctx, rest, stdout, stderr)
	case "delete":
		return runDelete(ctx, rest, stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return usageError{fmt.Sprintf("unknown command %q\n%s", cmd, usage)}
	}
}
