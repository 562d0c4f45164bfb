package fleet

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/profiles"
)

// Load-signal polling: each endpoint's load surface (profiles.LoadSurface)
// is read on its own interval, one request at a time, and the parsed
// signals are kept on the endpoint's pooled state for the adaptive balancer
// and the status pages. A surface that is missing, slow, huge or unreadable
// leaves the signals absent: the endpoint then scores neutral, and is never
// unroutable for that alone.

// schedState is what the scheduler knows about an endpoint beyond health:
// the backend's last signals and our TTFT per model.
type schedState struct {
	signals atomic.Pointer[profiles.Signals] // nil: absent (never read, or the last poll failed)
	// problem is why the last poll gave no signals ("" after a good one,
	// nil before the first poll); it is logged when it changes
	problem  atomic.Pointer[signalProblem]
	nextLoad atomic.Int64 // unix nanos; claimed like nextCheck
	polls    atomic.Int64
	failures atomic.Int64
	// inFlightAtPoll is our in-flight count when the last good poll was
	// sent, so the backend's own count can be split into ours and others'
	inFlightAtPoll atomic.Int64
	// seenRunning is the most requests the backend has reported running at
	// once: the slot count learned for servers that do not state one
	seenRunning atomic.Int64
	// seenFull: the backend has reported requests waiting while running
	// its most, so seenRunning is its slot count. One poll is enough: two
	// in a row (tried, so that vLLM holding a request until its next step
	// would not fix the count early) left the benefit of the doubt on for
	// long enough that bursts stacked on one endpoint (r1-70 p99 0.9-1.2 s
	// against 0.64 s). A count fixed too low still rises with Running.
	seenFull atomic.Bool
	// streaming is how many of our attempts here are past their first
	// body byte and not yet done: requests the backend is running, as
	// far as we can see; seenStreaming the most at once, a slot count
	// learned from our own traffic for servers that state nothing (see
	// StreamStarted)
	streaming, seenStreaming atomic.Int64
	// ttft holds one moving average per model the endpoint lists (and when
	// our last request for the model started, see observeAttempt), created
	// on the first sample: a map replaced whole on each new model (rare)
	// and read without a lock on every selection
	ttft   atomic.Pointer[map[string]*modelTTFT]
	ttftMu sync.Mutex // serialises new entries
	// decode is the backend's stated time per output token (see
	// observeDecode)
	decode decodeRate
}

// decodeRate turns a backend's running totals of decode time and output
// tokens (profiles.Signals.DecodeSeconds, DecodeTokens) into its time per
// output token: their growth between polls, once at least minDecodeTokens
// were decoded, half-way blended with the last rate.
type decodeRate struct {
	mu           sync.Mutex // polls of one endpoint may overlap a reload's
	secs, tokens float64    // the totals at the last rate (or the first poll)
	marked       bool
	tpot, at     atomic.Int64 // nanoseconds per token, and Unix nanoseconds when set (0: none)
	// states: the backend has stated decode totals; our own timing of its
	// streams is then not used, even before its first rate
	states atomic.Bool
}

// minDecodeTokens is how many tokens a rate is taken over: fewer say more
// about one request's moment than about the box.
const minDecodeTokens = 16

// maxTPOT bounds a stated time per output token (a backend's word is capped).
const maxTPOT = 10 * time.Second

func (d *decodeRate) observe(sig *profiles.Signals) {
	if sig == nil || !sig.DecodeKnown {
		return
	}
	d.states.Store(true)
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.marked || sig.DecodeTokens < d.tokens || sig.DecodeSeconds < d.secs {
		// the first totals, or the backend restarted: a new baseline
		d.secs, d.tokens, d.marked = sig.DecodeSeconds, sig.DecodeTokens, true
		return
	}
	n := sig.DecodeTokens - d.tokens
	if n < minDecodeTokens {
		return
	}
	per := time.Duration(min((sig.DecodeSeconds-d.secs)/n*float64(time.Second), float64(maxTPOT)))
	d.secs, d.tokens = sig.DecodeSeconds, sig.DecodeTokens
	if old := time.Duration(d.tpot.Load()); old > 0 && time.Since(time.Unix(0, d.at.Load())) < balancer.TPOTMaxAge {
		per = (old + per) / 2
	}
	d.tpot.Store(int64(max(per, 1)))
	d.at.Store(sig.At.UnixNano())
}

// fill sets out's TPOT and when it was taken (unset: none).
func (d *decodeRate) fill(out *balancer.Signals) {
	if ns := d.tpot.Load(); ns > 0 {
		out.TPOT, out.TPOTAt = time.Duration(ns), time.Unix(0, d.at.Load())
	}
}

// signalProblem is a failed poll: kind is stable (it decides whether to
// log), detail says more on the status page.
type signalProblem struct {
	kind   string
	detail string
	at     time.Time
}

// pollOnce reads the endpoint's load surfaces in order until one answers
// 200 with a body its parser accepts.
func (st *Endpoint) pollOnce(ctx context.Context, log *zap.Logger, s *Settings) {
	var sig *profiles.Signals
	var prob *signalProblem
	ours := st.inFlight.Load()
	var also []LoadSurface
	from := "" // the surface that answered
	for _, ls := range s.LoadSurfaces {
		if ls.Surface.Also {
			also = append(also, ls)
			continue
		}
		if sig != nil || (prob != nil && prob.kind == "unreachable") {
			continue
		}
		got, p := fetchSignals(ctx, st, s, ls)
		if ctx.Err() != nil {
			return
		}
		if p == nil {
			sig, prob, from = got, nil, ls.Surface.Path
			continue
		}
		prob = p // "unreachable": the next surface is on the same server
	}
	sig, prob = readResidency(ctx, st, s, also, from, sig, prob)
	if ctx.Err() != nil {
		return
	}
	st.sched.polls.Add(1)
	if prob != nil {
		st.sched.failures.Add(1)
		prob.at = time.Now()
	} else {
		prob = &signalProblem{}
	}
	if sig != nil {
		st.sched.inFlightAtPoll.Store(ours)
		if sig.RunningKnown {
			raiseTo(&st.sched.seenRunning, min(sig.Running, maxLearnedSlots))
			if sig.WaitingKnown && sig.Waiting > 0 && sig.Running > 0 && sig.Running >= st.sched.seenRunning.Load() {
				st.sched.seenFull.Store(true)
			}
		}
	}
	st.sched.decode.observe(sig)
	st.sched.signals.Store(sig)
	st.noteSignals(sig)
	prev := st.sched.problem.Swap(prob)
	switch {
	case prev != nil && prev.kind == prob.kind, prev == nil && prob.kind == "":
	case prob.kind == "":
		log.Info("load signals readable again", zap.String("endpoint", s.Name))
	default:
		log.Warn("load signals unavailable; the endpoint is scored neutral", zap.String("endpoint", s.Name),
			zap.String("problem", prob.kind), zap.String("detail", prob.detail))
	}
}

// readResidency reads the surfaces read on every poll
// (profiles.LoadSurface.Also) but the one that answered (from), and merges
// their loaded sets and decode totals into sig; one that answers alone
// stands for the poll.
func readResidency(ctx context.Context, st *Endpoint, s *Settings, also []LoadSurface, from string, sig *profiles.Signals, prob *signalProblem) (*profiles.Signals, *signalProblem) {
	if prob != nil && prob.kind == "unreachable" {
		return sig, prob
	}
	for _, ls := range also {
		if ls.Surface.Path == from {
			continue
		}
		got, p := fetchSignals(ctx, st, s, ls)
		if p != nil || !(got.LoadedKnown || got.DecodeKnown) {
			continue
		}
		if sig == nil {
			sig, prob = got, nil
			continue
		}
		merged := sig.WithResidency(*got).WithDecode(*got)
		sig = &merged
	}
	return sig, prob
}

// maxLearnedSlots bounds the slot count learned from a backend's reports
// (a backend's word is capped).
const maxLearnedSlots = 4096

// raiseTo sets v to n if n is higher.
func raiseTo(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}

// fetchSignals GETs one load surface and parses it.
func fetchSignals(ctx context.Context, st *Endpoint, s *Settings, ls LoadSurface) (*profiles.Signals, *signalProblem) {
	problem := func(kind, detail string) *signalProblem {
		return &signalProblem{kind: ls.Surface.Path + ": " + kind, detail: detail}
	}
	res := discovery.Fetch{URL: ls.URL, Header: s.Header, UserAgent: "olla-caddy-signals", Timeout: s.LoadTimeout,
		Limit: maxLoadBody, OnlyOK: true}.Do(ctx, st.transport.Load())
	switch {
	case res.Unsent:
		return nil, problem("bad request", res.Err.Error())
	case res.Err != nil:
		reason := discovery.TransportReason(res.Err, s.LoadTimeout)
		if res.TimedOut {
			return nil, problem("timeout", reason)
		}
		return nil, &signalProblem{kind: "unreachable", detail: reason}
	case res.Status != http.StatusOK:
		return nil, problem(fmt.Sprintf("answered %d", res.Status), "")
	case res.ReadErr != nil:
		if res.TimedOut {
			return nil, problem("timeout", "body not read in "+s.LoadTimeout.String())
		}
		return nil, problem("cut off", discovery.TransportReason(res.ReadErr, s.LoadTimeout))
	case res.TooLarge:
		return nil, problem("too large", fmt.Sprintf("more than %d bytes", maxLoadBody))
	}
	sig, err := s.Profile.ParseSignals(ls.Surface, res.Body)
	if err != nil {
		detail := err.Error()
		if len(detail) > 200 {
			detail = detail[:200] + "..."
		}
		return nil, problem("unreadable", detail)
	}
	return &sig, nil
}

// FreshSignals returns the endpoint's signals if they are recent enough to
// use (at most signalMaxAge intervals old), else nil.
func (st *Endpoint) FreshSignals(now time.Time) *profiles.Signals {
	sig := st.sched.signals.Load()
	if sig == nil {
		return nil
	}
	s := st.settings.Load()
	if s.LoadInterval == 0 || now.Sub(sig.At) > signalMaxAge*s.LoadInterval {
		return nil
	}
	return sig
}

// concurrencyCap is the endpoint's cap on attempts in flight (0: none): its
// max_concurrency, else, under the adaptive balancer, the slot count its
// backend reports (llama.cpp /slots) while that is fresh. Admission
// (TryEnter), the picker and the scheduler all read it here.
func (st *Endpoint) ConcurrencyCap() int64 {
	return st.capWith(st.settings.Load(), st.sched.signals.Load(), time.Time{})
}

// capWith is concurrencyCap over settings and signals already loaded; now
// may be zero (the clock is then read only if the slot count matters).
func (st *Endpoint) capWith(s *Settings, sig *profiles.Signals, now time.Time) int64 {
	if s.MaxConcurrency > 0 {
		return int64(s.MaxConcurrency)
	}
	if !s.SlotCap || sig == nil || !sig.SlotsKnown || sig.SlotsTotal <= 0 || s.LoadInterval == 0 {
		return 0
	}
	if now.IsZero() {
		now = time.Now()
	}
	if now.Sub(sig.At) > signalMaxAge*s.LoadInterval {
		return 0 // stale: no cap rather than an old one
	}
	return sig.SlotsTotal
}

// maxTTFTModels bounds the TTFT table of an endpoint with a short list.
const maxTTFTModels = 64

// ObserveTTFT records a time to first token d for model, which the
// endpoint must list: the table holds only listed models (plus a few
// spellings), so clients naming random models cannot grow it. The
// request is taken to have started d ago; see ObserveTTFTFrom.
func (st *Endpoint) ObserveTTFT(model string, d time.Duration) {
	st.ObserveTTFTFrom(model, time.Now().Add(-d), d)
}

// ObserveTTFTFrom is ObserveTTFT for a request that started at started
// (the sample may be recorded long after its first byte, at the answer's
// end): whether it waited for our load of the model is judged on when it
// started.
func (st *Endpoint) ObserveTTFTFrom(model string, started time.Time, d time.Duration) {
	if d <= 0 {
		return
	}
	if e := st.modelEntry(model); e != nil {
		// the speed average takes every sample (an Ollama's first answer
		// after a load may be its only one until the next poll); the warm
		// average and the floor only a warm request's, not one that
		// waited for our load
		now := time.Now()
		e.avg.ObserveAt(d, now)
		if !e.rode(started.UnixNano()) {
			e.warm.ObserveAt(d, now)
			e.lowerFloor(d)
		}
	}
}

// modelEntry is model's entry in the TTFT table, created for a model the
// endpoint lists; nil for one it does not (or a full table).
func (st *Endpoint) modelEntry(model string) *modelTTFT {
	if model == "" {
		return nil
	}
	if e := st.ttftEntry(model); e != nil {
		return e
	}
	name, ok := st.LookupModel(model)
	if !ok {
		return nil
	}
	st.sched.ttftMu.Lock()
	defer st.sched.ttftMu.Unlock()
	var old map[string]*modelTTFT
	if m := st.sched.ttft.Load(); m != nil {
		old = *m
	}
	e, ok := old[name]
	if !ok {
		limit := maxTTFTModels
		if ms := st.models.Load(); ms != nil {
			limit = max(limit, 2*len(ms.models))
		}
		if len(old) >= limit {
			return nil
		}
		next := make(map[string]*modelTTFT, len(old)+1)
		for k, v := range old {
			next[k] = v
		}
		e = new(modelTTFT)
		next[name] = e
		st.sched.ttft.Store(&next)
	}
	return e
}

// modelTTFT is one model's TTFT average on one endpoint, and when our last
// request for the model started there (Unix nanoseconds): a request that
// started after the last sample is measuring it.
type modelTTFT struct {
	avg     balancer.EWMA
	attempt atomic.Int64
	// warm is the average over warm requests only (not a cold start, nor
	// one that waited for our load), and floor the fastest of them lately
	// (nanoseconds; it creeps up towards later samples, so a box that got
	// slower is not judged on its best day for ever): how far the one
	// stands above the other is the queueing warm requests meet
	warm  balancer.EWMA
	floor atomic.Int64
	// load and service are learned in nanoseconds (0: not yet): the time
	// a cold start took beyond a warm one's TTFT (the model's load), and a
	// warm request's whole time here (what one round of its queue costs);
	// see ObserveLoad and ObserveService
	load, service atomic.Int64
	// coldReading is the residency reading (its time, Unix nanoseconds)
	// the last cold start was counted on
	coldReading atomic.Int64
	// loadStart is when our cold start of the model here began (Unix
	// nanoseconds; 0: none under way), and loadEnd when the last one's
	// first byte came: requests that started between the two waited for
	// that load, so their times say nothing about a warm request
	loadStart, loadEnd atomic.Int64
	// perToken is our own measure of the model's time per output token
	// here, from the streams we copied (see ObserveDecode)
	perToken balancer.EWMA
}

// blendInto moves v half-way to d (d itself when v has none).
func blendInto(v *atomic.Int64, d time.Duration) {
	if old := v.Load(); old > 0 {
		d = (time.Duration(old) + d) / 2
	}
	v.Store(int64(max(d, 1)))
}

// floorCreep is how far the TTFT floor moves towards a slower sample: a
// 32nd, so a few queued requests barely lift it and a box that got slower
// for good is followed within some dozens of requests.
const floorCreep = 32

// lowerFloor records a warm TTFT sample d in the floor.
func (e *modelTTFT) lowerFloor(d time.Duration) {
	old := time.Duration(e.floor.Load())
	if old == 0 || d < old {
		e.floor.Store(int64(max(d, 1)))
		return
	}
	e.floor.Store(int64(old + (d-old)/floorCreep))
}

// queueing is how far the warm average stands above the floor while it
// is recent (0: no queue, or no warm sample for EWMAMaxAge).
func (e *modelTTFT) queueing() time.Duration {
	warm, at := e.warm.Sample()
	q := warm - time.Duration(e.floor.Load())
	if q <= 0 || time.Since(at) > balancer.EWMAMaxAge {
		return 0
	}
	return q
}

// rode reports whether a request that started at started (Unix
// nanoseconds) waited for one of our loads of the model here: it started
// while one was under way, or before the last one's first byte.
func (e *modelTTFT) rode(started int64) bool {
	if ls := e.loadStart.Load(); ls != 0 && started >= ls {
		return true
	}
	end := e.loadEnd.Load()
	return end != 0 && started < end && started >= end-maxLoadTime.Nanoseconds()
}

// ObserveLoad records the time to first token of a cold start (ColdStart
// at its start): beyond the warm TTFT floor, that is how long this
// endpoint takes to load the model; before any warm sample, all of it
// (a warm TTFT is small beside a load, and a load over-estimated only
// makes the balancer wait a little longer before the next one). The
// floor, not the average: the average also holds queueing, which would
// make a load look cheaper than it is. Capped at maxLoadTime, so a backend
// whose first load hung for an hour is not avoided for ever. Call it
// before the sample joins the average (ObserveTTFT).
func (st *Endpoint) ObserveLoad(model string, ttft time.Duration) {
	e := st.modelEntry(model)
	if e == nil || ttft <= 0 {
		return
	}
	if ls := e.loadStart.Swap(0); ls != 0 {
		e.loadEnd.Store(ls + int64(ttft))
	}
	warm := time.Duration(e.floor.Load())
	if ttft > warm {
		blendInto(&e.load, min(ttft-warm, maxLoadTime))
	}
}

// ObserveService records how long a request for model with the model
// loaded took here, from its start to the end of the backend's answer
// (engines.Stream.BackendEnd, not the client's read of it): one round of
// the endpoint's queue. A request that waited for one of our loads is not
// a warm one and is left out; its start is taken as d before now, late by
// the time since the backend's end (a rider that started just before the
// load answered may count: it only makes waiting look dearer).
func (st *Endpoint) ObserveService(model string, d time.Duration) {
	if e := st.modelEntry(model); e != nil && d > 0 && !e.rode(time.Now().Add(-d).UnixNano()) {
		blendInto(&e.service, min(d, maxLoadTime))
	}
}

// StreamStarted notes that one of our attempts here got its first body
// byte: the backend is running it. The most attempts seen running at once
// is a lower bound on the backend's slots that needs no signal (a server
// streams an answer only while it runs it), so the load score of a server
// that states neither slots nor running counts (LM Studio, Ollama) does not
// take one request in flight for a full box. Call StreamEnded once the
// attempt is done.
func (st *Endpoint) StreamStarted() {
	raiseTo(&st.sched.seenStreaming, min(st.sched.streaming.Add(1), maxLearnedSlots))
}

// seenSlots is the most requests the backend was seen running at once: by
// its own running counts where it states them, else by our streams. Our
// count runs a little past the backend's (an attempt ends when its copy
// does), so where the backend's own word exists it alone counts.
func (st *Endpoint) seenSlots() int64 {
	if n := st.sched.seenRunning.Load(); n > 0 {
		return n
	}
	return st.sched.seenStreaming.Load()
}

// StreamEnded ends what StreamStarted noted.
func (st *Endpoint) StreamEnded() { st.sched.streaming.Add(-1) }

// ObserveDecode records our own measure of the model's time per output
// token here, taken from a stream we copied (engines.Stream.TimePerToken:
// its first to its last byte over its tokens, from a clean stream the
// client did not hold back), for a backend that states no decode rate.
// It is a balancer.EWMA: a faster sample moves it half-way, a slower one an
// eighth. A stream decodes slower for reasons that are not the box (a
// batch, our own busy moment) and faster only when the box is, and a box
// judged slow gets no traffic to correct a figure one bad sample set. The
// balancer reads it as the box's TPOT until it is older than
// balancer.TPOTMaxAge (then one request measures it again).
func (st *Endpoint) ObserveDecode(model string, d time.Duration) {
	if e := st.modelEntry(model); e != nil && d > 0 {
		e.perToken.Observe(min(d, maxTPOT))
	}
}

// maxLoadTime bounds a learned load or service time: a backend whose load
// took longer (or hung until a timeout cut it) is taken to load in this
// long, which still keeps it cold while a warm queue is any shorter.
const maxLoadTime = 10 * time.Minute

// ColdStart reports whether a request for model starting at now is a cold
// start: the endpoint's fresh residency says the model is not loaded, none
// of our loads of it is under way here or has answered since that reading
// (the balancer then counts it warm too), and no other request has started
// since that reading (the first pays the load; the next reading tells
// about the rest). It marks the load as under way until its first byte
// (ObserveLoad) or the attempt's end without one (EndAttempt). It reads
// only the residency, not the whole scheduling signals.
func (st *Endpoint) ColdStart(model string, now time.Time) bool {
	sig := st.sched.signals.Load()
	if sig == nil || model == "" {
		return false
	}
	if s := st.settings.Load(); s.LoadInterval == 0 || now.Sub(sig.At) > signalMaxAge*s.LoadInterval {
		return false // stale: it may have been loaded since
	}
	if resident, known := sig.Resident(model); !known || resident {
		return false
	}
	e := st.modelEntry(model)
	if e == nil || e.loadStart.Load() != 0 || e.loadEnd.Load() > sig.At.UnixNano() {
		return false // our load is under way, or answered since the reading
	}
	at := sig.At.UnixNano()
	old := e.coldReading.Load()
	if old == at || !e.coldReading.CompareAndSwap(old, at) {
		return false
	}
	e.loadStart.Store(now.UnixNano())
	return true
}

// observeAttempt notes that a request for model starts here now. Only a
// model with an average is noted: without one there is nothing to forget.
func (st *Endpoint) ObserveAttempt(model string, now time.Time) {
	if e := st.ttftEntry(model); e != nil {
		e.attempt.Store(now.UnixNano())
	}
}

// endAttempt withdraws the note of an attempt that started at started and
// brought no sample (it failed, or its client hung up before the answer was
// whole), so the next request measures rather than waiting out EWMAMaxAge:
// a client that keeps hanging up cannot keep an old average standing. A
// cold start that ends so is no longer a load under way (nothing is
// learned from it: a client's hang-up is not a load time).
func (st *Endpoint) EndAttempt(model string, started time.Time) {
	if e := st.ttftEntry(model); e != nil {
		e.attempt.CompareAndSwap(started.UnixNano(), 0)
		e.loadStart.CompareAndSwap(started.UnixNano(), 0)
	}
}

// ttftEntry is model's entry in the TTFT table, or nil when it has none.
func (st *Endpoint) ttftEntry(model string) *modelTTFT {
	name, ok := st.LookupModel(model)
	if !ok {
		return nil
	}
	if m := st.sched.ttft.Load(); m != nil {
		return (*m)[name]
	}
	return nil
}

// ttftFor fills in the endpoint's moving TTFT for model, when its last
// sample came and when our last request for it started (zero: none); the
// balancer judges their ages. It returns when our last load of the model
// here answered (Unix nanoseconds; 0: none).
func (st *Endpoint) ttftFor(model string, out *balancer.Signals) (loaded int64) {
	if m := st.sched.ttft.Load(); m != nil {
		if e, ok := (*m)[model]; ok {
			out.TTFT, out.TTFTAt = e.avg.Sample()
			out.LoadTime, out.Service = time.Duration(e.load.Load()), time.Duration(e.service.Load())
			out.Queueing = e.queueing()
			if ls := e.loadStart.Load(); ls != 0 {
				out.LoadingSince = time.Unix(0, ls)
			}
			if !st.sched.decode.states.Load() { // a backend that states its rate is judged on that alone
				out.TPOT, out.TPOTAt = e.perToken.Sample()
			}
			if at := e.attempt.Load(); at != 0 {
				out.MeasuringSince = time.Unix(0, at)
			}
			return e.loadEnd.Load()
		}
	}
	return 0
}

// schedSignals fills in the endpoint as the balancer sees it for model
// (out starts zeroed: every value unknown). It does not allocate for a
// lower-case model name.
func (st *Endpoint) SchedSignals(model string, out *balancer.Signals) {
	s, sig := st.settings.Load(), st.sched.signals.Load()
	out.MaxConcurrency = st.capWith(s, sig, time.Time{})
	loaded := st.ttftFor(model, out)
	st.sched.decode.fill(out)
	out.SeenSlots, out.SeenFull = st.seenSlots(), st.sched.seenFull.Load()
	if sig == nil {
		return // never read, or the last poll failed: every value unknown
	}
	out.At, out.MaxAge = sig.At, signalMaxAge*s.LoadInterval
	if model != "" {
		if resident, known := sig.Resident(model); known {
			out.Warm = balancer.Cold
			// resident, or loaded by us since the reading said not
			if resident || loaded > sig.At.UnixNano() {
				out.Warm = balancer.Warm
			}
		}
	}
	out.QueueKnown = sig.WaitingKnown || sig.RunningKnown
	out.InFlightAtRead = st.sched.inFlightAtPoll.Load()
	out.Waiting, out.Running = sig.Waiting, sig.Running
	out.SlotsKnown, out.Slots = sig.SlotsKnown, sig.SlotsTotal
	out.KVKnown, out.KVUsage = sig.KVKnown, sig.KVUsage
}

// SignalStatus is an endpoint's load signals as the status routes show them.
type SignalStatus struct {
	Polling string   `json:"polling"` // "off", or the interval
	Surface string   `json:"surface,omitempty"`
	Age     string   `json:"age,omitempty"` // since the last good read
	Fresh   bool     `json:"fresh"`
	Warm    []string `json:"warm_models,omitempty"`
	Serves  bool     `json:"serves_listed,omitempty"` // every listed model counts as warm
	Waiting *int64   `json:"waiting,omitempty"`
	Running *int64   `json:"running,omitempty"`
	Slots   *int64   `json:"slots,omitempty"`
	KVUsage *float64 `json:"kv_usage,omitempty"`
	Cap     int64    `json:"concurrency_cap,omitempty"`
	// SeenRunning is the most requests the backend has reported running
	// at once, or we saw it stream at once: the slot count the load score
	// uses when none is stated
	SeenRunning int64 `json:"seen_running,omitempty"`
	// SeenFull: it has queued at that count, which is then its slot count
	SeenFull bool `json:"seen_full,omitempty"`
	// TPOTMs is the backend's stated time per output token over its last
	// polls, in milliseconds (absent: not stated)
	TPOTMs float64 `json:"tpot_ms,omitempty"`
	// Learned is what our own requests taught per model, in model order:
	// bounded like the table it comes from (see modelEntry)
	Learned  []LearnedTimes `json:"learned,omitempty"`
	Problem  string         `json:"problem,omitempty"`
	Polls    int64          `json:"polls"`
	Failures int64          `json:"failed_polls"`
}

// LearnedTimes are one model's figures learned from our requests to an
// endpoint, in milliseconds (absent: not learned yet).
type LearnedTimes struct {
	Model string `json:"model"`
	// TTFTMs is the moving average time to first token
	TTFTMs float64 `json:"ttft_ms,omitempty"`
	// LoadMs is how long a cold start took beyond a warm one: the model's
	// load time here, which decides when loading it beats queueing
	LoadMs float64 `json:"load_ms,omitempty"`
	// ServiceMs is a warm request's time to the backend's last byte: one
	// round of the queue
	ServiceMs float64 `json:"service_ms,omitempty"`
	// TPOTMs is our own timing of its streams per output token, which
	// the balancer reads where the backend states no decode rate
	TPOTMs float64 `json:"tpot_ms,omitempty"`
}

// learnedTimes lists the endpoint's learned figures by model name.
func (st *Endpoint) learnedTimes() []LearnedTimes {
	m := st.sched.ttft.Load()
	if m == nil {
		return nil
	}
	ms := func(ns int64) float64 { return float64(time.Duration(ns).Round(time.Millisecond)) / 1e6 }
	out := make([]LearnedTimes, 0, len(*m))
	for name, e := range *m {
		ttft, _ := e.avg.Sample()
		tpot, _ := e.perToken.Sample()
		out = append(out, LearnedTimes{Model: name, TTFTMs: ms(int64(ttft)), LoadMs: ms(e.load.Load()), ServiceMs: ms(e.service.Load()),
			TPOTMs: float64(tpot) / 1e6})
	}
	slices.SortFunc(out, func(a, b LearnedTimes) int { return strings.Compare(a.Model, b.Model) })
	return out
}

func (st *Endpoint) signalStatus(now time.Time) SignalStatus {
	s := st.settings.Load()
	out := SignalStatus{Polling: "off", Polls: st.sched.polls.Load(), Failures: st.sched.failures.Load(), Cap: st.ConcurrencyCap(),
		SeenRunning: st.seenSlots(), SeenFull: st.sched.seenFull.Load(),
		TPOTMs: float64(st.sched.decode.tpot.Load()) / 1e6, Learned: st.learnedTimes()}
	if s.LoadInterval == 0 {
		return out
	}
	out.Polling = s.LoadInterval.String()
	paths := make([]string, len(s.LoadSurfaces))
	for i, ls := range s.LoadSurfaces {
		paths[i] = ls.Surface.Path
	}
	out.Surface = strings.Join(paths, ", ")
	if p := st.sched.problem.Load(); p != nil && p.kind != "" {
		out.Problem = p.kind
		if p.detail != "" {
			out.Problem += " (" + p.detail + ")"
		}
	}
	sig := st.sched.signals.Load()
	if sig == nil {
		return out
	}
	out.Age = now.Sub(sig.At).Round(time.Millisecond).String()
	out.Fresh = st.FreshSignals(now) != nil
	out.Warm, out.Serves = sig.LoadedModels(), sig.ServesListed
	if sig.WaitingKnown {
		out.Waiting = &sig.Waiting
	}
	if sig.RunningKnown {
		out.Running = &sig.Running
	}
	if sig.SlotsKnown {
		out.Slots = &sig.SlotsTotal
	}
	if sig.KVKnown {
		out.KVUsage = &sig.KVUsage
	}
	return out
}
