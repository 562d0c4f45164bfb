package balancer

import "testing"

// The strategies as they were before the pipeline, kept as the reference the
// presets are checked against (see TestPresetsMatchReference).

// leastLoaded returns the index of the candidate with the fewest attempts in
// flight, or -1 if there are none. With topTierOnly, only candidates of the
// highest priority present are considered. When several candidates tie, the
// rotation picks among them in turn, so idle equals are used evenly.
//
// It allocates nothing: a first pass finds the best (priority, load) pair and
// how many candidates share it; only if there is a tie does a second pass
// walk to the chosen one. The in-flight counts are live and may move between
// the passes; the second pass therefore accepts anything at least as good as
// the first pass saw, and falls back to the first pass's pick if the tied
// candidates have meanwhile become busier. Either answer is a fair choice.
func refLeastLoaded(c Candidates, r *rotation, topTierOnly bool) int {
	n := c.Len()
	first := -1 // the first candidate found with the best (tier, load)
	tier := 0   // the highest priority seen, when topTierOnly
	var least int64
	tied := 0

	for i := 0; i < n; i++ {
		if topTierOnly {
			p := c.Priority(i)
			if first >= 0 && p < tier {
				continue
			}
			if first < 0 || p > tier {
				// A higher tier makes everything seen so far irrelevant.
				tier, first, least, tied = p, i, c.InFlight(i), 1
				continue
			}
		}
		switch load := c.InFlight(i); {
		case first < 0 || load < least:
			first, least, tied = i, load, 1
		case load == least:
			tied++
		}
	}

	if tied <= 1 {
		// Alone at the top (or no candidates at all): no turn is spent, so the
		// shared cursor is only contended when there is a real choice.
		return first
	}

	skip := r.turn(tied)
	for i := first; i < n; i++ { // no tied candidate comes before first
		if topTierOnly && c.Priority(i) != tier {
			continue
		}
		if c.InFlight(i) > least {
			continue
		}
		if skip == 0 {
			return i
		}
		skip--
	}
	return first
}

type refRoundRobin struct{ next rotation }

func (b *refRoundRobin) Select(c Candidates) int {
	n := c.Len()
	if n == 0 {
		return -1
	}
	return b.next.turn(n)
}

type refLeastLoadedBalancer struct {
	ties        rotation
	topTierOnly bool
}

func (b *refLeastLoadedBalancer) Select(c Candidates) int {
	return refLeastLoaded(c, &b.ties, b.topTierOnly)
}

// BenchmarkReference measures the pre-pipeline strategies, so that one run
// shows what the pipeline costs over them.
func BenchmarkReference(b *testing.B) {
	refs := map[string]func() Balancer{
		Priority:         func() Balancer { return &refLeastLoadedBalancer{topTierOnly: true} },
		LeastConnections: func() Balancer { return &refLeastLoadedBalancer{} },
		RoundRobin:       func() Balancer { return new(refRoundRobin) },
	}
	for _, name := range Names() {
		b.Run(name+"/10", func(b *testing.B) {
			bal := refs[name]()
			var c Candidates = equalEndpoints(10)
			b.ReportAllocs()
			for b.Loop() {
				bal.Select(c)
			}
		})
	}
}
