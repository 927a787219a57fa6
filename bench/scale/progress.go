package main

import (
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// progressWatch reads Coral's stderr as it arrives and times its progress
// output: when the first and the last node result showed, and the longest
// time nothing showed. With --progress plain a result is a line per node
// (resultLine); with --progress bar, what a user at a terminal sees, the
// bar is redrawn in place ("\r…") and a result is its count going up or a
// failure's line above it; the last result is the bar clearing itself, the
// last thing shown before "finished in". Either way anything shown counts as output for the gap, except the
// Go runtime's GC trace (SCALE_GCTRACE), which is Coral's stderr too but no
// progress.
type progressWatch struct {
	bar bool
	// gc receives the GC trace lines with their time (nil: dropped).
	gc func(t float64, line string)

	first, last, prev, gap float64
	count                  int      // the count the bar last showed
	finished               bool     // the "finished in" line has shown
	tail                   []string // the last lines that were neither results nor per-node progress

	seg      strings.Builder // the segment being read: text up to "\r" or "\n"
	segStart float64         // when its first byte arrived
}

var (
	// ansi is a terminal control sequence (the bar clears its line with one
	// where the terminal has them).
	ansi = regexp.MustCompile(`\x1b\[[0-9;]*[a-zA-Z]`)
	// gcTrace is where a GC trace line starts ("gc 12 @3.456s 1%: …"); the
	// runtime writes it to fd 2 whatever else is on the line.
	gcTrace = regexp.MustCompile(`gc \d+ @[0-9.]+s `)
	// barCount is the bar's "(done/total)".
	barCount = regexp.MustCompile(`\((\d+)/(\d+)\)`)
	// failedLine is the line a bar prints above itself for a failed node.
	failedLine = regexp.MustCompile(`^\S+: \d+ failed: `)
)

// read consumes r until EOF, timing what arrives from start (Coral's).
func (p *progressWatch) read(r io.Reader, start time.Time) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			p.feed(time.Since(start).Seconds(), buf[:n])
		}
		if err != nil {
			break
		}
	}
	p.end()
}

// feed takes the bytes that arrived at t.
func (p *progressWatch) feed(t float64, b []byte) {
	for _, c := range b {
		if c == '\r' || c == '\n' {
			p.segment(c)
			continue
		}
		if p.seg.Len() == 0 {
			p.segStart = t
		}
		p.seg.WriteByte(c)
	}
}

// end takes a last segment that no "\r" or "\n" closed.
func (p *progressWatch) end() {
	if p.seg.Len() > 0 {
		p.segment(0)
	}
}

// segment takes the text read since the last "\r" or "\n"; sep is what
// ended it (0 at the end of the stream).
func (p *progressWatch) segment(sep byte) {
	s, t := p.seg.String(), p.segStart
	p.seg.Reset()
	if loc := gcTrace.FindStringIndex(s); loc != nil {
		if p.gc != nil {
			p.gc(t, s[loc[0]:])
		}
		if s = s[:loc[0]]; s != "" {
			sep = '\r' // a redraw the trace was written after, on its line
		}
	}
	if s == "" {
		return // "\r\n", "\n\n", or a GC trace line alone
	}
	before := p.prev
	if p.prev > 0 && t-p.prev > p.gap {
		p.gap = t - p.prev
	}
	p.prev = t
	text := strings.TrimSpace(ansi.ReplaceAllString(s, ""))
	if p.bar && !p.finished && sep == '\n' && strings.HasPrefix(text, "finished in") {
		// When the last node is in, the bar clears itself without showing
		// its full count, and nothing shows after that until this line:
		// the last output before it is the last result.
		p.last = max(p.last, before)
		if p.first == 0 {
			p.first = p.last
		}
	}
	if p.result(text, sep) {
		if p.first == 0 {
			p.first = t
		}
		p.last = t
		return
	}
	if text == "" || strings.Contains(text, ": job created") || strings.Contains(text, ": pod created") || (p.bar && sep == '\r') {
		return
	}
	if strings.HasPrefix(text, "finished in") {
		p.finished = true
	}
	p.tail = append(p.tail, text)
	if len(p.tail) > 8 {
		p.tail = p.tail[1:]
	}
}

// result says whether text shows a node's result.
func (p *progressWatch) result(text string, sep byte) bool {
	if !p.bar {
		return sep != '\r' && resultLine.MatchString(text)
	}
	if p.finished {
		return false
	}
	if sep == '\n' {
		return failedLine.MatchString(text)
	}
	if m := barCount.FindStringSubmatch(text); m != nil {
		done, _ := strconv.Atoi(m[1])
		up := done > p.count
		p.count = done
		return up
	}
	return false
}
