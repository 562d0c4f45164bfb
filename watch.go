package olla

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/profiles"
)

// Model discovery defaults.
const (
	defaultDiscoveryInterval = 5 * time.Minute
	defaultDiscoveryTimeout  = 30 * time.Second
	maxModelListBytes        = 10 << 20
	// watchTick caps a watcher's sleep, so a probe that another config
	// rescheduled (or a request failure moved forward) is noticed soon.
	watchTick = time.Second
)

// startWatcher runs st's watcher and its load poller (signals.go) until the
// app stops or the endpoint's state is destructed. The caller holds a.mu.
func (a *App) startWatcher(st *endpointState) {
	a.runForEndpoint(st, a.watch)
	a.runForEndpoint(st, a.pollLoad)
}

// runForEndpoint runs loop in a goroutine the app owns, with a context that
// ends when the app stops or st is destructed.
func (a *App) runForEndpoint(st *endpointState, loop func(context.Context, *endpointState)) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		ctx, cancel := context.WithCancel(a.loops)
		defer cancel()
		stop := context.AfterFunc(st.probeCtx, cancel)
		defer stop()
		loop(ctx, st)
	}()
}

// watch probes st whenever its next check is due. The probe is claimed by a
// compare-and-swap on nextCheck, so when two configs overlap during a
// reload only one of their watchers probes.
func (a *App) watch(ctx context.Context, st *endpointState) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		due := st.nextCheck.Load()
		if wait := time.Duration(due - now.UnixNano()); wait > 0 {
			timer.Reset(min(wait, watchTick))
			continue
		}
		s := st.settings.Load()
		// claim the probe: push the due time past this probe's end, so a
		// watcher of another config sees it taken
		if !st.nextCheck.CompareAndSwap(due, now.Add(s.checkInterval+s.checkTimeout).UnixNano()) {
			timer.Reset(0)
			continue
		}
		next := a.check(ctx, st, s)
		st.nextCheck.Store(next.UnixNano())
		timer.Reset(min(time.Until(next), watchTick))
	}
}

// check probes st once, updates its health and breaker, discovers its
// models when due, and returns when the next probe is due.
func (a *App) check(ctx context.Context, st *endpointState, s *endpointSettings) time.Time {
	prev := st.health.Load()
	if s.auto != nil && st.autoType.Load() == nil {
		s = a.classify(ctx, st, s) // at start, until the server answers
	}
	client := &http.Client{Transport: st.transport.Load(), CheckRedirect: noRedirects}
	res := discovery.Probe(ctx, client, s.healthURL, s.header, s.checkTimeout)
	if ctx.Err() != nil {
		return time.Now() // stopping; the next config's watcher probes
	}
	st.probes.Add(1)
	now := time.Now()
	ok := res.Status.Routable()

	// the probe is the breaker's half-open trial once its cool-down is over
	if st.breaker.TrialDue(now) {
		if ok {
			st.breaker.Success()
		} else {
			st.breaker.Failure(now)
		}
	}

	// A probe that failed only transiently is forgiven while proxied
	// requests end well: one within the last interval and this probe's
	// own wait. (A stream still running is only seen when it ends.)
	serving := res.Transient && st.answering(now, s.checkInterval+s.checkTimeout)
	v := discovery.Judge(prev.verdict(), res, s.unhealthyAfter, serving)
	snap := &healthSnapshot{status: v.Status, reason: v.Reason, checkedAt: now, latency: res.Latency,
		failures: v.Failures, misses: v.Misses, transient: v.Transient, probed: true}
	var next time.Time
	switch {
	case v.Status.Routable() || v.Status == discovery.StatusUnknown:
		// in rotation (or not yet judged), failing or not: probe at the
		// usual pace so a streak is decided soon
		next = now.Add(discovery.Jitter(s.checkInterval))
	case res.Status == discovery.StatusRateLimited:
		next = now.Add(max(res.RetryAfter, s.checkInterval)) // RetryAfter is capped
	default:
		next = now.Add(discovery.Backoff(s.checkInterval, snap.failures))
	}
	st.health.Store(snap)
	a.logTransition(s, prev, snap)
	if !ok && s.auto != nil {
		// its health route failed: it may answer as another type now
		// (nobody answering leaves the type as it was)
		if typed := a.classify(ctx, st, s); typed != s {
			return time.Now() // probe again at once, on the new type's route
		}
	}

	if ok {
		recovered := !prev.status.Routable() && prev.status != discovery.StatusUnknown
		if recovered && s.auto != nil {
			s = a.classify(ctx, st, s) // it may come back as something else
		}
		if recovered || !st.discovered() || now.UnixNano() >= st.nextDiscovery.Load() {
			a.discover(ctx, st, s)
		}
	}
	return next
}

// logTransition logs status changes only, so a dead endpoint does not
// fill the log with one line per probe.
func (a *App) logTransition(s *endpointSettings, prev, cur *healthSnapshot) {
	if prev.status == cur.status {
		return
	}
	fields := []zap.Field{zap.String("endpoint", s.name), zap.String("type", s.typ),
		zap.String("from", string(prev.status)), zap.String("to", string(cur.status)), zap.String("reason", cur.reason)}
	if cur.status.Routable() {
		a.logger.Info("endpoint is up", fields...)
	} else {
		a.logger.Warn("endpoint is down", fields...)
	}
}

// discover fetches st's model list. A failed or empty fetch keeps the last
// good list and records why.
func (a *App) discover(ctx context.Context, st *endpointState, s *endpointSettings) {
	now := time.Now()
	st.nextDiscovery.Store(now.Add(discovery.Jitter(s.discoveryInterval)).UnixNano())
	models, err := fetchModels(ctx, st, s)
	if ctx.Err() != nil {
		return
	}
	prev := st.models.Load()
	if err == nil && len(models) == 0 && prev != nil && len(prev.models) > 0 {
		err = fmt.Errorf("endpoint listed no models")
	}
	if err != nil {
		reason := err.Error()
		if prev != nil {
			kept := *prev
			kept.lastError, kept.errorAt = reason+"; keeping the last good list", now
			st.models.Store(&kept)
		} else {
			st.models.Store(&modelSnapshot{lastError: reason, errorAt: now, byName: map[string]int{}, byLower: map[string]int{}})
		}
		a.logger.Warn("model discovery failed", zap.String("endpoint", s.name), zap.String("reason", reason))
		// try again soon rather than after a whole discovery interval
		st.nextDiscovery.Store(now.Add(discovery.Jitter(min(s.discoveryInterval, 4*s.checkInterval))).UnixNano())
		return
	}
	snap := newModelSnapshot(models, now)
	if prev != nil && prev.gen != 0 && reflect.DeepEqual(prev.models, models) {
		snap.gen = prev.gen // unchanged: cached catalogues stay valid
	}
	st.models.Store(snap)
	if prev == nil || len(prev.models) != len(models) {
		a.logger.Info("models discovered", zap.String("endpoint", s.name), zap.Int("count", len(models)))
	}
}

// fetchModels GETs and parses the endpoint's model list, filtered.
func fetchModels(ctx context.Context, st *endpointState, s *endpointSettings) ([]profiles.Model, error) {
	ctx, cancel := context.WithTimeout(ctx, s.discoveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.modelsURL, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range s.header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "olla-caddy-discovery")
	client := &http.Client{Transport: st.transport.Load(), CheckRedirect: noRedirects}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("model list: %s", discovery.TransportReason(err, s.discoveryTimeout))
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("model list answered %d", res.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, maxModelListBytes+1))
	if err != nil {
		return nil, fmt.Errorf("model list cut off: %s", discovery.TransportReason(err, s.discoveryTimeout))
	}
	if len(body) > maxModelListBytes {
		return nil, fmt.Errorf("model list is larger than %d bytes", maxModelListBytes)
	}
	models, err := s.profile.ParseModels(body)
	if err != nil {
		return nil, err
	}
	kept := models[:0]
	for _, m := range models {
		if s.filter.Allows(m.Name) {
			kept = append(kept, m)
		}
	}
	return kept, nil
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
