package olla

import (
	"context"
	"net/http"
	"time"

	"github.com/caddy-olla/olla/admission"
	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/genai"
)

// candidates is a request's routable endpoints in config order; it is what
// the balancer chooses from.
type candidates []*fleet.Endpoint

func (c candidates) Len() int             { return len(c) }
func (c candidates) Priority(i int) int   { return c[i].Priority() }
func (c candidates) InFlight(i int) int64 { return c[i].InFlight() }
func (c candidates) Name(i int) string    { return c[i].Name() }
func (c candidates) Signals(i int, model string, out *balancer.Signals) {
	c[i].SchedSignals(model, out)
}

var _ balancer.SignalSource = candidates(nil)

// renamedCandidates are a picker's remaining candidates when the request's
// model has another name on some endpoints (an alias, another case): each
// endpoint's signals are read for the name it knows, so an alias's target
// is found warm where it is resident.
type renamedCandidates struct{ p *picker }

func (c *renamedCandidates) Len() int             { return len(c.p.remaining) }
func (c *renamedCandidates) Priority(i int) int   { return c.p.remaining.Priority(i) }
func (c *renamedCandidates) InFlight(i int) int64 { return c.p.remaining.InFlight(i) }
func (c *renamedCandidates) Name(i int) string    { return c.p.remaining.Name(i) }
func (c *renamedCandidates) Signals(i int, model string, out *balancer.Signals) {
	st := c.p.remaining[i]
	if name, ok := c.p.rewrite[st]; ok {
		model = name
	}
	st.SchedSignals(model, out)
}

func (c candidates) names() (out []string) {
	for _, st := range c {
		out = append(out, st.Name())
	}
	return out
}

// picker hands one request's candidates to an engine in the balancer's
// order, counts in-flight attempts, and feeds each attempt's outcome back to
// the endpoint's passive health.
type picker struct {
	remaining candidates
	balancer  *balancer.Pipeline
	strategy  string           // the balancer's name
	sched     balancer.Request // what the scheduler knows of the request
	sticky    *stickyRequest   // the request's session, if sticky_sessions is on
	prefix    *prefixRequest   // the request's hashed prompt, if prefix affinity places it
	// rewrite is the model's name per endpoint where it differs from the
	// request's (aliases); renamed reads signals and TTFT under it
	rewrite map[*fleet.Endpoint]string
	renamed renamedCandidates
	// reasonPrefix, when set (adaptive), starts X-Olla-Routing-Reason,
	// which then names the winner's top scores
	reasonPrefix string
	// TTFT of the current attempt, recorded once both the first byte and
	// a successful status are known (engines report them in either order)
	model        string
	current      *fleet.Endpoint
	attemptStart time.Time
	firstByteAt  time.Time
	okStatus     bool
	ttftDone     bool
	// what the current attempt's body showed of the backend (see
	// streamEnded): when its answer ended, and its time per output token
	backendEnd  time.Time
	perToken    time.Duration
	streaming   bool // the current attempt's first byte came (StreamStarted)
	attempts    int
	maxAttempts int
	rec         *requestRecord // the request's record, filled per attempt
	limits      *rateLimiter   // per-endpoint buckets, if any

	// cold: the current attempt is the first since a reading that found
	// its model not loaded (its TTFT teaches the endpoint's load time too)
	cold bool

	// admission: candidates found at max_concurrency (or busy) wait here
	// for a slot, through the site's queue policy if it has one
	full    []*fleet.Endpoint
	room    *admission.Queue // the process's waiting room (App.room)
	queue   *queuePolicy
	req     *http.Request
	header  http.Header // the client's response header, for X-Olla-Queue-Time
	metrics *ollaMetrics
	queued  time.Duration
	refusal *apiError // why Next gave up, when it was for want of room
	// panic: routing found no routable endpoint and offers ones taken out
	// only by transient probe failures (fleet.Endpoint.panicEligible)
	panic bool
	trace *genai.Trace // a span per attempt, with tracing on
}

// Next implements engines.Picker: the balancer's choice among the
// candidates with room, else a wait in the queue for whichever frees first.
func (p *picker) Next() (engines.Target, bool) {
	if p.attempts >= p.maxAttempts {
		return nil, false
	}
	st := p.nextWithRoom()
	if st == nil {
		ctx := context.Background()
		if p.req != nil {
			ctx = p.req.Context()
		}
		if st, p.refusal = p.wait(ctx); st == nil {
			return nil, false
		}
	}
	p.attempts++
	p.current, p.attemptStart, p.firstByteAt, p.okStatus, p.ttftDone = st, time.Now(), time.Time{}, false, false
	p.backendEnd, p.perToken = time.Time{}, 0
	p.cold = st.ColdStart(p.modelAt(st), p.attemptStart)
	st.ObserveAttempt(p.modelAt(st), p.attemptStart)
	if p.trace != nil {
		p.trace.Attempt(traceEndpoint(st), p.modelAt(st), p.attemptStart)
	}
	p.sticky.placed(st, p.header)
	if p.rec != nil {
		p.rec.attempts = p.attempts
		p.rec.failovers = p.attempts - 1
	}
	st.Attempted()
	return st, true
}

// nextWithRoom takes the balancer's choice among the remaining candidates
// and one of its slots; candidates without room move to p.full. While
// others wait in the queue a request with a queue joins them rather than
// take a slot they wait for.
func (p *picker) nextWithRoom() *fleet.Endpoint {
	queueing := p.queue != nil && p.room.Depth() > 0
	for len(p.remaining) > 0 {
		i := p.choose()
		if i < 0 {
			return nil
		}
		st := p.remaining[i]
		// keep config order for the rest: round-robin stays a cycle. In
		// place: the picker owns the slice routing made for the request
		p.remaining = append(p.remaining[:i], p.remaining[i+1:]...)
		if now := time.Now(); !st.Routable(now) && !(p.panic && st.PanicEligible(now)) {
			continue // it went down while this request waited its turn
		}
		if !p.limits.allowEndpoint(st) {
			continue // at its own rate limit: treated like a busy endpoint
		}
		if queueing || !st.TryAcquire() {
			p.full = append(p.full, st)
			continue
		}
		return st
	}
	return nil
}

// choose is the index of the next candidate to try: the balancer's choice,
// which under sticky sessions (p.sched.Key) is the session's endpoint or its
// rendezvous home, or with adaptive weighs that as one of its scores.
func (p *picker) choose() int {
	var c balancer.Candidates = &p.remaining
	if len(p.rewrite) > 0 {
		p.renamed.p = p
		c = &p.renamed
	}
	if p.prefix != nil {
		c = p.prefix.candidates(p.remaining, c)
	}
	i, why := p.balancer.Schedule(p.sched, c)
	if p.prefix != nil {
		p.prefix.released = why.Prefix.Released
	}
	if p.reasonPrefix != "" && p.header != nil && i >= 0 {
		p.header.Set("X-Olla-Routing-Reason", p.reasonPrefix+why.Public())
		if p.prefix != nil && p.rec != nil {
			p.rec.reason = p.reasonPrefix + why.String() // the log names the match
		}
	}
	return i
}

// FirstByte implements engines.StreamWatcher: the current attempt's
// backend is running it (fleet.Endpoint.StreamStarted), until Done.
func (p *picker) FirstByte(t engines.Target) {
	if st, ok := t.(*fleet.Endpoint); ok && st == p.current && !p.streaming {
		p.streaming = true
		st.StreamStarted()
	}
}

// ClientStall implements engines.StreamWatcher: the client holds the
// current attempt's copy back, and the backend may have finished the
// answer, so it no longer counts as running there (else a client that
// reads slowly could make a box look as if it had more slots than it has).
func (p *picker) ClientStall(t engines.Target) {
	if st, ok := t.(*fleet.Endpoint); ok && st == p.current && p.streaming {
		p.streaming = false
		st.StreamEnded()
	}
}

// streamEnded notes what the current attempt's body showed of the
// backend: when its first byte arrived (its TTFT), when its answer ended
// (the service time Done records) and, for a clean event stream that the
// client did not hold back, its time per output token (outputTokens: what
// the backend reported, 0 for none). Done records them once the attempt
// is known to have succeeded.
func (p *picker) streamEnded(t engines.Target, s engines.Stream, outputTokens int64) {
	st, ok := t.(*fleet.Endpoint)
	if !ok || st != p.current {
		return
	}
	p.backendEnd = s.BackendEnd()
	if d, ok := s.TimePerToken(outputTokens); ok {
		p.perToken = d
	}
	if !s.FirstByte.IsZero() {
		p.trace.FirstToken(s.FirstByte)
		p.firstByteAt = s.FirstByte
		p.recordTTFT()
	}
}

// recordTTFT feeds a successful attempt's time to first byte to the
// endpoint's TTFT average for the model (the adaptive balancer's speed).
func (p *picker) recordTTFT() {
	if p.ttftDone || !p.okStatus || p.firstByteAt.IsZero() || p.current == nil {
		return
	}
	p.ttftDone = true
	if p.cold { // before the sample joins the average it is measured against
		p.current.ObserveLoad(p.modelAt(p.current), p.firstByteAt.Sub(p.attemptStart))
	}
	p.current.ObserveTTFTFrom(p.modelAt(p.current), p.attemptStart, p.firstByteAt.Sub(p.attemptStart))
}

// modelAt is the request's model as endpoint st names it.
func (p *picker) modelAt(st *fleet.Endpoint) string {
	if name, ok := p.rewrite[st]; ok {
		return name
	}
	return p.model
}

// Remaining implements engines.Picker.
func (p *picker) Remaining() bool {
	return p.attempts < p.maxAttempts && (len(p.remaining) > 0 || p.queue != nil && len(p.full) > 0)
}

// CanRequeue implements engines.Requeuer: with a queue, a busy answer from
// the last candidate sends the request back in line for it (Done puts the
// endpoint among those it waits for), within the attempt budget.
func (p *picker) CanRequeue() bool {
	return p.queue != nil && p.attempts < p.maxAttempts
}

// Done implements engines.Picker: the attempt's in-flight count ends (and
// its slot goes to the next in the queue), and the outcome feeds the
// endpoint's passive health (fleet.Endpoint.Finish). The engine says whose
// doing an ended attempt was: a client that went away (hung up, failed a
// write, cancelled) or our own response transform is neither the backend's
// failure nor its success.
func (p *picker) Done(t engines.Target, out engines.Outcome) {
	st := t.(*fleet.Endpoint)
	p.room.Release(st)
	if p.trace != nil {
		p.trace.AttemptDone(traceOutcome(out), time.Now())
	}
	if rec := p.rec; rec != nil {
		rec.endpoint, rec.backendType = st.Name(), st.Type()
		rec.status, rec.headerWait = out.Status, out.HeaderLatency
		switch {
		case out.Status != 0:
		case out.ClientGone():
			rec.status = statusClientClosed
		default:
			rec.status = http.StatusBadGateway
		}
	}
	now := time.Now()
	if st == p.current && out.Err == nil && out.Status >= 200 && out.Status < 300 {
		p.okStatus = true
		p.recordTTFT()
		if !p.cold {
			// to the backend's last byte, not the client's: a client that
			// reads slowly does not make a round of the queue look costlier
			end := p.backendEnd
			if end.IsZero() {
				end = now
			}
			st.ObserveService(p.modelAt(st), end.Sub(p.attemptStart))
		}
		if p.perToken > 0 {
			st.ObserveDecode(p.modelAt(st), p.perToken)
		}
		if p.prefix != nil {
			p.prefix.served(st, p.modelAt(st))
		}
	}
	if st == p.current && !p.ttftDone {
		st.EndAttempt(p.modelAt(st), p.attemptStart) // no sample is coming
	}
	if st == p.current && p.streaming {
		p.streaming = false
		st.StreamEnded()
	}
	st.Finish(out, now)
	if p.queue != nil && (out.Busy || out.Status == http.StatusTooManyRequests || out.Status == http.StatusServiceUnavailable) {
		// busy, not broken: the request goes back in line, and may come
		// back here once the endpoint's Retry-After is over
		p.full = append(p.full, st)
	}
}

// statusClientClosed is recorded for a request whose client went away
// before any response: nginx's 499, as Caddy logs it.
const statusClientClosed = 499

var (
	_ engines.Picker        = (*picker)(nil)
	_ engines.StreamWatcher = (*picker)(nil)
)
