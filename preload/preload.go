// Package preload keeps chosen models loaded on backends that load and evict
// models on demand (Ollama, llama.cpp in router mode, LM Studio, oMLX,
// Docker Model Runner, Lemonade), so the first request for them does not pay
// for a cold load.
//
// A Warmer belongs to one endpoint and lives as long as its pooled state.
// Its owner calls Step from the endpoint's loop; each Step reads what the
// endpoint says now (health, listed models, the resident set from its load
// surface) through the small Target seam, and sends at most one load
// request. Models are warmed at start, after the endpoint recovers, and
// after the backend evicts them. Loads are bounded: one at a time per
// endpoint, a Gate across endpoints, a timeout per load, a few retries with
// backoff, and re-warming after evictions backs off too.
//
// A Warmer never fights the backend's own memory management: when the
// backend refuses a load for want of memory, or a load evicts another model
// this endpoint preloads (it cannot hold them all), the Warmer stops
// preloading on that endpoint, logs why and shows it in its Status, until
// the endpoint recovers from an outage or the preload list changes.
package preload

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-olla/olla/profiles"
)

// Defaults for Options.
const (
	DefaultTimeout     = 5 * time.Minute
	DefaultRetries     = 3
	DefaultConcurrency = 2
	DefaultKeepAlive   = -1 // Ollama: keep the model until memory is needed
)

// Bounds on what a backend can make a Warmer do.
const (
	// maxAnswer caps the part of a load answer that is read (for messages).
	maxAnswer = 64 << 10
	// maxRetryAfter caps a load answer's Retry-After.
	maxRetryAfter = 5 * time.Minute
	// maxBackoff caps the wait between failed loads of one model.
	maxBackoff = 2 * time.Minute
	// maxRewarmDelay caps the wait before warming a model evicted again.
	maxRewarmDelay = 10 * time.Minute
	// maxDetail caps the backend text quoted in a status or log line.
	maxDetail = 200
	// MaxModels bounds a preload list (per endpoint, site-wide models
	// included), so a config cannot make one endpoint hold unbounded state.
	MaxModels = 64
)

// Options are the settings every endpoint of a site shares.
type Options struct {
	// Timeout bounds one load request (a cold load of a large model takes
	// minutes). Default DefaultTimeout.
	Timeout time.Duration
	// Retries is how many more times a load that failed transiently (no
	// answer, 5xx, busy) is tried, with backoff, before the model is given
	// up until the endpoint recovers. Default DefaultRetries.
	Retries int
	// KeepAlive is Ollama's keep_alive for the load: negative keeps the
	// model loaded until memory is needed, 0 leaves the server's default.
	KeepAlive time.Duration
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	return o
}

// Want is one model to keep warm on an endpoint.
type Want struct {
	Model string
	// Sitewide marks a model from the site-wide list: an endpoint that does
	// not list it skips it quietly, where a model named in the endpoint's
	// own list gets a clear message.
	Sitewide bool
}

// Target is the endpoint as a Warmer sees it.
type Target interface {
	// Routable says the endpoint is in rotation.
	Routable() bool
	// Listed looks model up in the endpoint's discovered models and returns
	// the name the backend lists it by ("" when it does not list it); known
	// is false until discovery has succeeded.
	Listed(model string) (name string, known bool)
	// Signals returns the endpoint's latest load signals if they are fresh,
	// else nil.
	Signals() *profiles.Signals
	// Profile is the endpoint's type (the decided one for `type auto`).
	Profile() *profiles.Profile
	// Send sends one load request to the endpoint (its base URL, headers,
	// auth and transport) and returns the status, headers and at most limit
	// bytes of the body.
	Send(ctx context.Context, req profiles.LoadRequest, limit int64) (status int, header http.Header, body []byte, err error)
}

// Gate bounds the loads in flight across endpoints. Its limit may change
// while loads wait (a reload sets it); the zero value admits
// DefaultConcurrency.
type Gate struct {
	mu      sync.Mutex
	limit   int
	held    int
	waiters []chan struct{}
}

// SetLimit changes how many loads may run at once (n < 1: the default).
func (g *Gate) SetLimit(n int) {
	if n < 1 {
		n = DefaultConcurrency
	}
	g.mu.Lock()
	g.limit = n
	g.wakeLocked()
	g.mu.Unlock()
}

func (g *Gate) limitLocked() int {
	if g.limit < 1 {
		return DefaultConcurrency
	}
	return g.limit
}

// acquire waits for a place; false when ctx ended first.
func (g *Gate) acquire(ctx context.Context) bool {
	g.mu.Lock()
	if g.held < g.limitLocked() && len(g.waiters) == 0 {
		g.held++
		g.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	g.waiters = append(g.waiters, ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		for i, w := range g.waiters {
			if w == ch {
				g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
				return false
			}
		}
		// granted while we gave up: hand the place on
		g.held--
		g.wakeLocked()
		return false
	}
}

func (g *Gate) release() {
	g.mu.Lock()
	g.held--
	g.wakeLocked()
	g.mu.Unlock()
}

// wakeLocked grants places to waiters, in arrival order.
func (g *Gate) wakeLocked() {
	for len(g.waiters) > 0 && g.held < g.limitLocked() {
		ch := g.waiters[0]
		g.waiters = g.waiters[1:]
		g.held++
		close(ch)
	}
}

// Model states, as Status shows them.
const (
	StatePending     = "pending"     // not resident; will be loaded
	StateLoading     = "loading"     // a load request is in flight
	StateLoaded      = "loaded"      // the load answered; waiting for the residency report to show it
	StateResident    = "resident"    // the backend reports it loaded
	StateWaiting     = "waiting"     // not resident; next try after a backoff
	StateMissing     = "missing"     // the backend does not have it
	StateFailed      = "failed"      // given up until the endpoint recovers
	StateStopped     = "stopped"     // preloading stopped on this endpoint
	StateSkipped     = "skipped"     // site-wide model this endpoint does not list
	StateUnsupported = "unsupported" // the backend has no load route
	StateServed      = "served"      // the backend serves what it lists without loading
	StateUnknown     = "unknown"     // nothing known yet (endpoint down, no residency report)
)

// Endpoint-level states.
const (
	EndpointWarm        = "warm"        // every wanted model is resident
	EndpointPartial     = "partial"     // every other is, but some cannot be (missing, given up): Reason names them
	EndpointWarming     = "warming"     // some are not, yet
	EndpointWaiting     = "waiting"     // nothing can be decided yet (down, no residency report)
	EndpointStopped     = "stopped"     // stopped after a refusal or an eviction (Reason says which)
	EndpointUnsupported = "unsupported" // nothing to do on this type
)

type modelState struct {
	want      Want
	name      string // the backend's name for it (as listed), what loads and residency use
	state     string
	detail    string
	attempts  int // failed loads in a row
	evictions int // evictions seen this episode
	nextTry   time.Time
	loads     int64
	lastLoad  time.Time
	logged    string // the state last logged, so a state is logged once
}

// pendingCheck is the residency read a Warmer waits for after a load: the
// loaded model must show, and every preloaded model that was resident
// before must still be.
type pendingCheck struct {
	model  *modelState
	after  time.Time
	before []*modelState
}

// Warmer keeps one endpoint's preload list warm. It is safe for concurrent
// use; Step runs one at a time (a second caller returns at once).
type Warmer struct {
	running atomic.Bool

	mu       sync.Mutex
	wants    []*modelState
	up       bool
	episode  int
	stopped  string // why preloading stopped on this endpoint ("" while it runs)
	note     string // why nothing can be decided now
	check    *pendingCheck
	loads    int64
	failures int64
	clock    func() time.Time // tests set it; nil is time.Now
}

func (w *Warmer) now() time.Time {
	if w.clock != nil {
		return w.clock()
	}
	return time.Now()
}

// Configure sets the models to keep warm. A list that differs from the
// current one starts afresh (a stop is lifted); an equal one keeps state.
func (w *Warmer) Configure(wants []Want) {
	if len(wants) > MaxModels {
		wants = wants[:MaxModels] // Validate refuses longer lists
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	same := len(wants) == len(w.wants)
	for i := 0; same && i < len(wants); i++ {
		same = wants[i] == w.wants[i].want
	}
	if same {
		return
	}
	old := make(map[Want]*modelState, len(w.wants))
	for _, m := range w.wants {
		old[m.want] = m
	}
	w.wants = w.wants[:0:0]
	for _, want := range wants {
		m := old[want]
		if m == nil {
			m = &modelState{want: want, state: StateUnknown}
		}
		w.wants = append(w.wants, m)
	}
	w.stopped, w.check = "", nil
}

// Wanted says whether the Warmer has anything to keep warm.
func (w *Warmer) Wanted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.wants) > 0
}

// Step looks at the endpoint once and, if a wanted model is not resident
// and may be loaded now, loads it (waiting for the gate, bounded by
// opts.Timeout). It returns at once when another Step is running.
func (w *Warmer) Step(ctx context.Context, t Target, opts Options, gate *Gate, log *zap.Logger) {
	if !w.running.CompareAndSwap(false, true) {
		return
	}
	defer w.running.Store(false)
	opts = opts.withDefaults()
	if log == nil {
		log = zap.NewNop()
	}
	m, before, p := w.plan(w.now(), t, log)
	if m == nil {
		return
	}
	req, _ := p.LoadRequest(m.name, opts.KeepAlive) // plan checked CanLoad
	if !gate.acquire(ctx) {
		w.settle(m, StatePending, "")
		return
	}
	lctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	status, header, body, err := t.Send(lctx, req, maxAnswer)
	cancel()
	gate.release()
	if ctx.Err() != nil {
		w.settle(m, StatePending, "") // stopping: the next loop carries on
		return
	}
	w.outcome(w.now(), m, before, opts, status, header, body, err, log)
}

func (w *Warmer) settle(m *modelState, state, detail string) {
	w.mu.Lock()
	m.state, m.detail = state, detail
	w.mu.Unlock()
}

// plan updates the states from what the endpoint says now and picks the
// model to load, if any, with the preloaded models resident before.
func (w *Warmer) plan(now time.Time, t Target, log *zap.Logger) (*modelState, []*modelState, *profiles.Profile) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.wants) == 0 {
		return nil, nil, nil
	}
	if !t.Routable() {
		w.up, w.note = false, "the endpoint is not routable"
		return nil, nil, nil
	}
	if !w.up {
		// start, or recovery: a new episode, everything may be tried again
		w.up = true
		w.episode++
		if w.stopped != "" {
			log.Info("preloading resumes after the endpoint recovered", zap.String("was", w.stopped))
		}
		w.stopped, w.check = "", nil
		for _, m := range w.wants {
			m.attempts, m.evictions, m.nextTry = 0, 0, time.Time{}
			if m.state != StateResident {
				m.state, m.detail = StateUnknown, ""
			}
		}
	}
	p := t.Profile()
	if p == nil || !p.CanLoad() {
		name := "this backend type"
		if p != nil {
			name = p.DisplayName
		}
		w.note = name + " has no route that loads a model; nothing is preloaded (types that have one: " + profiles.LoadTypes() + ")"
		w.setAll(StateUnsupported, "")
		w.logOnce(log, nil, w.note)
		return nil, nil, nil
	}
	sig := t.Signals()
	if sig == nil || (!sig.LoadedKnown && !sig.ServesListed) {
		w.note = "waiting for the backend to report which models are loaded (its load surface)"
		return nil, nil, nil
	}
	if sig.ServesListed {
		w.note = p.DisplayName + " serves every model it lists without loading it (llama.cpp without router mode); nothing to preload"
		w.setAll(StateServed, "")
		return nil, nil, nil
	}
	w.note = ""

	if c := w.check; c != nil {
		if !sig.At.After(c.after) {
			return nil, nil, nil // wait for a report taken after the load
		}
		w.check = nil
		if r, _ := sig.Resident(c.model.name); !r && w.stopped == "" {
			w.fail(now, c.model, "the load answered, but the backend does not report the model loaded", 0, log)
		}
		for _, other := range c.before {
			if r, _ := sig.Resident(other.name); !r && w.stopped == "" {
				w.stop(fmt.Sprintf("loading %q evicted %q, which is preloaded too: the backend cannot hold them all, so preloading stopped here to leave its memory limits alone",
					c.model.want.Model, other.want.Model), log)
			}
		}
	}

	// an empty resident set is a restart, not memory pressure (an eviction
	// leaves the model that took the room)
	emptied := len(sig.LoadedModels()) == 0
	var pick *modelState
	for _, m := range w.wants {
		model := m.want.Model
		m.name = model
		listed, known := t.Listed(model)
		if known && listed != "" {
			m.name = listed
		}
		if known && listed == "" {
			if m.want.Sitewide {
				m.state, m.detail = StateSkipped, "this endpoint does not list it"
				continue
			}
			m.state = StateMissing
			m.detail = fmt.Sprintf("the backend does not list %q; preload takes the backend's own model names", model)
			w.logOnce(log, m, m.detail)
			continue
		}
		if r, _ := sig.Resident(m.name); r {
			if m.state != StateResident {
				m.state, m.detail, m.attempts = StateResident, "", 0
				w.logOnce(log, m, "preloaded model is resident")
			}
			continue
		}
		if m.state == StateResident {
			if emptied {
				// nothing at all is loaded: the backend restarted (or
				// everything was unloaded), memory is free; warm it at once
				m.state, m.detail = StatePending, "the backend holds no model now (restarted?); warming it again"
				w.logOnce(log, m, "the backend holds no model any more; warming the preload list again")
			} else {
				// it was resident and another model took its place: evicted
				m.evictions++
				m.nextTry = now.Add(rewarmDelay(m.evictions))
				m.state, m.detail = StateWaiting, fmt.Sprintf("evicted by the backend (%d time(s) since the endpoint came up); warming it again", m.evictions)
				w.logOnce(log, m, "preloaded model was evicted; warming it again")
			}
		}
		switch {
		case w.stopped != "":
			m.state, m.detail = StateStopped, ""
		case m.state == StateMissing || m.state == StateFailed:
			// given up until the endpoint recovers or the list changes
		case now.Before(m.nextTry):
			if m.state != StateWaiting {
				m.state = StateWaiting
			}
		case pick == nil:
			pick = m
		default:
			m.state, m.detail = StatePending, ""
		}
	}
	if pick == nil {
		return nil, nil, nil
	}
	var before []*modelState
	for _, m := range w.wants {
		if m != pick && m.state == StateResident {
			before = append(before, m)
		}
	}
	pick.state, pick.detail = StateLoading, ""
	return pick, before, p
}

// outcome records how a load ended.
func (w *Warmer) outcome(now time.Time, m *modelState, before []*modelState, opts Options,
	status int, header http.Header, body []byte, err error, log *zap.Logger) {
	w.mu.Lock()
	defer w.mu.Unlock()
	model := m.want.Model
	switch {
	case err != nil:
		w.retry(now, m, opts, "load request failed: "+err.Error(), 0, log)
	case status >= 200 && status < 300:
		w.loads++
		m.loads++
		m.lastLoad = now
		m.state, m.detail = StateLoaded, "loaded; waiting for the backend's residency report"
		w.check = &pendingCheck{model: m, after: now, before: before}
		log.Info("preloaded a model", zap.String("model", model), zap.Int("status", status))
	case status == http.StatusNotFound:
		m.state = StateMissing
		m.detail = fmt.Sprintf("the backend has no model %q (404: %s)", model, quote(body))
		w.failures++
		w.logOnce(log, m, m.detail)
	case refusesForMemory(status, body):
		w.failures++
		m.state, m.detail = StateStopped, fmt.Sprintf("%d: %s", status, quote(body))
		w.stop(fmt.Sprintf("the backend refused to load %q (%d: %s), so preloading stopped here to leave its memory limits alone",
			model, status, quote(body)), log)
	case status == http.StatusRequestTimeout || status == http.StatusConflict || status == http.StatusTooManyRequests || status >= 500:
		w.retry(now, m, opts, fmt.Sprintf("load answered %d: %s", status, quote(body)), retryAfter(header), log)
	default:
		// another 4xx: the request itself is wrong for this backend
		// (authentication, an older server without the route); trying again
		// would get the same answer
		w.failures++
		m.state = StateFailed
		m.detail = fmt.Sprintf("load refused with %d: %s", status, quote(body))
		w.logOnce(log, m, m.detail)
	}
}

// retry counts a transient failure and schedules the next try, or gives
// the model up when its retries are spent.
func (w *Warmer) retry(now time.Time, m *modelState, opts Options, why string, after time.Duration, log *zap.Logger) {
	w.failures++
	m.attempts++
	if m.attempts > opts.Retries {
		m.state = StateFailed
		m.detail = fmt.Sprintf("gave up after %d attempt(s) until the endpoint recovers: %s", m.attempts, why)
		w.logOnce(log, m, m.detail)
		return
	}
	m.nextTry = now.Add(max(backoff(m.attempts), after))
	m.state, m.detail = StateWaiting, fmt.Sprintf("attempt %d failed, next at %s: %s", m.attempts, m.nextTry.UTC().Format(time.RFC3339), why)
}

// fail is retry for a failure seen in a residency report.
func (w *Warmer) fail(now time.Time, m *modelState, why string, after time.Duration, log *zap.Logger) {
	w.retry(now, m, Options{Retries: DefaultRetries}, why, after, log)
}

func (w *Warmer) stop(why string, log *zap.Logger) {
	if w.stopped != "" {
		return
	}
	w.stopped = why
	for _, m := range w.wants {
		if m.state != StateResident && m.state != StateMissing && m.state != StateSkipped {
			m.state = StateStopped
		}
	}
	log.Warn("preloading stopped on this endpoint", zap.String("reason", why))
}

func (w *Warmer) setAll(state, detail string) {
	for _, m := range w.wants {
		m.state, m.detail = state, detail
	}
}

// logOnce logs a model's (or, with m nil, the endpoint's) state when it
// changes, so a steady state does not fill the log.
func (w *Warmer) logOnce(log *zap.Logger, m *modelState, msg string) {
	if m == nil {
		return // endpoint-level notes show in Status; they repeat every step
	}
	key := m.state + "\x00" + m.detail
	if m.logged == key {
		return
	}
	m.logged = key
	fields := []zap.Field{zap.String("model", m.want.Model), zap.String("state", m.state)}
	switch m.state {
	case StateMissing, StateFailed:
		log.Warn("preload: "+msg, fields...)
	default:
		log.Info("preload: "+msg, fields...)
	}
}

// ModelStatus is one model's preload state.
type ModelStatus struct {
	Model string `json:"model"`
	// ListedAs is the backend's own name for it, when that differs
	// (Ollama's "phi-4-mini:latest" for "phi-4-mini")
	ListedAs string     `json:"listed_as,omitempty"`
	State    string     `json:"state"`
	Detail   string     `json:"detail,omitempty"`
	Sitewide bool       `json:"sitewide,omitempty"`
	Loads    int64      `json:"loads"`
	LastLoad *time.Time `json:"last_load,omitempty"`
	// Evictions counts the evictions seen since the endpoint came up.
	Evictions int `json:"evictions,omitempty"`
}

// Status is an endpoint's preload state, for /internal/status/endpoints
// and the dashboard.
type Status struct {
	State    string        `json:"state"`
	Reason   string        `json:"reason,omitempty"`
	Loads    int64         `json:"loads"`
	Failures int64         `json:"failures"`
	Models   []ModelStatus `json:"models"`
}

// Status reports the Warmer's state; nil when it has nothing to keep warm.
func (w *Warmer) Status() *Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.wants) == 0 {
		return nil
	}
	out := &Status{Loads: w.loads, Failures: w.failures, Models: make([]ModelStatus, 0, len(w.wants))}
	warm, unsupported := true, true
	var cannot []string
	for _, m := range w.wants {
		ms := ModelStatus{Model: m.want.Model, State: m.state, Detail: m.detail, Sitewide: m.want.Sitewide,
			Loads: m.loads, Evictions: m.evictions}
		if m.name != "" && m.name != m.want.Model {
			ms.ListedAs = m.name
		}
		if !m.lastLoad.IsZero() {
			t := m.lastLoad
			ms.LastLoad = &t
		}
		out.Models = append(out.Models, ms)
		switch m.state {
		case StateResident, StateSkipped, StateServed:
		case StateMissing, StateFailed:
			cannot = append(cannot, m.want.Model+" ("+m.state+")")
		default:
			warm = false
		}
		if m.state != StateUnsupported && m.state != StateServed {
			unsupported = false
		}
	}
	switch {
	case w.stopped != "":
		out.State, out.Reason = EndpointStopped, w.stopped
	case unsupported:
		out.State, out.Reason = EndpointUnsupported, w.note
	case w.note != "":
		out.State, out.Reason = EndpointWaiting, w.note
	case warm && len(cannot) > 0:
		out.State, out.Reason = EndpointPartial, "cannot be loaded: "+strings.Join(cannot, ", ")
	case warm:
		out.State = EndpointWarm
	default:
		out.State = EndpointWarming
	}
	return out
}

// refusesForMemory says whether a load answer refuses for want of memory:
// 507 Insufficient Storage (oMLX), 413, or an error that says so (Ollama's
// 500 "model requires more system memory", llama.cpp's out of memory).
func refusesForMemory(status int, body []byte) bool {
	if status == http.StatusInsufficientStorage || status == http.StatusRequestEntityTooLarge {
		return true
	}
	if status < 400 {
		return false
	}
	lower := bytes.ToLower(body)
	for _, s := range []string{"memory", "insufficient", "too large", "vram", "oom"} {
		if bytes.Contains(lower, []byte(s)) {
			return true
		}
	}
	return false
}

// backoff is the wait after the n-th failed load in a row: 2s, 4s, 8s, ...
func backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := 2 * time.Second << min(n-1, 16)
	return min(d, maxBackoff)
}

// rewarmDelay is the wait before warming a model evicted for the n-th
// time: at once the first time (a restart, a one-off eviction), then 30s,
// 1m, 2m, ... up to maxRewarmDelay, so traffic that needs the memory is
// not fought.
func rewarmDelay(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := 30 * time.Second << min(n-2, 16)
	return min(d, maxRewarmDelay)
}

// retryAfter reads a capped Retry-After in seconds.
func retryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, maxRetryAfter)
}

// quote is a backend's answer cut to a loggable size, on one line.
func quote(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > maxDetail {
		s = s[:maxDetail] + "…"
	}
	if s == "" {
		return "(empty answer)"
	}
	return s
}
