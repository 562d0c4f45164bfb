package balancer

// Prefix affinity: the conversation goes where its prompt is cached, for
// clients that send no session id. The caller hashes the prompt (see the
// fleet/prefix package), asks its index how much of it each candidate
// holds ([Signals.PrefixCached]) and passes the chain's shape in
// [Request.Prefix]. The stage then decides once per selection, before the
// filters run:
//
//   - Tiers are hard: only the highest priority tier with a candidate that
//     has room takes part (the top tier when none has room), so no pin,
//     session or prefix moves a request to a lower tier.
//   - The longest cached match wins until it is saturated: the candidates
//     holding the most of the prompt (beyond the shared head every
//     conversation with its system prompt has) are kept, unless the best of
//     them would wait longer than the best other candidate by more than the
//     release penalty; then the request is spread by load.
//   - A new conversation (nothing beyond the shared head cached anywhere)
//     goes to its home: rendezvous over the conversation's anchor among the
//     candidates with the best warmth, skipping those above the load bound
//     and, while another has a free slot, those where it would queue. No
//     shared state is needed, so two proxies with one config agree, and
//     conversations that share a system prompt do not share a home.
//   - A prompt with nothing of its own (shorter than a block beyond the
//     shared head) is spread by load, never hashed by its shared part.
//
// A request with a session key or a pin is placed by the session (session
// ids still win), within the tier.

// PrefixInfo is the shape of a request's hashed prompt.
type PrefixInfo struct {
	// Blocks is how many blocks of the prompt were hashed (0: none).
	Blocks int
	// Shared is how many leading blocks hold only what conversations
	// share (system prompt, tools).
	Shared int
	// Anchor is the conversation's rendezvous key (0: none).
	Anchor uint64
}

// useful reports whether the prompt has a block of its own.
func (p PrefixInfo) useful() bool { return p.Blocks > p.Shared }

// DefaultReleasePenalty is how many rounds of queueing beyond the best other
// candidate the warm candidate may cost before a request leaves it: a
// conversation's history costs more to prefill again than a round's wait
// (the harness's fleets: 1-4 s of prefill against 0.5-0.8 s of service).
const DefaultReleasePenalty = 2.0

// prefixDecision is the stage's verdict for one selection.
type prefixDecision struct {
	tier     int  // the priority tier the request may use
	keep     int  // keep only candidates holding this many blocks (0: no such filter)
	home     int  // keep only this candidate, a new conversation's home (-1: none)
	released bool // the warm candidate was saturated and let go
	match    int  // the longest match among the tier's candidates
	// fastRoom: a candidate of the tier that does not decode slowly has
	// a slot free, so a slow box's cache holds nobody (leaveForSpeed)
	fastRoom bool
}

// holds is how many blocks of the prompt c counts as holding for this
// decision: none on a box that decodes clearly slower while a faster one
// has room (every turn there pays its slowness; the prefill elsewhere is
// paid once), else what it holds.
func (d *prefixDecision) holds(c *Candidate, blocks int, set *Set) int {
	if d.fastRoom && c.decodesSlowly(set) {
		return 0
	}
	return held(c, blocks)
}

// held is how many blocks of a prompt of blocks c holds: none when the
// model is known not to be loaded there (an unloaded model's cache is gone,
// whatever the index remembers).
func held(c *Candidate, blocks int) int {
	if c.Fresh() && c.Warm == Cold {
		return 0
	}
	return min(c.PrefixCached, blocks)
}

// hasRoom reports whether c can take the request without queueing past
// its limits (as [CapacityFilter] judges it).
func hasRoom(c *Candidate) bool { return CapacityFilter{}.Keep(nil, c, nil) }

// slotFree reports whether c would run the request at once: it has room,
// and one more request does not take it past its slot count (stated,
// learned, or the benefit of the doubt; see [Candidate.Capacity]). A box
// that decodes slowly is left only for a faster one with a slot free: one
// that would queue the request costs it rounds of service, which the slow
// box may well beat.
func slotFree(c *Candidate) bool { return hasRoom(c) && c.placed() <= 1 }

// decidePrefix fills d for r over cands; loads and eligible are scratch
// space, one per candidate.
func decidePrefix(r *Request, cands []Candidate, set *Set, penalty, bound float64, loads []float64, eligible []bool) prefixDecision {
	d := prefixDecision{tier: set.TopPriority, home: -1}
	roomy := false
	for i := range cands {
		if c := &cands[i]; hasRoom(c) && (!roomy || c.Priority > d.tier) {
			d.tier, roomy = c.Priority, true
		}
	}
	// the whole tier takes part: a warm candidate without room is judged
	// by its wait (the release), not dropped
	for i := range cands {
		eligible[i] = cands[i].Priority == d.tier
		if eligible[i] && !d.fastRoom && slotFree(&cands[i]) && !cands[i].decodesSlowly(set) {
			d.fastRoom = true
		}
	}
	if r.Key != 0 || r.SessionKey != "" || r.Pinned != "" || !r.Prefix.useful() {
		return d // placed by its session, or spread by load
	}
	best := 0
	for i := range cands {
		if eligible[i] {
			best = max(best, d.holds(&cands[i], r.Prefix.Blocks, set))
		}
	}
	d.match = best
	if best > r.Prefix.Shared {
		// the warm candidates against the best of the others
		warm, other := -1.0, -1.0
		for i := range cands {
			if !eligible[i] {
				continue
			}
			cost := loadCost(&cands[i])
			if d.holds(&cands[i], r.Prefix.Blocks, set) == best {
				if warm < 0 || cost < warm {
					warm = cost
				}
			} else if other < 0 || cost < other {
				other = cost
			}
		}
		if other >= 0 && warm-other > penalty*queueCost {
			d.released = true
			return d
		}
		d.keep = best
		return d
	}
	if r.Prefix.Anchor != 0 {
		d.home = rendezvousKept(r.Prefix.Anchor, cands, eligible, loads, bound, set)
	}
	return d
}

// allows applies the decision to candidate c.
func (d *prefixDecision) allows(c *Candidate, blocks int, set *Set) bool {
	switch {
	case c.Priority != d.tier:
		return false
	case d.home >= 0:
		return c.Index == d.home
	case d.keep > 0:
		return d.holds(c, blocks, set) >= d.keep
	}
	return true
}
