package balancer

import (
	"fmt"
	"testing"
	"time"
)

// slowDecoderFleet is four idle 8-slot candidates whose backends state
// their time per output token: 25 ms, and 75 ms for slow ("d", three
// times slower).
func slowDecoderFleet() *fleet {
	f := prefixFleet("a", "b", "c", "d")
	for i := range f.signals {
		f.signals[i].TPOT, f.signals[i].TPOTAt = 25*time.Millisecond, time.Now()
	}
	f.signals[3].TPOT = 75 * time.Millisecond
	return f
}

// TestPrefixLeavesASlowDecoder (item 7): a conversation whose prompt only
// the slow box holds leaves it while a faster box has room, and no new
// conversation makes its home there; with every faster box full it stays.
func TestPrefixLeavesASlowDecoder(t *testing.T) {
	p := prefixPipeline(t)
	f := slowDecoderFleet()
	f.signals[3].PrefixCached = 30
	r := Request{Model: "m", Prefix: PrefixInfo{Blocks: 40, Shared: 4, Anchor: 12345}}
	if i, why := p.Schedule(r, f); i == 3 {
		t.Fatalf("the slow box holds the conversation: chose it (%s), want a faster one", why.String())
	}
	for conv := range 400 {
		r := Request{Model: "m", Prefix: PrefixInfo{Blocks: 20, Shared: 16, Anchor: HashKey(fmt.Sprint("conversation ", conv))}}
		if i, why := p.Schedule(r, f); i == 3 {
			t.Fatalf("conversation %d made its home on the slow box (%s)", conv, why.String())
		}
	}
	// equal decoders: the conversation stays where its prompt is
	f.signals[3].TPOT = 30 * time.Millisecond
	if i, why := p.Schedule(r, f); i != 3 {
		t.Fatalf("30 ms against 25 ms per token is no slow box: chose %d (%s)", i, why.String())
	}
	// the faster boxes full: the slow one keeps it
	f.signals[3].TPOT = 75 * time.Millisecond
	for i := range 3 {
		f.signals[i].Running, f.signals[i].Waiting = 8, 2
	}
	if i, why := p.Schedule(r, f); i != 3 {
		t.Fatalf("the faster boxes full: chose %d (%s), want the slow one holding the prompt", i, why.String())
	}
}

// TestSlowDecoderJudgedOnStatedRateOnly: a box whose time to first token
// is three times the others' (a client's long prompts can do that) keeps
// its conversation; only the stated decode rate moves it, and an old
// statement counts for nothing.
func TestSlowDecoderJudgedOnStatedRateOnly(t *testing.T) {
	p := prefixPipeline(t)
	f := slowDecoderFleet()
	f.signals[3].TPOT = 25 * time.Millisecond
	for i := range f.signals {
		f.signals[i].TTFT, f.signals[i].TTFTAt = 200*time.Millisecond, time.Now()
	}
	f.signals[3].TTFT = 600 * time.Millisecond
	f.signals[3].PrefixCached = 30
	r := Request{Model: "m", Prefix: PrefixInfo{Blocks: 40, Shared: 4, Anchor: 12345}}
	if i, why := p.Schedule(r, f); i != 3 {
		t.Fatalf("slow TTFT, equal decode rate: chose %d (%s), want the box holding the prompt", i, why.String())
	}
	f.signals[3].TPOT, f.signals[3].TPOTAt = 75*time.Millisecond, time.Now().Add(-2*TPOTMaxAge)
	if i, why := p.Schedule(r, f); i != 3 {
		t.Fatalf("a stale decode rate: chose %d (%s), want the box holding the prompt", i, why.String())
	}
}

// TestSessionLeavesASlowDecoder (item 7, with session ids): under adaptive
// a session pinned to a box that decodes three times slower goes to a
// faster one while one has room, and stays pinned when none has.
func TestSessionLeavesASlowDecoder(t *testing.T) {
	p := mustPipeline(t, Config{Strategy: Adaptive})
	f := slowDecoderFleet()
	r := Request{Model: "m", Key: HashKey("conv"), Pinned: "d"}
	if i, why := p.Schedule(r, f); i == 3 {
		t.Fatalf("pinned to the slow box: chose it (%s)", why.String())
	}
	for k := range 200 {
		if i, why := p.Schedule(Request{Model: "m", Key: HashKey(fmt.Sprint("session ", k))}, f); i == 3 {
			t.Fatalf("a new session went to the slow box (%s)", why.String())
		}
	}
	for i := range 3 {
		f.signals[i].Running, f.signals[i].Waiting = 8, 2
	}
	if i, why := p.Schedule(r, f); i != 3 {
		t.Fatalf("the faster boxes full: chose %d (%s), want the pin", i, why.String())
	}
}

// TestSpeedScoreReadsStatedRate: the speed score marks a box that states a
// decode rate three times slower as slow with no TTFT sample of ours, and
// an equal one not.
func TestSpeedScoreReadsStatedRate(t *testing.T) {
	s := &Set{MinTPOT: 25 * time.Millisecond}
	slow := &Candidate{Signals: Signals{TPOT: 75 * time.Millisecond}}
	even := &Candidate{Signals: Signals{TPOT: 40 * time.Millisecond}}
	if got := (ttftScorer{}).Score(nil, slow, s); got > 0.5 {
		t.Fatalf("three times slower per token scores %v", got)
	}
	if got := (ttftScorer{}).Score(nil, even, s); got != 1 {
		t.Fatalf("1.6 times per token scores %v, want 1", got)
	}
}

// TestHomeTakesTheLessLoadedOfTwo: a new conversation's home is its
// rendezvous first choice unless its second choice is clearly less loaded
// (a quarter of the slots); not whichever is idlest, and a request of
// difference keeps the first, so proxies whose views differ by that agree.
func TestHomeTakesTheLessLoadedOfTwo(t *testing.T) {
	p := prefixPipeline(t)
	f := prefixFleet("a", "b", "c", "d")
	r := Request{Model: "m", Prefix: PrefixInfo{Blocks: 20, Shared: 16, Anchor: HashKey("conversation")}}
	first, _ := p.Schedule(r, f)
	moved := 0
	for x := range f.signals {
		if x == first {
			continue
		}
		for i := range f.signals {
			f.signals[i].Running = 6 // 7 of 8 slots with this request
		}
		f.signals[x].Running = 2 // 3 of 8
		i, why := p.Schedule(r, f)
		switch {
		case i == x:
			moved++
		case i != first:
			t.Fatalf("%d idler: chose %d (%s), want %d or %d", x, i, why.String(), first, x)
		}
		f.signals[x].Running = 5 // one request less than the first
		if i, why := p.Schedule(r, f); i != first {
			t.Fatalf("%d one request idler: chose %d (%s), want the first choice %d", x, i, why.String(), first)
		}
	}
	if moved != 1 {
		t.Fatalf("the home moved to %d of the 3 others when each was idler, want only the second choice", moved)
	}
}

// TestHomesSpreadOnUnprovenSlots (workload (e): equal vLLM-like servers
// that state no slot count and have not queued): the slots each was seen
// running at once are only lower bounds, and a server that happened to
// be seen running fewer must not look fuller for it, or it loses the two
// choices, gets fewer requests, is seen running fewer, and so on (the
// harness's (e) split 78/71/52/63). Equally busy, each is home to about
// a quarter of new conversations.
func TestHomesSpreadOnUnprovenSlots(t *testing.T) {
	p := prefixPipeline(t)
	f := newFleet("a", "b", "c", "d")
	for i := range f.signals {
		f.signals[i] = Signals{QueueKnown: true, Running: 2, SeenSlots: 8, At: time.Now(), MaxAge: time.Hour}
	}
	f.signals[2].SeenSlots = 3
	homes := make([]int, 4)
	for k := range 400 {
		r := Request{Model: "m", Prefix: PrefixInfo{Blocks: 20, Shared: 16, Anchor: HashKey(fmt.Sprint("conversation ", k))}}
		i, _ := p.Schedule(r, f)
		homes[i]++
	}
	for i, n := range homes {
		if n < 60 {
			t.Fatalf("homes %v: %s got %d of 400, want about 100 each", homes, f.names[i], n)
		}
	}
}

// TestColdOnlyWhenWaitingCostsMore (item 2): a cold endpoint is chosen only
// when waiting on a warm one would cost more than its learned load: the
// warm endpoint at its cap, half a round behind at 0.5 s a round, beats a
// 3 s load; ten rounds behind it does not; without a learned load time the
// capacity filter stands as before.
func TestColdOnlyWhenWaitingCostsMore(t *testing.T) {
	p := prefixPipeline(t)
	f := newFleet("warm", "cold")
	now := time.Now()
	f.signals[0] = Signals{Warm: Warm, MaxConcurrency: 2, Service: 500 * time.Millisecond, At: now, MaxAge: time.Hour}
	f.signals[1] = Signals{Warm: Cold, LoadTime: 3 * time.Second, At: now, MaxAge: time.Hour}
	f.hold(0, 2)
	if i, why := p.Schedule(Request{Model: "m"}, f); i != 0 {
		t.Fatalf("warm at its cap, a 0.25 s wait against a 3 s load: chose %d (%s), want warm", i, why.String())
	}
	f.hold(0, 19) // 21 in flight on 2 slots: 9.5 rounds of 0.5 s
	if i, why := p.Schedule(Request{Model: "m"}, f); i != 1 {
		t.Fatalf("a 4.75 s wait against a 3 s load: chose %d (%s), want cold", i, why.String())
	}
	f.signals[1].LoadTime = 0
	f.inFlight[0].Release()
	for f.InFlight(0) > 2 {
		f.inFlight[0].Release()
	}
	if i, why := p.Schedule(Request{Model: "m"}, f); i != 1 {
		t.Fatalf("no load time learned: chose %d (%s), want the one with room, as before", i, why.String())
	}
}

// ollamaLike is the signals of a backend that states residency but no
// slots nor queue (Ollama): warm or cold, read now.
func ollamaLike(w Warmth, now time.Time) Signals {
	return Signals{Warm: w, At: now, MaxAge: time.Hour}
}

// TestLoadASecondCopyWhenTheQueueLasts (item 2): a warm Ollama whose
// answers show a lasting queue (warm answers 0.9 s above their floor, six of ours
// there, 1.2 s a request: 4.5 requests waiting on average) gets a second
// copy on an idle cold endpoint, even though this one request's wait
// (0.9 s) is less than the 3 s load; without the queue (answers at their floor)
// it does not; nor does a cold endpoint that is busy with another model,
// even where its load is cheaper than the wait.
func TestLoadASecondCopyWhenTheQueueLasts(t *testing.T) {
	p := prefixPipeline(t)
	now := time.Now()
	f := newFleet("warm", "cold")
	f.signals[0] = ollamaLike(Warm, now)
	f.signals[0].Queueing, f.signals[0].Service, f.signals[0].LoadTime = 900*time.Millisecond, 1200*time.Millisecond, 3*time.Second
	f.signals[1] = ollamaLike(Cold, now)
	f.hold(0, 6)
	if i, why := p.Schedule(Request{Model: "m"}, f); i != 1 {
		t.Fatalf("a lasting queue on the only warm copy: chose %d (%s), want the idle cold one", i, why.String())
	}
	f.signals[0].Queueing = 10 * time.Millisecond // its answers met no queue
	if i, why := p.Schedule(Request{Model: "m"}, f); i != 0 {
		t.Fatalf("six in flight but no queue in their answers: chose %d (%s), want warm", i, why.String())
	}
	// a cheap load (0.5 s) beside the 0.9 s wait: still not on a busy one
	f.signals[1].LoadTime = 500 * time.Millisecond
	f.signals[0].Queueing = 900 * time.Millisecond
	f.hold(1, 1) // busy with another model: loading there would evict it
	if i, why := p.Schedule(Request{Model: "m"}, f); i != 0 {
		t.Fatalf("the cold one is busy: chose %d (%s), want warm", i, why.String())
	}
}

// TestNoHerdOnAColdModel (hostile): a flood of requests for a model no
// endpoint holds, while our load of it is under way on one, all ride on
// that load: no second endpoint starts loading it, whether its load time
// is learned or not. Only when waiting for that load costs more than
// another load (a slow box loading, a fast one idle) does a second start.
func TestNoHerdOnAColdModel(t *testing.T) {
	p := prefixPipeline(t)
	now := time.Now()
	f := newFleet("a", "b", "c")
	for i := range f.signals {
		f.signals[i] = ollamaLike(Cold, now)
	}
	f.signals[1].LoadingSince = now.Add(-100 * time.Millisecond)
	for n := range 20 {
		if i, why := p.Schedule(Request{Model: "m"}, f); i != 1 {
			t.Fatalf("request %d of a flood: chose %d (%s), want b, where the model is loading", n, i, why.String())
		}
		f.hold(1, 1)
	}
	// learned: b takes 60 s to load, a and c 2 s
	f.signals[1].LoadTime = time.Minute
	f.signals[0].LoadTime, f.signals[2].LoadTime = 2*time.Second, 2*time.Second
	if i, why := p.Schedule(Request{Model: "m"}, f); i == 1 {
		t.Fatalf("b has a minute of load left, a and c load in 2 s: chose b (%s)", why.String())
	}
	// the same with the residency already showing the loading model
	f.signals[1].Warm = Warm
	if i, why := p.Schedule(Request{Model: "m"}, f); i == 1 {
		t.Fatalf("b (listed warm while it loads) has a minute left: chose b (%s)", why.String())
	}
	f.signals[1].LoadTime = 2 * time.Second
	for n := range 5 {
		if i, why := p.Schedule(Request{Model: "m"}, f); i != 1 {
			t.Fatalf("request %d: b's load is nearly done: chose %d (%s), want b", n, i, why.String())
		}
	}
}

// TestSlowBoxLeftWithoutStatedSlots (item 7 on servers that state neither
// slots nor queue, such as LM Studio): our in-flight count is their whole
// load and the slots are those we saw them run at once (SeenSlots, from
// our own streams). While a faster box has a slot free the box that
// decodes three times slower takes nothing, with or without a prompt or a
// session to place, though it is idle and the others busy; once the faster
// boxes would queue it takes the overflow, as it does when they are at
// their max_concurrency; a box of a higher priority is not dropped for a
// faster lower one.
func TestSlowBoxLeftWithoutStatedSlots(t *testing.T) {
	for _, p := range []*Pipeline{prefixPipeline(t), mustPipeline(t, Config{Strategy: Adaptive})} {
		f := newFleet("a", "b", "c", "d")
		for i := range f.signals {
			f.signals[i].TPOT, f.signals[i].TPOTAt, f.signals[i].SeenSlots = 25*time.Millisecond, time.Now(), 8
		}
		f.signals[3].TPOT = 75 * time.Millisecond
		for i := range 3 {
			f.hold(i, 5)
		}
		for k := range 100 {
			reqs := []Request{
				{Model: "m", Prefix: PrefixInfo{Blocks: 20, Shared: 16, Anchor: HashKey(fmt.Sprint("conversation ", k))}},
				{Model: "m", Key: HashKey(fmt.Sprint("session ", k))},
				{Model: "m", Key: HashKey(fmt.Sprint("session ", k)), Pinned: "d"},
				{Model: "m"},
			}
			for _, r := range reqs {
				if i, why := p.Schedule(r, f); i == 3 {
					t.Fatalf("%+v went to the slow box (%s) while the faster ones have slots free", r, why.String())
				}
			}
		}
		for i := range 3 {
			f.hold(i, 3) // 8 of 8 slots
		}
		if i, why := p.Schedule(Request{Model: "m"}, f); i != 3 {
			t.Fatalf("the faster boxes' slots all taken: chose %d (%s), want the slow one", i, why.String())
		}
		homes := 0 // new conversations and sessions find a home there too
		for k := range 100 {
			for _, r := range []Request{
				{Model: "m", Prefix: PrefixInfo{Blocks: 20, Shared: 16, Anchor: HashKey(fmt.Sprint("conversation ", k))}},
				{Model: "m", Key: HashKey(fmt.Sprint("session ", k))},
			} {
				if i, _ := p.Schedule(r, f); i == 3 {
					homes++
				}
			}
		}
		if homes == 0 {
			t.Fatal("the faster boxes' slots all taken: no new conversation or session went to the idle slow box")
		}
		for i := range 3 {
			f.signals[i].SeenSlots = 16
		}
		if i, why := p.Schedule(Request{Model: "m"}, f); i == 3 {
			t.Fatalf("8 of 16 slots taken: chose the slow box (%s)", why.String())
		}
		for i := range 3 {
			f.signals[i].MaxConcurrency = 8
		}
		if i, why := p.Schedule(Request{Model: "m"}, f); i != 3 {
			t.Fatalf("the faster boxes at their max_concurrency: chose %d (%s), want the slow one", i, why.String())
		}
		for i := range 3 {
			f.signals[i].MaxConcurrency = 0
		}
		f.signals[3].TPOT = 40 * time.Millisecond
		for i := range 3 {
			f.signals[i].SeenSlots = 8
		}
		if i, why := p.Schedule(Request{Model: "m"}, f); i != 3 {
			t.Fatalf("1.6 times slower per token, idle: chose %d (%s), want it (no slow box)", i, why.String())
		}
	}
	// a slower box of a higher priority keeps its tier
	s := &Set{MinTPOT: 25 * time.Millisecond}
	cands := []Candidate{
		{Index: 0, Priority: 10, Signals: Signals{TPOT: 25 * time.Millisecond}},
		{Index: 1, Priority: 100, Signals: Signals{TPOT: 75 * time.Millisecond}},
	}
	kept := []bool{true, true}
	leaveSlowBoxes(cands, kept, s)
	if !kept[1] {
		t.Fatal("a slow box of priority 100 was dropped for a fast one of priority 10")
	}
}

// TestOldDecodeRateMeasuredByOne: a slow box's figure older than
// TPOTMaxAge counts for nothing, so one request goes there to measure it
// again; while that request is out (MeasuringSince after the figure) the
// old figure stands, so the box gets that one request, not a burst.
func TestOldDecodeRateMeasuredByOne(t *testing.T) {
	p := mustPipeline(t, Config{Strategy: Adaptive})
	f := newFleet("a", "b")
	now := time.Now()
	for i := range f.signals {
		f.signals[i].TPOT, f.signals[i].TPOTAt, f.signals[i].SeenSlots = 25*time.Millisecond, now, 8
	}
	f.signals[1].TPOT, f.signals[1].TPOTAt = 75*time.Millisecond, now.Add(-2*TPOTMaxAge)
	f.hold(0, 3)
	if i, why := p.Schedule(Request{Model: "m"}, f); i != 1 {
		t.Fatalf("an old figure, nobody measuring: chose %d (%s), want the idle box b, to measure it", i, why.String())
	}
	f.signals[1].MeasuringSince = now.Add(-time.Second)
	for n := range 20 {
		if i, why := p.Schedule(Request{Model: "m"}, f); i != 0 {
			t.Fatalf("request %d while one measures b: chose %d (%s), want a", n, i, why.String())
		}
	}
}
