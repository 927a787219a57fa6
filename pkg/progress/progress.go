// Package progress shows how a long command is getting on, on stderr. On a
// terminal: one status line, a github.com/schollz/progressbar/v3 bar (or
// spinner) with the status as its description, redrawn in place at most
// every RedrawEvery, with lasting lines printed above it. Elsewhere (CI
// logs, pipes, files): lasting lines only, and the status as a line of its
// own when nothing was printed for Heartbeat, so a quiet log still shows
// life.
//
// It is the one place that decides terminal or not, how often the status is
// redrawn, and that the status line is cleared before other output: prefetch
// and mirror both print through a Printer.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Mode is how progress is shown; the values are those of a --progress flag.
type Mode string

const (
	// Auto is Bar on a terminal and Plain elsewhere.
	Auto Mode = "auto"
	// Bar redraws a status line in place, lasting lines above it.
	Bar Mode = "bar"
	// Plain prints lasting lines only (and the status as a heartbeat).
	Plain Mode = "plain"
	// None prints nothing.
	None Mode = "none"
)

// Modes are the values ParseMode accepts.
var Modes = []Mode{Auto, Bar, Plain, None}

// ParseMode checks a --progress value.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if s == string(m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("must be auto, bar, plain or none, got %q", s)
}

const (
	// RedrawEvery is the least time between two draws of the status line.
	RedrawEvery = 200 * time.Millisecond
	// Heartbeat is how long Plain output stays silent before Status prints
	// the status as a line.
	Heartbeat = 10 * time.Second
)

// IsTerminal says whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}

// Printer writes progress to one stream. Its methods are safe for
// concurrent use. Nothing else may write to the stream while a status line
// is shown: call Clear first.
type Printer struct {
	w    io.Writer
	mode Mode // Bar, Plain or None
	// columns returns the terminal's width; 0 when unknown.
	columns func() int
	now     func() time.Time
	every   time.Duration // RedrawEvery
	beat    time.Duration // Heartbeat

	mu          sync.Mutex
	status      string    // the latest status; "" none
	done, total int       // the latest Count; total 0: none
	printed     time.Time // when a line was last printed (Plain)

	// Bar only.
	bar     *progressbar.ProgressBar // the status line; nil while none
	screen  gate                     // the bar's writer
	counted bool                     // bar counts: it was made for a total > 0
	barDone int                      // the count bar shows
	barMax  int                      // the total bar shows
	shown   bool                     // bar is on the screen
	drawn   time.Time                // when bar was last drawn
	pending *time.Timer
	gen     int // a pending draw runs only while gen is unchanged
}

// gate is the bar's writer: the bar renders on every change of its
// description or count, and only the render the Printer asks for goes
// through.
type gate struct {
	w    io.Writer
	open bool
}

func (g *gate) Write(b []byte) (int, error) {
	if !g.open {
		return len(b), nil
	}
	return g.w.Write(b)
}

// New returns a Printer for w. Auto (or "") is Bar when w is a terminal and
// Plain otherwise; Bar and Plain are taken as given, whatever w is.
func New(w io.Writer, mode Mode) *Printer {
	if mode == Auto || mode == "" {
		mode = Plain
		if IsTerminal(w) {
			mode = Bar
		}
	}
	p := &Printer{w: w, mode: mode, columns: func() int { return columns(w) }, now: time.Now, every: RedrawEvery, beat: Heartbeat}
	p.screen.w = w
	p.printed = p.now()
	return p
}

func columns(w io.Writer) int {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}

// Mode is how this Printer shows progress: Bar, Plain or None.
func (p *Printer) Mode() Mode { return p.mode }

// UpdateEvery is how often a caller with a steadily changing measure (bytes
// sent, time spent) is worth calling Status: what a redraw needs on a
// terminal, what a heartbeat needs elsewhere.
func (p *Printer) UpdateEvery() time.Duration {
	if p.mode == Bar {
		return p.every
	}
	return time.Second
}

// Count sets how many of how many things are done, for the status line to
// show with the status from the next Update or Status on: a bar, the
// count and the time since the status line appeared. A total of 0 or less
// is no count: the status is shown with a spinner. Clear forgets the
// count. Plain and None show no count.
func (p *Printer) Count(done, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done, p.total = min(max(done, 0), max(total, 0)), max(total, 0)
}

// Status sets the status (see Update).
func (p *Printer) Status(s string) { p.Update(s) }

// Update prints lines as lasting lines and sets the status, "" for none.
//
// With Bar, the lines go above the status line, which is then drawn at
// once; without lines, the status is drawn in place at most every
// RedrawEvery: one that comes sooner is drawn when that time is up, unless
// a newer one or Clear comes first. With Plain, the lines are printed, and
// the status too when nothing was printed for Heartbeat. With None,
// nothing is printed.
func (p *Printer) Update(status string, lines ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.updateLocked(status, lines...)
}

func (p *Printer) updateLocked(status string, lines ...string) {
	p.status = status
	if status == "" {
		p.done, p.total = 0, 0
	}
	switch p.mode {
	case Bar:
		if len(lines) > 0 || status == "" {
			p.cancelLocked()
			p.eraseLocked()
			for _, l := range lines {
				p.printLocked(l)
			}
			if status == "" {
				p.bar = nil // the next status starts a new bar, and its time
				return
			}
			p.drawLocked()
			return
		}
		if p.pending != nil {
			return // the pending draw shows the latest status
		}
		if wait := p.every - p.now().Sub(p.drawn); wait > 0 {
			gen := p.gen
			p.pending = time.AfterFunc(wait, func() { p.drawPending(gen) })
			return
		}
		p.drawLocked()
	case Plain:
		for _, l := range lines {
			p.printLocked(l)
		}
		if status != "" && p.now().Sub(p.printed) >= p.beat {
			p.printLocked(status)
		}
	}
}

// Line prints s as a lasting line (a newline is added) above the status
// line, which stays as it is.
func (p *Printer) Line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	done, total := p.done, p.total
	p.updateLocked(p.status, s)
	p.done, p.total = done, total
}

// Linef formats and prints a lasting line (see Line).
func (p *Printer) Linef(format string, args ...any) { p.Line(fmt.Sprintf(format, args...)) }

// Clear removes the status line and forgets the status and the count. Call
// it before anything else writes to the stream, and when done.
func (p *Printer) Clear() { p.Update("") }

func (p *Printer) drawPending(gen int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if gen != p.gen {
		return // cancelled: drawn by Line, or cleared
	}
	p.pending = nil
	if p.status != "" {
		p.drawLocked()
	}
}

func (p *Printer) cancelLocked() {
	if p.pending != nil {
		p.pending.Stop()
		p.pending = nil
	}
	p.gen++
}

// newBar makes the status line: a bar with the count and the time since
// it was made, or a spinner when there is no count. A bar that reaches its
// total clears itself and is done. The bar starts no goroutine (its
// spinner turns when it is drawn). The Printer, not the bar, cuts the
// description to the terminal, and throttles: the bar's throttle drops a
// render that comes too soon, where the Printer draws it when the time is
// up, and would drop the redraw after lines too.
func (p *Printer) newBar() {
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(&p.screen),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetSpinnerChangeInterval(0),
	}
	p.counted = p.total > 0
	p.barDone, p.barMax = 0, p.total
	if !p.counted {
		p.bar = progressbar.NewOptions(-1, append(opts, progressbar.OptionSetElapsedTime(false))...)
		return
	}
	p.bar = progressbar.NewOptions(p.total, append(opts, progressbar.OptionShowCount(), progressbar.OptionSetElapsedTime(true))...)
}

// drawLocked shows the status and the count. The bar renders on each change
// of its count or description; all renders but the last go nowhere.
func (p *Printer) drawLocked() {
	if p.bar != nil && p.bar.IsFinished() && p.done == p.barDone && p.total == p.barMax {
		return // done: cleared itself
	}
	if p.bar == nil || p.counted != (p.total > 0) || p.bar.IsFinished() || p.total < p.barMax {
		p.eraseLocked()
		p.newBar()
	}
	p.screen.open = false
	if p.counted {
		if p.total > p.barMax {
			p.bar.ChangeMax(p.total)
			p.barMax = p.total
		}
		p.barDone = p.done
		if p.done == p.total {
			// The bar finishes: it erases itself and draws no more.
			p.screen.open = true
			_ = p.bar.Set(p.done)
			p.shown = false
			p.drawn = p.now()
			return
		}
		_ = p.bar.Set(p.done) // no error: 0 ≤ done < total
	}
	s := p.status
	if width := p.columns(); width > 1 {
		// A line longer than the terminal wraps, and erasing it would then
		// leave its start behind. Render without a description to see
		// what room the rest takes.
		p.bar.Describe("")
		s = truncate(s, width-1-utf8.RuneCountInString(strings.Trim(p.bar.String(), "\r")))
	}
	p.screen.open = true
	p.bar.Describe(s) // erases the bar's last line and draws it anew
	p.shown = true
	p.drawn = p.now()
}

func (p *Printer) eraseLocked() {
	if p.shown {
		p.screen.open = true
		_ = p.bar.Clear()
		p.shown = false
	}
}

func (p *Printer) printLocked(s string) {
	fmt.Fprintln(p.w, s)
	p.printed = p.now()
}

// truncate cuts s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
