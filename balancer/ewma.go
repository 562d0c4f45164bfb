package balancer

import (
	"sync/atomic"
	"time"
)

// EWMAMaxAge is how long an average lasts without a new sample. An endpoint
// the speed score has judged slow gets little traffic, so little chance to
// show it has recovered (a TTFT taken while it was queueing would otherwise
// keep it starved for good): after this long the average reads as unknown,
// and the next sample starts it afresh. A selection treats a forgotten
// average as unknown (which scores like an unmeasured endpoint) only while
// no request for the model is measuring it (Signals.MeasuringSince), so the
// cost is about one request per model per EWMAMaxAge sent to a box that is
// still slow, not a burst for as long as its answer takes. (Per model: a
// box always busy with another model still gets its probe.)
const EWMAMaxAge = 10 * time.Second

// forgotten reports whether an average whose last sample came at last (Unix
// nanoseconds) is past EWMAMaxAge at now: the one age rule for sampling,
// reading, and a selection that reads the clock once for all candidates.
func forgotten(last, now int64) bool { return now-last > int64(EWMAMaxAge) }

// EWMA is an exponentially weighted moving average of durations, such as an
// endpoint's time to first token for one model, weighted to follow the
// endpoint's speed rather than its moments: a faster sample moves it half
// the way, a slower one an eighth. A TTFT is slow for many reasons that are
// not the box (a long prompt, a prefix cache miss, a queue that the load
// score sees already) and fast only when the box is; a box that really got
// three times slower still moves it past twice its old value within six
// samples. An average with no sample for EWMAMaxAge is forgotten. The zero
// value has no samples. An EWMA must not be copied after first use.
type EWMA struct {
	// Two words, each atomic: selection reads them for every candidate, and
	// a read that mixes two samples' words is off by one sample at most.
	ns   atomic.Int64 // the average in nanoseconds; 0 until the first sample
	last atomic.Int64 // when the last sample came, in Unix nanoseconds
}

// Observe adds a sample taken now. Samples of zero or less are ignored (a
// failed attempt has no time to first token).
func (e *EWMA) Observe(d time.Duration) { e.ObserveAt(d, time.Now()) }

// ObserveAt adds a sample taken at now.
func (e *EWMA) ObserveAt(d time.Duration, now time.Time) {
	if d <= 0 {
		return
	}
	at := now.UnixNano()
	for {
		old := e.ns.Load()
		next := int64(d)
		if old > 0 && !forgotten(e.last.Load(), at) {
			if diff := int64(d) - old; diff < 0 {
				next = max(old+diff/2, 1) // stays "sampled"
			} else {
				next = old + diff/8
			}
		}
		if e.ns.CompareAndSwap(old, next) {
			e.last.Store(at)
			return
		}
	}
}

// Value returns the average now, or 0 when there is no sample or the last
// is older than EWMAMaxAge.
func (e *EWMA) Value() time.Duration { return e.ValueAt(time.Now()) }

// ValueAt returns the average as it stands at now.
func (e *EWMA) ValueAt(now time.Time) time.Duration {
	if forgotten(e.last.Load(), now.UnixNano()) {
		return 0
	}
	return time.Duration(e.ns.Load())
}

// Sample returns the average and when its last sample came, without
// reading the clock (0 and the zero time: no sample). A selection judges the
// age against its own single reading of the clock (Signals.TTFTAt).
func (e *EWMA) Sample() (time.Duration, time.Time) {
	last := e.last.Load()
	if last == 0 {
		return 0, time.Time{}
	}
	return time.Duration(e.ns.Load()), time.Unix(0, last)
}

// Reset forgets every sample, e.g. after the endpoint changed.
func (e *EWMA) Reset() {
	e.ns.Store(0)
	e.last.Store(0)
}
