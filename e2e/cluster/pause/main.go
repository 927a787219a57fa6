// Command pause is the sandbox ("pause") image of the local e2e cluster, and a
// tiny do-nothing workload for tests.
//
// With no flags it blocks until SIGTERM or SIGINT and exits 0, reaping any
// zombie it inherits meanwhile, which is all a pod sandbox has to do. It is
// built static (CGO_ENABLED=0) and shipped FROM scratch by imagetool, so the
// cluster needs nothing from the internet.
//
// For tests:
//
//	pause -exit-after 1s          exit 0 after a while instead of blocking
//	pause -stat /run/x.sock ...   print each path's file type; exit 1 if one is missing
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type pathList []string

func (p *pathList) String() string     { return fmt.Sprint(*p) }
func (p *pathList) Set(v string) error { *p = append(*p, v); return nil }

func run(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("pause", flag.ContinueOnError)
	fl.SetOutput(stderr)
	exitAfter := fl.Duration("exit-after", 0, "exit 0 after this long instead of waiting for a signal")
	var stats pathList
	fl.Var(&stats, "stat", "print the file type of `PATH` (repeatable); exit 1 if it does not exist")
	if err := fl.Parse(args); err != nil {
		return 2
	}

	for _, p := range stats {
		fi, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(stderr, "pause: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: %s\n", p, fileType(fi.Mode()))
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	var timeout <-chan time.Time
	if *exitAfter > 0 {
		timeout = time.After(*exitAfter)
	} else if len(stats) > 0 {
		return 0
	}
	for {
		select {
		case <-timeout:
			fmt.Fprintf(stdout, "pause: exiting after %s\n", *exitAfter)
			return 0
		case s := <-sigs:
			if s == syscall.SIGCHLD {
				reap()
				continue
			}
			return 0
		}
	}
}

// reap collects every exited child, as PID 1 of a shared PID namespace must.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || errors.Is(err, syscall.ECHILD) {
			return
		}
	}
}

func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeDevice != 0:
		return "device"
	default:
		return m.String()
	}
}
