package balancer

import "time"

// Request is what the scheduler knows about the request being placed. Every
// field is optional; the zero Request is a request that only asks for "any
// candidate". It is passed by value: scorers only read it.
type Request struct {
	// Model is the requested model, as the candidates' signals name it.
	Model string
	// SessionKey identifies a conversation (a session header, an API key,
	// a client address): requests with the same key prefer the same endpoint.
	// Only its hash is used; it is never stored.
	SessionKey string
	// PrefixHash is a hash of the prompt's first bytes, used for affinity
	// when there is no SessionKey (0: none).
	PrefixHash uint64
	// Key is an affinity key the caller hashed already (a sticky session's
	// key, see [HashKey]); it takes precedence over SessionKey and
	// PrefixHash (0: none).
	Key uint64
	// Pinned names the endpoint the request's session is pinned to; when it
	// is among the kept candidates it is the affinity target instead of the
	// key's rendezvous home, so a session stays where its cache is.
	Pinned string
	// ClientKey names the client for fairness decisions (not used by the
	// built-in scorers; carried for filters that need it).
	ClientKey string
	// Prefix is the shape of the request's hashed prompt, for prefix
	// affinity (see prefix.go); the zero value is none.
	Prefix PrefixInfo
}

// affinityKey returns the key rendezvous hashing places, and false when the
// request carries none.
func (r *Request) affinityKey() (uint64, bool) {
	if r.Key != 0 {
		return r.Key, true
	}
	if r.SessionKey != "" {
		return HashKey(r.SessionKey), true
	}
	if r.PrefixHash != 0 {
		return r.PrefixHash, true
	}
	return 0, false
}

// Warmth says whether a candidate has the requested model resident now.
type Warmth int8

// Warmth values. The zero value is "unknown", which scores neutral.
const (
	WarmUnknown Warmth = iota
	Warm               // loaded now, or a server that serves only what it lists
	Cold               // must load the model first
)

// Signals are what a candidate's backend last said about itself, plus our own
// observations. Each backend value has a Known flag: a signal the backend does
// not expose, or one that could not be read, scores neutral and never makes a
// candidate unroutable.
type Signals struct {
	// Warm says whether the requested model is resident.
	Warm Warmth

	// The Known flags mark the backend values below them as read from the
	// backend. (They sit together so the struct packs tightly: it is copied
	// once per candidate per selection.)
	QueueKnown bool // Waiting and Running
	SlotsKnown bool // Slots
	KVKnown    bool // KVUsage
	// SeenFull says the backend has been seen queueing, so SeenSlots is
	// its slot count, not only a lower bound on it.
	SeenFull bool

	// MaxConcurrency is the endpoint's configured limit of attempts in flight
	// (0: none). It is the capacity our in-flight count is measured against.
	MaxConcurrency int64

	Waiting int64   // requests queued at the backend, not yet running
	Running int64   // requests the backend is processing (busy slots)
	Slots   int64   // parallel slots: the backend's own capacity (llama.cpp /slots)
	KVUsage float64 // KV-cache occupancy, 0..1

	// InFlightAtRead is our in-flight count when Waiting and Running were
	// read. The backend's count less this is the work other clients gave
	// it; ours since then is the live InFlight. A source that does not know
	// leaves it 0, and the whole backend count is taken as others' work
	// (an overcount, never an undercount).
	InFlightAtRead int64
	// SeenSlots is the most requests the backend has been seen running at
	// once: a lower bound on its parallel slots (exact once it has queued),
	// learned from its own counts for servers that do not say (vLLM,
	// SGLang). 0: never seen. It does not go stale.
	SeenSlots int64

	// TTFT is our exponentially weighted time to first token for this
	// endpoint and the requested model (0: no sample yet), and TTFTAt when
	// its last sample came (zero: not said). One with no sample for
	// EWMAMaxAge is treated as unknown, like an EWMA's Value, unless a
	// request for the model is measuring it (MeasuringSince).
	TTFT   time.Duration
	TTFTAt time.Time
	// MeasuringSince is when our last request for the model started here
	// (zero: not said). One that started after the last TTFT sample, less
	// than EWMAMaxAge ago, is taken to be measuring it now.
	MeasuringSince time.Time

	// TPOT is the backend's time per output token as it states it (vLLM's
	// and SGLang's inter-token latency, llama.cpp's predicted tokens and
	// seconds), averaged over what it decoded between two polls, or, for a
	// backend that states none (LM Studio, Ollama), our own measure of it
	// for the model from the streams we copied: first to last byte over
	// the tokens between, from streams the client did not hold back (0:
	// neither yet). TPOTAt is when it came. It is the box's decode speed:
	// a client cannot sway it with its prompt, nor make a box look slow by
	// reading slowly. One older than TPOTMaxAge is ignored.
	TPOT   time.Duration
	TPOTAt time.Time

	// LoadTime is how long this endpoint was seen to take to load the
	// model (a cold start's TTFT beyond a warm one's), and Service how long
	// a request for it takes here with the model loaded: one round of its
	// queue. Both learned from our own requests (0: not yet).
	LoadTime time.Duration
	Service  time.Duration
	// Queueing is how long warm requests for the model here have lately
	// waited before their first token beyond the fastest of them: the
	// queue their answers met, for backends that state none (0: none, or
	// unknown).
	Queueing time.Duration
	// LoadingSince is when our own load of the model here began, while
	// it is under way (zero: none): requests sent here meanwhile wait for
	// it, and no other endpoint need load the model as well.
	LoadingSince time.Time

	// PrefixCached is how many leading blocks of the request's prompt the
	// endpoint is known to hold (the caller's prefix index; 0: none).
	PrefixCached int

	// At is when the backend values above were read (zero: not said), and
	// MaxAge the age past which they are ignored (0: never stale); stale
	// backend values are treated as unknown. The pipeline reads the clock
	// once per selection, so a source need not read it per candidate.
	At     time.Time
	MaxAge time.Duration
}

// SignalSource is implemented by candidates that know more than priority and
// in-flight counts. It is optional: a [Candidates] without it is scheduled on
// priority and in-flight counts alone, with every other signal unknown.
type SignalSource interface {
	// Name is candidate i's stable name (the endpoint's name in the config);
	// rendezvous hashing uses it, so that two processes with the same config
	// rank candidates the same way.
	Name(i int) string
	// Signals fills in candidate i's signals for the given model. s starts
	// zeroed (every signal unknown), so a source sets only what it knows. It
	// is called once per candidate per selection, must not allocate and must
	// not keep s. (Filling in place rather than returning a value saves a
	// copy of the struct per candidate, a third of a selection's time.)
	Signals(i int, model string, s *Signals)
}

// Candidate is one candidate as the scorers see it: read once per selection,
// passed by value so nothing escapes to the heap.
type Candidate struct {
	Index    int    // position in the Candidates
	Name     string // "" when the Candidates has no SignalSource
	Priority int
	InFlight int64 // our attempts in flight
	Signals
	// Stale is set by the pipeline when the backend values are older than
	// MaxAge.
	Stale bool
}

// measuring reports whether a request for the model, started after the last
// TTFT sample and less than EWMAMaxAge before now, will bring a new one. (A
// request that failed brings none; after EWMAMaxAge another may measure.)
func (c *Candidate) measuring(now int64) bool { return c.measuringAfter(c.TTFTAt, now) }

// measuringAfter reports whether a request for the model started here
// after a sample taken at sample, less than EWMAMaxAge before now: it is
// measuring the endpoint again (see measuring).
func (c *Candidate) measuringAfter(sample time.Time, now int64) bool {
	since := c.MeasuringSince.UnixNano()
	return !c.MeasuringSince.IsZero() && since >= sample.UnixNano() && !forgotten(since, now)
}

// Fresh reports whether the candidate's backend values may be used.
func (c *Candidate) Fresh() bool { return !c.Stale }

// Demand is the candidate's outstanding work in requests: our in-flight
// count now (exact, and live between scrapes), plus the work other clients
// had given the backend when it was last read (its running and waiting
// count less ours at that moment) while that reading is fresh.
func (c *Candidate) Demand() float64 {
	d := max(c.InFlight, 0)
	if c.QueueKnown && c.Fresh() {
		d += max(c.Running+c.Waiting-c.InFlightAtRead, 0)
	}
	return float64(d)
}

// Capacity is how many requests the candidate runs at once: its configured
// max_concurrency, else the backend's slot count, else what its own counts
// show (see below), else 1 (demand is then a plain count).
//
// A server that states no slot count (vLLM, SGLang) has as many as it has
// been seen running at once (SeenSlots) once it has been seen queueing (a
// server queues only when its slots are full). Until then SeenSlots is only
// a lower bound, and while its last fresh reading showed nothing waiting
// it is taken to have room for this request too: it batches, and the load
// score then weighs only how many share the batch.
func (c *Candidate) Capacity() float64 {
	slots := c.provenCapacity()
	if c.MaxConcurrency <= 0 && !(c.SlotsKnown && c.Slots > 0 && c.Fresh()) &&
		!c.SeenFull && c.QueueKnown && c.Fresh() && c.Waiting <= 0 {
		slots = max(slots, c.Demand()+1)
	}
	return slots
}

// provenCapacity is Capacity without the benefit of the doubt: what is
// stated, or what the backend has been seen running at once. A new key's
// home is chosen on it, since a home that turns out full keeps its whole
// session waiting.
func (c *Candidate) provenCapacity() float64 {
	switch {
	case c.MaxConcurrency > 0:
		return float64(c.MaxConcurrency)
	case c.SlotsKnown && c.Slots > 0 && c.Fresh():
		return float64(c.Slots)
	}
	return float64(max(c.SeenSlots, 1))
}

// capacityProven reports whether provenCapacity is the candidate's slot
// count, not a lower bound on it: configured, stated, or seen queueing.
func (c *Candidate) capacityProven() bool {
	return c.MaxConcurrency > 0 || (c.SlotsKnown && c.Slots > 0 && c.Fresh()) || c.SeenFull
}

// Utilisation is demand over capacity: 0 idle, 1 full, above 1 queueing.
func (c *Candidate) Utilisation() float64 {
	return c.Demand() / c.Capacity()
}

// placed is the candidate's utilisation with one more request on it: at
// most 1 when the request would get a slot at once.
func (c *Candidate) placed() float64 {
	return (c.Demand() + 1) / c.Capacity()
}

// placedProven is placed against provenCapacity.
func (c *Candidate) placedProven() float64 {
	return (c.Demand() + 1) / c.provenCapacity()
}
