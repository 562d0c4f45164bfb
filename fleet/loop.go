package fleet

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// An endpoint's background work is of three kinds: the health probe (which
// also feeds the breaker's half-open trial and, when due, model discovery:
// check), the load poll (pollOnce) and preloading (preload.go: a look at
// the preload list, and a load when a model is missing). Each is due at its
// own time, kept on the pooled state so that it carries over reloads, and
// Run alone decides when each runs.
type work uint8

const (
	probeWork work = iota
	loadWork
	preloadWork
	kinds
)

// watchTick caps the loop's sleep, so a due time that another config's
// loop, the admin API or a reload moved is noticed soon.
const watchTick = time.Second

// Run keeps the endpoint's state fresh until ctx ends or the endpoint is
// destructed, and returns once its work has stopped; the caller owns Run's
// goroutine. It is the one place that says when the endpoint is next due,
// and for what: each kind of work runs when its due time comes, claimed by
// a compare-and-swap that pushes the due time past the work's own end, so
// two configs running one endpoint side by side during a reload never do
// the same work twice. A probe and a poll may run at the same time (a
// model fetch can take a while; load signals must not wait for it), but
// never two of one kind.
func (st *Endpoint) Run(ctx context.Context, log *zap.Logger) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(st.probeCtx, cancel)
	defer stop()

	var wg sync.WaitGroup
	var busy [kinds]bool
	done := make(chan work, kinds) // one send per work in flight: never blocks
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case w := <-done:
			busy[w] = false
		case <-timer.C:
		}
		now := time.Now()
		s := st.settings.Load()
		wait := watchTick
		for w := range kinds {
			if busy[w] {
				continue
			}
			until, claimed := st.claim(w, s, now)
			if !claimed {
				wait = min(wait, until)
				continue
			}
			busy[w] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				st.do(ctx, log, w, s)
				done <- w
			}()
		}
		timer.Reset(max(wait, 0))
	}
}

// due is where work w's due time (unix nanos) is kept.
func (st *Endpoint) due(w work) *atomic.Int64 {
	switch w {
	case probeWork:
		return &st.nextCheck
	case preloadWork:
		return &st.nextPreload
	}
	return &st.sched.nextLoad
}

// claim takes work w if it is due at now, else says how long until it is
// (0: look again at once, another loop just moved it).
func (st *Endpoint) claim(w work, s *Settings, now time.Time) (time.Duration, bool) {
	lease := s.CheckInterval + s.CheckTimeout
	switch w {
	case loadWork:
		if s.LoadInterval == 0 { // off, or turned off by a reload
			st.forgetLoad()
			return watchTick, false
		}
		lease = s.LoadInterval + s.LoadTimeout
	case preloadWork:
		if !st.warmer.Wanted() {
			return watchTick, false
		}
		// a load may take its whole timeout; the Warmer lets one step in
		// at a time anyway
		lease = preloadTick + s.PreloadOptions.Timeout
	}
	at := st.due(w)
	due := at.Load()
	if wait := time.Duration(due - now.UnixNano()); wait > 0 {
		return wait, false
	}
	return 0, at.CompareAndSwap(due, now.Add(lease).UnixNano())
}

// do runs work w once and sets when it is next due.
func (st *Endpoint) do(ctx context.Context, log *zap.Logger, w work, s *Settings) {
	switch w {
	case probeWork:
		st.nextCheck.Store(st.check(ctx, log, s).UnixNano())
		return
	case preloadWork:
		st.preloadStep(ctx, log, s)
		st.nextPreload.Store(time.Now().Add(preloadTick).UnixNano())
		return
	}
	if st.health.Load().Status.Routable() {
		st.pollOnce(ctx, log, s)
	}
	st.sched.nextLoad.Store(time.Now().Add(s.LoadInterval).UnixNano())
}

// forgetLoad drops what was learned from load polls once polling is off:
// when it comes back the server may have restarted with other slots.
func (st *Endpoint) forgetLoad() {
	st.sched.signals.Store(nil)
	st.sched.seenRunning.Store(0)
	st.sched.seenFull.Store(false)
}
