package prefetch

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/coral-dev/coral/pkg/run"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows a run's progress on stderr: a bar on a terminal, one line
// per event otherwise (CI logs, scripts), or nothing.
type progress struct {
	w       io.Writer
	mode    string // bar, plain, none
	total   int
	skipped int
	bar     *progressbar.ProgressBar
	mu      sync.Mutex
	start   time.Time
}

func newProgress(w io.Writer, mode string, total, skipped int) *progress {
	if mode == "auto" {
		mode = "plain"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "bar"
		}
	}
	return &progress{w: w, mode: mode, total: total, skipped: skipped}
}

func (p *progress) Start(runID, namespace string) {
	p.start = time.Now()
	switch p.mode {
	case "none":
		return
	case "bar":
		p.bar = progressbar.NewOptions(p.total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription("prefetching"),
			progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("nodes"),
			progressbar.OptionShowElapsedTimeOnFinish(),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionThrottle(100*time.Millisecond),
		)
	}
	msg := fmt.Sprintf("run %s: %d nodes in namespace %s", runID, p.total, namespace)
	if p.skipped > 0 {
		msg += fmt.Sprintf(" (%d skipped)", p.skipped)
	}
	p.line(msg)
}

func (p *progress) line(s string) {
	if p.mode == "none" {
		return
	}
	if p.bar != nil {
		p.bar.Clear()
	}
	fmt.Fprintln(p.w, s)
	if p.bar != nil {
		p.bar.RenderBlank()
	}
}

// Event is run.Engine's OnEvent.
func (p *progress) Event(ev run.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ev.Type == run.EventWarning {
		p.line("warning: " + ev.Message)
		return
	}
	if ev.Type != run.EventFinished {
		if p.mode == "plain" && ev.Type == run.EventCreated {
			fmt.Fprintf(p.w, "[%d/%d] %s: job created\n", ev.Done, ev.Total, ev.Node)
		}
		return
	}
	status := "done"
	if ev.Failed > 0 {
		status = fmt.Sprintf("%d failed: %s", ev.Failed, oneLine(ev.Message, 160))
	}
	switch p.mode {
	case "plain":
		fmt.Fprintf(p.w, "[%d/%d] %s: %s (%s)\n", ev.Done, ev.Total, ev.Node, status, ev.Duration.Round(100*time.Millisecond))
	case "bar":
		if ev.Failed > 0 {
			p.line(fmt.Sprintf("%s: %s", ev.Node, status))
		}
		if p.bar != nil {
			p.bar.Add(1)
		}
	}
}

func (p *progress) Finish(interrupted bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Finish()
		p.bar = nil
	}
	if p.mode == "none" {
		return
	}
	if interrupted {
		fmt.Fprintln(p.w, "interrupted: deleted the run's Jobs")
		return
	}
	fmt.Fprintf(p.w, "finished in %s\n", time.Since(p.start).Round(100*time.Millisecond))
}

func oneLine(s string, max int) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' || r == '\t' {
			r = ' '
		}
		out = append(out, r)
	}
	if len(out) > max {
		return string(out[:max]) + "…"
	}
	return string(out)
}
