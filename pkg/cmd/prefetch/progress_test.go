package prefetch

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/progress"
	"github.com/coral-dev/coral/pkg/run"
)

// events is a run over two nodes: one pulls, one fails, with a warning.
func events(p *runProgress) {
	p.Start("abc123", "coral-system")
	p.Event(run.Event{Type: run.EventCreated, Node: "node-a", Done: 0, Total: 2})
	p.Event(run.Event{Type: run.EventCreated, Node: "node-b", Done: 0, Total: 2})
	p.Event(run.Event{Type: run.EventRunning, Node: "node-a", Done: 0, Total: 2})
	p.Event(run.Event{Type: run.EventFinished, Node: "node-a", Done: 1, Total: 2, Duration: 1500 * time.Millisecond})
	p.Event(run.Event{Type: run.EventWarning, Message: "node-b: FailedMount"})
	p.Event(run.Event{Type: run.EventFinished, Node: "node-b", Done: 2, Total: 2, Failed: 1, Message: "pulling x:\n  unauthorized", Duration: 2 * time.Second})
	p.Finish(false)
}

func TestRunProgressPlain(t *testing.T) {
	var buf bytes.Buffer
	events(newRunProgress(&buf, "auto", 2, 1)) // a buffer is no terminal: plain lines
	got := regexp.MustCompile(`finished in [0-9.]+m?s`).ReplaceAllString(buf.String(), "finished in T")
	want := `run abc123: 2 nodes in namespace coral-system (1 skipped)
[0/2] node-a: job created
[0/2] node-b: job created
[1/2] node-a: done (1.5s)
warning: node-b: FailedMount
[2/2] node-b: 1 failed: pulling x:   unauthorized (2s)
finished in T
`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRunProgressBar(t *testing.T) {
	var buf bytes.Buffer
	events(newRunProgress(&buf, "bar", 2, 0))
	out := buf.String()
	for _, want := range []string{
		"^run abc123: 2 nodes in namespace coral-system\n",
		// a bar of finished nodes
		`\rprefetching +0% \| {30}\| \(0/2\) \[\d+s\] `,
		// a line above it, then the bar again, drawn at once
		`\rwarning: node-b: FailedMount\n\r *\r+prefetching +50% \|█{15} {15}\| \(1/2\) `,
		`\rnode-b: 1 failed: pulling x:   unauthorized\n`,
		// the bar erased, the last line last
		`\n(\r *\r)*finished in [0-9.]+m?s\n$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("no %s in\n%q", want, out)
		}
	}
	for _, not := range []string{"job created", "node-a: done"} {
		if strings.Contains(out, not) {
			t.Errorf("a bar prints %q in\n%q", not, out)
		}
	}
}

func TestRunProgressNone(t *testing.T) {
	var buf bytes.Buffer
	events(newRunProgress(&buf, "none", 2, 0))
	if buf.Len() != 0 {
		t.Fatalf("got %q", buf.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the ticker's writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// On a terminal the bar's clock runs while no node finishes: it is redrawn
// every second, and not after Finish.
func TestRunProgressBarStaysLive(t *testing.T) {
	var buf syncBuffer
	p := newRunProgress(&buf, "bar", 2, 0)
	p.Start("abc123", "coral-system")
	time.Sleep(2500 * time.Millisecond)
	p.Finish(false)
	out := buf.String()
	for _, want := range []string{`\[1s\]`, `\[2s\]`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("no redraw showing %s while nothing happened in\n%q", want, out)
		}
	}
	time.Sleep(1200 * time.Millisecond)
	if after := buf.String(); after != out {
		t.Errorf("drawn after Finish: %q", strings.TrimPrefix(after, out))
	}
}

// In a log (plain), a run whose nodes take long to report still prints a
// heartbeat once nothing was printed for progress.Heartbeat, saying how far
// it got: without the tick, a run waiting on its last, slow nodes printed
// nothing for a minute (bench-scale, pods mode: 64.7 s).
func TestRunProgressPlainHeartbeat(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	p := newRunProgress(&buf, "plain", 3, 0)
	p.Start("abc123", "coral-system")
	p.Event(run.Event{Type: run.EventFinished, Node: "n1", Done: 1, Total: 3})
	time.Sleep(progress.Heartbeat + 1500*time.Millisecond)
	p.Finish(false)
	out := buf.String()
	if !regexp.MustCompile(`(?m)^prefetching: 1/3 nodes finished after 1[01]s$`).MatchString(out) {
		t.Errorf("no heartbeat line after %s of silence in\n%s", progress.Heartbeat, out)
	}
	if n := strings.Count(out, "prefetching:"); n != 1 {
		t.Errorf("%d heartbeat lines in %s, want 1 (one per %s of silence):\n%s", n, progress.Heartbeat+1500*time.Millisecond, progress.Heartbeat, out)
	}
}
