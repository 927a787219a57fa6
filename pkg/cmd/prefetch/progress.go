package prefetch

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/coral-dev/coral/pkg/progress"
	"github.com/coral-dev/coral/pkg/run"
)

// runProgress shows a run's progress on stderr: a bar of finished nodes on
// a terminal, one line per event otherwise (CI logs, scripts), or nothing
// (see progress.Printer).
type runProgress struct {
	out     *progress.Printer
	total   int
	skipped int
	start   time.Time
	// tick calls Status every Printer.UpdateEvery: on a terminal the bar is
	// redrawn (at most every progress.RedrawEvery), so its clock runs and
	// something is drawn well within a second while no node finishes;
	// elsewhere the Printer gets its chance to print a heartbeat when
	// nothing was printed for progress.Heartbeat (nodes that take long to
	// report print nothing meanwhile); closed by Finish.
	tick     chan struct{}
	tickDone chan struct{}
	done     int // nodes finished (Event's goroutine and the tick's)
	mu       sync.Mutex
}

// newRunProgress takes mode from --progress, already validated.
func newRunProgress(w io.Writer, mode string, total, skipped int) *runProgress {
	return &runProgress{out: progress.New(w, progress.Mode(mode)), total: total, skipped: skipped}
}

func (p *runProgress) Start(runID, namespace string) {
	p.start = time.Now()
	msg := fmt.Sprintf("run %s: %d nodes in namespace %s", runID, p.total, namespace)
	if p.skipped > 0 {
		msg += fmt.Sprintf(" (%d skipped)", p.skipped)
	}
	p.out.Line(msg)
	p.out.Count(0, p.total)
	p.out.Status(p.status())
	if m := p.out.Mode(); m == progress.Bar || m == progress.Plain {
		p.tick, p.tickDone = make(chan struct{}), make(chan struct{})
		go func() {
			defer close(p.tickDone)
			t := time.NewTicker(p.out.UpdateEvery())
			defer t.Stop()
			for {
				select {
				case <-p.tick:
					return
				case <-t.C:
					p.out.Status(p.status())
				}
			}
		}()
	}
}

// prefetching is the status; on a terminal the Printer shows with it how
// many nodes have finished.
const prefetching = "prefetching"

// status is the status line: the bar shows the count and time itself; a
// plain heartbeat line says them.
func (p *runProgress) status() string {
	if p.out.Mode() != progress.Plain {
		return prefetching
	}
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	return fmt.Sprintf("%s: %d/%d nodes finished after %s", prefetching, done, p.total, time.Since(p.start).Round(time.Second))
}

// Event is run.Engine's OnEvent (called from one goroutine).
func (p *runProgress) Event(ev run.Event) {
	plain := p.out.Mode() == progress.Plain
	switch ev.Type {
	case run.EventWarning:
		p.out.Line("warning: " + ev.Message)
	case run.EventCreated:
		if plain {
			p.out.Linef("[%d/%d] %s: job created", ev.Done, ev.Total, ev.Node)
		}
	case run.EventFinished:
		status := "done"
		if ev.Failed > 0 {
			status = fmt.Sprintf("%d failed: %s", ev.Failed, oneLine(ev.Message, 160))
		}
		var lines []string
		switch {
		case plain:
			lines = append(lines, fmt.Sprintf("[%d/%d] %s: %s (%s)", ev.Done, ev.Total, ev.Node, status, ev.Duration.Round(100*time.Millisecond)))
		case ev.Failed > 0: // a bar: only failures get a line
			lines = append(lines, fmt.Sprintf("%s: %s", ev.Node, status))
		}
		p.mu.Lock()
		p.done = ev.Done
		p.mu.Unlock()
		p.out.Count(ev.Done, ev.Total)
		p.out.Update(p.status(), lines...)
	}
}

func (p *runProgress) Finish(interrupted bool) {
	if p.tick != nil {
		close(p.tick)
		<-p.tickDone
		p.tick = nil
	}
	p.out.Clear()
	if interrupted {
		p.out.Line("interrupted: deleted the run's Jobs")
		return
	}
	p.out.Linef("finished in %s", time.Since(p.start).Round(100*time.Millisecond))
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
