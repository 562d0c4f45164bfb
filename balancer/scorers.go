package balancer

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// Scorer names of the built-in scorers, as weights are set in a config.
const (
	ScoreWarm     = "warm"     // the requested model is resident
	ScoreLoad     = "load"     // backend queue and occupancy, our in-flight count
	ScoreTTFT     = "ttft"     // observed time to first token, relative to the fastest
	ScoreAffinity = "affinity" // the candidate the session or prefix key hashes to
	ScorePriority = "priority" // the highest priority tier present
	ScoreInFlight = "inflight" // fewest of our attempts in flight
)

// registry maps scorer names to constructors. Built-ins are registered here;
// [RegisterScorer] adds more without touching any caller.
var registry = struct {
	sync.RWMutex
	m map[string]func() Scorer
}{m: map[string]func() Scorer{
	ScoreWarm:     func() Scorer { return warmScorer{} },
	ScoreLoad:     func() Scorer { return loadScorer{} },
	ScoreTTFT:     func() Scorer { return ttftScorer{} },
	ScoreAffinity: func() Scorer { return affinityScorer{} },
	ScorePriority: func() Scorer { return priorityScorer{} },
	ScoreInFlight: func() Scorer { return inFlightScorer{} },
}}

// RegisterScorer makes a scorer available by name to [Config.Weights]. It is
// meant for package init; registering a name twice is an error.
func RegisterScorer(name string, newScorer func() Scorer) error {
	if name == "" || newScorer == nil {
		return fmt.Errorf("balancer: scorer needs a name and a constructor")
	}
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[name]; dup {
		return fmt.Errorf("balancer: scorer %q is already registered", name)
	}
	registry.m[name] = newScorer
	return nil
}

// ScorerNames returns the registered scorer names, sorted.
func ScorerNames() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.m))
	for name := range registry.m {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func newScorer(name string) (Scorer, bool) {
	registry.RLock()
	defer registry.RUnlock()
	f, ok := registry.m[name]
	if !ok {
		return nil, false
	}
	return f(), true
}

// usesSignals is implemented by stages that read backend signals or names,
// so that pipelines without them skip reading them.
type usesSignals interface{ usesSignals() }

// usesAffinity is implemented by scorers that read Set.Affinity, so that the
// rendezvous pass runs only for pipelines that need it.
type usesAffinity interface{ usesAffinity() }

// warmScorer prefers a candidate with the model resident: 1 warm, 0 cold,
// 0.5 unknown or stale. Loading a model takes seconds to minutes, more than
// any queue a warm endpoint is likely to have.
type warmScorer struct{}

func (warmScorer) Name() string { return ScoreWarm }
func (warmScorer) usesSignals() {}
func (warmScorer) Score(_ *Request, c *Candidate, _ *Set) float64 {
	if !c.Fresh() {
		return 0.5
	}
	switch c.Warm {
	case Warm:
		return 1
	case Cold:
		return 0
	}
	return 0.5
}

// loadScorer prefers the candidate where the request would wait least,
// from its utilisation u (see [Candidate.Demand] and [Candidate.Capacity]).
// While a slot is free the request only joins the batch, which costs a
// little: 1 idle, about 0.8 when it takes the last slot. Past that it
// queues, which costs a whole service time per round, so the score falls
// steeply (0.31 with one request ahead of it on a one-slot server). A KV
// cache more than half full takes up to half of that again, since a full
// cache means preemption and evicted prefixes.
type loadScorer struct{}

func (loadScorer) Name() string { return ScoreLoad }
func (loadScorer) usesSignals() {}
func (loadScorer) Score(_ *Request, c *Candidate, _ *Set) float64 {
	score := 1 / (1 + loadCost(c))
	if c.KVKnown && c.Fresh() {
		score *= 1 - max(clampScore(c.KVUsage)-0.5, 0)
	}
	return score
}

// loadCost is what placing the request on c costs in service times: a
// share of the batch while a slot is free, a whole round per round of queue
// ahead of it past that.
func loadCost(c *Candidate) float64 {
	cost := batchCost * min(c.Utilisation(), 1)
	if placed := c.placed(); placed > 1 {
		cost = batchCost + queueCost*(placed-1)
	}
	return max(cost, 0)
}

// The load score's shape: the cost of sharing a batch at full occupancy,
// and of queueing per round of the backend's slots ahead of the request.
const (
	batchCost = 0.25
	queueCost = 2
)

// ttftTolerance is how much slower than the fastest candidate an endpoint's
// TTFT may be and still count as fast. Within it the differences are mostly
// prompt lengths, cache hits and queueing that the load score sees already;
// scoring them too would chase noise (1.5 herded requests between equal
// servers at full load, where queueing alone moves TTFTs that much).
const ttftTolerance = 2.0

// ttftFloor is the least "fastest TTFT" speed is judged against. Below it a
// difference says more about the moment (a garbage collection, a busy
// scheduler, one cold connection) than about the box, and no user notices
// it; judging it would also let two proxies that measured one noisy sample
// each disagree on where a session lives.
const ttftFloor = 50 * time.Millisecond

// ttftScorer prefers endpoints that are clearly faster: 1 within
// ttftTolerance of the fastest known TTFT, then falling with the square of
// the excess, so a box three times slower scores 0.44 and four times 0.25.
// Where the backends state their time per output token (Signals.TPOT) the
// same curve is taken over it too, and the lower score counts: a box that
// decodes three times slower is slow whatever prompts it was sent, and
// its stated rate needs no probe of ours to stay known. An endpoint with
// no sample yet scores 1, so that it gets traffic and is measured.
type ttftScorer struct{}

func (ttftScorer) Name() string { return ScoreTTFT }
func (ttftScorer) usesSignals() {}
func (ttftScorer) Score(_ *Request, c *Candidate, s *Set) float64 {
	return min(speedScore(c.TTFT, s.MinTTFT), speedScore(c.TPOT, s.MinTPOT))
}

// speedScore is the curve over one measure of time: 1 within
// ttftTolerance of the fastest (and when either is unknown), then falling
// with the square of the excess.
func speedScore(d, fastest time.Duration) float64 {
	if d <= 0 || fastest <= 0 || float64(d) <= ttftTolerance*float64(fastest) {
		return 1
	}
	r := float64(d) / (ttftTolerance * float64(fastest))
	return 1 / (r * r)
}

// TPOTMaxAge is how long a time per output token counts after the poll
// (or, measured by us, the stream) that brought it. A box judged slow gets
// no traffic of ours, so its rate moves only with others' work; after this
// long it is unknown and one request goes there again (while that one is
// out the old figure stands, Signals.MeasuringSince), and the next poll or
// its own stream judges it afresh.
const TPOTMaxAge = time.Minute

// slowPerToken is how much slower per output token than the fastest
// candidate a box must decode to be left: twice. Batching slows an equal
// box by up to a third at full occupancy (the harness's servers: 4 % per
// running request), so within twice it is load, which the load score
// weighs, not the box.
const slowPerToken = 2.0

// decodesSlowly reports whether c's stated time per output token is beyond
// slowPerToken of the fastest in the set.
func (c *Candidate) decodesSlowly(s *Set) bool {
	return c.TPOT > 0 && s.MinTPOT > 0 && float64(c.TPOT) > slowPerToken*float64(s.MinTPOT)
}

// leaveForSpeed reports whether a conversation held by c (its pin, its
// session's home or its cached prompt) should leave it: c decodes clearly
// slower than the fastest, and another kept candidate that does not has a
// slot free. Every later turn on the slow box pays its slowness again, so the
// history's prefill elsewhere is paid once. It is judged on the decode
// rate only (the backend's stated one, else our timing of its clean
// streams), which a client cannot fake: not on TTFT, which a client's
// prompt sways.
func (c *Candidate) leaveForSpeed(cands []Candidate, kept []bool, s *Set) bool {
	if !c.decodesSlowly(s) {
		return false
	}
	for i := range cands {
		if o := &cands[i]; kept[i] && o.Index != c.Index && !o.decodesSlowly(s) && slotFree(o) {
			return true
		}
	}
	return false
}

// leaveSlowBoxes drops the kept candidates that decode clearly slower than
// the fastest (decodesSlowly) while a kept one of the same or a higher
// priority that does not has a slot free (slotFree): every request sent
// there pays the slowness per token, which the load and speed scores do
// not weigh as heavily as a user feels it, most of all where the backends
// state no slots and an idle slow box outscores busy fast ones on load.
// Once the faster boxes would queue, the slow one takes the overflow
// through the scores. kept is the filters' verdict.
func leaveSlowBoxes(cands []Candidate, kept []bool, s *Set) {
	if s.MinTPOT <= 0 {
		return
	}
	fastTier, any := 0, false
	for i := range cands {
		if c := &cands[i]; kept[i] && !c.decodesSlowly(s) && slotFree(c) && (!any || c.Priority > fastTier) {
			fastTier, any = c.Priority, true
		}
	}
	if !any {
		return
	}
	for i := range cands {
		if c := &cands[i]; kept[i] && c.Priority <= fastTier && c.decodesSlowly(s) {
			kept[i] = false
		}
	}
}

// slowForAffinity is how much slower than the fastest candidate an
// endpoint's TTFT must be for a new session not to start there. It is
// above ttftTolerance: TTFT also rises with prefix cache misses and load,
// which affinity itself moves between endpoints, and a low bar would herd
// new sessions back and forth.
const slowForAffinity = 2.5

// tooSlowForAffinity reports whether c's TTFT is beyond slowForAffinity of the
// fastest in the set.
func (c *Candidate) tooSlowForAffinity(s *Set) bool {
	return c.TTFT > 0 && s.MinTTFT > 0 && float64(c.TTFT) > slowForAffinity*float64(s.MinTTFT)
}

// affinityScorer gives 1 to the candidate the request's key hashes to and 0
// to the others; with no key every candidate scores 0.
type affinityScorer struct{}

func (affinityScorer) Name() string  { return ScoreAffinity }
func (affinityScorer) usesSignals()  {}
func (affinityScorer) usesAffinity() {}
func (affinityScorer) Score(_ *Request, c *Candidate, s *Set) float64 {
	if c.Index == s.Affinity {
		return 1
	}
	return 0
}

// priorityScorer gives 1 to the highest priority tier present and 0 to the
// rest: a preference that a cold model or a long queue can outweigh.
type priorityScorer struct{}

func (priorityScorer) Name() string { return ScorePriority }
func (priorityScorer) Score(_ *Request, c *Candidate, s *Set) float64 {
	if c.Priority == s.TopPriority {
		return 1
	}
	return 0
}

// inFlightScorer prefers fewer of our attempts in flight: 1/(1+n). Equal
// counts score exactly equal, so equal candidates tie and take turns.
type inFlightScorer struct{}

func (inFlightScorer) Name() string { return ScoreInFlight }
func (inFlightScorer) Score(_ *Request, c *Candidate, _ *Set) float64 {
	return 1 / (1 + float64(max(c.InFlight, 0)))
}

// TopPriorityFilter keeps only the highest priority tier present.
type TopPriorityFilter struct{}

func (TopPriorityFilter) Name() string { return "top-priority" }
func (TopPriorityFilter) Keep(_ *Request, c *Candidate, s *Set) bool {
	return c.Priority == s.TopPriority
}

// CapacityFilter drops candidates that have no room: our in-flight count at
// their max_concurrency, or (when fresh) every backend slot busy with
// requests waiting. If every candidate is full, all are kept (see [Filter]).
type CapacityFilter struct{}

func (CapacityFilter) Name() string { return "capacity" }
func (CapacityFilter) usesSignals() {}
func (CapacityFilter) Keep(_ *Request, c *Candidate, _ *Set) bool {
	if c.MaxConcurrency > 0 && c.InFlight >= c.MaxConcurrency {
		return false
	}
	if c.Fresh() && c.SlotsKnown && c.QueueKnown && c.Slots > 0 && c.Running >= c.Slots && c.Waiting > 0 {
		return false
	}
	return true
}

// waitOverLoad weighs waiting on the endpoints that hold the model
// against loading it on one that does not (item 2 of issue 20): a warm
// endpoint wins until it is saturated, then an idle warm one (the scores
// see to both), then a cold one when waiting would cost more than a load.
// Waiting costs more than a load when
//
//   - this request's wait on the best warm candidate is at least the
//     cheapest cold one's load ("waiting really costs more": with cheap
//     loads that is as soon as the warm ones queue), or
//   - the warm candidates keep a queue of at least one request waiting on
//     average: over the time a load takes, the queue then waits at least a
//     load in all, every load after it as well, and a second warm copy
//     ends it. Only one such load of a model at a time, on an idle cold
//     candidate.
//
// Then the warm candidates are dropped and the idle cold ones kept (none
// of ours running there: a load there would wait for those requests, or
// evict the model under them); else the
// cold ones stay out (a warm candidate the capacity filter dropped is kept
// again: its queue is the cheaper wait). An endpoint where our own load of
// the model is under way (Signals.LoadingSince) counts as warm, its wait
// the rest of the load: requests ride on it rather than start another load
// elsewhere (no herding), unless even that wait costs more than a load.
//
// A cold candidate's load is its learned LoadTime, else the longest any
// candidate learned for the model (a pessimistic guess), else unknown:
// without one only the queue rule can pick a cold candidate. kept is the
// filters' verdict; only candidates of tier count, unless anyTier.
func waitOverLoad(cands []Candidate, kept []bool, tier int, anyTier bool) {
	var now time.Time
	inScope := func(c *Candidate) bool { return c.Fresh() && (anyTier || c.Priority == tier) }
	// ours reports whether our load of the model is under way at c
	ours := func(c *Candidate) bool {
		if c.LoadingSince.IsZero() {
			return false
		}
		if now.IsZero() {
			now = time.Now()
		}
		return now.Sub(c.LoadingSince) < maxLoading
	}
	cold := func(c *Candidate) bool { return c.Warm == Cold && !ours(c) }
	prior, loading := time.Duration(0), false
	for i := range cands {
		if c := &cands[i]; inScope(c) {
			prior = max(prior, c.LoadTime)
			loading = loading || ours(c)
		}
	}
	loadOf := func(c *Candidate) time.Duration {
		if c.LoadTime > 0 {
			return c.LoadTime
		}
		return prior
	}
	// the warm side: the least wait, and the queue over all of it
	wait, best, queue := time.Duration(0), -1, 0.0
	for i := range cands {
		c := &cands[i]
		if !inScope(c) {
			continue
		}
		w, ok := time.Duration(0), false
		switch {
		case ours(c):
			w, ok = max(loadOf(c)-now.Sub(c.LoadingSince), 0)+warmWait(c), true
		case c.Warm == Warm:
			w, ok = warmWait(c), true
			queue += queued(c)
		}
		if ok && (best < 0 || w < wait) {
			wait, best = w, i
		}
	}
	if best < 0 {
		return // nothing holds the model: the scores choose where it loads
	}
	// the cold side: the cheapest known load among those kept
	minLoad := time.Duration(0)
	idle := false
	for i := range cands {
		c := &cands[i]
		if !kept[i] || !inScope(c) || !cold(c) {
			continue
		}
		if l := loadOf(c); l > 0 && (minLoad == 0 || l < minLoad) {
			minLoad = l
		}
		idle = idle || c.InFlight == 0
	}
	switch {
	case minLoad > 0 && wait >= minLoad && idle:
		// waiting really costs more: the idle cold candidates whose load is
		// cheaper than the wait, not the warm side (a cold one running
		// our requests for another model would make the load wait for
		// them, or evict the model under them)
		coldOnly(cands, kept, inScope, func(c *Candidate) bool {
			l := loadOf(c)
			return cold(c) && c.InFlight == 0 && l > 0 && l <= wait
		})
	case !loading && idle && wait > 0 && queue >= 1:
		// a queue that lasts: one more copy, on an idle cold candidate
		coldOnly(cands, kept, inScope, func(c *Candidate) bool { return cold(c) && c.InFlight == 0 })
	default:
		// waiting (or riding on our load) is cheaper: the cold candidates
		// whose load is known to cost more stay out, all of them while our
		// load is under way, and so do loads of ours slower than the best
		dropped := false
		for i := range cands {
			c := &cands[i]
			if !kept[i] || !inScope(c) || i == best {
				continue
			}
			if cold(c) && (loading || loadOf(c) > wait) || ours(c) {
				kept[i], dropped = false, true
			}
		}
		if dropped || ours(&cands[best]) {
			kept[best] = true
		}
	}
}

// maxLoading is how long a load of ours counts as under way at most, in
// case its end was never told.
const maxLoading = 10 * time.Minute

// coldOnly keeps, of the candidates in scope, only the kept ones that
// pass cold (a cold candidate worth loading) and have room; the others
// (out of scope) are left as they were. If none is left, kept is not
// changed.
func coldOnly(cands []Candidate, kept []bool, inScope, cold func(*Candidate) bool) {
	found := false
	for i := range cands {
		if c := &cands[i]; kept[i] && inScope(c) && cold(c) && hasRoom(c) {
			found = true
		}
	}
	if !found {
		return
	}
	for i := range cands {
		if c := &cands[i]; inScope(c) {
			kept[i] = kept[i] && cold(c) && hasRoom(c)
		}
	}
}

// warmWait is how long a request placed on warm candidate c would wait
// before it starts. Where the capacity is known (a cap, stated slots, or a
// backend that states its queue) it is the rounds of queue ahead of it
// times the learned service time. A backend that states neither (Ollama)
// is judged on what its answers showed: the queueing they met
// (Signals.Queueing), while any of ours is there.
func warmWait(c *Candidate) time.Duration {
	if c.MaxConcurrency > 0 || c.SlotsKnown || c.QueueKnown {
		return time.Duration(max(c.placed()-1, 0) * float64(c.Service))
	}
	if c.InFlight == 0 {
		return 0
	}
	return c.Queueing
}

// queued is how many requests wait at warm candidate c, on average: what
// exceeds its capacity where that is known; else, by Little's law, our
// requests there times the share of their time spent waiting.
func queued(c *Candidate) float64 {
	if c.MaxConcurrency > 0 || c.SlotsKnown || c.QueueKnown {
		return max(c.Demand()-c.Capacity(), 0)
	}
	if c.Service <= 0 {
		return 0
	}
	return float64(c.InFlight) * min(float64(warmWait(c))/float64(c.Service), 1)
}
