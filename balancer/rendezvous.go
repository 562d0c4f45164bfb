package balancer

// HashKey hashes a session key, a client key or an endpoint name to 64 bits:
// FNV-1a followed by a 64-bit finaliser so that similar strings spread. It is
// the same in every process (no random seed), which is what lets two proxies
// with one config agree on placements, and it never stores the key.
func HashKey(s string) uint64 {
	return mix64(fnv1a(fnvOffset, s))
}

// SessionKey hashes a sticky session's key: its source (session header,
// prompt prefix, ...), the material it gave and the model, each followed by
// a separator, so the same conversation with another model is another
// session. Like HashKey it is the same in every process and keeps nothing;
// 0 is never returned (it means "no key" in Request.Key).
func SessionKey(source string, material []byte, model string) uint64 {
	h := fnvSep(fnv1a(fnvOffset, source))
	h = fnvSep(fnv1a(h, material))
	h = fnvSep(fnv1a(h, model))
	if h = mix64(h); h == 0 {
		h = 1
	}
	return h
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnv1a continues an FNV-1a hash h over b.
func fnv1a[T string | []byte](h uint64, b T) uint64 {
	for i := 0; i < len(b); i++ {
		h ^= uint64(b[i])
		h *= fnvPrime
	}
	return h
}

// fnvSep ends one part of a hash of several, so ("ab", "c") and ("a", "bc")
// differ.
func fnvSep(h uint64) uint64 { return (h ^ 0xff) * fnvPrime }

// mix64 is a 64-bit finaliser (from MurmurHash3): every input bit affects
// every output bit.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// rendezvousWeight is candidate name's weight for key: the candidate with the
// highest weight wins. Removing a candidate moves only the keys it held.
func rendezvousWeight(key uint64, name string) uint64 {
	return mix64(key ^ HashKey(name))
}

// DefaultLoadBound is the default load bound of rendezvous placement: a
// candidate whose load would exceed 1.25 × the mean is skipped.
const DefaultLoadBound = 1.25

// Rendezvous returns the index of the name that key maps to by rendezvous
// (highest random weight) hashing, skipping names whose load is above bound ×
// the mean load, or -1 when names is empty. Loads are counted with the new
// request placed (each load + 1), so an idle set is never skipped; loads may
// be nil (no bound). A bound below 1 is taken as 1 (it would skip every
// candidate otherwise). The answer depends only on its arguments, so two
// processes with the same names and loads agree.
func Rendezvous(key uint64, names []string, loads []float64, bound float64) int {
	limit := 0.0
	if len(loads) == len(names) && len(names) > 0 {
		sum := 0.0
		for _, l := range loads {
			sum += l + 1
		}
		limit = max(bound, 1) * sum / float64(len(names))
	}
	best, bestWeight := -1, uint64(0)
	for i, name := range names {
		if limit > 0 && loads[i]+1 > limit {
			continue
		}
		if w := rendezvousWeight(key, name); best < 0 || w > bestWeight {
			best, bestWeight = i, w
		}
	}
	return best
}

// rendezvousKept is Rendezvous over a selection's kept candidates, with
// utilisation as the load (a candidate's load + 1 being utilisation plus one
// request's share of its proven capacity); loads is scratch space, one per
// candidate. Only the candidates with the best warmth present take part,
// and of those only the ones not far slower than the fastest (slowForAffinity,
// or slowPerToken by their stated decode rate): a key's
// home must not be an endpoint that would have to load the model while
// another has it, or one the speed score keeps its traffic from, or the
// affinity would pull sessions where they are served worst. Nor is one where
// the request would queue while another has a free slot. Candidates
// without names hash their index, which is stable within one process only.
func rendezvousKept(key uint64, cands []Candidate, kept []bool, loads []float64, bound float64, set *Set) int {
	warmest := -1
	for i := range cands {
		if kept[i] {
			warmest = max(warmest, warmthRank(&cands[i]))
		}
	}
	// a slow box is no home while a faster one has a slot free; once none
	// has, it takes its share of new homes (the overflow)
	fastFree := false
	for i := range cands {
		if c := &cands[i]; kept[i] && warmthRank(c) == warmest && !c.tooSlowForAffinity(set) && !c.decodesSlowly(set) && slotFree(c) {
			fastFree = true
			break
		}
	}
	for i := range cands {
		if kept[i] && warmthRank(&cands[i]) == warmest && fastFree && (cands[i].tooSlowForAffinity(set) || cands[i].decodesSlowly(set)) {
			loads[i] = -1 // out of the running
		} else {
			loads[i] = 0
		}
	}
	// Slots only seen running at once are a lower bound, and the box seen
	// running fewer is not known to have fewer: judged against its own
	// bound it would look fuller, take fewer homes, be seen running fewer
	// still. Such boxes are judged against the largest bound among them.
	seen := 0.0
	for i := range cands {
		if c := &cands[i]; kept[i] && warmthRank(c) == warmest && loads[i] == 0 && !c.capacityProven() {
			seen = max(seen, c.provenCapacity())
		}
	}
	sum, n := 0.0, 0
	for i := range cands {
		if c := &cands[i]; kept[i] && warmthRank(c) == warmest && loads[i] == 0 {
			loads[i] = c.placedProven()
			if !c.capacityProven() {
				loads[i] = (c.Demand() + 1) / max(c.provenCapacity(), seen)
			}
			sum += loads[i]
			n++
		}
	}
	if n == 0 {
		return -1
	}
	limit := max(bound, 1) * sum / float64(n)
	// a candidate where the request would queue is no home while another
	// has a free slot
	roomy := false
	for i := range cands {
		if kept[i] && warmthRank(&cands[i]) == warmest && loads[i] > 0 && loads[i] <= 1 {
			roomy = true
			break
		}
	}
	if roomy {
		limit = min(limit, 1)
	}
	// the two highest weights: the key's first and second choice
	best, next := -1, -1
	var bestWeight, nextWeight uint64
	for i := range cands {
		c := &cands[i]
		// an idle candidate is never over the bound: counted at one slot
		// when it states none, it would otherwise lose every new key to
		// one that states four, however idle both are
		if !kept[i] || warmthRank(c) != warmest || loads[i] < 0 || loads[i] > limit && c.Demand() > 0 {
			continue
		}
		var w uint64
		if c.Name != "" {
			w = rendezvousWeight(key, c.Name)
		} else {
			w = mix64(key ^ mix64(uint64(i)+1))
		}
		switch {
		case best < 0 || w > bestWeight:
			next, nextWeight = best, bestWeight
			best, bestWeight = i, w
		case next < 0 || w > nextWeight:
			next, nextWeight = i, w
		}
	}
	// Two choices: the second when it is clearly less loaded. Hashing
	// alone leaves a few servers a request or two ahead of the rest at any
	// moment, and those are where requests queue (the harness's one-turn
	// requests with nothing shared: p99 1.1-1.35x least-connections); two
	// proxies still agree unless their views of the loads differ by about
	// the slack.
	// An idle first choice is kept: its load against one slot, when it
	// states none, is no sign of queueing.
	if next >= 0 && cands[best].Demand() > 0 && loads[next]+homeSlack < loads[best] {
		return next
	}
	return best
}

// homeSlack is how much less loaded (in utilisation: a quarter of the
// slots, two of eight) a key's second choice must be to take it from its
// first.
const homeSlack = 0.25

// warmthRank orders candidates for affinity: warm, unknown (or stale), cold.
func warmthRank(c *Candidate) int {
	switch {
	case c.Stale:
		return 1
	case c.Warm == Warm:
		return 2
	case c.Warm == Cold:
		return 0
	}
	return 1
}
