package olla

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/profiles"
)

// endpoints holds every endpoint's runtime state, keyed by identity (name,
// URL, type), reference-counted by the configs that declare it. A reload
// takes a second reference before the old config lets go of the first, so
// health, breaker, models, counters and connection pools carry over, and
// the state of an endpoint no config declares any more is destructed.
var endpoints = caddy.NewUsagePool()

// endpointState is one endpoint's shared runtime state. Everything in it is
// safe for concurrent use: old and new configs touch it side by side during
// a reload, and requests read it on every selection.
type endpointState struct {
	settings  atomic.Pointer[endpointSettings]
	transport atomic.Pointer[http.Transport]
	tmu       sync.Mutex // serialises transport swaps

	inFlight balancer.Counter
	health   atomic.Pointer[healthSnapshot]
	models   atomic.Pointer[modelSnapshot]
	breaker  *discovery.Breaker

	// nextCheck is when the next probe is due (unix nanos). A prober claims
	// a probe by swapping it forward, so two apps running side by side
	// during a reload never probe the same endpoint twice.
	nextCheck     atomic.Int64
	nextDiscovery atomic.Int64
	parkedUntil   atomic.Int64 // Retry-After from a request, unix nanos
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

	// probeCtx lives as long as the state; probes in flight end with it.
	probeCtx    context.Context
	probeCancel context.CancelFunc
}

// healthSnapshot is the last probe's verdict.
type healthSnapshot struct {
	status    discovery.Status
	reason    string
	checkedAt time.Time
	latency   time.Duration
	failures  int // consecutive failed probes
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

func newEndpointState(s *endpointSettings) *endpointState {
	st := &endpointState{breaker: discovery.NewBreaker(s.breaker)}
	st.probeCtx, st.probeCancel = context.WithCancel(context.Background())
	st.settings.Store(s)
	st.transport.Store(newTransport(s))
	st.health.Store(&healthSnapshot{status: discovery.StatusUnknown, reason: "not probed yet"})
	return st
}

// update takes a reloaded config's settings for a kept endpoint.
func (st *endpointState) update(s *endpointSettings) {
	st.breaker.Configure(s.breaker)
	old := st.settings.Swap(s)
	if old != nil && old.transportKey == s.transportKey {
		return
	}
	st.tmu.Lock()
	prev := st.transport.Swap(newTransport(s))
	st.tmu.Unlock()
	if prev != nil {
		prev.CloseIdleConnections()
	}
}

// Destruct runs when no config declares the endpoint any more: its probes
// stop and idle connections close. Streams in flight keep their connections.
func (st *endpointState) Destruct() error {
	st.probeCancel()
	if t := st.transport.Load(); t != nil {
		t.CloseIdleConnections()
	}
	return nil
}

// newTransport is the endpoint's tuned connection pool: no connection cap
// unless configured, many idle connections kept for bursts of streams, no
// response-header timeout (model loads take minutes), and compression left
// to the client and backend so bytes pass through untouched.
func newTransport(s *endpointSettings) *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   512,
		MaxConnsPerHost:       s.maxConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     s.url.Scheme == "https",
		TLSClientConfig:       s.tlsConfig,
		WriteBufferSize:       16 << 10,
		ReadBufferSize:        16 << 10,
	}
	return t
}

// --- engines.Target ---

func (st *endpointState) Name() string                    { return st.settings.Load().name }
func (st *endpointState) Type() string                    { return st.settings.Load().typ }
func (st *endpointState) BaseURL() *url.URL               { return st.settings.Load().url }
func (st *endpointState) Transport() http.RoundTripper    { return st.transport.Load() }
func (st *endpointState) ForwardsClientCredentials() bool { return st.settings.Load().forwardAuth }
func (st *endpointState) ApplyHeaders(h http.Header) {
	for k, v := range st.settings.Load().header {
		h[k] = v
	}
}

// routable reports whether requests may go to the endpoint now.
func (st *endpointState) routable(now time.Time) bool {
	if st.drained.Load() || !st.health.Load().status.Routable() {
		return false
	}
	if until := st.parkedUntil.Load(); until != 0 && now.UnixNano() < until {
		return false
	}
	return !st.breaker.Blocked()
}

// park keeps requests away for d, as a backend's Retry-After asked.
func (st *endpointState) park(d time.Duration) {
	if d <= 0 {
		return
	}
	if d > 5*time.Minute {
		d = 5 * time.Minute
	}
	// requests queued for it get their turn after it through the app's
	// queue kicker, which offers free room every queueKick
	st.parkedUntil.Store(time.Now().Add(d).UnixNano())
}

// lookupModel finds a model by exact name, then case-insensitively; a name
// without a tag also matches its ":latest" (Ollama lists "llama3.2:latest"
// and answers to "llama3.2", echoing the name it was asked for). It returns
// the name to send the endpoint.
func (st *endpointState) lookupModel(name string) (string, bool) {
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

// discovered reports whether a model list was ever obtained.
func (st *endpointState) discovered() bool { return st.models.Load() != nil }

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
