package worker

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/registryauth"
	"github.com/coral-dev/coral/pkg/report"
)

// DefaultTerminationPath is where kubelet reads the termination message.
const DefaultTerminationPath = "/dev/termination-log"

type imageFlags []Item

func (f *imageFlags) String() string { return fmt.Sprint(len(*f)) }
func (f *imageFlags) Set(s string) error {
	it, err := ParseItem(s)
	if err != nil {
		return err
	}
	*f = append(*f, it)
	return nil
}

// Main is the worker program:
//
//	coral-worker pull --runtime-endpoint=unix:///… --image=REF[=DIGEST]…
//	coral-worker fetch --dir=/artifact --source=URL[=SHA256]…
//
// It writes the compact report to terminationPath and the full report to
// stdout, and returns the exit code: 0 when every item is on the node, 1 when
// any failed, 2 for bad arguments.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, terminationPath string) int {
	if len(args) > 0 {
		switch args[0] {
		case "pull":
			return mainPull(ctx, args, stdout, stderr, terminationPath)
		case "fetch":
			return mainFetch(ctx, args, stdout, stderr, terminationPath)
		case "unpin":
			return mainUnpin(ctx, args, stdout, stderr, terminationPath)
		}
	}
	fmt.Fprintln(stderr, "usage: coral-worker pull --runtime-endpoint=unix:///… --image=REF[=DIGEST]…\n       coral-worker fetch --dir=DIR --source=URL[=SHA256]…")
	return 2
}

func logger(stderr io.Writer) func(string, ...any) {
	return func(format string, a ...any) {
		fmt.Fprintf(stderr, time.Now().UTC().Format("15:04:05.000 ")+format+"\n", a...)
	}
}

func mainPull(ctx context.Context, args []string, stdout, stderr io.Writer, terminationPath string) int {
	fs := flag.NewFlagSet("coral-worker pull", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		images   imageFlags
		endpoint = fs.String("runtime-endpoint", "unix:///run/coral/cri.sock", "CRI socket")
		parallel = fs.Int("max-parallel", 3, "concurrent pulls")
		timeout  = fs.Duration("image-timeout", 10*time.Minute, "time limit per image, all attempts included")
		retries  = fs.Int("retries", 3, "retries for transient failures")
		backoff  = fs.Duration("backoff", time.Second, "first retry delay (doubles)")
		authDir  = fs.String("auth-dir", "", "directory of mounted pull secrets")
		pin      = fs.Bool("pin", false, "pin the images so kubelet's image GC keeps them")
	)
	fs.Var(&images, "image", "image to pull: REF or REF=DIGEST (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if len(images) == 0 {
		fmt.Fprintln(stderr, "coral-worker: no --image given")
		return 2
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, time.Now().UTC().Format("15:04:05.000 ")+format+"\n", a...)
	}

	expected := make([]string, len(images))
	for i, it := range images {
		expected[i] = it.ExpectedDigest
	}
	failAll := func(msg string) int {
		r := &report.WorkerReport{Version: report.WireVersion}
		for _, it := range images {
			r.Items = append(r.Items, report.ItemResult{Item: it.Image, Status: report.StatusFailed, Message: msg})
		}
		return finish(r, expected, stdout, stderr, terminationPath)
	}

	keyring, err := registryauth.LoadDir(*authDir)
	if err != nil {
		return failAll(err.Error())
	}
	client, err := Dial(ctx, *endpoint)
	if err != nil {
		return failAll(err.Error())
	}
	defer client.Close()
	if v, err := client.Version(ctx); err == nil {
		logf("runtime %s at %s; %d images, %d at a time", v, *endpoint, len(images), *parallel)
	}
	r := Pull(ctx, client, images, PullOptions{
		MaxParallel: *parallel, ImageTimeout: *timeout, Retries: *retries, Backoff: *backoff,
		Keyring: keyring, Pin: *pin, Logf: logf,
	})
	return finish(r, expected, stdout, stderr, terminationPath)
}

func finish(r *report.WorkerReport, expected []string, stdout, stderr io.Writer, terminationPath string) int {
	if err := report.EncodeFull(stdout, r); err != nil {
		fmt.Fprintf(stderr, "writing the report: %v\n", err)
	}
	msg := report.EncodeTermination(r, expected, report.TerminationMessageLimit)
	if terminationPath != "" {
		if err := os.WriteFile(terminationPath, []byte(msg), 0o644); err != nil {
			fmt.Fprintf(stderr, "writing the termination message: %v\n", err)
		}
	}
	var failed []string
	for _, it := range r.Items {
		if it.Status == report.StatusFailed {
			failed = append(failed, it.Item)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(stderr, "%d of %d images failed: %s\n", len(failed), len(r.Items), strings.Join(failed, ", "))
		return 1
	}
	return 0
}
