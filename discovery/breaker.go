package discovery

import (
	"sync"
	"sync/atomic"
	"time"
)

// BreakerState is a circuit breaker's position.
type BreakerState string

// Breaker states.
const (
	BreakerClosed   BreakerState = "closed"    // traffic flows
	BreakerOpen     BreakerState = "open"      // traffic held back until the cool-down ends
	BreakerHalfOpen BreakerState = "half_open" // one trial request or probe at a time
)

// BreakerConfig tunes a Breaker. Zero values take the defaults.
type BreakerConfig struct {
	// Threshold is how many consecutive failures open the breaker (default 5).
	Threshold int
	// OpenFor is how long it stays open before a trial (default 30s).
	OpenFor time.Duration
	// TrialTimeout is how long a half-open trial may run before another one
	// is allowed (default 30s), so a lost trial cannot wedge the breaker.
	TrialTimeout time.Duration
}

// Breaker is one endpoint's circuit breaker, fed by request failures
// (passive health) and by active probes. While it is not closed the endpoint
// is not selected; after OpenFor the next active probe is the single
// half-open trial, and its result closes or reopens the breaker.
type Breaker struct {
	cfg BreakerConfig

	// closed mirrors state == BreakerClosed so the request path can check it
	// without the lock.
	closed atomic.Bool

	mu         sync.Mutex
	state      BreakerState
	failures   int
	openedAt   time.Time
	trialSince time.Time // zero when no trial is out
	opens      int64     // how many times it opened, for status
}

// NewBreaker returns a closed breaker.
func NewBreaker(cfg BreakerConfig) *Breaker {
	b := &Breaker{cfg: cfg.withDefaults(), state: BreakerClosed}
	b.closed.Store(true)
	return b
}

func (cfg BreakerConfig) withDefaults() BreakerConfig {
	if cfg.Threshold <= 0 {
		cfg.Threshold = 5
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = 30 * time.Second
	}
	if cfg.TrialTimeout <= 0 {
		cfg.TrialTimeout = 30 * time.Second
	}
	return cfg
}

// Configure takes new settings (a reload) and keeps the current state.
func (b *Breaker) Configure(cfg BreakerConfig) {
	b.mu.Lock()
	b.cfg = cfg.withDefaults()
	b.mu.Unlock()
}

// Blocked reports whether the breaker keeps requests away now: it is open,
// or half-open with its trial probe under way. It changes nothing, so it is
// safe to call while filtering candidates.
func (b *Breaker) Blocked() bool { return !b.closed.Load() }

// TrialDue reports whether the cool-down is over and claims the single
// half-open trial for the caller (the active prober), moving the breaker to
// half-open. Only one caller gets true until the trial's result is recorded
// or TrialTimeout passes.
func (b *Breaker) TrialDue(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerOpen:
		if now.Sub(b.openedAt) < b.cfg.OpenFor {
			return false
		}
	case BreakerHalfOpen:
		if now.Sub(b.trialSince) < b.cfg.TrialTimeout {
			return false
		}
	default:
		return false
	}
	b.state, b.trialSince = BreakerHalfOpen, now
	return true
}

// Success records a request or probe that worked: the breaker closes.
func (b *Breaker) Success() {
	b.mu.Lock()
	b.state, b.failures, b.trialSince = BreakerClosed, 0, time.Time{}
	b.closed.Store(true)
	b.mu.Unlock()
}

// Failure records a failed request or probe.
func (b *Breaker) Failure(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	if b.state == BreakerHalfOpen || (b.state == BreakerClosed && b.failures >= b.cfg.Threshold) {
		if b.state != BreakerOpen {
			b.opens++
		}
		b.state, b.openedAt, b.trialSince = BreakerOpen, now, time.Time{}
		b.closed.Store(false)
	}
}

// Opens reports how many times the breaker has opened since it was made.
func (b *Breaker) Opens() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opens
}

// State reports the breaker's position and consecutive failures.
func (b *Breaker) State() (BreakerState, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state, b.failures
}
