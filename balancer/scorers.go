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

// TPOTMaxAge is how long a stated time per output token counts after the
// poll that brought it. A box judged slow gets no traffic of ours, so its
// rate moves only with others' work; after this long it is unknown, one
// conversation goes there again, and the next poll judges it afresh.
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
// slower than the fastest, and another kept candidate that does not has
// room. Every later turn on the slow box pays its slowness again, so the
// history's prefill elsewhere is paid once. It is judged on the backend's
// stated decode rate only, which a client cannot fake: not on TTFT, which
// a client's prompt sways.
func (c *Candidate) leaveForSpeed(cands []Candidate, kept []bool, s *Set) bool {
	if !c.decodesSlowly(s) {
		return false
	}
	for i := range cands {
		if o := &cands[i]; kept[i] && o.Index != c.Index && !o.decodesSlowly(s) && hasRoom(o) {
			return true
		}
	}
	return false
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

// waitOverLoad keeps a cold candidate out while waiting on a warm one costs
// less than loading the model: a cold endpoint is chosen only when the
// wait would cost more than its load. The wait is the warm candidate's
// rounds of queue ahead of the request times its learned service time;
// the load is the cold one's learned load time (Signals.LoadTime,
// Service). A warm candidate the capacity filter dropped is kept again
// for it: its queue is the cheaper wait. Without both figures nothing
// changes. kept is the filters' verdict; only warm candidates of tier
// count, unless anyTier.
func waitOverLoad(cands []Candidate, kept []bool, tier int, anyTier bool) {
	minLoad := time.Duration(0)
	for i := range cands {
		c := &cands[i]
		if kept[i] && c.Fresh() && c.Warm == Cold && c.LoadTime > 0 && (minLoad == 0 || c.LoadTime < minLoad) {
			minLoad = c.LoadTime
		}
	}
	if minLoad == 0 {
		return
	}
	wait, best := time.Duration(0), -1
	for i := range cands {
		c := &cands[i]
		if !c.Fresh() || c.Warm != Warm || c.Service <= 0 || (!anyTier && c.Priority != tier) {
			continue
		}
		w := time.Duration(max(c.placed()-1, 0) * float64(c.Service))
		if best < 0 || w < wait {
			wait, best = w, i
		}
	}
	if best < 0 || wait >= minLoad {
		return
	}
	for i := range cands {
		if c := &cands[i]; kept[i] && c.Fresh() && c.Warm == Cold && c.LoadTime > wait {
			kept[i] = false
		}
	}
	kept[best] = true
}
