package main

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/progress"
)

// timedWrites records what is written to it with the test's clock.
type timedWrites struct {
	mu    sync.Mutex
	clock float64
	at    []float64
	data  [][]byte
}

func (w *timedWrites) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.at = append(w.at, w.clock)
	w.data = append(w.data, slices.Clone(b))
	return len(b), nil
}

func (w *timedWrites) set(t float64) {
	w.mu.Lock()
	w.clock = t
	w.mu.Unlock()
}

func (w *timedWrites) replay(p *progressWatch) {
	for i, b := range w.data {
		p.feed(w.at[i], b)
	}
	p.end()
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestProgressWatchPlain(t *testing.T) {
	w := &timedWrites{}
	var gc []string
	p := &progressWatch{gc: func(_ float64, l string) { gc = append(gc, l) }}
	for _, l := range []struct {
		t    float64
		line string
	}{
		{0.1, "run abc: 3 nodes in namespace scale"},
		{0.2, "[0/3] sim-1: job created"},
		{1.0, "[1/3] sim-1: done (0.8s)"},
		{1.5, "gc 1 @1.500s 0%: 0.01+0.2+0.01 ms clock, 4->4->2 MB, 4 MB goal, 2 P"},
		{3.0, "[2/3] sim-2: 1 failed: simulated failure (2.8s)"},
		{13.0, "prefetching: 2/3 nodes finished after 13s"},
		{14.0, "[3/3] sim-3: 3 failed: no report within 10s (13.8s)"},
		{14.1, "finished in 14s"},
	} {
		w.set(l.t)
		_, _ = w.Write([]byte(l.line + "\n"))
	}
	w.replay(p)
	if !near(p.first, 1.0) || !near(p.last, 14.0) {
		t.Errorf("first, last = %v, %v; want 1, 14", p.first, p.last)
	}
	if !near(p.gap, 10.0) {
		t.Errorf("gap = %v, want 10 (3 → 13: the GC trace at 1.5 is no progress)", p.gap)
	}
	if len(gc) != 1 || !strings.HasPrefix(gc[0], "gc 1 @1.500s") {
		t.Errorf("GC trace = %q", gc)
	}
	want := []string{"run abc: 3 nodes in namespace scale", "prefetching: 2/3 nodes finished after 13s", "finished in 14s"}
	if !slices.Equal(p.tail, want) {
		t.Errorf("tail = %q, want %q", p.tail, want)
	}
}

// TestProgressWatchBar reads what the plugin's real Printer draws in Bar
// mode, driven as the prefetch command drives it: the count going up is a
// result, a failure prints a line above the bar, and the bar clears itself
// when the last node is in, without showing its full count.
func TestProgressWatchBar(t *testing.T) {
	w := &timedWrites{}
	out := progress.New(w, progress.Bar)
	// The Printer draws at most every progress.RedrawEvery, by the wall
	// clock: wait that long before each step, so that each draws at once,
	// at the time the test's clock says.
	step := func(at float64, f func()) {
		time.Sleep(progress.RedrawEvery + 20*time.Millisecond)
		w.set(at)
		f()
	}
	const total = 3
	step(0.1, func() {
		out.Line("run abc: 3 nodes in namespace scale")
		out.Count(0, total)
		out.Status("prefetching")
	})
	step(1.0, func() { out.Status("prefetching") }) // the once-a-second redraw
	step(1.5, func() { out.Count(1, total); out.Update("prefetching") })
	step(2.5, func() { out.Status("prefetching") })
	step(3.0, func() { out.Count(2, total); out.Update("prefetching", "sim-2: 1 failed: simulated failure") })
	step(4.0, func() { out.Status("prefetching") })
	step(4.2, func() { out.Count(3, total); out.Update("prefetching") })
	step(5.0, func() { out.Status("prefetching") }) // nothing to draw: the bar is done
	step(5.5, func() { out.Clear(); out.Line("finished in 5.4s") })

	p := &progressWatch{bar: true}
	w.replay(p)
	if !near(p.first, 1.5) || !near(p.last, 4.2) {
		t.Errorf("first, last = %v, %v; want 1.5, 4.2", p.first, p.last)
	}
	if !near(p.gap, 1.3) {
		t.Errorf("gap = %v, want 1.3 (4.2 → 5.5)", p.gap)
	}
	want := []string{"run abc: 3 nodes in namespace scale", "finished in 5.4s"}
	if !slices.Equal(p.tail, want) {
		t.Errorf("tail = %q, want %q (redraws are not lines)", p.tail, want)
	}
}

// TestProgressWatchBarGCTrace: a GC trace line written while a redraw is
// on the line is split off, and the redraw still counts.
func TestProgressWatchBarGCTrace(t *testing.T) {
	var gc []string
	p := &progressWatch{bar: true, gc: func(_ float64, l string) { gc = append(gc, l) }}
	p.feed(1, []byte("\rprefetching  33% |███   | (1/3) [1s]"))
	p.feed(2, []byte("gc 7 @2.000s 1%: 0.1 ms clock, 8->8->4 MB, 9 MB goal, 2 P\n"))
	p.feed(9, []byte("\r                                      \r\rprefetching  66% |████  | (2/3) [9s]"))
	p.end()
	if len(gc) != 1 || !strings.HasPrefix(gc[0], "gc 7 @2.000s") {
		t.Errorf("GC trace = %q", gc)
	}
	if !near(p.first, 1) || !near(p.last, 9) || !near(p.gap, 8) {
		t.Errorf("first, last, gap = %v, %v, %v; want 1, 9, 8", p.first, p.last, p.gap)
	}
}
