package olla

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/fleet/prefix"
	"github.com/caddy-olla/olla/profiles"
)

// TestPrefixFloodWithinBudget: 10,000 unique chat prompts (6 blocks each,
// 3 of them a shared system prompt) served by two endpoints, one whose
// backend states a 16,000-token cache (250 blocks) and one that states
// none (the default 65,536): each endpoint's index stays within its
// budget, and the index's heap within BytesPerBlock a block it holds. The
// figures are logged.
func TestPrefixFloodWithinBudget(t *testing.T) {
	eps := scheduledEndpoints(t, 2)
	var sig profiles.Signals
	sig.ServesListed, sig.CacheKnown, sig.CacheTokens, sig.At = true, true, 16_000, time.Now()
	eps[0].SetSignalsForTest(&sig)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	pr := newPrefixRouting(eps, nil, nil)
	system := strings.Repeat("You are a careful assistant. ", 30)
	for i := range 10_000 {
		body := fmt.Sprintf(`{"model":"llama3:8b","messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`,
			system, strings.Repeat(fmt.Sprintf("question %d ", i), 60))
		rq := pr.start([]byte(body), "llama3:8b")
		if rq == nil {
			t.Fatalf("prompt %d not hashed", i)
		}
		rq.candidates(eps, &eps)
		rq.served(eps[i%2], "llama3:8b")
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	small, large := pr.index.Stats(pr.slot(eps[0])), pr.index.Stats(pr.slot(eps[1]))
	if small.Budget != 250 || small.Blocks > small.Budget || small.Evictions == 0 {
		t.Errorf("the stated 16,000-token cache: %+v, want a budget of 250 blocks held to", small)
	}
	if large.Budget != prefix.DefaultBudget || large.Blocks > large.Budget || large.Blocks < 5000*3 {
		t.Errorf("the default budget: %+v", large)
	}
	used := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	blocks := small.Blocks + large.Blocks
	t.Logf("10,000 unique prompts: %d blocks held (%d + %d), %d evicted; the index holds %d bytes, %.0f a block held (bound %d a block of budget, %d in all)",
		blocks, small.Blocks, large.Blocks, small.Evictions+large.Evictions, used, float64(used)/float64(blocks),
		prefix.BytesPerBlock, (small.Budget+large.Budget)*prefix.BytesPerBlock)
	if limit := int64(blocks * prefix.BytesPerBlock); used > limit {
		t.Errorf("the index holds %d bytes for %d blocks, over %d", used, blocks, limit)
	}
	runtime.KeepAlive(pr)
}

// TestPrefixBudgetFollowsBackend: the budget follows what the backend
// states (a larger cache after a restart, a smaller one evicting what no
// longer fits), lying sizes are capped at prefix.MaxBudget, and a
// configured cache_blocks is never overridden.
func TestPrefixBudgetFollowsBackend(t *testing.T) {
	eps := scheduledEndpoints(t, 1)
	pr := newPrefixRouting(eps, nil, nil)
	fixed := newPrefixRouting(eps, &PrefixAffinity{CacheBlocks: 300}, nil)
	for _, tc := range []struct {
		tokens int64
		want   int
	}{{0, prefix.DefaultBudget}, {64_000, 1000}, {6_400, 100}, {profiles.MaxCacheTokens, prefix.MaxBudget}} {
		if tc.tokens > 0 {
			var sig profiles.Signals
			sig.ServesListed, sig.CacheKnown, sig.CacheTokens, sig.At = true, true, tc.tokens, time.Now()
			eps[0].SetSignalsForTest(&sig)
		}
		if got := pr.index.Stats(pr.slot(eps[0])).Budget; got != tc.want {
			t.Errorf("a stated cache of %d tokens: budget %d, want %d", tc.tokens, got, tc.want)
		}
		if got := fixed.index.Stats(fixed.slot(eps[0])).Budget; got != 300 {
			t.Errorf("cache_blocks 300 with a stated cache of %d tokens: budget %d", tc.tokens, got)
		}
	}
}

// BenchmarkPrefixCandidates is what prefix affinity adds to one choice at
// 10 endpoints with a 100,000-block index: each candidate's slot (with the
// checks for what its backend lost and the size it states) and the match.
// The hashing of the prompt is apart (fleet/prefix BenchmarkParse). No
// allocation in the steady state.
func BenchmarkPrefixCandidates(b *testing.B) {
	eps := scheduledEndpoints(b, 10)
	pr := newPrefixRouting(eps, nil, nil)
	system := strings.Repeat("You are a careful assistant. ", 30)
	body := func(i int) []byte {
		return []byte(fmt.Sprintf(`{"model":"llama3:8b","messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`,
			system, strings.Repeat(fmt.Sprintf("question %d ", i), 400)))
	}
	blocks := func() (n int) {
		for _, st := range eps {
			n += pr.index.Stats(pr.slot(st)).Blocks
		}
		return n
	}
	for i := 0; blocks() < 100_000; i++ {
		rq := pr.start(body(i), "llama3:8b")
		rq.served(eps[i%10], "llama3:8b")
	}
	rq := pr.start(body(3), "llama3:8b")
	var c balancer.Candidates = &eps
	// the index's own match over the same slots, for the ratio: what the
	// per-candidate checks add on top
	b.Run("match", func(b *testing.B) {
		rq.candidates(eps, c)
		slots, out := slices.Clone(rq.slots), make([]int, len(eps))
		b.ReportAllocs()
		for range b.N {
			pr.index.Match(&rq.chain, slots, out)
		}
		b.ReportMetric(float64(blocks()), "index-blocks")
	})
	b.Run("candidates", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			rq.candidates(eps, c)
		}
		b.ReportMetric(float64(blocks()), "index-blocks")
	})
}
