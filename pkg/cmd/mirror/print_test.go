package mirror

import (
	"bytes"
	"strings"
	"testing"
	"time"

	mirrorlib "github.com/coral-dev/coral/pkg/mirror"
	"github.com/coral-dev/coral/pkg/progress"
)

// copyRun is the library's progress for two images: one copied, one failed.
func copyRun(c copyProgress) {
	c.update(mirrorlib.Progress{Images: 2, Bytes: 1 << 20, Elapsed: time.Second})
	c.update(mirrorlib.Progress{Images: 2, Done: 1, Bytes: 2 << 20, Elapsed: 2 * time.Second, Finished: []mirrorlib.Result{
		{Source: "a:1", Destination: "reg/a:1", Status: mirrorlib.StatusCopied, Bytes: 2 << 20, Seconds: 1.5},
	}})
	c.update(mirrorlib.Progress{Images: 2, Done: 2, Failed: 1, Bytes: 2 << 20, Elapsed: 3 * time.Second, Finished: []mirrorlib.Result{
		{Source: "b:1", Destination: "reg/b:1", Status: mirrorlib.StatusFailed, Message: "unauthorized:\n  denied"},
	}})
}

func TestCopyProgressPlain(t *testing.T) {
	var buf bytes.Buffer
	copyRun(copyProgress{out: progress.New(&buf, progress.Plain)})
	want := "  copied  a:1 → reg/a:1  2.0MiB in 1.5s\n" +
		"  failed  b:1 → reg/b:1: unauthorized: denied\n"
	if got := buf.String(); got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}

func TestCopyProgressBar(t *testing.T) {
	var buf bytes.Buffer
	pr := progress.New(&buf, progress.Bar)
	copyRun(copyProgress{out: pr})
	got := buf.String()
	erase := "\r\x1b[2K"
	// Each status is drawn with the lines above it; the last update leaves
	// no status line after its lines.
	want := erase + "[0/2 images] 1.0MiB sent · 1.0MiB/s · 1s" +
		erase + "  copied  a:1 → reg/a:1  2.0MiB in 1.5s\n" + erase + "[1/2 images] 2.0MiB sent · 1.0MiB/s · 2s" +
		erase + "  failed  b:1 → reg/b:1: unauthorized: denied\n"
	if got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
	pr.Clear() // nothing is shown: nothing to erase
	if buf.String() != got {
		t.Fatalf("Clear after the copy wrote %q", strings.TrimPrefix(buf.String(), got))
	}
}
