package run

import "sync"

// eventQueue delivers events in order on one goroutine, never under the
// engine's lock: a slow terminal or progress bar cannot stall the watch,
// the deadlines or Ctrl-C. close delivers what is queued, then stops; later
// pushes are dropped, so nothing reaches a printer after Run returns.
type eventQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	q      []Event
	closed bool
	done   chan struct{}
}

func newEventQueue(handle func(Event)) *eventQueue {
	e := &eventQueue{done: make(chan struct{})}
	e.cond = sync.NewCond(&e.mu)
	go func() {
		defer close(e.done)
		for {
			e.mu.Lock()
			for len(e.q) == 0 && !e.closed {
				e.cond.Wait()
			}
			if len(e.q) == 0 {
				e.mu.Unlock()
				return
			}
			batch := e.q
			e.q = nil
			e.mu.Unlock()
			if handle != nil {
				for _, ev := range batch {
					handle(ev)
				}
			}
		}
	}()
	return e
}

func (e *eventQueue) push(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	e.q = append(e.q, ev)
	e.cond.Signal()
}

// close waits until every queued event was handled.
func (e *eventQueue) close() {
	e.mu.Lock()
	e.closed = true
	e.cond.Signal()
	e.mu.Unlock()
	<-e.done
}
