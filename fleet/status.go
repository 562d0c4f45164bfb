package fleet

import (
	"time"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/preload"
	"github.com/caddy-olla/olla/profiles"
)

// Status is one endpoint's state read at one moment: what the status
// routes, the metrics, the dashboard and the admin API show. It is a plain
// value; reading it again gives a newer one.
type Status struct {
	Settings *Settings // the settings it runs with (shared: not to be modified)
	Health   Health
	Routable bool
	Drained  bool

	Breaker        discovery.BreakerState
	BreakerBlocked bool  // the breaker keeps traffic away now
	BreakerOpens   int64 // since start-up; a reload keeps it

	Requests     int64         // proxied attempts
	Failures     int64         // attempts that failed (no answer or 5xx)
	InFlight     int64         // attempts in flight now
	HeaderWait   time.Duration // sum of the attempts' header latencies
	BytesOut     int64
	Probes       int64
	NextCheck    time.Time // zero: none scheduled yet
	ParkedUntil  time.Time // a backend's Retry-After; zero: not parked
	Models       []profiles.Model
	ModelsAt     time.Time // the last good list's fetch; zero: none
	ModelError   string    // why the latest fetch was not used, if it failed
	Discovered   bool      // a model list fetch has finished, good or not
	Signals      SignalStatus
	LastSignals  *profiles.Signals // the last good read, nil when the last poll failed
	SignalsFresh bool              // LastSignals is recent enough to schedule on
	TypeAuto     *AutoStatus       // how a `type auto` endpoint was typed; nil for the others
	Preload      *preload.Status   // the preload list and how warm it is; nil without one
}

// Status reads the endpoint's state now.
func (st *Endpoint) Status(now time.Time) Status {
	s := st.settings.Load()
	out := Status{Settings: s, Health: *st.health.Load(), Routable: st.Routable(now), Drained: st.drained.Load(),
		BreakerBlocked: st.breaker.Blocked(), BreakerOpens: st.breaker.Opens(),
		Requests: st.requests.Load(), Failures: st.failures.Load(), InFlight: st.inFlight.Load(),
		HeaderWait: time.Duration(st.latencyNs.Load()), BytesOut: st.bytesOut.Load(), Probes: st.probes.Load(),
		ParkedUntil: st.ParkedTill(now), Signals: st.signalStatus(now), LastSignals: st.sched.signals.Load()}
	out.Breaker, _ = st.breaker.State()
	out.TypeAuto = st.autoStatus(s)
	out.Preload = st.warmer.Status()
	out.SignalsFresh = out.LastSignals != nil && st.FreshSignals(now) != nil
	if next := st.nextCheck.Load(); next > 0 {
		out.NextCheck = time.Unix(0, next)
	}
	if ms := st.models.Load(); ms != nil {
		out.Discovered = true
		out.Models, out.ModelsAt, out.ModelError = ms.models, ms.updatedAt, ms.lastError
	}
	return out
}
