package worker

import (
	"hash"
	"sync"
)

// asyncHash is a hash.Hash that hashes on its own goroutine, so a download
// that writes a file and hashes it does both at once on two cores instead of
// one after the other. Write copies the data into one of a few rotating
// buffers and returns; Sum and Reset first wait for what is queued.
type asyncHash struct {
	h     hash.Hash
	queue chan []byte
	free  chan []byte
	flush chan chan struct{}
	once  sync.Once
}

func newAsyncHash(h hash.Hash) *asyncHash {
	a := &asyncHash{h: h, queue: make(chan []byte, 4), free: make(chan []byte, 4), flush: make(chan chan struct{})}
	for i := 0; i < 4; i++ {
		a.free <- make([]byte, 0, 1<<20)
	}
	go a.run()
	return a
}

func (a *asyncHash) run() {
	for {
		select {
		case b, ok := <-a.queue:
			if !ok {
				return
			}
			a.h.Write(b)
			a.free <- b[:0]
		case done := <-a.flush:
			// the queue is FIFO: drain what was queued before the flush
			for len(a.queue) > 0 {
				b := <-a.queue
				a.h.Write(b)
				a.free <- b[:0]
			}
			close(done)
		}
	}
}

func (a *asyncHash) Write(p []byte) (int, error) {
	for off := 0; off < len(p); {
		b := <-a.free
		n := min(len(p)-off, cap(b))
		b = append(b, p[off:off+n]...)
		a.queue <- b
		off += n
	}
	return len(p), nil
}

func (a *asyncHash) wait() {
	done := make(chan struct{})
	a.flush <- done
	<-done
}

func (a *asyncHash) Sum(b []byte) []byte { a.wait(); return a.h.Sum(b) }
func (a *asyncHash) Reset()              { a.wait(); a.h.Reset() }
func (a *asyncHash) Size() int           { return a.h.Size() }
func (a *asyncHash) BlockSize() int      { return a.h.BlockSize() }

// Close stops the hashing goroutine; the hash must not be written after.
func (a *asyncHash) Close() { a.once.Do(func() { a.wait(); close(a.queue) }) }
