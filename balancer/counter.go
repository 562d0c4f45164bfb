package balancer

import "sync/atomic"

// Counter is an endpoint's in-flight attempt count: lock-free, never negative.
//
// The caller calls Acquire right before an attempt and Release when the
// attempt returns (after the whole response was streamed), and reports Load
// through [Candidates.InFlight]. The zero value is ready to use. A Counter
// must not be copied after first use (go vet reports copies).
type Counter struct {
	n atomic.Int64
}

// Acquire records one more attempt in flight.
func (c *Counter) Acquire() {
	c.n.Add(1)
}

// TryAcquire records one more attempt in flight if fewer than limit are;
// a limit of 0 or less means no limit. It reports whether it did.
func (c *Counter) TryAcquire(limit int64) bool {
	if limit <= 0 {
		c.n.Add(1)
		return true
	}
	for {
		n := c.n.Load()
		if n >= limit {
			return false
		}
		if c.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Release records that an attempt finished. It never takes the count below
// zero: an unmatched Release (a double release on an error path, or a release
// for an attempt started before a config reload reset the count) would
// otherwise leave the endpoint looking less loaded than idle, and
// least-connections would pile every request onto it. A compare-and-swap loop
// rather than Add(-1) makes the check and the decrement one atomic step.
func (c *Counter) Release() {
	for {
		current := c.n.Load()
		if current <= 0 {
			return
		}
		if c.n.CompareAndSwap(current, current-1) {
			return
		}
	}
}

// Load returns the number of attempts in flight.
func (c *Counter) Load() int64 {
	return c.n.Load()
}
