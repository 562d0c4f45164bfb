package balancer

import (
	"sync/atomic"
	"time"
)

// EWMA is an exponentially weighted moving average of durations, such as an
// endpoint's time to first token for one model. Each sample moves the average
// a quarter of the way towards it, so the last few requests dominate and one
// outlier moves it only so far. It is lock-free; the zero value has no
// samples. An EWMA must not be copied after first use.
type EWMA struct {
	ns atomic.Int64 // the average in nanoseconds; 0 until the first sample
}

// Observe adds a sample. Samples of zero or less are ignored (a failed
// attempt has no time to first token).
func (e *EWMA) Observe(d time.Duration) {
	if d <= 0 {
		return
	}
	for {
		old := e.ns.Load()
		next := int64(d)
		if old > 0 {
			next = old + (int64(d)-old)/4
			if next <= 0 {
				next = 1 // stays "sampled"
			}
		}
		if e.ns.CompareAndSwap(old, next) {
			return
		}
	}
}

// Value returns the average, or 0 when there is no sample yet.
func (e *EWMA) Value() time.Duration {
	return time.Duration(e.ns.Load())
}

// Reset forgets every sample, e.g. after the endpoint changed.
func (e *EWMA) Reset() {
	e.ns.Store(0)
}
