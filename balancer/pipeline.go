package balancer

import (
	"math"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

// A selection runs in three steps, like an inference gateway's endpoint
// picker: filters drop candidates, weighted scorers rate the rest in [0,1],
// and the picker takes the highest total. Scorers see each candidate as a
// [Candidate] (its priority, our in-flight count and, when the caller has
// them, the backend's signals) and the [Set] of facts about all of them, so a
// scorer can rate relative to the others without a pass of its own.

// Filter drops candidates that should not be chosen this time. Filters only
// narrow: when they would drop every candidate, the pipeline keeps them all,
// because waiting for room is the caller's decision (admission), not the
// balancer's.
type Filter interface {
	Name() string
	// Keep reports whether candidate c stays in the running. s holds only
	// the facts gathered before filtering (Set.TopPriority).
	Keep(r *Request, c *Candidate, s *Set) bool
}

// Scorer rates a candidate in [0,1]; higher is better. A value outside the
// range (or NaN) is clamped. A scorer with nothing to go on should return the
// same value for every candidate, which leaves the ranking to the others.
// Scorers must not keep the pointers they are given.
type Scorer interface {
	Name() string
	Score(r *Request, c *Candidate, s *Set) float64
}

// Set holds facts about the whole candidate set of one selection.
type Set struct {
	// Len is the number of candidates left after filtering.
	Len int
	// TopPriority is the highest priority among all candidates.
	TopPriority int
	// MinTTFT is the fastest known TTFT among the filtered candidates, but
	// at least ttftFloor (0: none known, or the pipeline does not score
	// speed).
	MinTTFT time.Duration
	// MinTPOT is the fastest stated time per output token among all the
	// candidates (0: none stated; see Signals.TPOT).
	MinTPOT time.Duration
	// Affinity is the index of the candidate the request is pinned to
	// (Request.Pinned) or else the one its session or prefix key hashes to
	// (rendezvous hashing with a load bound), or -1 when the request has no
	// key or the pipeline no affinity scorer.
	Affinity int
}

// Weighted is a scorer with its weight in the total.
type Weighted struct {
	Scorer Scorer
	Weight float64
}

// TieBreak is how the picker chooses among candidates with the same total.
type TieBreak int8

const (
	// TieRotate takes tied candidates in turn, so equal endpoints share the
	// load evenly; a candidate that is best alone takes no turn.
	TieRotate TieBreak = iota
	// TieFirst takes the first tied candidate in the caller's order: a
	// stable choice.
	TieFirst
	// TieCycle is TieRotate that spends a turn on every pick, even when one
	// candidate is best alone: with no scorers it is a strict round-robin.
	TieCycle
)

// Picker takes the candidate with the highest total.
type Picker struct {
	Ties  TieBreak
	turns rotation
}

// pick returns the index of the best kept candidate, or -1 if none is kept.
func (p *Picker) pick(totals []float64, kept []bool) int {
	first, tied := -1, 0
	best := math.Inf(-1)
	for i, t := range totals {
		if !kept[i] {
			continue
		}
		switch {
		case first < 0 || t > best:
			first, best, tied = i, t, 1
		case t == best:
			tied++
		}
	}
	if first < 0 || p.Ties == TieFirst || (tied == 1 && p.Ties != TieCycle) {
		return first
	}
	skip := p.turns.turn(tied)
	for i := first; i < len(totals); i++ {
		if kept[i] && totals[i] == best {
			if skip == 0 {
				return i
			}
			skip--
		}
	}
	return first
}

// pickAmongEqual picks among n candidates that all tie.
func (p *Picker) pickAmongEqual(n int) int {
	if p.Ties == TieFirst || (n == 1 && p.Ties != TieCycle) {
		return 0
	}
	return p.turns.turn(n)
}

// Pipeline is a configured scheduler: filters, weighted scorers, a picker.
// It implements [Balancer]. It is safe for concurrent use, and selecting
// allocates nothing in the steady state (per-selection scratch space is
// pooled).
type Pipeline struct {
	name      string
	filters   []Filter
	scorers   []Weighted
	picker    Picker
	loadBound float64 // rendezvous skips candidates above this × the mean
	signals   bool    // some stage reads backend signals or names
	affinity  bool    // some scorer reads Set.Affinity
	sticky    bool    // a request with a key goes to its session's endpoint (placeSession)
	speed     bool    // the TTFT scorer has a weight: Set.MinTTFT is wanted
	prefix    bool    // the prefix stage runs (prefix.go)
	penalty   float64 // its release penalty, in rounds of queueing
	residency bool    // a cold candidate waits for a cheaper warm queue (waitOverLoad)
	slots     []scratch
	nextSlot  atomic.Uint32
}

// Name is the strategy the pipeline was built for.
func (p *Pipeline) Name() string { return p.name }

// Select implements [Balancer]: a selection for a request about which
// nothing is known.
func (p *Pipeline) Select(c Candidates) int {
	return p.schedule(&Request{}, c, nil)
}

// Schedule selects a candidate for r and says why. Building the reason's
// text is left to [Reason.String], so a caller that does not show it pays
// nothing for it.
func (p *Pipeline) Schedule(r Request, c Candidates) (int, Reason) {
	var why Reason
	i := p.schedule(&r, c, &why)
	return i, why
}

// scratch is one selection's working space. Each pipeline keeps a few,
// claimed with a compare-and-swap, so selecting does not allocate. (A
// sync.Pool would do on its own, except that it drops items at random under
// the race detector, and allocation-free selection is a tested property.)
type scratch struct {
	busy     atomic.Bool
	source   Candidates
	req      Request
	set      Set
	cands    []Candidate
	totals   []float64
	kept     []bool
	eligible []bool
	decision prefixDecision
	// a session's placement (placeSession): the kept candidates' names,
	// loads and indexes
	names []string
	loads []float64
	index []int
	_     [64]byte // keep two slots' busy flags off one cache line
}

// scratchSlots is how many selections of one pipeline can run at once
// without allocating: more than the Ps that can run them, so a selection
// preempted midway does not make the next one allocate.
func scratchSlots() int {
	return max(4, 2*runtime.GOMAXPROCS(0))
}

// claim returns a free scratch sized for n candidates, or a new one when
// every slot is in use.
func (p *Pipeline) claim(n int) *scratch {
	var s *scratch
	start := int(p.nextSlot.Add(1))
	for k := range p.slots {
		slot := &p.slots[(start+k)%len(p.slots)]
		if !slot.busy.Load() && slot.busy.CompareAndSwap(false, true) {
			s = slot
			break
		}
	}
	if s == nil {
		s = new(scratch)
	}
	if cap(s.cands) < n {
		s.cands = make([]Candidate, n)
		s.totals = make([]float64, n)
		s.kept = make([]bool, n)
		s.eligible = make([]bool, n)
	}
	s.cands, s.totals, s.kept, s.eligible = s.cands[:n], s.totals[:n], s.kept[:n], s.eligible[:n]
	return s
}

// release frees a scratch claimed from a slot, dropping its references to
// the request and the candidates (the candidates' names stay until the slot is
// next used: they are the endpoints' own long-lived strings).
func (s *scratch) release() {
	s.req, s.source = Request{}, nil
	clear(s.names) // the endpoints' names: no reference kept past the selection
	s.busy.Store(false)
}

// schedule selects a candidate and, if why is not nil, says why there.
func (p *Pipeline) schedule(in *Request, c Candidates, why *Reason) int {
	n := c.Len()
	if n <= 0 {
		if why != nil {
			*why = Reason{Strategy: p.name, Index: -1}
		}
		return -1
	}
	placing := p.sticky && in.Key != 0
	if len(p.filters) == 0 && len(p.scorers) == 0 && !placing {
		// Nothing to read: every candidate ties (round-robin).
		win := p.picker.pickAmongEqual(n)
		if why != nil {
			*why = Reason{Strategy: p.name, Index: win}
			if src, ok := c.(SignalSource); ok {
				why.Endpoint = src.Name(win)
			}
		}
		return win
	}
	s := p.claim(n)
	defer s.release()
	s.req = *in
	r := &s.req // the scorers' copy: in stays on the caller's stack
	set := &s.set
	*set = Set{Affinity: -1}

	s.source = c
	src, _ := c.(SignalSource)
	if !p.signals && !placing {
		src = nil
	}
	var now time.Time // read once, when a candidate first needs it
	for i := range s.cands {
		cand := &s.cands[i]
		cand.Index, cand.Priority, cand.InFlight = i, c.Priority(i), c.InFlight(i)
		if src != nil {
			cand.Name = src.Name(i)
			cand.Signals = Signals{}
			src.Signals(i, r.Model, &cand.Signals)
			cand.Stale = false
			if cand.MaxAge > 0 && !cand.At.IsZero() {
				if now.IsZero() {
					now = time.Now()
				}
				cand.Stale = now.Sub(cand.At) > cand.MaxAge
			}
			if cand.TTFT > 0 && !cand.TTFTAt.IsZero() {
				if now.IsZero() {
					now = time.Now()
				}
				if forgotten(cand.TTFTAt.UnixNano(), now.UnixNano()) && !cand.measuring(now.UnixNano()) {
					// Forgotten, and no request for the model is out there
					// to measure it: unknown, so one request goes to measure
					// it again. While that one is out the old average
					// stands, so a box still slow gets one request, not a
					// burst for as long as its answer takes.
					cand.TTFT = 0
				}
			}
			if cand.TPOT > 0 {
				if now.IsZero() {
					now = time.Now()
				}
				if now.Sub(cand.TPOTAt) > TPOTMaxAge && !cand.measuringAfter(cand.TPOTAt, now.UnixNano()) {
					// old news, and no request is out measuring it: unknown,
					// so one request goes to measure the box again (while
					// it is out the old figure stands: one, not a burst)
					cand.TPOT = 0
				} else if set.MinTPOT == 0 || cand.TPOT < set.MinTPOT {
					set.MinTPOT = cand.TPOT
				}
			}
		} else {
			cand.Name, cand.Signals, cand.Stale = "", Signals{}, false
		}
		if i == 0 || cand.Priority > set.TopPriority {
			set.TopPriority = cand.Priority
		}
	}

	if p.prefix {
		s.decision = decidePrefix(r, s.cands, set, p.penalty, p.loadBound, s.totals, s.eligible) // totals are free until scoring
	}
	kept := 0
	for i := range s.cands {
		s.kept[i] = !p.prefix || s.decision.allows(&s.cands[i], r.Prefix.Blocks, set)
		for _, f := range p.filters {
			if !s.kept[i] {
				break
			}
			if !f.Keep(r, &s.cands[i], set) {
				s.kept[i] = false
				break
			}
		}
		if s.kept[i] {
			kept++
		}
	}
	if kept == 0 && p.prefix {
		// the prefix stage chose to wait for its warm candidate (or a new
		// conversation's home) rather than lose the cache: it stands
		for i := range s.kept {
			if s.kept[i] = s.decision.allows(&s.cands[i], r.Prefix.Blocks, set); s.kept[i] {
				kept++
			}
		}
	}
	if kept == 0 { // filters narrow, never empty the set (nor leave the tier)
		for i := range s.kept {
			if s.kept[i] = !p.prefix || s.cands[i].Priority == s.decision.tier; s.kept[i] {
				kept++
			}
		}
	}
	// the stages below may drop or restore candidates: Len counts after them
	if p.speed && set.MinTPOT > 0 {
		leaveSlowBoxes(s.cands, s.kept, set)
	}
	if p.residency {
		waitOverLoad(s.cands, s.kept, s.decision.tier, !p.prefix)
	}
	set.Len = 0
	for _, k := range s.kept {
		if k {
			set.Len++
		}
	}

	if placing {
		if win := placeSession(r, s, p.loadBound); win >= 0 {
			if why != nil {
				*why = Reason{Strategy: p.name, Index: win, Endpoint: s.cands[win].Name}
			}
			return win
		}
	}
	if p.speed {
		for i := range s.cands {
			if ttft := s.cands[i].TTFT; s.kept[i] && ttft > 0 && (set.MinTTFT == 0 || ttft < set.MinTTFT) {
				set.MinTTFT = ttft
			}
		}
		if set.MinTTFT > 0 {
			set.MinTTFT = max(set.MinTTFT, ttftFloor)
		}
	}
	if p.affinity {
		if r.Pinned != "" {
			for i := range s.cands {
				if s.kept[i] && s.cands[i].Name == r.Pinned {
					if !s.cands[i].leaveForSpeed(s.cands, s.kept, set) {
						set.Affinity = i
					}
					break
				}
			}
		}
		if key, ok := r.affinityKey(); ok && set.Affinity < 0 {
			set.Affinity = rendezvousKept(key, s.cands, s.kept, s.totals, p.loadBound, set) // totals are free until scoring
		}
	}

	for i := range s.cands {
		if !s.kept[i] {
			continue
		}
		total := 0.0
		for _, w := range p.scorers {
			total += w.Weight * clampScore(w.Scorer.Score(r, &s.cands[i], set))
		}
		s.totals[i] = total
	}
	win := p.picker.pick(s.totals, s.kept)
	if why != nil {
		p.explain(why, r, s, win)
	}
	return win
}

// placeSession is where a request with a session key goes under a strategy
// without an affinity score: the endpoint its session is pinned to
// (Request.Pinned) if that is a candidate, else the key's rendezvous home
// among the kept candidates (the top priority tier under priority),
// skipping any loaded above the bound × the mean, load being attempts in
// flight per slot of the concurrency cap. It is -1 only without candidates.
// The picker's rotation takes no turn for it.
func placeSession(r *Request, s *scratch, bound float64) int {
	if r.Pinned != "" {
		for i := range s.cands {
			if s.cands[i].Name == r.Pinned {
				return i
			}
		}
	}
	s.names, s.loads, s.index = s.names[:0], s.loads[:0], s.index[:0]
	for i := range s.cands {
		if c := &s.cands[i]; s.kept[i] {
			s.names = append(s.names, c.Name)
			s.loads = append(s.loads, float64(c.InFlight)/float64(max(c.MaxConcurrency, 1)))
			s.index = append(s.index, i)
		}
	}
	if w := Rendezvous(r.Key, s.names, s.loads, bound); w >= 0 {
		return s.index[w]
	}
	return -1
}

func clampScore(v float64) float64 {
	switch {
	case v > 1:
		return 1
	case v >= 0:
		return v
	}
	return 0 // negative or NaN
}

// maxReasonParts bounds the scores a Reason names.
const maxReasonParts = 4

// Reason says why a candidate won: the strategy and the winner's highest
// weighted scores. It is a plain value; its text is built only on demand.
type Reason struct {
	Strategy string
	Index    int    // the winner, -1 if none
	Endpoint string // the winner's name, "" when the candidates have none
	// Prefix is the prefix stage's part (zero when it did not run).
	Prefix PrefixReason
	parts  [maxReasonParts]ReasonPart
	n      int
}

// PrefixReason says what the prefix stage saw of the winner.
type PrefixReason struct {
	Blocks   int  // blocks of the prompt hashed
	Match    int  // of which the winner holds
	Released bool // the longest match was saturated and let go
	Home     bool // a new conversation's rendezvous home
}

// ReasonPart is one scorer's verdict on the winner.
type ReasonPart struct {
	Scorer string
	Score  float64 // in [0,1]
	Weight float64
}

// Parts returns the winner's scores, highest weighted contribution first.
func (r *Reason) Parts() []ReasonPart { return r.parts[:r.n] }

func (p *Pipeline) explain(out *Reason, r *Request, s *scratch, win int) {
	*out = Reason{Strategy: p.name, Index: win}
	if win < 0 {
		return
	}
	c := &s.cands[win]
	out.Endpoint = c.Name
	if p.prefix && r.Prefix.Blocks > 0 {
		out.Prefix = PrefixReason{Blocks: r.Prefix.Blocks, Match: min(c.PrefixCached, r.Prefix.Blocks),
			Released: s.decision.released, Home: s.decision.home == win}
	}
	if src, ok := s.source.(SignalSource); ok && out.Endpoint == "" {
		out.Endpoint = src.Name(win) // a pipeline that reads no signals still names the winner
	}
	for _, w := range p.scorers {
		part := ReasonPart{Scorer: w.Scorer.Name(), Score: clampScore(w.Scorer.Score(r, c, &s.set)), Weight: w.Weight}
		// insertion into the top maxReasonParts by weighted contribution
		j := out.n
		if j == maxReasonParts {
			if part.Score*part.Weight <= out.parts[j-1].Score*out.parts[j-1].Weight {
				continue
			}
			j--
		} else {
			out.n++
		}
		for j > 0 && part.Score*part.Weight > out.parts[j-1].Score*out.parts[j-1].Weight {
			out.parts[j] = out.parts[j-1]
			j--
		}
		out.parts[j] = part
	}
}

// String is the reason for a header such as X-Olla-Routing-Reason, e.g.
// "adaptive: ep-a warm=1 load=0.8 ttft=0.9". Scores have two significant
// digits.
func (r Reason) String() string { return r.text(true) }

// Public is String without the prefix stage's part, for a response: how
// much of a prompt the index held says whether some client sent it before
// (a guessed prompt confirmed), so that shows in logs and stats only.
func (r Reason) Public() string { return r.text(false) }

func (r Reason) text(prefix bool) string {
	b := make([]byte, 0, 64)
	b = append(b, r.Strategy...)
	b = append(b, ':')
	if r.Endpoint != "" {
		b = append(b, ' ')
		b = append(b, r.Endpoint...)
	} else if r.Index >= 0 {
		b = append(b, " #"...)
		b = strconv.AppendInt(b, int64(r.Index), 10)
	}
	if prefix && r.Prefix.Blocks > 0 {
		b = append(b, " prefix="...)
		b = strconv.AppendInt(b, int64(r.Prefix.Match), 10)
		b = append(b, '/')
		b = strconv.AppendInt(b, int64(r.Prefix.Blocks), 10)
		switch {
		case r.Prefix.Released:
			b = append(b, " released"...)
		case r.Prefix.Home:
			b = append(b, " home"...)
		}
	}
	for _, part := range r.parts[:r.n] {
		b = append(b, ' ')
		b = append(b, part.Scorer...)
		b = append(b, '=')
		b = strconv.AppendFloat(b, math.Round(part.Score*100)/100, 'g', -1, 64)
	}
	return string(b)
}

var _ Balancer = (*Pipeline)(nil)
