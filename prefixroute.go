package olla

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/fleet/prefix"
)

// PrefixAffinity is the `prefix_affinity` block: with the adaptive balancer,
// a conversation goes to the endpoint that holds its prompt in its prefix
// cache, for clients that send no session id (see fleet/prefix and
// balancer/prefix.go). On unless turned off.
type PrefixAffinity struct {
	// Off turns prefix affinity off: requests without a session id are
	// placed by load alone.
	Off bool `json:"off,omitempty"`
	// CacheBlocks is each endpoint's block budget in the index, in blocks
	// of 256 bytes of prompt (at most 1048576). Unset, each endpoint's
	// budget is what its backend states it caches (vLLM's KV blocks, llama.cpp's
	// n_ctx over its slots, at about 4 bytes a token), else 65536 (about 4M
	// tokens). The index costs at most 128 bytes a block.
	CacheBlocks int `json:"cache_blocks,omitempty"`
	// ReleasePenalty is how many rounds of queueing beyond the best other
	// endpoint the one holding a conversation may cost before a request
	// leaves it (default 2).
	ReleasePenalty float64 `json:"release_penalty,omitempty"`
}

func (pa *PrefixAffinity) validate() error {
	if pa == nil {
		return nil
	}
	if pa.CacheBlocks < 0 || pa.CacheBlocks > prefix.MaxBudget {
		return fmt.Errorf("prefix_affinity cache_blocks must be between 1 and %d (unset: the cache the backend states, else %d), got %d", prefix.MaxBudget, prefix.DefaultBudget, pa.CacheBlocks)
	}
	if pa.ReleasePenalty < 0 || pa.ReleasePenalty != pa.ReleasePenalty || pa.ReleasePenalty > 1000 {
		return fmt.Errorf("prefix_affinity release_penalty must be between 0 and 1000 rounds, got %v", pa.ReleasePenalty)
	}
	return nil
}

// on reports whether prefix affinity runs for a handler with this balancer.
func (pa *PrefixAffinity) on(strategy string) bool {
	return strategy == balancer.Adaptive && (pa == nil || !pa.Off)
}

// prefixRouting is a handler's prefix index: which endpoint holds which
// conversation's prompt.
type prefixRouting struct {
	index *prefix.Index
	// budget is the configured cache_blocks (0: each endpoint's from what
	// its backend states, else prefix.DefaultBudget)
	budget int
	slots  map[*fleet.Endpoint]*prefixSlot // written at provision, read-only after
	// lossMu serialises catching up with an endpoint's cache losses and
	// its stated size
	lossMu sync.Mutex
}

// prefixSlot is an endpoint's place in the index, how far the index has
// followed what the endpoint's cache lost (fleet.Endpoint.CacheSeq), and
// the cache size its budget was set from (fleet.Endpoint.CacheTokens).
type prefixSlot struct {
	slot   prefix.Slot
	seen   atomic.Uint64
	tokens atomic.Int64

	// requests with a prompt of their own it served, of them the ones it
	// held more than the shared head of, and the ones another endpoint
	// held but was let go for saturation (this config's, for the stats
	// and the dashboard; the metrics count process-wide in m)
	routed, held, released atomic.Int64
	m                      prefixCounters
}

// prefixCounters are one endpoint's prefix metrics, resolved once so that
// a request costs no label lookup (nil counters without metrics: tests).
type prefixCounters struct {
	held, miss, released prometheus.Counter
}

func newPrefixRouting(states []*fleet.Endpoint, pa *PrefixAffinity, m *ollaMetrics) *prefixRouting {
	budget := 0
	if pa != nil {
		budget = pa.CacheBlocks
	}
	pr := &prefixRouting{index: prefix.NewIndex(), budget: budget, slots: make(map[*fleet.Endpoint]*prefixSlot, len(states))}
	for _, st := range states {
		if s, err := pr.index.Add(st.Name(), budget); err == nil { // sized by the backend when it states a size
			ps := &prefixSlot{slot: s}
			ps.seen.Store(st.CacheSeq()) // the index starts empty: nothing to forget
			if m != nil {
				ps.m = prefixCounters{held: m.prefixRequests.WithLabelValues(st.Name(), "held"),
					miss: m.prefixRequests.WithLabelValues(st.Name(), "miss"), released: m.prefixReleases.WithLabelValues(st.Name())}
			}
			pr.slots[st] = ps
		} // beyond prefix.MaxEndpoints an endpoint is placed by load alone
	}
	return pr
}

// slot is st's place in the index, -1 when it has none. It first forgets
// what st's backend lost since the index last looked (a restart, an
// unloaded model), and sizes st's budget to the cache its backend states:
// two atomic loads when neither changed.
func (pr *prefixRouting) slot(st *fleet.Endpoint) prefix.Slot {
	ps, ok := pr.slots[st]
	if !ok {
		return -1
	}
	return pr.current(st, ps)
}

// current is ps's slot for st, after following st's cache losses and
// stated size.
func (pr *prefixRouting) current(st *fleet.Endpoint, ps *prefixSlot) prefix.Slot {
	if st.CacheSeq() != ps.seen.Load() {
		pr.catchUp(st, ps)
	}
	if pr.budget == 0 && st.CacheTokens() != ps.tokens.Load() {
		pr.resize(st, ps)
	}
	return ps.slot
}

// resize sets st's budget to the cache size its backend states (capped at
// prefix.MaxBudget), evicting what no longer fits.
func (pr *prefixRouting) resize(st *fleet.Endpoint, ps *prefixSlot) {
	pr.lossMu.Lock()
	defer pr.lossMu.Unlock()
	tokens := st.CacheTokens()
	budget := 0 // the default, for a backend that stated no size
	if tokens > 0 {
		budget = prefix.BlocksForTokens(tokens)
	}
	_, _ = pr.index.Add(st.Name(), budget) // tracked already: only resized
	ps.tokens.Store(tokens)
}

// catchUp applies st's cache losses since ps.seen to the index.
func (pr *prefixRouting) catchUp(st *fleet.Endpoint, ps *prefixSlot) {
	pr.lossMu.Lock()
	defer pr.lossMu.Unlock()
	ps.seen.Store(st.CacheLosses(ps.seen.Load(), func(model string) {
		if model == "" {
			pr.index.Forget(ps.slot)
		} else {
			pr.index.ForgetModel(ps.slot, model)
		}
	}))
}

// prefixRequest is one request's hashed prompt and its candidates' matches.
type prefixRequest struct {
	pr     *prefixRouting
	model  string
	chain  prefix.Chain
	slots  []prefix.Slot
	cached []int
	cands  prefixCandidates
	// released: the balancer's last choice let go of the endpoint holding
	// the prompt, saturated (set by the picker)
	released bool
}

// start hashes the request's prompt; nil when it has no block to match.
func (pr *prefixRouting) start(body []byte, model string) *prefixRequest {
	rq := &prefixRequest{pr: pr, model: model}
	if rq.chain.Parse(body, model) != nil || len(rq.chain.Blocks) == 0 {
		return nil
	}
	return rq
}

func (rq *prefixRequest) info() balancer.PrefixInfo {
	return balancer.PrefixInfo{Blocks: len(rq.chain.Blocks), Shared: rq.chain.Shared, Anchor: rq.chain.Anchor}
}

// candidates wraps c (the picker's remaining candidates, in order) with
// each one's cached match.
func (rq *prefixRequest) candidates(remaining candidates, c balancer.Candidates) balancer.Candidates {
	rq.slots, rq.cached = rq.slots[:0], rq.cached[:0]
	for _, st := range remaining {
		rq.slots = append(rq.slots, rq.pr.slot(st))
		rq.cached = append(rq.cached, 0)
	}
	rq.pr.index.Match(&rq.chain, rq.slots, rq.cached)
	src, ok := c.(signalCandidates)
	if !ok {
		return c
	}
	rq.cands = prefixCandidates{signalCandidates: src, cached: rq.cached}
	return &rq.cands
}

// served records that st answered the request for model (as st names
// it): its backend now holds the prompt.
func (rq *prefixRequest) served(st *fleet.Endpoint, model string) {
	ps, ok := rq.pr.slots[st]
	if !ok {
		return
	}
	cached := rq.pr.index.Record(rq.pr.current(st, ps), model, &rq.chain)
	if !rq.chain.Useful() {
		return
	}
	ps.routed.Add(1)
	if cached > rq.chain.Shared {
		ps.held.Add(1)
		inc(ps.m.held)
	} else {
		inc(ps.m.miss)
	}
	if rq.released {
		ps.released.Add(1)
		inc(ps.m.released)
	}
}

func inc(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}

// signalCandidates is a balancer.Candidates that reports signals.
type signalCandidates interface {
	balancer.Candidates
	balancer.SignalSource
}

// prefixCandidates adds each candidate's cached match to its signals.
type prefixCandidates struct {
	signalCandidates
	cached []int
}

func (c *prefixCandidates) Signals(i int, model string, out *balancer.Signals) {
	c.signalCandidates.Signals(i, model, out)
	out.PrefixCached = c.cached[i]
}

// prefixView is one endpoint's part of the index as /internal/stats/prefix
// and the dashboard show it.
type prefixView struct {
	Endpoint      string  `json:"endpoint,omitempty"` // in the dashboard's list
	Blocks        int     `json:"blocks"`
	Budget        int     `json:"budget"`
	BudgetFrom    string  `json:"budget_from"` // cache_blocks, backend or default
	BackendTokens int64   `json:"backend_cache_tokens,omitempty"`
	Recorded      int64   `json:"recorded_blocks"`
	HeldBlocks    int64   `json:"held_blocks"`
	BlockHitRatio float64 `json:"hit_ratio"` // of the recorded blocks, the share it held already
	Evictions     int64   `json:"evictions"`
	Forgets       int64   `json:"forgets"`
	Forgotten     int64   `json:"forgotten_blocks"`
	// requests with a prompt of their own it served, of them the ones it
	// held more than the shared head of (their share: the request hit
	// ratio), and the ones it took when their holder was saturated
	Routed          int64   `json:"routed"`
	Held            int64   `json:"held"`
	RequestHitRatio float64 `json:"request_hit_ratio"`
	Released        int64   `json:"released"`
}

// view is st's part of the index (ok false when it has none).
func (pr *prefixRouting) view(st *fleet.Endpoint) (prefixView, bool) {
	ps, ok := pr.slots[st]
	if !ok {
		return prefixView{}, false
	}
	es := pr.index.Stats(pr.current(st, ps))
	v := prefixView{Blocks: es.Blocks, Budget: es.Budget, BudgetFrom: "default", Recorded: es.Recorded, HeldBlocks: es.Hits,
		BlockHitRatio: es.HitRatio(), Evictions: es.Evictions, Forgets: es.Forgets, Forgotten: es.Forgotten,
		Routed: ps.routed.Load(), Held: ps.held.Load(), Released: ps.released.Load()}
	if v.Routed > 0 {
		v.RequestHitRatio = float64(v.Held) / float64(v.Routed)
	}
	switch tokens := ps.tokens.Load(); {
	case pr.budget > 0:
		v.BudgetFrom = "cache_blocks"
	case tokens > 0:
		v.BudgetFrom, v.BackendTokens = "backend", tokens
	}
	return v, true
}

// stats is the index as /internal/stats/prefix shows it.
func (pr *prefixRouting) stats() map[string]any {
	eps := map[string]prefixView{}
	var routed, held int64
	for st := range pr.slots {
		v, _ := pr.view(st)
		eps[st.Name()] = v
		routed, held = routed+v.Routed, held+v.Held
	}
	return map[string]any{"enabled": true, "block_bytes": prefix.BlockBytes, "routed": routed,
		"held": held, "endpoints": eps}
}

// servePrefixStats answers /internal/stats/prefix.
func (rq *request) servePrefixStats() error {
	if rq.h.prefix == nil {
		return rq.writeJSON(http.StatusOK, map[string]any{"enabled": false})
	}
	return rq.writeJSON(http.StatusOK, rq.h.prefix.stats())
}
