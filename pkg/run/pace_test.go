package run

import (
	"math"
	"testing"
	"time"
)

// Jobs ahead only when, by Little's law, the workers would stay at or
// under the cap: pods appearing at the recent rate times a worker's time.
func TestPacerLittlesLaw(t *testing.T) {
	now := time.Now()
	p := NewPacer(10, 0)
	p.PodAppeared(now.Add(-time.Minute)) // too old to count
	for i := range 20 {                  // 20 pods in the last 10 s: 2/s, out of order as a cache lists them
		p.PodAppeared(now.Add(-time.Duration((i*7)%20) * 400 * time.Millisecond))
	}
	if !p.LastPod().Equal(now) {
		t.Errorf("LastPod = %s, want the newest pod's time", p.LastPod())
	}
	for _, tc := range []struct {
		work time.Duration
		want bool
	}{
		{0, false},               // no worker has reported yet
		{2 * time.Second, true},  // 2/s x 2 s = 4 <= 10
		{5 * time.Second, true},  // 10 <= 10
		{6 * time.Second, false}, // 12 > 10: slow pulls keep the cap strict
		{30 * time.Second, false},
	} {
		p.work = tc.work
		if got := p.littleAllows(now); got != tc.want {
			t.Errorf("work %s: littleAllows = %v, want %v", tc.work, got, tc.want)
		}
	}
	if len(p.podTimes) != 20 {
		t.Errorf("%d pod times kept, want the 20 of the last 10 s", len(p.podTimes))
	}
}

// Reported keeps a moving average: one slow worker moves it an eighth.
func TestPacerReported(t *testing.T) {
	p := NewPacer(5, 0)
	p.Reported(2 * time.Second)
	if p.work != 2*time.Second {
		t.Fatalf("work = %s after the first report, want 2s", p.work)
	}
	p.Reported(10 * time.Second)
	if p.work != 3*time.Second {
		t.Errorf("work = %s, want 3s (2s + (10s-2s)/8)", p.work)
	}
	p.Reported(0) // a report read in the same instant still counts as work
	if p.work >= 3*time.Second {
		t.Errorf("work = %s after a quick report, want less than 3s", p.work)
	}
}

func TestPacerAllows(t *testing.T) {
	now := time.Now()
	quick := func(max, ahead int) *Pacer {
		p := NewPacer(max, ahead)
		p.PodAppeared(now)
		p.Reported(time.Second) // 0.1 pods/s x 1 s: far under any cap
		return p
	}
	for _, tc := range []struct {
		name          string
		p             *Pacer
		backlogged    bool
		live, podless int
		want, opened  bool
	}{
		{"under the cap", quick(4, 0), false, 3, 0, true, false},
		{"at the cap, controller keeping up", quick(4, 0), false, 4, 2, false, false},
		{"at the cap, backlogged, few pods", quick(4, 0), true, 4, 2, true, true},
		{"far beyond the cap, backlogged, few pods", quick(4, 0), true, 400, 398, true, true},
		{"backlogged but the cap's pods exist", quick(4, 0), true, 8, 4, false, true},
		{"backlogged, at Max+Ahead", quick(4, 3), true, 7, 6, false, true},
		{"backlogged, under Max+Ahead", quick(4, 3), true, 6, 5, true, true},
		{"Jobs ahead off", quick(4, -1), true, 4, 4, false, false},
		{"no worker has reported", NewPacer(4, 0), true, 4, 4, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if opened := tc.p.Update(now, tc.backlogged); opened != tc.opened {
				t.Errorf("Update = %v, want %v", opened, tc.opened)
			}
			if got := tc.p.Allows(tc.live, tc.podless); got != tc.want {
				t.Errorf("Allows(%d live, %d podless) = %v, want %v (%s)", tc.live, tc.podless, got, tc.want, tc.p)
			}
			if tc.opened && tc.p.Update(now, tc.backlogged) {
				t.Error("Update opened twice in a row; it reports only a change")
			}
		})
	}
}

func TestPacerSetLimits(t *testing.T) {
	for _, tc := range []struct{ max, ahead, wantMax, wantAhead int }{
		{20, 0, 20, math.MaxInt32},
		{20, -1, 20, 0},
		{20, 5, 20, 5},
		{0, 0, 1, math.MaxInt32}, // at least one worker
	} {
		p := NewPacer(tc.max, tc.ahead)
		if p.Max != tc.wantMax || p.Ahead != tc.wantAhead {
			t.Errorf("NewPacer(%d, %d) = Max %d Ahead %d, want %d %d", tc.max, tc.ahead, p.Max, p.Ahead, tc.wantMax, tc.wantAhead)
		}
	}
}
