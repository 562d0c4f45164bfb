package fleet

import (
	"net/http"
	"time"

	"github.com/caddy-olla/olla/engines"
)

// An attempt's life on an endpoint: a slot taken (TryAcquire, or TryEnter
// through the admission queue), counted (Attempted), and ended (Finish,
// then Leave) with the outcome fed to passive health.

// TryAcquire takes one of the endpoint's slots if it has room under its
// concurrency cap, whatever its health (the picker checks that first).
func (st *Endpoint) TryAcquire() bool { return st.inFlight.TryAcquire(st.ConcurrencyCap()) }

// TryEnter takes one of the endpoint's slots if it is routable, or out only
// for transient probe failures, and has one free: admission.Gate. The
// second admits requests that panic routing queued for it; a request queued
// while it was routable may then get it too, as panic would have offered it.
func (st *Endpoint) TryEnter() bool {
	if now := time.Now(); !st.Routable(now) && !st.PanicEligible(now) {
		return false
	}
	return st.TryAcquire()
}

// Leave gives a slot back (admission.Gate); the admission queue's Release
// calls it and hands the slot on.
func (st *Endpoint) Leave() { st.inFlight.Release() }

// Attempted counts one proxied attempt.
func (st *Endpoint) Attempted() { st.requests.Add(1) }

// Finish feeds an ended attempt's outcome to the endpoint's counters and
// passive health: the backend's failures feed its circuit breaker, its
// successes close it and forgive slow probes, a busy answer is neither,
// and a busy answer, a 429 or a 503 parks it
// for the backend's Retry-After. A client that went away (hung up, failed
// a write, cancelled) or our own response transform is neither the
// backend's failure nor its success. The slot is not given back here: see
// Leave.
func (st *Endpoint) Finish(out engines.Outcome, now time.Time) {
	st.latencyNs.Add(int64(out.HeaderLatency))
	st.bytesOut.Add(out.Bytes)
	switch {
	case out.ClientGone(), out.TransformFailed():
		// not the backend's doing
	case out.Busy && out.Err == nil:
		// busy, not broken (Lemonade's slots_pinned_error, Ollama's
		// "server busy"): neither a failure nor a sign of health
	case out.Err != nil || out.Status >= 500:
		st.failures.Add(1)
		st.breaker.Failure(now)
	default:
		st.breaker.Success()
		if out.Status != http.StatusTooManyRequests {
			st.lastSuccess.Store(now.UnixNano()) // it is serving: slow probes are forgiven
		}
	}
	if out.Busy || out.Status == http.StatusTooManyRequests || out.Status == http.StatusServiceUnavailable {
		st.park(out.RetryAfter)
	}
}

// SetDrained drains the endpoint (no new requests until enabled, whatever
// its health) or enables it again: the admin API's switch.
func (st *Endpoint) SetDrained(on bool) { st.drained.Store(on) }

// Rediscover makes the endpoint's next probe and model fetch due now; its
// loop runs them within a second.
func (st *Endpoint) Rediscover() {
	st.nextDiscovery.Store(0)
	st.nextCheck.Store(0)
}
