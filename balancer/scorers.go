package balancer

import (
	"fmt"
	"slices"
	"sync"
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

// loadScorer prefers the candidate with the least outstanding work relative
// to its capacity: 1/(1+u), u being demand over capacity (1 idle, 0.5 full,
// falling as the queue grows), scaled down by up to half as the KV cache
// fills, since a full cache means preemption or eviction of cached prefixes.
// Demand is the backend's running plus waiting count when known, or our
// in-flight count if higher; capacity is max_concurrency, else the backend's
// slot count, else 1 (so unknown capacity compares plain counts).
type loadScorer struct{}

func (loadScorer) Name() string { return ScoreLoad }
func (loadScorer) usesSignals() {}
func (loadScorer) Score(_ *Request, c *Candidate, _ *Set) float64 {
	score := 1 / (1 + c.Utilisation())
	if c.KVKnown && c.Fresh() {
		score *= 1 - clampScore(c.KVUsage)/2
	}
	return score
}

// ttftScorer prefers fast endpoints: the fastest known TTFT over this one's,
// so a box three times slower scores 1/3. An endpoint with no sample yet
// scores 1, so that it gets traffic and is measured.
type ttftScorer struct{}

func (ttftScorer) Name() string { return ScoreTTFT }
func (ttftScorer) usesSignals() {}
func (ttftScorer) Score(_ *Request, c *Candidate, s *Set) float64 {
	if c.TTFT <= 0 || s.MinTTFT <= 0 {
		return 1
	}
	return float64(s.MinTTFT) / float64(c.TTFT)
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
