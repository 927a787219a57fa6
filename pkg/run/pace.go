package run

import (
	"fmt"
	"math"
	"time"
)

// Pacer is the flow-control rule of a set of workers, shared by the engine
// (one run) and the controller (one object, and every object at once). Max
// bounds the workers that exist at once — a pod created, its report not
// yet in: what a registry and the nodes feel. A worker still waiting for
// the Job controller to make its pod pulls nothing, so up to Ahead more
// Jobs may wait in the Job controller's queue, only while (1) a created
// Job has waited for its pod (the controller is behind, not the workers:
// the caller says so to Update), (2) fewer than Max worker pods exist, and
// (3) by Little's law the workers stay under Max at the pace the
// controller makes pods: the rate at which pods appeared over the last
// 10 s times a worker's recent time from pod to report is at most Max.
// When pulls are slow (Max is what bounds the run, as meant) (3) keeps the
// cap strict; when workers are quick and the controller is the bound,
// every Job is handed to it as early as (3) allows.
//
// Why no fixed Ahead: the Job controller's writes are the bound
// (kube-controller-manager's client QPS), and a Job costs it about 2
// writes to get its pod (pod, status) and 2–3 more once the pod is done.
// Its queue is FIFO: while it holds Jobs that still need pods, the
// bookkeeping of finished ones waits behind them, so a run that hands its
// Jobs over early gets its pods at ~2 writes each, one that hands them
// over a few at a time pays ~4.6 per pod (docs/scale.md). Should workers
// slow down after their Jobs were handed over, the controller still paces
// their pods (rate × new time from pod to report), and (3) stops any more.
//
// A Pacer is not safe for concurrent use: its owner's lock guards it.
type Pacer struct {
	// Max is the cap on workers with a pod (at least 1).
	Max int
	// Ahead is how many workers without a pod may exist beyond Max; 0
	// turns Jobs ahead off. NewPacer's default is no limit beyond (1)–(3).
	Ahead int

	podTimes []time.Time   // pods that appeared in the last window
	work     time.Duration // a worker's time from pod to report, a moving average
	lastPod  time.Time     // when the newest pod appeared
	aheadOK  bool
}

// paceWindow is how far back the pod rate of Little's law looks.
const paceWindow = 10 * time.Second

// NewPacer returns a Pacer for max workers at once and ahead workers
// beyond it (0: no limit beyond the rule, negative: none).
func NewPacer(max, ahead int) *Pacer {
	p := &Pacer{}
	p.SetLimits(max, ahead)
	return p
}

// SetLimits changes the limits (an object's spec may change between
// reconciles); what the Pacer learnt is kept.
func (p *Pacer) SetLimits(max, ahead int) {
	if max < 1 {
		max = 1
	}
	switch {
	case ahead == 0:
		ahead = math.MaxInt32
	case ahead < 0:
		ahead = 0
	}
	p.Max, p.Ahead = max, ahead
}

// PodAppeared notes a worker pod that appeared at at (any order).
func (p *Pacer) PodAppeared(at time.Time) {
	p.podTimes = append(p.podTimes, at)
	if at.After(p.lastPod) {
		p.lastPod = at
	}
}

// Reported notes a worker that reported took after its pod appeared.
func (p *Pacer) Reported(took time.Duration) {
	if took <= 0 {
		took = time.Millisecond
	}
	if p.work == 0 {
		p.work = took
	} else {
		p.work += (took - p.work) / 8
	}
}

// LastPod is when the newest worker pod appeared (zero: none yet).
func (p *Pacer) LastPod() time.Time { return p.lastPod }

// Update decides whether workers may be created ahead of Max from now on:
// backlogged says a created worker has waited for its pod longer than the
// caller's threshold (and not because its pod was refused). It reports
// whether they may now and could not before (a waiting creator should look
// again).
func (p *Pacer) Update(now time.Time, backlogged bool) (opened bool) {
	was := p.aheadOK
	p.aheadOK = p.Ahead > 0 && backlogged && p.littleAllows(now)
	return p.aheadOK && !was
}

// littleAllows says whether, by Little's law, the workers would stay at or
// under Max if the Job controller were fed: pods appearing at the rate of
// the last window, each working p.work. Before any worker reported, no.
func (p *Pacer) littleAllows(now time.Time) bool {
	kept := p.podTimes[:0]
	for _, t := range p.podTimes {
		if now.Sub(t) <= paceWindow {
			kept = append(kept, t)
		}
	}
	p.podTimes = kept
	if p.work == 0 {
		return false
	}
	rate := float64(len(p.podTimes)) / paceWindow.Seconds()
	return rate*p.work.Seconds() <= float64(p.Max)
}

// Allows says whether another worker may be created while live workers
// exist, podless of them still without a pod: within Max always; beyond
// it only as Update last decided, while fewer than Max have pods, and up
// to Max+Ahead.
func (p *Pacer) Allows(live, podless int) bool {
	if live < p.Max {
		return true
	}
	return p.aheadOK && live-podless < p.Max && live < p.Max+p.Ahead
}

// String is the Pacer's state, for diagnostics.
func (p *Pacer) String() string {
	return fmt.Sprintf("aheadOK=%v pods10s=%d work=%s", p.aheadOK, len(p.podTimes), p.work.Round(10*time.Millisecond))
}
