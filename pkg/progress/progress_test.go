package progress

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
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

func TestBarDrawsInPlaceAndClearsBeforeLines(t *testing.T) {
	p, buf, c := newTest(Bar)
	p.Status("resolving 2 sources …")
	p.Clear()
	c.add(RedrawEvery)
	p.Status("[0/2 images] 0 B sent")
	p.Line("  copied  a → b")
	p.Clear()
	p.Clear() // nothing shown: writes nothing
	want := eraseLine + "resolving 2 sources …" + eraseLine +
		eraseLine + "[0/2 images] 0 B sent" +
		eraseLine + "  copied  a → b\n" + eraseLine + "[0/2 images] 0 B sent" +
		eraseLine
	if got := buf.String(); got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

// waitFor polls until buf holds want, for at most a second.
func waitFor(t *testing.T, buf *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if buf.String() == want {
			return
		}
	}
	t.Fatalf("got  %q\nwant %q", buf.String(), want)
}

// The clock stands still here, so every status after the first comes "too
// soon" whatever the machine's load; only the pending draw's timer is real.
func TestBarThrottlesRedraws(t *testing.T) {
	p, buf, c := newTest(Bar)
	p.every = 20 * time.Millisecond

	p.Status("1")
	p.Status("2")
	p.Status("3") // too soon: only the latest is drawn, once the interval is up
	if got, want := buf.String(), eraseLine+"1"; got != want {
		t.Fatalf("right away: %q, want %q", got, want)
	}
	waitFor(t, buf, eraseLine+"1"+eraseLine+"3")

	// A pending status dies with Clear.
	p.Status("4")
	p.Clear()
	time.Sleep(5 * p.every)
	if got, want := buf.String(), eraseLine+"1"+eraseLine+"3"+eraseLine; got != want {
		t.Fatalf("after Clear: %q, want %q", got, want)
	}

	// A Line draws the latest status at once; the pending draw is dropped.
	p.every = time.Hour
	c.add(p.every)
	p.Status("5")
	p.Status("6")
	p.Line("line")
	p.mu.Lock()
	pending := p.pending
	p.mu.Unlock()
	if pending != nil {
		t.Error("a draw is still pending after Line drew the latest status")
	}
	want := eraseLine + "1" + eraseLine + "3" + eraseLine +
		eraseLine + "5" + eraseLine + "line\n" + eraseLine + "6"
	if got := buf.String(); got != want {
		t.Fatalf("after a line: %q, want %q", got, want)
	}
}

// Update puts lines and the new status on the screen at once, throttle or
// not: the lines tell of events, and the status after them is news.
func TestUpdateDrawsLinesAndTheNewStatusAtOnce(t *testing.T) {
	p, buf, c := newTest(Bar)
	p.every = time.Hour // the clock stands still: every status is too soon
	p.Status("[0/2]")
	p.Status("[0/2] later") // pending
	p.Update("[1/2]", "a: done", "a: warning")
	p.Update("", "b: failed") // done: no status line after the last lines
	p.Status("")
	want := eraseLine + "[0/2]" +
		eraseLine + "a: done\n" + "a: warning\n" + eraseLine + "[1/2]" +
		eraseLine + "b: failed\n"
	if got := buf.String(); got != want {
		t.Fatalf("bar: got  %q\nwant %q", got, want)
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

func TestBarCutsTheStatusToTheTerminal(t *testing.T) {
	p, buf, _ := newTest(Bar)
	p.columns = func() int { return 10 }
	p.Status("[3/10 images] 1.2 GiB sent")
	if got, want := buf.String(), eraseLine+"[3/10 im…"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	p.Line("lines are not cut: they wrap and stay")
	if !strings.Contains(buf.String(), "lines are not cut: they wrap and stay\n") {
		t.Fatalf("got %q", buf.String())
	}
}

func TestUpdateEvery(t *testing.T) {
	bar, _, _ := newTest(Bar)
	plain, _, _ := newTest(Plain)
	if bar.UpdateEvery() != RedrawEvery || plain.UpdateEvery() != time.Second {
		t.Fatalf("bar %s, plain %s", bar.UpdateEvery(), plain.UpdateEvery())
	}
}

func TestBarOf(t *testing.T) {
	for _, tc := range []struct {
		done, total, width int
		want               string
	}{
		{0, 10, 10, "  0% |          |"},
		{4, 10, 10, " 40% |████      |"},
		{10, 10, 10, "100% |██████████|"},
		{1, 3, 6, " 33% |██    |"},
		{12, 10, 4, "100% |████|"},
		{0, 0, 4, "100% |████|"},
		{-1, 5, 4, "  0% |    |"},
	} {
		if got := BarOf(tc.done, tc.total, tc.width); got != tc.want {
			t.Errorf("BarOf(%d, %d, %d) = %q, want %q", tc.done, tc.total, tc.width, got, tc.want)
		}
	}
}
