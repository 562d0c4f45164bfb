package balancer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/fleet/prefix"
)

// prefixFleet is n idle vLLM-like candidates of 8 slots, polled now.
func prefixFleet(names ...string) *fleet {
	f := newFleet(names...)
	for i := range f.signals {
		f.signals[i] = Signals{QueueKnown: true, SlotsKnown: true, Slots: 8, At: time.Now(), MaxAge: time.Hour}
	}
	return f
}

func prefixPipeline(t testing.TB) *Pipeline {
	return mustPipeline(t, Config{Strategy: Adaptive, PrefixAffinity: true})
}

func TestPrefixLongestMatchWinsUntilSaturated(t *testing.T) {
	p := prefixPipeline(t)
	f := prefixFleet("a", "b", "c", "d")
	for i := range f.signals {
		f.signals[i].PrefixCached = 8 // the shared system prompt, everywhere
	}
	f.signals[1].PrefixCached = 30
	r := Request{Model: "m", Prefix: PrefixInfo{Blocks: 40, Shared: 8, Anchor: 12345}}
	i, why := p.Schedule(r, f)
	if i != 1 || !strings.Contains(why.String(), "prefix=30/40") {
		t.Fatalf("idle fleet: chose %d (%s), want b with prefix=30/40", i, why.String())
	}
	if strings.Contains(why.Public(), "prefix") {
		t.Fatalf("the public reason names the index's match: %s", why.Public())
	}
	// b's slots are full and a round of requests waits: still cheaper than
	// prefilling 22 blocks elsewhere
	f.signals[1].Running, f.signals[1].Waiting = 8, 8
	if i, why = p.Schedule(r, f); i != 1 {
		t.Fatalf("b one round behind: chose %d (%s), want b", i, why.String())
	}
	// three rounds behind the idle others: let go, spread by load
	f.signals[1].Waiting = 24
	i, why = p.Schedule(r, f)
	if i == 1 || !strings.Contains(why.String(), "released") {
		t.Fatalf("b saturated: chose %d (%s), want another, released", i, why.String())
	}
	// the model unloaded there: its cache went with it
	f.signals[1].Waiting = 0
	f.signals[1].Warm = Cold
	if i, why = p.Schedule(r, f); i == 1 {
		t.Fatalf("b cold: chose b (%s), whose cache went with the model", why.String())
	}
	f.signals[1].Warm, f.signals[1].Waiting = WarmUnknown, 24
	// a larger release penalty keeps it
	patient := mustPipeline(t, Config{Strategy: Adaptive, PrefixAffinity: true, ReleasePenalty: 10})
	if i, why = patient.Schedule(r, f); i != 1 {
		t.Fatalf("penalty 10: chose %d (%s), want b", i, why.String())
	}
}

// TestPrefixNewConversationsSpread: conversations that share a system
// prompt and nothing else get rendezvous homes over their own anchors, so
// they spread over the fleet, and a prompt with nothing of its own is
// placed by load, never hashed by its shared part.
// newConversationHomes places n new conversations (a block of their own
// beyond a shared head) on f and counts each endpoint's homes.
func newConversationHomes(t *testing.T, p *Pipeline, f *fleet, n int) []int {
	t.Helper()
	counts := make([]int, len(f.signals))
	for conv := range n {
		r := Request{Model: "m", Prefix: PrefixInfo{Blocks: 20, Shared: 16, Anchor: HashKey(fmt.Sprint("conversation ", conv))}}
		i, why := p.Schedule(r, f)
		if !strings.Contains(why.String(), "home") {
			t.Fatalf("a new conversation: %s, want its home", why.String())
		}
		counts[i]++
	}
	return counts
}

func TestPrefixNewConversationsSpread(t *testing.T) {
	p := prefixPipeline(t)
	f := prefixFleet("a", "b", "c", "d")
	counts := newConversationHomes(t, p, f, 400)
	for i, n := range counts {
		if n < 60 || n > 140 {
			t.Fatalf("homes of 400 conversations over 4 servers: %v (server %d)", counts, i)
		}
	}
	// the shared head alone: by load, in turn, with no home
	clear(counts)
	for range 40 {
		i, why := p.Schedule(Request{Model: "m", Prefix: PrefixInfo{Blocks: 16, Shared: 16, Anchor: 0}}, f)
		if strings.Contains(why.String(), "home") {
			t.Fatalf("a system prompt alone got a home: %s", why.String())
		}
		counts[i]++
	}
	for _, n := range counts {
		if n != 10 {
			t.Fatalf("equal idle servers took %v of 40 shared-only requests, want 10 each", counts)
		}
	}
}

// TestPrefixHomesInAMixedFleet: idle endpoints that state no slots (a
// vLLM whose metrics name none yet, counted at one) are homes as much as
// one that states four: an idle endpoint is never above the load bound, or
// every new conversation of a mixed fleet would herd onto the one that
// states its slots.
func TestPrefixHomesInAMixedFleet(t *testing.T) {
	p := prefixPipeline(t)
	f := prefixFleet("llama", "vllm-a", "vllm-b")
	f.signals[0].Slots = 4
	for i := 1; i < 3; i++ {
		f.signals[i].SlotsKnown, f.signals[i].Slots = false, 0
	}
	counts := newConversationHomes(t, p, f, 300)
	for i, n := range counts {
		if n < 60 {
			t.Fatalf("homes of 300 conversations on an idle mixed fleet: %v (endpoint %d starved)", counts, i)
		}
	}
	// a busy endpoint of unknown capacity is still skipped for an idle one
	f.signals[1].Running = 1
	for conv := range 100 {
		r := Request{Model: "m", Prefix: PrefixInfo{Blocks: 20, Shared: 16, Anchor: HashKey(fmt.Sprint("conversation ", conv))}}
		if i, why := p.Schedule(r, f); i == 1 {
			t.Fatalf("conversation %d homed on vllm-a with a request running and others idle: %s", conv, why.String())
		}
	}
}

// TestPrefixHomeAgreesAcrossProxies: two pipelines with one config (two
// proxies) send a new conversation to the same home without sharing state,
// and a busy home is skipped alike.
func TestPrefixHomeAgreesAcrossProxies(t *testing.T) {
	one, two := prefixPipeline(t), prefixPipeline(t)
	f, g := prefixFleet("a", "b", "c", "d"), prefixFleet("a", "b", "c", "d")
	for conv := range 200 {
		r := Request{Model: "m", Prefix: PrefixInfo{Blocks: 10, Shared: 2, Anchor: HashKey(fmt.Sprint(conv))}}
		i, _ := one.Schedule(r, f)
		j, _ := two.Schedule(r, g)
		if i != j {
			t.Fatalf("conversation %d: proxy one chose %d, proxy two %d", conv, i, j)
		}
	}
}

// TestPrefixTiersAreHard: no cached prefix, pin or session moves a
// request to a lower priority tier while a higher one has room.
func TestPrefixTiersAreHard(t *testing.T) {
	p := prefixPipeline(t)
	f := prefixFleet("main", "overflow")
	f.prio[0], f.prio[1] = 100, 10
	f.signals[1].PrefixCached = 30
	f.signals[1].Warm = Warm
	f.signals[0].Warm = Cold
	for _, r := range []Request{
		{Model: "m", Prefix: PrefixInfo{Blocks: 40, Shared: 4, Anchor: 7}},
		{Model: "m", Pinned: "overflow", Key: 99},
		{Model: "m", SessionKey: "someone"},
		{Model: "m", Prefix: PrefixInfo{Blocks: 40, Shared: 4, Anchor: 8}, Key: HashKey("x")},
	} {
		if i, why := p.Schedule(r, f); i != 0 {
			t.Fatalf("%+v: chose %d (%s), want the priority 100 tier", r, i, why.String())
		}
	}
	// the top tier full (our max_concurrency reached): the next tier serves
	f.signals[0].MaxConcurrency = 2
	f.hold(0, 2)
	if i, why := p.Schedule(Request{Model: "m", Prefix: PrefixInfo{Blocks: 40, Shared: 4, Anchor: 7}}, f); i != 1 {
		t.Fatalf("top tier full: chose %d (%s), want the overflow", i, why.String())
	}
}

// TestPrefixSessionWins: a request with a pin goes to its pin, whatever the
// prefix index says.
func TestPrefixSessionWins(t *testing.T) {
	p := prefixPipeline(t)
	f := prefixFleet("a", "b", "c")
	f.signals[1].PrefixCached = 30
	r := Request{Model: "m", Pinned: "c", Key: 5, Prefix: PrefixInfo{Blocks: 40, Shared: 4, Anchor: 7}}
	if i, why := p.Schedule(r, f); i != 2 {
		t.Fatalf("pinned to c: chose %d (%s)", i, why.String())
	}
}

// BenchmarkPrefixSelection is one request's whole prefix-aware selection at
// ten endpoints: the index's match over a 100,000-block index, then the
// adaptive pipeline with the prefix stage. Hashing the prompt is
// fleet/prefix's BenchmarkParse.
func BenchmarkPrefixSelection(b *testing.B) {
	ix := prefix.NewIndex()
	names := make([]string, 10)
	slots := make([]prefix.Slot, 10)
	chain := func(conv uint64, n int) *prefix.Chain {
		c := &prefix.Chain{Shared: 8}
		for k := range n {
			h := uint64(k+1) * 0x9e3779b97f4a7c15
			if k >= 8 {
				h = mix64(conv<<20 | uint64(k))
			}
			c.Blocks = append(c.Blocks, h)
		}
		return c
	}
	for e := range names {
		names[e] = fmt.Sprint("endpoint-", e)
		s, err := ix.Add(names[e], 10_000)
		if err != nil {
			b.Fatal(err)
		}
		slots[e] = s
		for i := range 10_000 / 56 {
			ix.Record(s, "m", chain(uint64(e*100_000+i+1), 64))
		}
	}
	req := chain(999_999_999, 64) // a conversation no endpoint recorded but one
	ix.Record(slots[3], "m", &prefix.Chain{Blocks: req.Blocks[:40]})
	f := prefixFleet(names...)
	p := prefixPipeline(b)
	cached := make([]int, len(slots))
	r := Request{Model: "m", Prefix: PrefixInfo{Blocks: len(req.Blocks), Shared: req.Shared, Anchor: 77}}
	b.ReportAllocs()
	for b.Loop() {
		ix.Match(req, slots, cached)
		for i := range f.signals {
			f.signals[i].PrefixCached = cached[i]
		}
		if i, _ := p.Schedule(r, f); i != 3 {
			b.Fatalf("chose %d", i)
		}
	}
}
