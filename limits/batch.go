package limits

import (
	"context"
	"sync"
	"time"
)

// batch buffers a Redis store's Add counts (tokens and cost, owed once a
// response has ended) so that they travel with the next Take instead of
// costing a round trip of their own. A timer sends them when no Take comes
// soon: an instance that goes quiet still shows its last counts to the
// others within about flushDelay. Counts of one key are summed, so the
// buffer holds one entry per counter, at most maxBuffered.
//
// What the others see is late by at most one request per instance: an
// instance's own finished requests are sent with its next admission, and
// a quiet instance's by the timer. A Take or flush that fails puts its
// counts back to be sent again; one whose answer was lost after the
// server ran it may count twice (over-counting, never under).
type batch struct {
	send  func(context.Context) error
	delay time.Duration // flushDelay; tests lengthen it

	mu      sync.Mutex
	pending map[string]bufferedAdd
	timer   *time.Timer
	armed   bool
	takes   uint64 // Takes that carried the buffer, so the timer can tell
	seen    uint64 // takes when the timer was armed
	closed  bool
	dropped int64 // counts lost to a full buffer while the server was away
}

type bufferedAdd struct{ n, ttl int64 }

const (
	// flushDelay is how long a count may wait for a Take to carry it.
	flushDelay = 200 * time.Millisecond
	// retryDelay spaces flushes while the server cannot be reached.
	retryDelay = time.Second
	// maxBuffered bounds the buffer: distinct counters waiting to be sent.
	maxBuffered = 4096
)

func (b *batch) init(send func(context.Context) error) {
	b.send, b.delay = send, flushDelay
	b.pending = make(map[string]bufferedAdd)
}

// add buffers n for key and arms the timer. It reports whether the buffer
// is at its bound (the caller sends it now).
func (b *batch) add(key string, n, ttl int64) (full bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a, ok := b.pending[key]; ok {
		b.pending[key] = bufferedAdd{addCapped(a.n, n), max(a.ttl, ttl)}
	} else if len(b.pending) < maxBuffered {
		b.pending[key] = bufferedAdd{n, ttl}
	} else {
		b.dropped++
		return true
	}
	b.arm(b.delay)
	return len(b.pending) >= maxBuffered
}

// arm starts the timer unless it runs already. b.mu is held.
func (b *batch) arm(d time.Duration) {
	if b.armed || b.closed {
		return
	}
	b.armed, b.seen = true, b.takes
	if b.timer == nil {
		b.timer = time.AfterFunc(d, b.fire)
	} else {
		b.timer.Reset(d)
	}
}

// take empties the buffer for a Take or a flush to carry.
func (b *batch) take() map[string]bufferedAdd {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.takes++
	if len(b.pending) == 0 {
		return nil
	}
	out := b.pending
	b.pending = make(map[string]bufferedAdd, len(out))
	return out
}

// putBack returns counts a failed round trip did not deliver.
func (b *batch) putBack(m map[string]bufferedAdd) {
	if len(m) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, a := range m {
		if cur, ok := b.pending[k]; ok {
			b.pending[k] = bufferedAdd{addCapped(cur.n, a.n), max(cur.ttl, a.ttl)}
		} else if len(b.pending) < maxBuffered {
			b.pending[k] = a
		} else {
			b.dropped++
		}
	}
	b.arm(retryDelay)
}

// fire is the timer: when a Take has carried the buffer since it was
// armed, Takes are flowing and the timer waits again (no round trip);
// otherwise it sends the buffer.
func (b *batch) fire() {
	b.mu.Lock()
	b.armed = false
	if b.closed || len(b.pending) == 0 {
		b.mu.Unlock()
		return
	}
	if b.takes != b.seen {
		b.arm(b.delay)
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	_ = b.send(context.Background()) // a failure puts the counts back and re-arms
}

// close stops the timer and sends what is left, once.
func (b *batch) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	if b.timer != nil {
		b.timer.Stop()
	}
	b.mu.Unlock()
	_ = b.send(context.Background())
}

// Dropped is how many counts were lost because the buffer was full while
// the server could not be reached.
func (s *Redis) Dropped() int64 {
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	return s.batch.dropped
}
