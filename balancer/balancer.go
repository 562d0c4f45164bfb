package balancer

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Candidates is the set a balancer chooses from, in a stable order (the
// caller's config order). Like sort.Interface it is an interface over the
// caller's own data, so no slice has to be built for every request. A
// Candidates may also implement [SignalSource] to report backend signals.
type Candidates interface {
	// Len is the number of candidates.
	Len() int

	// Priority is candidate i's configured priority; higher is preferred.
	Priority(i int) int

	// InFlight is the number of attempts currently in flight to candidate i,
	// normally read from that endpoint's [Counter].
	InFlight(i int) int64
}

// Balancer picks one candidate for the next attempt.
type Balancer interface {
	// Select returns the index of the chosen candidate. Every candidate passed
	// in is routable, and the caller guarantees Len() > 0; should it be empty
	// anyway, Select returns -1 rather than panic on the request path.
	Select(c Candidates) int
}

// The strategy names accepted by [New]: the values of the `load_balancer`
// option, spelled as the standalone proxy spells them, plus Adaptive.
const (
	Priority         = "priority"
	RoundRobin       = "round-robin"
	LeastConnections = "least-connections"
	// Adaptive schedules on what each backend is doing: model residency,
	// backend queue and occupancy, our in-flight count, observed TTFT and
	// session affinity (see [AdaptiveWeights]).
	Adaptive = "adaptive"
)

// Names returns the standalone proxy's strategy names, the ones whose
// behaviour is fixed by compatibility. The slice is new on every call, so
// callers may keep or modify it. [Strategies] lists every accepted name.
func Names() []string {
	return []string{Priority, RoundRobin, LeastConnections}
}

// Strategies returns every strategy name [New] accepts, for help texts and
// error messages. The slice is new on every call.
func Strategies() []string {
	return []string{Priority, RoundRobin, LeastConnections, Adaptive}
}

// AdaptiveWeights are the adaptive strategy's default scorer weights. A cold
// model costs seconds, so warmth outweighs everything else together with one
// exception: a full queue (load) plus a lost session (affinity) can.
func AdaptiveWeights() map[string]float64 {
	return map[string]float64{
		ScoreWarm:     4,
		ScoreLoad:     2,
		ScoreAffinity: 2,
		ScoreTTFT:     1,
		ScorePriority: 1,
	}
}

// Config describes a pipeline.
type Config struct {
	// Strategy is one of [Strategies].
	Strategy string
	// Weights overrides scorer weights by name (see [ScorerNames]); a scorer
	// the strategy does not use is added, and a weight of 0 removes one.
	// Only Adaptive takes weights: the other strategies' behaviour is fixed.
	Weights map[string]float64
	// LoadBound is the affinity scorer's rendezvous load bound (0: the
	// default, [DefaultLoadBound]).
	LoadBound float64
	// PrefixAffinity turns on the prefix stage (prefix.go) for Adaptive:
	// hard priority tiers, the longest cached match until saturated, a new
	// conversation's rendezvous home.
	PrefixAffinity bool
	// ReleasePenalty is how many rounds of queueing beyond the best other
	// candidate the warm one may cost before a request leaves it (0: the
	// default, [DefaultReleasePenalty]).
	ReleasePenalty float64
}

// New returns a fresh balancer for the named strategy. Each call returns its
// own state, so two sites (or a config reload) never share a rotation.
//
// Names are matched exactly: config validation should reject a misspelt
// strategy, not guess at it. An unknown name is an error that lists the valid
// ones, ready to be shown to whoever wrote the config.
func New(name string) (Balancer, error) {
	p, err := NewPipeline(Config{Strategy: name})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// NewPipeline builds the pipeline for a strategy.
//
//   - Priority: keep the highest priority tier present, then fewest attempts
//     in flight, equal ones in turn.
//   - RoundRobin: a strict cycle in the caller's order, ignoring load.
//   - LeastConnections: fewest attempts in flight, whatever the priority,
//     equal ones in turn.
//   - Adaptive: drop candidates that have no room (unless all are full),
//     then the weighted scorers of [AdaptiveWeights], equal totals in turn.
func NewPipeline(cfg Config) (*Pipeline, error) {
	p := &Pipeline{name: cfg.Strategy, loadBound: cfg.LoadBound, slots: make([]scratch, scratchSlots())}
	if p.loadBound == 0 {
		p.loadBound = DefaultLoadBound
	}
	if p.loadBound < 1 {
		return nil, fmt.Errorf("load bound must be 1 or more, got %v", cfg.LoadBound)
	}
	var weights map[string]float64
	switch cfg.Strategy {
	case Priority:
		p.filters = []Filter{TopPriorityFilter{}}
		weights = map[string]float64{ScoreInFlight: 1}
	case RoundRobin:
		p.picker.Ties = TieCycle
	case LeastConnections:
		weights = map[string]float64{ScoreInFlight: 1}
	case Adaptive:
		p.filters = []Filter{CapacityFilter{}}
		weights = AdaptiveWeights()
		p.prefix, p.penalty, p.residency = cfg.PrefixAffinity, cfg.ReleasePenalty, true
		if p.penalty == 0 {
			p.penalty = DefaultReleasePenalty
		}
		if p.penalty < 0 || p.penalty != p.penalty || p.penalty > 1000 {
			return nil, fmt.Errorf("release penalty must be between 0 and 1000 rounds, got %v", cfg.ReleasePenalty)
		}
		if p.prefix {
			p.signals = true
		}
	default:
		return nil, fmt.Errorf("unknown load balancer %q: valid names are %s",
			cfg.Strategy, strings.Join(Strategies(), ", "))
	}
	if len(cfg.Weights) > 0 {
		if cfg.Strategy != Adaptive {
			return nil, fmt.Errorf("load balancer %q takes no weights (only %s does)", cfg.Strategy, Adaptive)
		}
		for name, w := range cfg.Weights {
			if w < 0 || w != w || w > 1000 {
				return nil, fmt.Errorf("weight of scorer %q must be between 0 and 1000, got %v", name, w)
			}
			weights[name] = w
		}
	}
	// A stable order (by name) keeps totals, and so ties, identical between
	// two processes with the same config.
	for _, name := range slices.Sorted(maps.Keys(weights)) {
		if weights[name] == 0 {
			continue
		}
		s, ok := newScorer(name)
		if !ok {
			return nil, fmt.Errorf("unknown scorer %q: valid names are %s", name, strings.Join(ScorerNames(), ", "))
		}
		p.scorers = append(p.scorers, Weighted{Scorer: s, Weight: weights[name]})
	}
	// adaptive weighs a session's endpoint as its affinity score; every
	// other strategy places a keyed request there outright
	p.sticky = cfg.Strategy != Adaptive
	for _, f := range p.filters {
		if _, ok := f.(usesSignals); ok {
			p.signals = true
		}
	}
	for _, w := range p.scorers {
		if _, ok := w.Scorer.(usesSignals); ok {
			p.signals = true
		}
		if _, ok := w.Scorer.(usesAffinity); ok {
			p.affinity = true
		}
		if _, ok := w.Scorer.(ttftScorer); ok {
			p.speed = true
		}
	}
	return p, nil
}
