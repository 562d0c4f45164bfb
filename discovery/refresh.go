package discovery

import (
	"context"
	"sync"
	"time"
)

// Refresher runs an endpoint's on-demand refreshes (a model list fetched
// because a request named a model nobody lists) one at a time and no more
// often than a minimum interval, so clients naming made-up models cannot
// turn each request into a fetch from every backend.
//
// The zero value is ready to use.
type Refresher struct {
	mu      sync.Mutex
	running chan struct{} // closed when the refresh in flight ends
	last    time.Time     // when the last refresh started
}

// Refresh starts fn unless a refresh is in flight or one started less than
// minInterval before now, and waits until the refresh in flight ends or ctx
// does. It reports whether a refresh ran for this call, and false when it
// was skipped for the interval. fn runs on its own goroutine, so a caller
// that gives up does not cut the fetch short for the others waiting on it:
// fn must bound itself (its own timeout).
func (r *Refresher) Refresh(ctx context.Context, now time.Time, minInterval time.Duration, fn func()) bool {
	r.mu.Lock()
	done := r.running
	if done == nil {
		if !r.last.IsZero() && now.Sub(r.last) < minInterval {
			r.mu.Unlock()
			return false
		}
		done = make(chan struct{})
		r.running, r.last = done, now
		go func() {
			defer func() {
				r.mu.Lock()
				r.running = nil
				r.mu.Unlock()
				close(done)
			}()
			fn()
		}()
	}
	r.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return true
}
