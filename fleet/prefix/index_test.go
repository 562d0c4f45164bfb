package prefix

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// synth is a chain of n blocks: the first shared blocks equal for every
// conversation (seed 0), the rest the conversation's own.
func synth(conv uint64, shared, n int) *Chain {
	c := &Chain{Shared: shared, Anchor: conv + 1}
	for k := range n {
		if k < shared {
			c.Blocks = append(c.Blocks, uint64(k+1)*0x9e3779b97f4a7c15)
		} else {
			c.Blocks = append(c.Blocks, (conv+1)*0xff51afd7ed558ccd^uint64(k+1)*0xc4ceb9fe1a85ec53)
		}
	}
	return c
}

func mustAdd(t testing.TB, ix *Index, name string, budget int) Slot {
	t.Helper()
	s, err := ix.Add(name, budget)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMatchFindsEachEndpointsLongestPrefix(t *testing.T) {
	ix := NewIndex()
	a, b, c := mustAdd(t, ix, "a", 0), mustAdd(t, ix, "b", 0), mustAdd(t, ix, "c", 0)
	conv := synth(1, 4, 40)
	if got := ix.Record(a, "m", &Chain{Blocks: conv.Blocks[:30]}); got != 0 {
		t.Fatalf("first record found %d cached", got)
	}
	ix.Record(b, "m", &Chain{Blocks: conv.Blocks[:4]})  // the shared head only
	ix.Record(c, "m", &Chain{Blocks: conv.Blocks[:12]}) // an earlier turn
	out := make([]int, 4)
	slots := []Slot{c, a, b, Slot(40)}
	best := ix.Match(conv, slots, out)
	if best != 30 || out[0] != 12 || out[1] != 30 || out[2] != 4 || out[3] != 0 {
		t.Fatalf("best %d, out %v; want 30 and [12 30 4 0]", best, out)
	}
	if got := ix.Record(a, "m", conv); got != 30 {
		t.Fatalf("recording the next turn found %d cached, want 30", got)
	}
	if st := ix.Stats(a); st.Blocks != 40 || st.Recorded != 70 || st.Hits != 30 {
		t.Fatalf("stats %+v", st)
	}
	// another conversation matches only the shared head anywhere
	other := synth(2, 4, 40)
	if best := ix.Match(other, slots, out); best != 4 || out[0] != 4 || out[1] != 4 || out[2] != 4 {
		t.Fatalf("other conversation: best %d out %v", best, out)
	}
}

func TestEvictionKeepsHeadsAndBudget(t *testing.T) {
	ix := NewIndex()
	a := mustAdd(t, ix, "a", 10)
	first, second := synth(1, 0, 8), synth(2, 0, 8)
	ix.Record(a, "m", first)
	ix.Record(a, "m", second)
	out := make([]int, 1)
	// 16 blocks into a budget of 10: the first chain's tail went first
	if ix.Match(second, []Slot{a}, out); out[0] != 8 {
		t.Fatalf("the newest chain matches %d of 8", out[0])
	}
	if ix.Match(first, []Slot{a}, out); out[0] != 2 {
		t.Fatalf("the older chain matches %d, want its head of 2", out[0])
	}
	if st := ix.Stats(a); st.Blocks != 10 || st.Evictions != 6 {
		t.Fatalf("stats %+v", st)
	}
	// shrinking the budget evicts at once
	mustAdd(t, ix, "a", 4)
	if st := ix.Stats(a); st.Blocks != 4 || st.Budget != 4 {
		t.Fatalf("after shrinking: %+v", st)
	}
	// a chain longer than the budget keeps its head
	long := synth(3, 0, 50)
	ix.Record(a, "m", long)
	if ix.Match(long, []Slot{a}, out); out[0] != 4 {
		t.Fatalf("a chain beyond the budget matches %d, want its first 4", out[0])
	}
}

func TestForgetOnRestartAndUnload(t *testing.T) {
	ix := NewIndex()
	a, b := mustAdd(t, ix, "a", 0), mustAdd(t, ix, "b", 0)
	m1, m2 := synth(1, 0, 10), synth(2, 0, 10)
	for _, s := range []Slot{a, b} {
		ix.Record(s, "llama", m1)
		ix.Record(s, "qwen", m2)
	}
	out := make([]int, 2)
	ix.ForgetModel(a, "never-recorded")
	if len(ix.models) != 2 || ix.Stats(a).Forgets != 0 || ix.Stats(a).Blocks != 20 {
		t.Fatalf("forgetting a model never recorded: models %v, %+v", ix.models, ix.Stats(a))
	}
	ix.ForgetModel(a, "LLaMA") // backends state loaded models lower-cased; any case matches
	if ix.Match(m1, []Slot{a, b}, out); out[0] != 0 || out[1] != 10 {
		t.Fatalf("after unloading llama on a: %v", out)
	}
	if st := ix.Stats(a); st.Forgets != 1 || st.Forgotten != 10 || st.Blocks != 10 {
		t.Fatalf("a after unloading llama: %+v", st)
	}
	if ix.Match(m2, []Slot{a, b}, out); out[0] != 10 {
		t.Fatalf("unloading llama dropped qwen: %v", out)
	}
	ix.Forget(b)
	if ix.Match(m1, []Slot{a, b}, out); out[1] != 0 || ix.Stats(b).Blocks != 0 {
		t.Fatalf("after b restarted: %v, %+v", out, ix.Stats(b))
	}
	ix.Remove(a)
	ix.Remove(b)
	if len(ix.owners) != 0 {
		t.Fatalf("%d owner entries left after removing every endpoint", len(ix.owners))
	}
	c := mustAdd(t, ix, "c", 0)
	if c != a || ix.Stats(c).Blocks != 0 {
		t.Fatalf("a freed slot is reused empty: slot %d, %+v", c, ix.Stats(c))
	}
	for i := 1; i < MaxEndpoints; i++ {
		mustAdd(t, ix, fmt.Sprint("e", i), 1)
	}
	if _, err := ix.Add("one too many", 1); err != ErrFull {
		t.Fatalf("adding beyond MaxEndpoints: %v", err)
	}
}

// TestFloodOfUniquePrefixes: clients that never repeat a prompt cannot grow
// the index past its budget, and a crafted chain reaches only an endpoint
// that holds it.
func TestFloodOfUniquePrefixes(t *testing.T) {
	ix := NewIndex()
	slots := []Slot{mustAdd(t, ix, "a", 1000), mustAdd(t, ix, "b", 1000)}
	for i := range 5000 {
		ix.Record(slots[i%2], "m", synth(uint64(i), 0, 20))
	}
	for _, s := range slots {
		if st := ix.Stats(s); st.Blocks != 1000 || st.Hits != 0 {
			t.Fatalf("%+v", st)
		}
	}
	if len(ix.owners) != 2000 {
		t.Fatalf("%d owner entries for two endpoints of 1000 blocks", len(ix.owners))
	}
	out := make([]int, 2)
	if best := ix.Match(synth(999_999, 0, 20), slots, out); best != 0 {
		t.Fatalf("a chain nobody served matched %d blocks", best)
	}
}

// TestIndexMemoryWithinBudget measures the heap the index holds with ten
// endpoints full (100,000 blocks) after a flood ten times larger.
func TestIndexMemoryWithinBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 100,000 blocks")
	}
	const endpoints, budget = 10, 10_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix := NewIndex()
	for e := range endpoints {
		s := mustAdd(t, ix, fmt.Sprint("e", e), budget)
		for i := range 10 * budget / 50 {
			ix.Record(s, "m", synth(uint64(e*1_000_000+i), 0, 50))
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	used := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	limit := int64(endpoints * budget * BytesPerBlock)
	t.Logf("index of %d blocks: %d bytes on the heap, %.1f bytes a block (bound %d)", endpoints*budget, used,
		float64(used)/float64(endpoints*budget), BytesPerBlock)
	if used > limit {
		t.Fatalf("index holds %d bytes, over its budget's %d", used, limit)
	}
	runtime.KeepAlive(ix)
}

func TestConcurrentRecordAndMatch(t *testing.T) {
	ix := NewIndex()
	slots := []Slot{mustAdd(t, ix, "a", 500), mustAdd(t, ix, "b", 500), mustAdd(t, ix, "c", 500)}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]int, len(slots))
			rng := rand.New(rand.NewPCG(uint64(w), 0))
			for i := range 2000 {
				c := synth(uint64(rng.IntN(50)), 4, 30)
				ix.Match(c, slots, out)
				ix.Record(slots[i%3], "m", c)
				if i%500 == 0 {
					ix.ForgetModel(slots[w%3], "m")
				}
			}
		}()
	}
	wg.Wait()
	for _, s := range slots {
		if st := ix.Stats(s); st.Blocks > 500 {
			t.Fatalf("over budget: %+v", st)
		}
	}
}

// BenchmarkMatch is a selection's index work: ten endpoints, a
// 100,000-block index, a 64-block conversation cached on one endpoint to
// block 40 and sharing an 8-block head with the rest.
func BenchmarkMatch(b *testing.B) {
	ix := NewIndex()
	var slots []Slot
	for e := range 10 {
		s := mustAdd(b, ix, fmt.Sprint("e", e), 10_000)
		slots = append(slots, s)
		for i := range 10_000 / 56 {
			ix.Record(s, "m", synth(uint64(e*1_000_000+i+10), 8, 64))
		}
	}
	conv := synth(7, 8, 64)
	ix.Record(slots[3], "m", &Chain{Blocks: conv.Blocks[:40]})
	total := 0
	for _, s := range slots {
		total += ix.Stats(s).Blocks
	}
	out := make([]int, len(slots))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if ix.Match(conv, slots, out) != 40 {
			b.Fatal("wrong match")
		}
	}
	b.ReportMetric(float64(total), "blocks")
}

func BenchmarkRecord(b *testing.B) {
	ix := NewIndex()
	s := mustAdd(b, ix, "a", 10_000)
	chains := make([]*Chain, 1000)
	for i := range chains {
		chains[i] = synth(uint64(i), 8, 64)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ix.Record(s, "m", chains[i%len(chains)])
		i++
	}
}
