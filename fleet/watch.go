package fleet

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/profiles"
)

// check probes st once, updates its health and breaker, discovers its
// models when due, and returns when the next probe is due.
func (st *Endpoint) check(ctx context.Context, log *zap.Logger, s *Settings) time.Time {
	prev := st.health.Load()
	if s.Retype != nil && st.autoType.Load() == nil {
		s = st.classify(ctx, log, s) // at start, until the server answers
	}
	res := discovery.Probe(ctx, st.transport.Load(), s.HealthURL, s.Header, s.CheckTimeout)
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
	serving := res.Transient && st.answering(now, s.CheckInterval+s.CheckTimeout)
	v := discovery.Judge(prev.verdict(), res, s.UnhealthyAfter, serving)
	snap := &Health{Status: v.Status, Reason: v.Reason, CheckedAt: now, Latency: res.Latency,
		Failures: v.Failures, Misses: v.Misses, Transient: v.Transient, Probed: true}
	var next time.Time
	switch {
	case v.Status.Routable() || v.Status == discovery.StatusUnknown:
		// in rotation (or not yet judged), failing or not: probe at the
		// usual pace so a streak is decided soon
		next = now.Add(discovery.Jitter(s.CheckInterval))
	case res.Status == discovery.StatusRateLimited:
		next = now.Add(max(res.RetryAfter, s.CheckInterval)) // RetryAfter is capped
	default:
		next = now.Add(discovery.Backoff(s.CheckInterval, snap.Failures))
	}
	st.health.Store(snap)
	st.noteProbe(prev, snap)
	logTransition(log, s, prev, snap)
	if !ok && s.Retype != nil {
		// its health route failed: it may answer as another type now
		// (nobody answering leaves the type as it was)
		if typed := st.classify(ctx, log, s); typed != s {
			return time.Now() // probe again at once, on the new type's route
		}
	}

	if ok {
		recovered := !prev.Status.Routable() && prev.Status != discovery.StatusUnknown
		if recovered && s.Retype != nil {
			s = st.classify(ctx, log, s) // it may come back as something else
		}
		if recovered || !st.Discovered() || now.UnixNano() >= st.nextDiscovery.Load() {
			st.discover(ctx, log, s)
		}
	}
	return next
}

// logTransition logs status changes only, so a dead endpoint does not
// fill the log with one line per probe.
func logTransition(log *zap.Logger, s *Settings, prev, cur *Health) {
	if prev.Status == cur.Status {
		return
	}
	fields := []zap.Field{zap.String("endpoint", s.Name), zap.String("type", s.Type),
		zap.String("from", string(prev.Status)), zap.String("to", string(cur.Status)), zap.String("reason", cur.Reason)}
	if cur.Status.Routable() {
		log.Info("endpoint is up", fields...)
	} else {
		log.Warn("endpoint is down", fields...)
	}
}

// discover fetches st's model list. A failed or empty fetch keeps the last
// good list and records why.
func (st *Endpoint) discover(ctx context.Context, log *zap.Logger, s *Settings) {
	now := time.Now()
	st.nextDiscovery.Store(now.Add(discovery.Jitter(s.DiscoveryInterval)).UnixNano())
	models, err := ListModels(ctx, st.transport.Load(), s, s.DiscoveryTimeout)
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
		log.Warn("model discovery failed", zap.String("endpoint", s.Name), zap.String("reason", reason))
		// try again soon rather than after a whole discovery interval
		st.nextDiscovery.Store(now.Add(discovery.Jitter(min(s.DiscoveryInterval, 4*s.CheckInterval))).UnixNano())
		return
	}
	snap := newModelSnapshot(models, now)
	if prev != nil && prev.gen != 0 && reflect.DeepEqual(prev.models, models) {
		snap.gen = prev.gen // unchanged: cached catalogues stay valid
	}
	st.models.Store(snap)
	if prev == nil || len(prev.models) != len(models) {
		log.Info("models discovered", zap.String("endpoint", s.Name), zap.Int("count", len(models)))
	}
}

// ListModels GETs and parses an endpoint's model list through rt, filtered
// by its model filter, within timeout: what discovery does, and what
// `caddy olla-bench` asks before it benchmarks.
func ListModels(ctx context.Context, rt http.RoundTripper, s *Settings, timeout time.Duration) ([]profiles.Model, error) {
	res := discovery.Fetch{URL: s.ModelsURL, Header: s.Header, UserAgent: "olla-caddy-discovery", Accept: "application/json",
		Timeout: timeout, Limit: MaxModelListBytes, OnlyOK: true}.Do(ctx, rt)
	switch {
	case res.Unsent:
		return nil, res.Err
	case res.Err != nil:
		return nil, fmt.Errorf("model list: %s", discovery.TransportReason(res.Err, timeout))
	case res.Status != http.StatusOK:
		return nil, fmt.Errorf("model list answered %d", res.Status)
	case res.ReadErr != nil:
		return nil, fmt.Errorf("model list cut off: %s", discovery.TransportReason(res.ReadErr, timeout))
	case res.TooLarge:
		return nil, fmt.Errorf("model list is larger than %d bytes", MaxModelListBytes)
	}
	models, err := s.Profile.ParseModels(res.Body)
	if err != nil {
		return nil, err
	}
	return s.Filter.Apply(models), nil
}

// RefreshOnMiss fetches the endpoint's model list for a request that named
// a model nobody lists (discovery_refresh_on_miss): at most one fetch at a
// time and one per minInterval, whoever asks; the callers wait for the
// fetch in flight until ctx ends. A fetch runs to its own timeout even when
// the request that started it ends, as others may be waiting on it.
func (st *Endpoint) RefreshOnMiss(ctx context.Context, log *zap.Logger, now time.Time, minInterval, timeout time.Duration) {
	st.missRefresh.Refresh(ctx, now, minInterval, func() {
		fetchCtx, cancel := context.WithTimeout(st.probeCtx, timeout)
		defer cancel()
		st.discover(fetchCtx, log, st.settings.Load())
	})
}
