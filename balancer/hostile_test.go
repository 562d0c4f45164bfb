package balancer

import (
	"fmt"
	"testing"
)

// The prefix stage under hostile traffic: every pick is held in flight, so
// a stage that herds shows as one endpoint's count running away.

// holdPicks schedules n requests made by req, holding each pick in flight,
// and returns the in-flight counts.
func holdPicks(t *testing.T, p *Pipeline, f *fleet, n int, req func(k int) Request) []int64 {
	t.Helper()
	for k := range n {
		i, why := p.Schedule(req(k), f)
		if i < 0 {
			t.Fatalf("request %d: no pick (%s)", k, why.String())
		}
		f.hold(i, 1)
	}
	out := make([]int64, f.Len())
	for i := range out {
		out[i] = f.InFlight(i)
	}
	return out
}

// TestHostileCraftedPrefixCannotHerd: prompts crafted to share a long
// prefix one endpoint holds (an attacker's own earlier conversation) reach
// it only until it is saturated: beyond the release penalty's rounds of
// queueing the rest spread, so the holder is at most that far ahead.
func TestHostileCraftedPrefixCannotHerd(t *testing.T) {
	p := prefixPipeline(t)
	f := prefixFleet("a", "b", "c", "d")
	f.signals[2].PrefixCached = 60 // c holds the crafted prefix
	counts := holdPicks(t, p, f, 400, func(k int) Request {
		return Request{Model: "m", Prefix: PrefixInfo{Blocks: 64, Shared: 0, Anchor: HashKey(fmt.Sprint("crafted ", k))}}
	})
	lowest := min(counts[0], counts[1], counts[3])
	t.Logf("in flight %v", counts)
	// 8 slots, then DefaultReleasePenalty rounds of 8 more, and one
	// request's rounding
	if ahead := counts[2] - lowest; ahead > 8+int64(DefaultReleasePenalty*8)+1 || counts[2] < 8 {
		t.Fatalf("in flight %v: the holder is %d ahead of the least loaded, want its slots plus %v rounds at most (and its slots used)", counts, ahead, DefaultReleasePenalty)
	}
}

// TestHostileOneSystemPromptManyClients: 10,000 clients sending one system
// prompt, each with a first message of its own, spread over the fleet
// (homes over their own anchors, within the load bound), not onto whoever
// holds the shared prompt; and the same prompt with nothing of its own is
// placed by load.
func TestHostileOneSystemPromptManyClients(t *testing.T) {
	for _, own := range []bool{true, false} {
		p := prefixPipeline(t)
		f := prefixFleet("a", "b", "c", "d")
		f.signals[0].PrefixCached = 16 // only a holds the system prompt
		blocks := 16
		if own {
			blocks = 18
		}
		counts := holdPicks(t, p, f, 10_000, func(k int) Request {
			return Request{Model: "m", Prefix: PrefixInfo{Blocks: blocks, Shared: 16, Anchor: HashKey(fmt.Sprint("client ", k))}}
		})
		hi, lo := max(counts[0], counts[1], counts[2], counts[3]), min(counts[0], counts[1], counts[2], counts[3])
		if float64(hi) > DefaultLoadBound*2500+1 || float64(lo) < 2500/DefaultLoadBound-1 {
			t.Fatalf("own blocks %v: 10,000 clients of one system prompt in flight %v, want each within the load bound of 2,500", own, counts)
		}
	}
}

// TestHostileFloodOfUniquePrefixes: prompts that share nothing, arriving
// faster than anything finishes, spread within the load bound, and tiers
// stay hard: the overflow tier takes none while the top one has room.
func TestHostileFloodOfUniquePrefixes(t *testing.T) {
	p := prefixPipeline(t)
	f := prefixFleet("a", "b", "c", "overflow")
	f.prio[0], f.prio[1], f.prio[2], f.prio[3] = 100, 100, 100, 10
	counts := holdPicks(t, p, f, 3000, func(k int) Request {
		return Request{Model: "m", Prefix: PrefixInfo{Blocks: 8, Shared: 0, Anchor: HashKey(fmt.Sprint("flood ", k))}}
	})
	if counts[3] != 0 {
		t.Fatalf("in flight %v: the overflow tier took requests while the top tier had no cap", counts)
	}
	hi, lo := max(counts[0], counts[1], counts[2]), min(counts[0], counts[1], counts[2])
	if float64(hi) > DefaultLoadBound*1000+1 || float64(lo) < 1000/DefaultLoadBound-1 {
		t.Fatalf("a flood of 3,000 unique prompts in flight %v, want each within the load bound of 1,000", counts)
	}
}
