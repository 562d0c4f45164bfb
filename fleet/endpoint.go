package fleet

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/preload"
	"github.com/caddy-olla/olla/profiles"
)

// Endpoint is one endpoint's shared runtime state, pooled across configs
// and reloads (see Register). Everything in it is safe for concurrent use:
// old and new configs touch it side by side during a reload, and requests
// read it on every selection. Its fields are reached only through methods,
// as Caddy's reverseproxy reaches its pooled Host.
type Endpoint struct {
	settings  atomic.Pointer[Settings]
	transport atomic.Pointer[http.Transport]
	tmu       sync.Mutex // serialises transport swaps

	inFlight balancer.Counter
	health   atomic.Pointer[Health]
	models   atomic.Pointer[modelSnapshot]
	breaker  *discovery.Breaker

	// nextCheck is when the next probe is due (unix nanos). A prober claims
	// a probe by swapping it forward, so two apps running side by side
	// during a reload never probe the same endpoint twice.
	nextCheck     atomic.Int64
	nextDiscovery atomic.Int64
	parkedUntil   atomic.Int64 // Retry-After from a request, unix nanos
	// lastSuccess is when a proxied attempt last ended well (unix nanos):
	// evidence that the endpoint is serving, whatever its health route
	// says (see answering).
	lastSuccess atomic.Int64
	// drained is set through the admin API (admin.api.olla): the endpoint
	// takes no new requests until enabled, whatever its health.
	drained atomic.Bool
	// missRefresh gates model list fetches that requests for unknown
	// models trigger (discovery_refresh_on_miss).
	missRefresh discovery.Refresher

	requests  atomic.Int64 // proxied attempts
	failures  atomic.Int64 // attempts that failed (no answer or 5xx)
	bytesOut  atomic.Int64
	probes    atomic.Int64
	latencyNs atomic.Int64 // sum of header latencies, for the average

	sched schedState // load signals and TTFT, for the adaptive balancer (signals.go)
	cache cacheLog   // what the backend's prefix cache lost (cacheloss.go)

	// autoType is the last decision for a `type auto` endpoint (autotype.go)
	autoType atomic.Pointer[autoDecision]

	// warmer keeps the preload list loaded (preload.go); nextPreload is
	// when the loop next looks at it (unix nanos)
	warmer      preload.Warmer
	nextPreload atomic.Int64

	// probeCtx lives as long as the state; probes in flight end with it.
	probeCtx    context.Context
	probeCancel context.CancelFunc
}

// Health is the probes' verdict so far (discovery.Judge): a value, replaced
// whole by each probe.
type Health struct {
	Status    discovery.Status
	Reason    string
	CheckedAt time.Time
	Latency   time.Duration
	Failures  int // consecutive failed probes
	Misses    int // consecutive transient failures counted towards UnhealthyAfter
	// Transient: not routable only because of transient probe failures
	// (timeouts, resets, 5xx other than 503), so panic routing may try it
	Transient bool
	// Probed: at least one probe has finished, whatever its result
	Probed bool
}

func (hs *Health) verdict() discovery.Verdict {
	return discovery.Verdict{Status: hs.Status, Reason: hs.Reason, Failures: hs.Failures, Misses: hs.Misses, Transient: hs.Transient}
}

// modelSnapshot is the last good model list.
type modelSnapshot struct {
	// gen identifies the list's content: a new list gets a new gen, one
	// equal to the last keeps its gen, so catalogues built from it stay
	// valid (0: no list).
	gen       uint64
	models    []profiles.Model
	byName    map[string]int // exact name -> index
	byLower   map[string]int // lower-cased name -> index (first wins)
	updatedAt time.Time
	lastError string // why the latest refresh was not used, if it failed
	errorAt   time.Time
}

func newEndpoint(s *Settings) *Endpoint {
	st := &Endpoint{breaker: discovery.NewBreaker(s.Breaker)}
	st.probeCtx, st.probeCancel = context.WithCancel(context.Background())
	st.settings.Store(s)
	st.transport.Store(NewTransport(s))
	st.health.Store(&Health{Status: discovery.StatusUnknown, Reason: "not probed yet"})
	st.warmer.Configure(s.Preload)
	return st
}

// update takes a reloaded config's settings for a kept endpoint. Health,
// breaker and parking carry over, but a parking or a probe put off by a
// backend's Retry-After is never kept past the cap from now, whatever set it.
func (st *Endpoint) update(s *Settings) {
	s = st.keepAutoType(s) // a reload does not undo a probed type
	st.breaker.Configure(s.Breaker)
	st.warmer.Configure(s.Preload)
	limit := time.Now().Add(max(engines.MaxRetryAfter, s.CheckInterval+s.CheckTimeout)).UnixNano()
	for _, at := range []*atomic.Int64{&st.parkedUntil, &st.nextCheck} {
		for {
			v := at.Load()
			if v <= limit || at.CompareAndSwap(v, limit) {
				break
			}
		}
	}
	old := st.settings.Swap(s)
	if old != nil && old.TransportKey == s.TransportKey {
		return
	}
	st.tmu.Lock()
	prev := st.transport.Swap(NewTransport(s))
	st.tmu.Unlock()
	if prev != nil {
		prev.CloseIdleConnections()
	}
}

// Destruct runs when no config declares the endpoint any more: its probes
// stop and idle connections close. Streams in flight keep their connections.
func (st *Endpoint) Destruct() error {
	st.probeCancel()
	if t := st.transport.Load(); t != nil {
		t.CloseIdleConnections()
	}
	return nil
}

// --- engines.Target ---

func (st *Endpoint) Name() string                    { return st.settings.Load().Name }
func (st *Endpoint) Type() string                    { return st.settings.Load().Type }
func (st *Endpoint) BaseURL() *url.URL               { return st.settings.Load().URL }
func (st *Endpoint) Transport() http.RoundTripper    { return st.transport.Load() }
func (st *Endpoint) ForwardsClientCredentials() bool { return st.settings.Load().ForwardAuth }
func (st *Endpoint) ApplyHeaders(h http.Header) {
	for k, v := range st.settings.Load().Header {
		h[k] = v
	}
}

var _ engines.Target = (*Endpoint)(nil)

// Settings are the endpoint's current settings (the latest config's).
func (st *Endpoint) Settings() *Settings { return st.settings.Load() }

// Profile is the endpoint's backend profile.
func (st *Endpoint) Profile() *profiles.Profile { return st.settings.Load().Profile }

// Priority is the endpoint's configured priority (higher first).
func (st *Endpoint) Priority() int { return st.settings.Load().Priority }

// InFlight is how many attempts are in flight to the endpoint now.
func (st *Endpoint) InFlight() int64 { return st.inFlight.Load() }

// Health is the probes' latest verdict.
func (st *Endpoint) Health() Health { return *st.health.Load() }

// HealthStatus is the probes' latest status.
func (st *Endpoint) HealthStatus() discovery.Status { return st.health.Load().Status }

// Routable reports whether requests may go to the endpoint now.
func (st *Endpoint) Routable(now time.Time) bool {
	if st.drained.Load() || !st.health.Load().Status.Routable() {
		return false
	}
	if until := st.parkedUntil.Load(); until != 0 && now.UnixNano() < until {
		return false
	}
	return !st.breaker.Blocked()
}

// WhyNot says in a few words why the endpoint takes no requests now, for
// a client's 503 and the operator reading it; "" when it is routable.
func (st *Endpoint) WhyNot(now time.Time) string {
	if st.drained.Load() {
		return "drained through the admin API"
	}
	if hs := st.health.Load(); !hs.Status.Routable() {
		if hs.Reason == "" {
			return string(hs.Status)
		}
		return string(hs.Status) + ": " + hs.Reason
	}
	if until := st.parkedUntil.Load(); until != 0 && now.UnixNano() < until {
		return "asked for time (Retry-After) until " + time.Unix(0, until).UTC().Format(time.RFC3339)
	}
	if st.breaker.Blocked() {
		return "circuit breaker open after failed requests"
	}
	return ""
}

// PanicEligible reports whether the endpoint may be tried when no endpoint
// of a route is routable (panic routing, after Envoy's panic threshold).
// Only an endpoint that our own probes took out, and only for transient
// failures (timeouts, resets, 5xx other than 503), qualifies: a loaded
// backend's health route is often the first thing to miss its deadline,
// and its inference may still answer. Everything that is evidence the
// requests themselves would fail, or a wish to be left alone, keeps it out:
// an open or half-open breaker (requests did fail), a refused connection
// or an unknown host (nothing to talk to), 503 (the server says it is not
// ready), 401/403 (our credentials are wrong), 429 or a Retry-After
// parking (the backend asked for time), a drain (an operator asked), and
// an endpoint not probed yet (no evidence either way; it is probed within
// a check interval).
func (st *Endpoint) PanicEligible(now time.Time) bool {
	if st.drained.Load() || st.breaker.Blocked() {
		return false
	}
	if until := st.parkedUntil.Load(); until != 0 && now.UnixNano() < until {
		return false
	}
	hs := st.health.Load()
	return hs.Status.Routable() || hs.Transient
}

// answering reports whether a proxied attempt ended well within window
// before now: the endpoint is serving, so a slow probe is not counted.
func (st *Endpoint) answering(now time.Time, window time.Duration) bool {
	last := st.lastSuccess.Load()
	return last != 0 && now.UnixNano()-last <= int64(window)
}

// ParkedTill is when the endpoint takes requests again by a backend's
// Retry-After (a request's 429/503, or a probe's 429), or zero.
func (st *Endpoint) ParkedTill(now time.Time) time.Time {
	until := st.parkedUntil.Load()
	if st.health.Load().Status == discovery.StatusRateLimited {
		until = max(until, st.nextCheck.Load())
	}
	if until <= now.UnixNano() {
		return time.Time{}
	}
	return time.Unix(0, until)
}

// park keeps requests away for d, as a backend's Retry-After asked, capped
// as the parser caps it.
func (st *Endpoint) park(d time.Duration) {
	if d <= 0 {
		return
	}
	d = min(d, engines.MaxRetryAfter)
	// requests queued for it get their turn after it through the app's
	// queue kicker, which offers free room every queueKick
	st.parkedUntil.Store(time.Now().Add(d).UnixNano())
}

// LookupModel finds a model by exact name, then case-insensitively; a name
// without a tag also matches its ":latest" (Ollama lists "llama3.2:latest"
// and answers to "llama3.2", echoing the name it was asked for). It returns
// the name to send the endpoint.
func (st *Endpoint) LookupModel(name string) (string, bool) {
	ms := st.models.Load()
	if ms == nil {
		return "", false
	}
	if i, ok := ms.byName[name]; ok {
		return ms.models[i].Name, true
	}
	lower := strings.ToLower(name)
	if i, ok := ms.byLower[lower]; ok {
		return ms.models[i].Name, true
	}
	if !strings.Contains(name, ":") {
		if i, ok := ms.byLower[lower+":latest"]; ok {
			if name == ms.models[i].Name[:len(name)] {
				return name, true // Ollama resolves the bare name itself
			}
			return ms.models[i].Name, true
		}
	}
	return "", false
}

// ListsExactly reports whether the endpoint's model list holds name as
// written (what its listing shows).
func (st *Endpoint) ListsExactly(name string) bool {
	if ms := st.models.Load(); ms != nil {
		_, ok := ms.byName[name]
		return ok
	}
	return false
}

// Models is the endpoint's last good model list (shared: not to be
// modified) and its generation: a new list gets a new one, an equal list
// keeps it (0: no list yet).
func (st *Endpoint) Models() ([]profiles.Model, uint64) {
	if ms := st.models.Load(); ms != nil {
		return ms.models, ms.gen
	}
	return nil, 0
}

// ModelsUpdatedAt is when the model list was last fetched well (zero: never).
func (st *Endpoint) ModelsUpdatedAt() time.Time {
	if ms := st.models.Load(); ms != nil {
		return ms.updatedAt
	}
	return time.Time{}
}

// Discovered reports whether a model list was ever fetched (a failed fetch
// counts: it stores its error).
func (st *Endpoint) Discovered() bool { return st.models.Load() != nil }

// DiscoveryPending reports whether the endpoint's first discovery is still
// to come: no probe has finished yet, or the first good probe's model fetch
// is under way. An endpoint whose probes fail had its chance: a model
// nobody lists is then not found, not "retry shortly" forever.
func (st *Endpoint) DiscoveryPending() bool {
	if st.Discovered() {
		return false
	}
	hs := st.health.Load()
	return !hs.Probed || hs.Status.Routable()
}

// modelGenerations hands out modelSnapshot gens, unique in the process.
var modelGenerations atomic.Uint64

func newModelSnapshot(models []profiles.Model, now time.Time) *modelSnapshot {
	ms := &modelSnapshot{gen: modelGenerations.Add(1), models: models, byName: make(map[string]int, len(models)),
		byLower: make(map[string]int, len(models)), updatedAt: now}
	for i, m := range models {
		ms.byName[m.Name] = i
		lower := strings.ToLower(m.Name)
		if _, ok := ms.byLower[lower]; !ok {
			ms.byLower[lower] = i
		}
	}
	return ms
}
