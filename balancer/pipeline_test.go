package balancer

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fleet is a test Candidates with backend signals: what the olla app's
// candidates will report once endpoints are polled.
type fleet struct {
	names    []string
	prio     []int
	inFlight []Counter
	signals  []Signals
	counting bool         // count Signals calls
	calls    atomic.Int64 // Signals calls, to check pipelines that need none skip them
}

func newFleet(names ...string) *fleet {
	return &fleet{
		names:    names,
		prio:     make([]int, len(names)),
		inFlight: make([]Counter, len(names)),
		signals:  make([]Signals, len(names)),
	}
}

func (f *fleet) Len() int             { return len(f.names) }
func (f *fleet) Priority(i int) int   { return f.prio[i] }
func (f *fleet) InFlight(i int) int64 { return f.inFlight[i].Load() }
func (f *fleet) Name(i int) string    { return f.names[i] }
func (f *fleet) Signals(i int, _ string, s *Signals) {
	if f.counting {
		f.calls.Add(1)
	}
	*s = f.signals[i]
}

func (f *fleet) hold(i int, n int) {
	for range n {
		f.inFlight[i].Acquire()
	}
}

// without returns a fleet without candidate drop, signals and counts copied.
func (f *fleet) without(drop int) *fleet {
	g := newFleet(slices.Delete(slices.Clone(f.names), drop, drop+1)...)
	j := 0
	for i := range f.names {
		if i == drop {
			continue
		}
		g.prio[j], g.signals[j] = f.prio[i], f.signals[i]
		g.hold(j, int(f.InFlight(i)))
		j++
	}
	return g
}

func mustPipeline(t testing.TB, cfg Config) *Pipeline {
	t.Helper()
	p, err := NewPipeline(cfg)
	if err != nil {
		t.Fatalf("NewPipeline(%+v): %v", cfg, err)
	}
	return p
}

// TestPresetsMatchReference drives each preset and the pre-pipeline
// implementation of the same strategy through the same random sequence of
// candidate sets, loads and priorities, and requires the same pick every
// time: the presets behave exactly as the strategies did.
func TestPresetsMatchReference(t *testing.T) {
	refs := map[string]func() Balancer{
		Priority:         func() Balancer { return &refLeastLoadedBalancer{topTierOnly: true} },
		LeastConnections: func() Balancer { return &refLeastLoadedBalancer{} },
		RoundRobin:       func() Balancer { return new(refRoundRobin) },
	}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(name))))
			got, want := mustNew(t, name), refs[name]()
			for step := range 20000 {
				n := rng.IntN(8) // 0 included: both must say -1
				prio, loads := make([]int, n), make([]int64, n)
				for i := range n {
					prio[i] = rng.IntN(3) * 50
					loads[i] = int64(rng.IntN(3))
				}
				c := newEndpoints(prio, loads)
				if g, w := got.Select(c), want.Select(c); g != w {
					t.Fatalf("step %d over priorities %v loads %v: preset picked %d, reference %d", step, prio, loads, g, w)
				}
			}
		})
	}
}

// TestEveryStrategy checks the properties every strategy, adaptive
// included, must have on plain candidates (no signals).
func TestEveryStrategy(t *testing.T) {
	for _, name := range Strategies() {
		t.Run(name, func(t *testing.T) {
			if got := mustNew(t, name).Select(equalEndpoints(0)); got != -1 {
				t.Errorf("Select(no candidates) = %d, want -1", got)
			}
			b := mustNew(t, name)
			for range 5 {
				if got := b.Select(newEndpoints([]int{7}, []int64{42})); got != 0 {
					t.Fatalf("Select(one candidate) = %d, want 0", got)
				}
			}
			counts := tally(mustNew(t, name), equalEndpoints(4), 400, false)
			if !slices.Equal(counts, []int{100, 100, 100, 100}) {
				t.Errorf("idle equal candidates picked %v times, want 100 each", counts)
			}
			var c Candidates = newEndpoints([]int{100, 100, 50, 100}, []int64{1, 0, 0, 0})
			if allocs := testing.AllocsPerRun(1000, func() { b.Select(c) }); allocs != 0 {
				t.Errorf("Select allocates %v times per call, want 0", allocs)
			}
		})
	}
}

func TestNewPipelineErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Strategy: "fastest"}, "adaptive"},
		{Config{Strategy: Adaptive, Weights: map[string]float64{"luck": 1}}, "unknown scorer \"luck\""},
		{Config{Strategy: Adaptive, Weights: map[string]float64{ScoreWarm: -1}}, "between 0 and 1000"},
		{Config{Strategy: Adaptive, Weights: map[string]float64{ScoreWarm: 1e9}}, "between 0 and 1000"},
		{Config{Strategy: RoundRobin, Weights: map[string]float64{ScoreLoad: 1}}, "takes no weights"},
		{Config{Strategy: Adaptive, LoadBound: 0.5}, "load bound"},
	}
	for _, tt := range tests {
		_, err := NewPipeline(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewPipeline(%+v) = %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

// TestWeightsByName sets weights by scorer name: zero removes a scorer,
// a new name adds one, and the reason lists what is left.
func TestWeightsByName(t *testing.T) {
	f := newFleet("a", "b")
	f.signals[0].Warm = Cold
	f.signals[1].Warm = Warm
	f.hold(1, 3)

	p := mustPipeline(t, Config{Strategy: Adaptive})
	if i, _ := p.Schedule(Request{Model: "m"}, f); i != 1 {
		t.Errorf("default weights: picked %d, want the warm b", i)
	}
	p = mustPipeline(t, Config{Strategy: Adaptive, Weights: map[string]float64{ScoreWarm: 0}})
	i, why := p.Schedule(Request{Model: "m"}, f)
	if i != 0 {
		t.Errorf("warm weight 0: picked %d, want the idle a", i)
	}
	for _, part := range why.Parts() {
		if part.Scorer == ScoreWarm {
			t.Errorf("warm weight 0 still scored: %v", why)
		}
	}
	p = mustPipeline(t, Config{Strategy: Adaptive, Weights: map[string]float64{ScoreInFlight: 3}})
	if !slices.ContainsFunc(p.scorers, func(w Weighted) bool { return w.Scorer.Name() == ScoreInFlight && w.Weight == 3 }) {
		t.Errorf("weight for inflight did not add the scorer: %+v", p.scorers)
	}
}

type constScorer struct{ name string }

func (s constScorer) Name() string { return s.name }
func (s constScorer) Score(_ *Request, c *Candidate, _ *Set) float64 {
	if c.Index == 1 {
		return 1
	}
	return 0
}

func TestRegisterScorer(t *testing.T) {
	if err := RegisterScorer("test-second", func() Scorer { return constScorer{"test-second"} }); err != nil {
		t.Fatal(err)
	}
	if err := RegisterScorer("test-second", func() Scorer { return constScorer{} }); err == nil {
		t.Error("registering a name twice succeeded")
	}
	if err := RegisterScorer("", nil); err == nil {
		t.Error("registering an empty name succeeded")
	}
	if !slices.Contains(ScorerNames(), "test-second") {
		t.Errorf("ScorerNames() = %v, missing the registered scorer", ScorerNames())
	}
	p := mustPipeline(t, Config{Strategy: Adaptive, Weights: map[string]float64{"test-second": 100}})
	for range 10 {
		if i := p.Select(equalEndpoints(3)); i != 1 {
			t.Fatalf("a registered scorer with weight 100 did not decide: picked %d", i)
		}
	}
}

func TestPicker(t *testing.T) {
	tests := []struct {
		name   string
		ties   TieBreak
		totals []float64
		kept   []bool
		want   []int // successive picks
	}{
		{"best alone", TieRotate, []float64{1, 3, 2}, nil, []int{1, 1, 1}},
		{"ties rotate", TieRotate, []float64{3, 1, 3, 3}, nil, []int{0, 2, 3, 0}},
		{"ties first", TieFirst, []float64{1, 3, 3}, nil, []int{1, 1, 1}},
		{"cycle", TieCycle, []float64{0, 0, 0}, nil, []int{0, 1, 2, 0}},
		{"dropped never picked", TieRotate, []float64{9, 1, 1}, []bool{false, true, true}, []int{1, 2, 1}},
		{"none kept", TieRotate, []float64{1}, []bool{false}, []int{-1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Picker{Ties: tt.ties}
			kept := tt.kept
			if kept == nil {
				kept = make([]bool, len(tt.totals))
				for i := range kept {
					kept[i] = true
				}
			}
			for step, want := range tt.want {
				if got := p.pick(tt.totals, kept); got != want {
					t.Fatalf("pick %d = %d, want %d", step, got, want)
				}
			}
		})
	}
	// A unique best spends no turn with TieRotate, one with TieCycle.
	rot, cyc := Picker{Ties: TieRotate}, Picker{Ties: TieCycle}
	one, two := []float64{1}, []float64{1, 1}
	yes := []bool{true, true}
	rot.pick(one, yes[:1])
	cyc.pick(one, yes[:1])
	if got := rot.pick(two, yes); got != 0 {
		t.Errorf("TieRotate after a unique pick = %d, want 0 (no turn spent)", got)
	}
	if got := cyc.pick(two, yes); got != 1 {
		t.Errorf("TieCycle after a unique pick = %d, want 1 (turn spent)", got)
	}
}

// TestFiltersNeverEmpty checks that when every candidate is full the
// capacity filter keeps them all: waiting for room is admission's job.
func TestFiltersNeverEmpty(t *testing.T) {
	f := newFleet("a", "b")
	for i := range 2 {
		f.signals[i].MaxConcurrency = 1
		f.hold(i, 1)
	}
	f.hold(1, 1)
	p := mustPipeline(t, Config{Strategy: Adaptive})
	if i := p.Select(f); i != 0 {
		t.Errorf("all full: picked %d, want the less loaded a", i)
	}
}

func TestFilters(t *testing.T) {
	tests := []struct {
		name   string
		filter Filter
		prio   int
		inFl   int64
		sig    Signals
		top    int
		want   bool
	}{
		{"top tier kept", TopPriorityFilter{}, 100, 0, Signals{}, 100, true},
		{"lower tier dropped", TopPriorityFilter{}, 50, 0, Signals{}, 100, false},
		{"no limit", CapacityFilter{}, 0, 50, Signals{}, 0, true},
		{"under limit", CapacityFilter{}, 0, 3, Signals{MaxConcurrency: 4}, 0, true},
		{"at limit", CapacityFilter{}, 0, 4, Signals{MaxConcurrency: 4}, 0, false},
		{"slots busy, no queue", CapacityFilter{}, 0, 0, Signals{SlotsKnown: true, Slots: 4, QueueKnown: true, Running: 4}, 0, true},
		{"slots busy and queue", CapacityFilter{}, 0, 0, Signals{SlotsKnown: true, Slots: 4, QueueKnown: true, Running: 4, Waiting: 1}, 0, false},
		{"stale queue ignored", CapacityFilter{}, 0, 0, Signals{SlotsKnown: true, Slots: 4, QueueKnown: true, Running: 4, Waiting: 9, MaxAge: -1}, 0, true},
	}
	for _, tt := range tests {
		c := Candidate{Priority: tt.prio, InFlight: tt.inFl, Signals: tt.sig, Stale: tt.sig.MaxAge < 0} // MaxAge -1 marks a stale row
		if got := tt.filter.Keep(&Request{}, &c, &Set{TopPriority: tt.top}); got != tt.want {
			t.Errorf("%s: %s.Keep = %v, want %v", tt.name, tt.filter.Name(), got, tt.want)
		}
	}
}

func TestScorers(t *testing.T) {
	tests := []struct {
		name   string
		scorer string
		cand   Candidate
		set    Set
		want   float64
	}{
		{"warm", ScoreWarm, Candidate{Signals: Signals{Warm: Warm}}, Set{}, 1},
		{"cold", ScoreWarm, Candidate{Signals: Signals{Warm: Cold}}, Set{}, 0},
		{"warmth unknown", ScoreWarm, Candidate{}, Set{}, 0.5},
		{"stale cold is unknown", ScoreWarm, Candidate{Signals: Signals{Warm: Cold}, Stale: true}, Set{}, 0.5},

		{"idle", ScoreLoad, Candidate{}, Set{}, 1},
		{"one in flight, no capacity: it would queue", ScoreLoad, Candidate{InFlight: 1}, Set{}, 1 / 3.25},
		{"half of max_concurrency", ScoreLoad, Candidate{InFlight: 2, Signals: Signals{MaxConcurrency: 4}}, Set{}, 1 / 1.125},
		{"the last slot", ScoreLoad, Candidate{InFlight: 3, Signals: Signals{MaxConcurrency: 4}}, Set{}, 1 / (1 + 0.25*0.75)},
		{"max_concurrency full: it would queue", ScoreLoad, Candidate{InFlight: 4, Signals: Signals{MaxConcurrency: 4}}, Set{}, 1 / 1.75},
		{"the backend's count is others' work when ours at read time is unknown", ScoreLoad,
			Candidate{InFlight: 1, Signals: Signals{QueueKnown: true, Running: 4, Waiting: 4, SlotsKnown: true, Slots: 4}}, Set{}, 1 / 4.25},
		{"our own requests are not counted twice", ScoreLoad,
			Candidate{InFlight: 3, Signals: Signals{QueueKnown: true, Running: 3, InFlightAtRead: 3, SlotsKnown: true, Slots: 8}}, Set{}, 1 / (1 + 0.25*3.0/8)},
		{"others' work at the last read plus ours now", ScoreLoad,
			Candidate{InFlight: 1, Signals: Signals{QueueKnown: true, Running: 5, InFlightAtRead: 2, SlotsKnown: true, Slots: 8}}, Set{}, 1 / 1.125},
		{"stale queue ignored", ScoreLoad, Candidate{InFlight: 1, Signals: Signals{QueueKnown: true, Waiting: 40}, Stale: true}, Set{}, 1 / 3.25},
		{"slots learned from the backend's counts", ScoreLoad, Candidate{InFlight: 4, Signals: Signals{SeenSlots: 8}}, Set{}, 1 / 1.125},
		{"full kv halves", ScoreLoad, Candidate{Signals: Signals{KVKnown: true, KVUsage: 1}}, Set{}, 0.5},
		{"half full kv is free", ScoreLoad, Candidate{Signals: Signals{KVKnown: true, KVUsage: 0.5}}, Set{}, 1},
		{"kv above 1 capped", ScoreLoad, Candidate{Signals: Signals{KVKnown: true, KVUsage: 7}}, Set{}, 0.5},
		{"negative in-flight", ScoreLoad, Candidate{InFlight: -3}, Set{}, 1},

		{"fastest", ScoreTTFT, Candidate{Signals: Signals{TTFT: 50 * time.Millisecond}}, Set{MinTTFT: 50 * time.Millisecond}, 1},
		{"within the tolerance", ScoreTTFT, Candidate{Signals: Signals{TTFT: 95 * time.Millisecond}}, Set{MinTTFT: 50 * time.Millisecond}, 1},
		{"three times slower", ScoreTTFT, Candidate{Signals: Signals{TTFT: 150 * time.Millisecond}}, Set{MinTTFT: 50 * time.Millisecond}, 1 / 2.25},
		{"four times slower", ScoreTTFT, Candidate{Signals: Signals{TTFT: 200 * time.Millisecond}}, Set{MinTTFT: 50 * time.Millisecond}, 0.25},
		{"not measured yet", ScoreTTFT, Candidate{}, Set{MinTTFT: 50 * time.Millisecond}, 1},

		{"affinity winner", ScoreAffinity, Candidate{Index: 2}, Set{Affinity: 2}, 1},
		{"affinity other", ScoreAffinity, Candidate{Index: 1}, Set{Affinity: 2}, 0},
		{"no key", ScoreAffinity, Candidate{Index: 0}, Set{Affinity: -1}, 0},

		{"top tier", ScorePriority, Candidate{Priority: 100}, Set{TopPriority: 100}, 1},
		{"lower tier", ScorePriority, Candidate{Priority: 10}, Set{TopPriority: 100}, 0},

		{"inflight idle", ScoreInFlight, Candidate{}, Set{}, 1},
		{"inflight 3", ScoreInFlight, Candidate{InFlight: 3}, Set{}, 0.25},
	}
	for _, tt := range tests {
		s, ok := newScorer(tt.scorer)
		if !ok {
			t.Fatalf("scorer %q not registered", tt.scorer)
		}
		if s.Name() != tt.scorer {
			t.Errorf("scorer %q calls itself %q", tt.scorer, s.Name())
		}
		got := s.Score(&Request{}, &tt.cand, &tt.set)
		if diff := got - tt.want; diff > 1e-9 || diff < -1e-9 {
			t.Errorf("%s: %s = %v, want %v", tt.name, tt.scorer, got, tt.want)
		}
	}
}

// TestAdaptive is the adaptive strategy's behaviour on whole fleets.
func TestAdaptive(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name  string
		setup func(f *fleet)
		want  int // the candidate that must win every one of 20 picks
	}{
		{"warm beats cold", func(f *fleet) {
			f.signals[0].Warm, f.signals[1].Warm, f.signals[2].Warm = Cold, Warm, Cold
		}, 1},
		{"warm beats unknown", func(f *fleet) {
			f.signals[2].Warm = Warm
		}, 2},
		{"busy warm still beats idle cold", func(f *fleet) {
			f.signals[0].Warm, f.signals[1].Warm, f.signals[2].Warm = Warm, Cold, Cold
			f.hold(0, 3)
		}, 0},
		{"long vLLM queue gets less", func(f *fleet) {
			for i := range 3 {
				f.signals[i] = Signals{Warm: Warm, QueueKnown: true, Running: 8, Waiting: 20, KVKnown: true, KVUsage: 0.9, MaxAge: time.Second}
			}
			f.signals[1].Waiting, f.signals[1].KVUsage = 0, 0.3
		}, 1},
		{"stale cold counts as unknown, fresh cold as cold", func(f *fleet) {
			for i := range 3 {
				f.signals[i] = Signals{Warm: Cold, At: time.Now(), MaxAge: time.Hour}
			}
			f.signals[0].At = time.Now().Add(-2 * time.Hour)
		}, 0},
		{"signals without a time never go stale", func(f *fleet) {
			f.signals[0] = Signals{Warm: Cold, MaxAge: time.Nanosecond}
			f.signals[1] = Signals{Warm: Warm, MaxAge: time.Nanosecond}
		}, 1},
		{"slow box gets less", func(f *fleet) {
			f.signals[0].TTFT, f.signals[1].TTFT, f.signals[2].TTFT = 150*ms, 150*ms, 50*ms
		}, 2},
		{"full endpoint skipped", func(f *fleet) {
			f.signals[0].MaxConcurrency = 2
			f.hold(0, 2)
			f.signals[1].Warm = Cold
			f.signals[0].Warm = Warm
		}, 2},
		{"priority breaks an otherwise even choice", func(f *fleet) {
			f.prio[0], f.prio[1], f.prio[2] = 10, 100, 10
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet("a", "b", "c")
			tt.setup(f)
			p := mustPipeline(t, Config{Strategy: Adaptive})
			for range 20 {
				if i, why := p.Schedule(Request{Model: "m"}, f); i != tt.want {
					t.Fatalf("picked %d (%v), want %d", i, why, tt.want)
				}
			}
		})
	}
}

// TestAdaptiveSpreadsLoad holds every pick in flight: the load scorer must
// spread work over equal endpoints like least-connections does.
func TestAdaptiveSpreadsLoad(t *testing.T) {
	f := newFleet("a", "b", "c")
	for i := range 3 {
		f.signals[i].Warm = Warm
	}
	p := mustPipeline(t, Config{Strategy: Adaptive})
	counts := make([]int, 3)
	for range 60 {
		i := p.Select(f)
		counts[i]++
		f.hold(i, 1)
	}
	if !slices.Equal(counts, []int{20, 20, 20}) {
		t.Errorf("held picks = %v, want 20 each", counts)
	}
}

// TestAffinity checks session affinity through the adaptive strategy: the
// same key always lands on the same endpoint, two pipelines (two processes)
// agree, different keys spread, an overloaded endpoint loses its keys, and
// removing an endpoint moves only the keys it held.
func TestAffinity(t *testing.T) {
	names := []string{"ep-a", "ep-b", "ep-c", "ep-d"}
	f := newFleet(names...)
	one, two := mustPipeline(t, Config{Strategy: Adaptive}), mustPipeline(t, Config{Strategy: Adaptive})
	placement := map[string]int{}
	perEndpoint := make([]int, len(names))
	for k := range 400 {
		key := fmt.Sprintf("session-%d", k)
		i, why := one.Schedule(Request{SessionKey: key}, f)
		for range 3 {
			if j, _ := one.Schedule(Request{SessionKey: key}, f); j != i {
				t.Fatalf("key %s moved from %d to %d without any change", key, i, j)
			}
		}
		if j, _ := two.Schedule(Request{SessionKey: key}, f); j != i {
			t.Fatalf("two pipelines disagree on key %s: %d and %d", key, i, j)
		}
		if !strings.Contains(why.String(), "affinity=1") {
			t.Fatalf("reason %q does not name the affinity", why)
		}
		placement[key] = i
		perEndpoint[i]++
	}
	for i, n := range perEndpoint {
		if n < 60 || n > 140 { // 100 expected; the hash is fixed, so this is not flaky
			t.Errorf("endpoint %d holds %d of 400 keys, want about 100 (all: %v)", i, n, perEndpoint)
		}
	}

	// Removing ep-b moves only the keys it held.
	g := f.without(1)
	for key, was := range placement {
		i, _ := one.Schedule(Request{SessionKey: key}, g)
		now := g.names[i]
		if names[was] != "ep-b" && now != names[was] {
			t.Errorf("key %s moved from %s to %s when ep-b left", key, names[was], now)
		}
	}

	// A key whose endpoint is far above the mean load goes elsewhere.
	var key string
	for k, i := range placement {
		if i == 0 {
			key = k
			break
		}
	}
	f.hold(0, 10)
	if i, why := one.Schedule(Request{SessionKey: key}, f); i == 0 {
		t.Errorf("key stayed on an endpoint with 10 in flight while the rest are idle: %v", why)
	}

	// A key's home is among the endpoints that have the model: with ep-c
	// cold, every key lands on a warm endpoint, the same one each time, and
	// keys of warm endpoints stay where they were.
	for range 10 {
		f.inFlight[0].Release()
	}
	for i := range names {
		f.signals[i].Warm = Warm
	}
	f.signals[2].Warm = Cold
	for key, was := range placement {
		i, why := one.Schedule(Request{Model: "m", SessionKey: key}, f)
		if i == 2 {
			t.Fatalf("key %s placed on the cold endpoint: %v", key, why)
		}
		if was != 2 && i != was {
			t.Errorf("key %s moved from %d to %d when another endpoint went cold", key, was, i)
		}
		if !strings.Contains(why.String(), "affinity=1") {
			t.Fatalf("key %s: the winner is not the key's home: %v", key, why)
		}
		if j, _ := two.Schedule(Request{Model: "m", SessionKey: key}, f); j != i {
			t.Fatalf("key %s: two pipelines disagree (%d, %d)", key, i, j)
		}
	}

	// The prefix hash is the key when there is no session key.
	h := newFleet(names...)
	a, _ := one.Schedule(Request{PrefixHash: 12345}, h)
	for range 5 {
		if b, _ := two.Schedule(Request{PrefixHash: 12345}, h); b != a {
			t.Fatalf("prefix hash placed on %d then %d", a, b)
		}
	}
}

func TestRendezvous(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	if got := Rendezvous(1, nil, nil, DefaultLoadBound); got != -1 {
		t.Errorf("Rendezvous over nothing = %d, want -1", got)
	}
	counts := make([]int, len(names))
	for k := range 5000 {
		key := HashKey(fmt.Sprint(k))
		i := Rendezvous(key, names, nil, DefaultLoadBound)
		counts[i]++
		// Same names in another order pick the same name.
		rev := slices.Clone(names)
		slices.Reverse(rev)
		if j := Rendezvous(key, rev, nil, DefaultLoadBound); rev[j] != names[i] {
			t.Fatalf("key %d: %s in config order, %s reversed", k, names[i], rev[j])
		}
		// Equal loads bound nothing.
		if j := Rendezvous(key, names, []float64{3, 3, 3, 3, 3}, DefaultLoadBound); j != i {
			t.Fatalf("key %d: equal loads moved it from %d to %d", k, i, j)
		}
		// A name above 1.25 × the mean is skipped.
		loads := make([]float64, len(names))
		loads[i] = 4 // (4+1) > 1.25 × (5+4)/5 = 2.25
		if j := Rendezvous(key, names, loads, DefaultLoadBound); j == i || j < 0 {
			t.Fatalf("key %d: overloaded %d still picked (or none: %d)", k, i, j)
		}
		// But not one within the bound.
		loads = []float64{8, 8, 8, 8, 8}
		loads[i] = 10 // 11 <= 1.25 × 46/5 = 11.5: kept
		if j := Rendezvous(key, names, loads, DefaultLoadBound); j != i {
			t.Fatalf("key %d: a load within the bound moved it from %d to %d", k, i, j)
		}
	}
	for i, n := range counts {
		if n < 800 || n > 1200 {
			t.Errorf("%s got %d of 5000 keys, want about 1000 (%v)", names[i], n, counts)
		}
	}
}

// TestHashKeyIsStable pins the hash: two proxies of different versions in
// one fleet must still place sessions alike, so it must never change.
func TestHashKeyIsStable(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
	}{
		// computed apart from this code: FNV-1a 64, then MurmurHash3's fmix64
		{"", 0xefd01f60ba992926},
		{"session-1", 0xf267abb32d450b1f},
	} {
		if got := HashKey(tt.in); got != tt.want {
			t.Errorf("HashKey(%q) = %#x, want %#x", tt.in, got, tt.want)
		}
	}
}

func TestReason(t *testing.T) {
	f := newFleet("ep-a", "ep-b")
	f.signals[0].Warm, f.signals[1].Warm = Cold, Warm
	f.signals[0].TTFT, f.signals[1].TTFT = 100*time.Millisecond, 300*time.Millisecond
	f.hold(1, 1)
	p := mustPipeline(t, Config{Strategy: Adaptive})
	i, why := p.Schedule(Request{Model: "m"}, f)
	if i != 1 {
		t.Fatalf("picked %d, want the warm ep-b", i)
	}
	if got, want := why.String(), "adaptive: ep-b warm=1 priority=1 load=0.31 ttft=0.44"; got != want {
		t.Errorf("reason = %q, want %q", got, want)
	}
	_, why = mustPipeline(t, Config{Strategy: RoundRobin}).Schedule(Request{}, equalEndpoints(3))
	if got, want := why.String(), "round-robin: #0"; got != want {
		t.Errorf("round-robin reason = %q, want %q", got, want)
	}
	_, why = mustPipeline(t, Config{Strategy: LeastConnections}).Schedule(Request{}, newFleet("x", "y"))
	if got, want := why.String(), "least-connections: x inflight=1"; got != want {
		t.Errorf("round-robin reason = %q, want %q", got, want)
	}
	_, why = mustPipeline(t, Config{Strategy: Adaptive}).Schedule(Request{}, equalEndpoints(0))
	if got, want := why.String(), "adaptive:"; got != want {
		t.Errorf("no-candidate reason = %q, want %q", got, want)
	}
}

// TestScheduleAllocatesNothing covers the adaptive path with signals,
// affinity and the reason value (its text is built only on demand).
func TestScheduleAllocatesNothing(t *testing.T) {
	f := benchFleet(10)
	p := mustPipeline(t, Config{Strategy: Adaptive})
	r := Request{Model: "llama3:8b", SessionKey: "a-session-key"}
	if allocs := testing.AllocsPerRun(1000, func() { p.Schedule(r, f) }); allocs != 0 {
		t.Errorf("Schedule allocates %v times per call, want 0", allocs)
	}
}

func TestSignalsReadOnlyWhenNeeded(t *testing.T) {
	f := newFleet("a", "b")
	f.counting = true
	mustNew(t, LeastConnections).Select(f)
	if f.calls.Load() != 0 {
		t.Errorf("least-connections read signals %d times, want 0", f.calls.Load())
	}
	mustNew(t, Adaptive).Select(f)
	if f.calls.Load() != 2 {
		t.Errorf("adaptive read signals %d times over 2 candidates, want 2", f.calls.Load())
	}
}

func TestAdaptiveConcurrent(t *testing.T) {
	f := benchFleet(5)
	p := mustPipeline(t, Config{Strategy: Adaptive})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for k := range 300 {
				i, _ := p.Schedule(Request{Model: "m", SessionKey: fmt.Sprint(g, k)}, f)
				if i < 0 || i >= f.Len() {
					t.Errorf("Schedule = %d, out of range", i)
					return
				}
				f.inFlight[i].Acquire()
				f.inFlight[i].Release()
			}
		})
	}
	wg.Wait()
}

// TestPinnedAndKey: a precomputed Key places like the SessionKey it was
// hashed from; a Pinned endpoint among the candidates is the affinity
// target instead of the key's home, and an absent one falls back to the
// home.
func TestPinnedAndKey(t *testing.T) {
	f := newFleet("ep-a", "ep-b", "ep-c", "ep-d")
	p := mustPipeline(t, Config{Strategy: Adaptive})
	home, _ := p.Schedule(Request{SessionKey: "conv-1"}, f)
	if i, _ := p.Schedule(Request{Key: HashKey("conv-1")}, f); i != home {
		t.Errorf("Key placed on %d, SessionKey on %d", i, home)
	}
	pinned := (home + 1) % 4
	i, why := p.Schedule(Request{Key: HashKey("conv-1"), Pinned: f.names[pinned]}, f)
	if i != pinned || !strings.Contains(why.String(), "affinity=1") {
		t.Errorf("pinned to %s: chose %d (%s)", f.names[pinned], i, why.String())
	}
	if i, _ := p.Schedule(Request{Key: HashKey("conv-1"), Pinned: "gone"}, f); i != home {
		t.Errorf("a pin to an absent endpoint chose %d, want the key's home %d", i, home)
	}
	// a pinned endpoint that is full loses to the others' load and warmth
	f.signals[pinned] = Signals{MaxConcurrency: 1}
	f.hold(pinned, 1)
	if i, _ := p.Schedule(Request{Key: HashKey("conv-1"), Pinned: f.names[pinned]}, f); i == pinned {
		t.Error("a full pinned endpoint was chosen while others had room")
	}
}

// TestCapacityLearned covers the slot count of a server that states none:
// a lower bound from what it was seen running, room assumed while it
// reports no queue, and the exact count once it has been seen queueing.
func TestCapacityLearned(t *testing.T) {
	fresh := Signals{QueueKnown: true, Running: 6, InFlightAtRead: 6, SeenSlots: 6}
	tests := []struct {
		name string
		c    Candidate
		want float64
	}{
		{"nothing known: plain counts", Candidate{InFlight: 5}, 1},
		{"seen running, no reading now", Candidate{InFlight: 5, Signals: Signals{SeenSlots: 6}, Stale: true}, 6},
		{"no queue at the last read: room for this one too", Candidate{InFlight: 9, Signals: fresh}, 10},
		{"seen full: the count is exact", Candidate{InFlight: 9, Signals: func() Signals { s := fresh; s.SeenFull = true; return s }()}, 6},
		{"queueing now: the count it was seen at", Candidate{InFlight: 9, Signals: func() Signals { s := fresh; s.Waiting = 3; return s }()}, 6},
		{"stated slots win", Candidate{InFlight: 9, Signals: func() Signals { s := fresh; s.SlotsKnown, s.Slots = true, 4; return s }()}, 4},
		{"max_concurrency wins", Candidate{InFlight: 9, Signals: func() Signals { s := fresh; s.MaxConcurrency = 3; return s }()}, 3},
	}
	for _, tt := range tests {
		if got := tt.c.Capacity(); got != tt.want {
			t.Errorf("%s: Capacity = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSlowEndpointLosesAffinity: an endpoint far slower than the fastest
// is no new key's home; one within the tolerance keeps its keys. A pin is
// left to the weights: an idle slow endpoint keeps its sessions.
func TestSlowEndpointLosesAffinity(t *testing.T) {
	ms := time.Millisecond
	names := []string{"ep-a", "ep-b", "ep-c", "ep-d"}
	f := newFleet(names...)
	for i := range names {
		f.signals[i].TTFT = 100 * ms
	}
	p := mustPipeline(t, Config{Strategy: Adaptive})
	homes := map[string]int{}
	for k := range 200 {
		key := fmt.Sprintf("s%d", k)
		homes[key], _ = p.Schedule(Request{SessionKey: key}, f)
	}
	f.signals[3].TTFT = 240 * ms // within 2.5x: nothing moves
	for key, was := range homes {
		if i, why := p.Schedule(Request{SessionKey: key}, f); i != was {
			t.Fatalf("key %s moved from %d to %d for a 2.4x TTFT: %v", key, was, i, why)
		}
		if i, why := p.Schedule(Request{SessionKey: key, Pinned: names[3]}, f); i != 3 && was == 3 {
			t.Fatalf("key %s left its pin for a 2.4x TTFT: %v", key, why)
		}
	}
	f.signals[3].TTFT = 300 * ms // three times slower
	for key, was := range homes {
		i, why := p.Schedule(Request{SessionKey: key}, f)
		if i == 3 {
			t.Fatalf("key %s placed on the slow endpoint: %v", key, why)
		}
		if was != 3 && i != was {
			t.Errorf("key %s moved from %d to %d though its home is fast", key, was, i)
		}
		if i, why := p.Schedule(Request{SessionKey: key, Pinned: names[3]}, f); i != 3 {
			t.Fatalf("a session pinned to the idle slow endpoint moved to %d: %v", i, why)
		}
	}
}

// TestSpeedIgnoresNoise: TTFTs under ttftFloor are not told apart (a
// millisecond box is not "ten times slower" than a tenth of one: that is a
// garbage collection); with the ttft weight at 0 speed judges nothing, not
// even where a session lives; and a TTFT with no sample for EWMAMaxAge is
// forgotten, so a box judged slow is measured again.
func TestSpeedIgnoresNoise(t *testing.T) {
	ms := time.Millisecond
	names := []string{"ep-a", "ep-b", "ep-c", "ep-d"}
	for _, tc := range []struct {
		name    string
		weights map[string]float64
		ttft    [4]time.Duration
		age     time.Duration // of the slow box's last sample
	}{
		{"under the floor", nil, [4]time.Duration{ms / 10, ms / 10, ms / 10, 40 * ms}, 0},
		{"speed off", map[string]float64{ScoreTTFT: 0}, [4]time.Duration{50 * ms, 50 * ms, 50 * ms, 5000 * ms}, 0},
		{"forgotten", nil, [4]time.Duration{50 * ms, 50 * ms, 50 * ms, 5000 * ms}, EWMAMaxAge + time.Second},
	} {
		f := newFleet(names...)
		p := mustPipeline(t, Config{Strategy: Adaptive, Weights: tc.weights})
		homes := map[string]int{}
		for k := range 200 {
			key := fmt.Sprintf("s%d", k)
			homes[key], _ = p.Schedule(Request{SessionKey: key}, f)
		}
		for i := range names {
			f.signals[i].TTFT = tc.ttft[i]
			f.signals[i].TTFTAt = time.Now()
		}
		f.signals[3].TTFTAt = time.Now().Add(-tc.age)
		onSlow := 0
		for key, was := range homes {
			i, why := p.Schedule(Request{SessionKey: key}, f)
			if i != was {
				t.Fatalf("%s: key %s moved from %d to %d: %v", tc.name, key, was, i, why)
			}
			if i == 3 {
				onSlow++
			}
		}
		if onSlow == 0 {
			t.Fatalf("%s: no key lives on ep-d: the test proves nothing", tc.name)
		}
	}
}

// TestForgottenSpeedIsProbedOnce: a box whose slow average was forgotten is
// measured again by one request for the model, not by every request that
// arrives before its answer comes back; requests in flight there for
// another model do not count as measuring it, and a probe that brought no
// sample for EWMAMaxAge is followed by another.
func TestForgottenSpeedIsProbedOnce(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name      string
		busy      int           // ep-d's requests in flight for other models
		probedAgo time.Duration // when a request for the model last started there (0: never)
		want      int           // of 40 arrivals, how many ep-d gets
	}{
		{"idle", 0, 0, 1},
		{"busy with another model", 3, 0, 1},
		{"a probe is out", 0, time.Second, 0},
		{"the probe brought nothing", 0, EWMAMaxAge + time.Second, 1},
	} {
		f := newFleet("ep-a", "ep-b", "ep-c", "ep-d")
		now := time.Now()
		for i := range 4 { // room for every arrival: only speed tells them apart
			f.signals[i].MaxConcurrency = 100
			f.signals[i].TTFT, f.signals[i].TTFTAt = 50*ms, now
		}
		f.signals[3].TTFT, f.signals[3].TTFTAt = 5000*ms, now.Add(-2*EWMAMaxAge)
		if tc.probedAgo > 0 {
			f.signals[3].MeasuringSince = now.Add(-tc.probedAgo)
		}
		f.hold(3, tc.busy)
		p := mustPipeline(t, Config{Strategy: Adaptive})
		onSlow := 0
		for range 40 { // arrivals that all stay in flight
			i, _ := p.Schedule(Request{}, f)
			f.hold(i, 1)
			if i == 3 {
				onSlow++
				f.signals[3].MeasuringSince = time.Now() // as the picker notes an attempt
			}
		}
		if onSlow != tc.want {
			t.Errorf("%s: the forgotten slow box got %d of 40 requests, want %d", tc.name, onSlow, tc.want)
		}
	}
}

// TestNewKeyAvoidsAFullEndpoint: a new key's home is never an endpoint
// where it would queue while another has a free slot, even within the load
// bound.
func TestNewKeyAvoidsAFullEndpoint(t *testing.T) {
	names := []string{"ep-a", "ep-b", "ep-c", "ep-d"}
	for _, seenFull := range []bool{true, false} {
		f := newFleet(names...)
		for i := range names {
			// a vLLM-like server seen running 4 at most, and (or not)
			// queueing beyond that; no stated slots, so no filter drops
			// a full one
			f.signals[i] = Signals{QueueKnown: true, Running: 3, InFlightAtRead: 3, SeenSlots: 4, SeenFull: seenFull}
			f.hold(i, 3)
		}
		f.hold(0, 1) // ep-a at 4: the mean with the request placed is 1.06 slots, the bound 1.33
		p := mustPipeline(t, Config{Strategy: Adaptive})
		for k := range 200 {
			if i, why := p.Schedule(Request{SessionKey: fmt.Sprintf("s%d", k)}, f); i == 0 {
				t.Fatalf("seen full %v: a new key went to the endpoint at its slot count: %v", seenFull, why)
			}
		}
	}
}
