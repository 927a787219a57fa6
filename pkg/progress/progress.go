// Package progress shows how a long command is getting on, on stderr. On a
// terminal: one status line, redrawn in place at most every RedrawEvery,
// with lasting lines printed above it. Elsewhere (CI logs, pipes, files):
// lasting lines only, and the status as a line of its own when nothing was
// printed for Heartbeat, so a quiet log still shows life.
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

// eraseLine moves to the start of the line and erases it.
const eraseLine = "\r\x1b[2K"

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

	mu      sync.Mutex
	status  string    // the latest status; "" none
	shown   bool      // a status line is on the screen
	drawn   time.Time // when the status line was last drawn
	pending *time.Timer
	gen     int       // a pending draw runs only while gen is unchanged
	printed time.Time // when a line was last printed (Plain)
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
	switch p.mode {
	case Bar:
		p.status = status
		if len(lines) > 0 || status == "" {
			p.cancelLocked()
			p.eraseLocked()
			for _, l := range lines {
				p.printLocked(l)
			}
			if status != "" {
				p.drawLocked()
			}
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
	p.updateLocked(p.status, s)
}

// Linef formats and prints a lasting line (see Line).
func (p *Printer) Linef(format string, args ...any) { p.Line(fmt.Sprintf(format, args...)) }

// Clear removes the status line and forgets the status. Call it before
// anything else writes to the stream, and when done.
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

func (p *Printer) drawLocked() {
	s := p.status
	if width := p.columns(); width > 1 {
		// A line longer than the terminal wraps, and erasing it would then
		// leave its start behind.
		s = truncate(s, width-1)
	}
	fmt.Fprint(p.w, eraseLine+s)
	p.shown = true
	p.drawn = p.now()
}

func (p *Printer) eraseLocked() {
	if p.shown {
		fmt.Fprint(p.w, eraseLine)
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
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// BarOf draws done out of total as a percentage and a bar of width cells,
// e.g. " 40% |████      |". A total of 0 or less is complete.
func BarOf(done, total, width int) string {
	frac := 1.0
	if total > 0 {
		frac = float64(min(max(done, 0), total)) / float64(total)
	}
	filled := int(frac * float64(width))
	return fmt.Sprintf("%3d%% |%s%s|", int(frac*100), strings.Repeat("█", filled), strings.Repeat(" ", width-filled))
}
