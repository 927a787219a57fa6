package mirror

import (
	"bytes"
	"regexp"
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
	// Each status is drawn as the description of a bar of images copied,
	// which shows the time itself; lines go above it, and the last update
	// leaves no status line after its lines.
	for _, want := range []string{
		`^\r *\r+\[0/2 images\] 1\.0MiB sent · 1\.0MiB/s +0% \| {30}\| \(0/2\) \[\d+s\] `,
		`\r  copied  a:1 → reg/a:1  2\.0MiB in 1\.5s\n\r *\r+\[1/2 images\] 2\.0MiB sent · 1\.0MiB/s +50% \|█{15} {15}\| \(1/2\) `,
		`\r  failed  b:1 → reg/b:1: unauthorized: denied\n$`,
	} {
		if !regexp.MustCompile(want).MatchString(got) {
			t.Errorf("no %s in\n%q", want, got)
		}
	}
	if strings.Contains(got, " · 1s") || strings.Contains(got, " · 2s") {
		t.Errorf("the description repeats the time the bar shows: %q", got)
	}
	pr.Clear() // nothing is shown: nothing to erase
	if buf.String() != got {
		t.Fatalf("Clear after the copy wrote %q", strings.TrimPrefix(buf.String(), got))
	}
}
