package progress

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// syncBuffer is a bytes.Buffer a pending draw may write to while the test
// reads it.
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

// clock is a settable now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTest returns a Printer on a buffer with a settable clock and a
// terminal width of 0 (unknown).
func newTest(mode Mode) (*Printer, *syncBuffer, *clock) {
	buf := &syncBuffer{}
	c := &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := New(buf, mode)
	p.now = c.now
	p.printed = c.now()
	p.columns = func() int { return 0 }
	return p, buf, c
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"auto", "bar", "plain", "none"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	for _, s := range []string{"", "Bar", "quiet"} {
		if _, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) accepted", s)
		}
	}
}

func TestAutoIsPlainOffATerminal(t *testing.T) {
	var buf bytes.Buffer
	if IsTerminal(&buf) {
		t.Fatal("a buffer is not a terminal")
	}
	for mode, want := range map[Mode]Mode{Auto: Plain, "": Plain, Bar: Bar, Plain: Plain, None: None} {
		if got := New(&buf, mode).Mode(); got != want {
			t.Errorf("New(buffer, %q).Mode() = %q, want %q", mode, got, want)
		}
	}
}

func TestPlainPrintsLinesAndAHeartbeat(t *testing.T) {
	p, buf, c := newTest(Plain)
	p.Line("run abc: 3 nodes")
	p.Status("[0/3] 0s")
	c.add(Heartbeat - time.Second)
	p.Status("[0/3] 9s")
	if got, want := buf.String(), "run abc: 3 nodes\n"; got != want {
		t.Fatalf("before a heartbeat is due: %q, want %q", got, want)
	}
	c.add(time.Second)
	p.Status("[0/3] 10s")
	p.Status("[0/3] 10s again")
	p.Linef("[%d/%d] %s: done", 1, 3, "node-a")
	c.add(Heartbeat - time.Millisecond)
	p.Status("[1/3] 20s") // a line was printed less than Heartbeat ago
	p.Clear()
	want := "run abc: 3 nodes\n[0/3] 10s\n[1/3] node-a: done\n"
	if got := buf.String(); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if strings.Contains(buf.String(), "\r") || strings.Contains(buf.String(), "\x1b") {
		t.Fatal("plain output holds terminal control characters")
	}
}

func TestNonePrintsNothing(t *testing.T) {
	p, buf, c := newTest(None)
	p.Line("warning: x")
	c.add(time.Hour)
	p.Status("status")
	p.Clear()
	if buf.String() != "" {
		t.Fatalf("got %q", buf.String())
	}
}

// screen is what a terminal shows after out: its lines, the last the one
// the cursor is on, right-trimmed. It knows what the bar writes: runes,
// "\r" and "\n" (as a tty does, back to the line's start); no escapes.
func screen(t *testing.T, out string) []string {
	t.Helper()
	lines := [][]rune{nil}
	col := 0
	for len(out) > 0 {
		row := len(lines) - 1
		if strings.HasPrefix(out, "\x1b") {
			t.Fatalf("unexpected escape sequence in %q", out)
		}
		r, n := utf8.DecodeRuneInString(out)
		out = out[n:]
		switch r {
		case '\r':
			col = 0
		case '\n':
			lines = append(lines, nil)
			col = 0
		default:
			for len(lines[row]) <= col {
				lines[row] = append(lines[row], ' ')
			}
			lines[row][col] = r
			col++
		}
	}
	s := make([]string, len(lines))
	for i, l := range lines {
		s[i] = strings.TrimRight(string(l), " ")
	}
	return s
}

// current is the line the cursor is on.
func current(t *testing.T, buf *syncBuffer) string {
	t.Helper()
	s := screen(t, buf.String())
	return s[len(s)-1]
}

// barLine is a status line for description d and a count of done of total.
func barLine(d string, done, total int) *regexp.Regexp {
	cells := done * 100 / total * 30 / 100
	return regexp.MustCompile(fmt.Sprintf(`^%s +%d%% \|%s%s\| \(%d/%d\) \[\d+s\]$`,
		regexp.QuoteMeta(d), done*100/total, strings.Repeat("█", cells), strings.Repeat(" ", 30-cells), done, total))
}

func TestBarShowsTheStatusAndTheCount(t *testing.T) {
	p, buf, c := newTest(Bar)
	p.Count(1, 3)
	p.Status("prefetching")
	if got, want := current(t, buf), barLine("prefetching", 1, 3); !want.MatchString(got) {
		t.Fatalf("status line %q, want %s", got, want)
	}
	// The bar renders on each change of its count and description: only
	// the last render is written.
	if n := strings.Count(buf.String(), "%"); n != 1 {
		t.Fatalf("the status line was written %d times: %q", n, buf.String())
	}

	// Without a count: a spinner and the status.
	p.Clear()
	c.add(RedrawEvery)
	p.Status("resolving 2 sources …")
	got := current(t, buf)
	if !strings.HasSuffix(got, " resolving 2 sources …") || strings.ContainsAny(got, "%(|[") {
		t.Fatalf("status line without a count: %q", got)
	}
}

func TestBarPutsLinesAboveTheStatusLine(t *testing.T) {
	p, buf, c := newTest(Bar)
	p.Count(0, 2)
	p.Status("[0/2 images] 0 B sent")
	p.Line("  copied  a → b")
	c.add(RedrawEvery)
	p.Count(1, 2)
	p.Update("[1/2 images] 2 MiB sent", "  copied  c → d", "  warning: e")
	got := screen(t, buf.String())
	want := []string{"  copied  a → b", "  copied  c → d", "  warning: e"}
	if len(got) != len(want)+1 || strings.Join(got[:len(want)], "\n") != strings.Join(want, "\n") {
		t.Fatalf("screen %q, want the lines %q and the status line", got, want)
	}
	if st := barLine("[1/2 images] 2 MiB sent", 1, 2); !st.MatchString(got[len(got)-1]) {
		t.Fatalf("status line %q, want %s", got[len(got)-1], st)
	}
	// Each line is written whole at the start of a line, and the status
	// line comes back after the lines.
	out := buf.String()
	for _, l := range want {
		if !regexp.MustCompile(`[\r\n]` + regexp.QuoteMeta(l) + `\n`).MatchString(out) {
			t.Errorf("%q is not written whole on a line of its own in %q", l, out)
		}
	}
	if !regexp.MustCompile(`\r  copied  a → b\n\r *\r+\[0/2 images\] 0 B sent +0% `).MatchString(out) {
		t.Errorf("the status line is not drawn again after a line: %q", out)
	}
}

func TestBarClearLeavesNothingBehind(t *testing.T) {
	p, buf, c := newTest(Bar)
	p.Count(0, 2)
	p.Status("[0/2 images] 0 B sent")
	before := buf.String()
	p.Clear()
	if erased := strings.TrimPrefix(buf.String(), before); !regexp.MustCompile(`^\r +\r$`).MatchString(erased) {
		t.Fatalf("Clear wrote %q, want the status line erased", erased)
	}
	if s := screen(t, buf.String()); len(s) != 1 || s[0] != "" {
		t.Fatalf("screen after Clear: %q", s)
	}
	p.Clear() // nothing shown: writes nothing
	p.Line("after")
	if got := screen(t, buf.String()); strings.Join(got, "|") != "after|" {
		t.Fatalf("screen %q", got)
	}

	// The last lines with no status: nothing after them.
	c.add(RedrawEvery)
	p.Count(1, 2)
	p.Status("[1/2 images]")
	p.Update("", "  failed  b → c")
	if out := buf.String(); !strings.HasSuffix(out, "\r  failed  b → c\n") {
		t.Fatalf("output does not end with the last line: %q", out)
	}
	before = buf.String()
	p.Clear()
	if buf.String() != before {
		t.Fatalf("Clear after the last line wrote %q", strings.TrimPrefix(buf.String(), before))
	}
}

// A bar that reaches its total clears itself; a status with a count that
// moves on again makes a new one.
func TestBarAtItsTotal(t *testing.T) {
	p, buf, c := newTest(Bar)
	p.Count(1, 2)
	p.Status("prefetching")
	c.add(RedrawEvery)
	p.Count(2, 2)
	p.Update("prefetching", "node-b: 1 failed")
	if got := screen(t, buf.String()); strings.Join(got, "|") != "node-b: 1 failed|" {
		t.Fatalf("screen at the total: %q", got)
	}
	before := buf.String()
	c.add(RedrawEvery)
	p.Status("prefetching")
	p.Clear()
	if buf.String() != before {
		t.Fatalf("a bar at its total wrote %q", strings.TrimPrefix(buf.String(), before))
	}
	p.Count(2, 3)
	p.Status("prefetching")
	if got, want := current(t, buf), barLine("prefetching", 2, 3); !want.MatchString(got) {
		t.Fatalf("status line %q, want %s", got, want)
	}

	// Reaching the total without a line: the bar erases itself.
	c.add(RedrawEvery)
	p.Count(3, 3)
	p.Status("prefetching")
	if got := screen(t, buf.String()); got[len(got)-1] != "" {
		t.Fatalf("the status line at the total: %q", got[len(got)-1])
	}
}

// waitFor polls until the status line is want, for at most a second.
func waitFor(t *testing.T, buf *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if strings.HasSuffix(current(t, buf), want) {
			return
		}
	}
	t.Fatalf("status line %q, want it to end with %q", current(t, buf), want)
}

// The clock stands still here, so every status after the first comes "too
// soon" whatever the machine's load; only the pending draw's timer is real.
func TestBarThrottlesRedraws(t *testing.T) {
	p, buf, c := newTest(Bar)
	p.every = 20 * time.Millisecond

	p.Status("one")
	p.Status("two")
	p.Status("three") // too soon: only the latest is drawn, once the interval is up
	if got := current(t, buf); !strings.HasSuffix(got, " one") {
		t.Fatalf("right away: %q", got)
	}
	waitFor(t, buf, " three")
	if strings.Contains(buf.String(), "two") {
		t.Fatalf("a status replaced before its draw was drawn: %q", buf.String())
	}

	// A pending status dies with Clear.
	p.Status("four")
	p.Clear()
	time.Sleep(5 * p.every)
	if strings.Contains(buf.String(), "four") || current(t, buf) != "" {
		t.Fatalf("after Clear: %q", buf.String())
	}

	// A Line draws the latest status at once; the pending draw is dropped.
	p.every = time.Hour
	c.add(p.every)
	p.Status("five")
	p.Status("six")
	p.Line("line")
	p.mu.Lock()
	pending := p.pending
	p.mu.Unlock()
	if pending != nil {
		t.Error("a draw is still pending after Line drew the latest status")
	}
	if got := screen(t, buf.String()); len(got) != 2 || got[0] != "line" || !strings.HasSuffix(got[1], " six") {
		t.Fatalf("after a line: %q", got)
	}
}

// Update puts lines and the new status on the screen at once, throttle or
// not: the lines tell of events, and the status after them is news.
func TestUpdateDrawsLinesAndTheNewStatusAtOnce(t *testing.T) {
	p, buf, c := newTest(Bar)
	p.every = time.Hour // the clock stands still: every status is too soon
	p.Count(0, 2)
	p.Status("copying")
	p.Count(0, 2)
	p.Status("copying later") // pending
	p.Count(1, 2)
	p.Update("copying", "a: done", "a: warning")
	if got := screen(t, buf.String()); len(got) != 3 || got[0] != "a: done" || got[1] != "a: warning" || !barLine("copying", 1, 2).MatchString(got[2]) {
		t.Fatalf("bar: screen %q", got)
	}
	p.Update("", "b: failed") // done: no status line after the last lines
	p.Status("")
	if got := screen(t, buf.String()); strings.Join(got, "|") != "a: done|a: warning|b: failed|" {
		t.Fatalf("bar: screen %q", got)
	}
	if strings.Contains(buf.String(), "later") {
		t.Fatalf("the pending status was drawn: %q", buf.String())
	}

	p, buf, c = newTest(Plain)
	c.add(Heartbeat)
	p.Update("[1/2]", "a: done") // a line was just printed: no heartbeat
	c.add(Heartbeat)
	p.Update("[1/2] 10s") // quiet for Heartbeat: the status is the heartbeat
	if got, want := buf.String(), "a: done\n[1/2] 10s\n"; got != want {
		t.Fatalf("plain: got %q, want %q", got, want)
	}
}

func TestPlainShowsNoCount(t *testing.T) {
	p, buf, c := newTest(Plain)
	p.Count(1, 2)
	c.add(Heartbeat)
	p.Status("[1/2 images] 1 MiB sent")
	p.Clear()
	if got, want := buf.String(), "[1/2 images] 1 MiB sent\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestBarCutsTheStatusToTheTerminal(t *testing.T) {
	p, buf, _ := newTest(Bar)
	p.columns = func() int { return 60 }
	p.Count(3, 10)
	p.Status("[3/10 images] 1.2 GiB sent · 3.0 MiB/s")
	got := current(t, buf)
	if n := utf8.RuneCountInString(got); n > 59 || !regexp.MustCompile(`^\[3/10 i.*… +30% `).MatchString(got) || !strings.Contains(got, "(3/10)") {
		t.Fatalf("status line of %d runes on a terminal of 60: %q", n, got)
	}
	// Only the status line cut to fit is written, not the render that
	// measured the room.
	if out := buf.String(); strings.Count(out, "%") != 1 {
		t.Fatalf("the status line was written more than once: %q", out)
	}
	p.Line("lines are not cut: they wrap and stay, however long they are")
	if !strings.Contains(buf.String(), "lines are not cut: they wrap and stay, however long they are\n") {
		t.Fatalf("got %q", buf.String())
	}
}

// Many goroutines print through one Printer: every line reaches the screen
// whole, and Clear leaves no status line. Run with -race.
func TestBarConcurrentUse(t *testing.T) {
	buf := &syncBuffer{}
	p := New(buf, Bar)
	p.every = time.Millisecond
	var wg sync.WaitGroup
	want := map[string]bool{}
	for g := range 4 {
		for i := range 50 {
			want[fmt.Sprintf("goroutine %d: line %d", g, i)] = true
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				p.Count(i, 50)
				p.Status(fmt.Sprintf("goroutine %d at %d", g, i))
				p.Linef("goroutine %d: line %d", g, i)
				if i%10 == 9 {
					time.Sleep(2 * time.Millisecond) // let pending draws run
					p.Clear()
				}
			}
		}()
	}
	wg.Wait()
	p.Clear()
	time.Sleep(10 * time.Millisecond) // a pending draw would show now
	got := screen(t, buf.String())
	if got[len(got)-1] != "" {
		t.Fatalf("a status line is left after Clear: %q", got[len(got)-1])
	}
	for _, l := range got[:len(got)-1] {
		if !want[l] {
			t.Fatalf("line %q is not one that was printed", l)
		}
		delete(want, l)
	}
	if len(want) > 0 {
		t.Fatalf("%d lines missing", len(want))
	}
}

func TestUpdateEvery(t *testing.T) {
	bar, _, _ := newTest(Bar)
	plain, _, _ := newTest(Plain)
	if bar.UpdateEvery() != RedrawEvery || plain.UpdateEvery() != time.Second {
		t.Fatalf("bar %s, plain %s", bar.UpdateEvery(), plain.UpdateEvery())
	}
}
