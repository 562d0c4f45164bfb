package fleet

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/profiles"
)

// polledEndpoint builds an endpoint's state as Provision would, for a
// backend at url.
func polledEndpoint(t testing.TB, url, typ string, interval time.Duration) (*Endpoint, *Settings) {
	t.Helper()
	s := testSettings(t, "ep", url, typ)
	if err := s.PollLoad(interval); err != nil {
		t.Fatal(err)
	}
	st := newEndpoint(s)
	t.Cleanup(func() { _ = st.Destruct() })
	return st, s
}

// TestSignalPollBadSurfaces: a load surface that is garbage, huge, slow,
// missing, or an /api/ps that lists too many models leaves the signals
// absent (every value unknown, so the endpoint scores neutral), and each
// kind of failure is logged once however many polls repeat it; a good
// read after it is logged once too. One row per hostile surface.
func TestSignalPollBadSurfaces(t *testing.T) {
	manyModels := func() string {
		var b strings.Builder
		b.WriteString(`{"models":[`)
		for i := range 10_000 {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"name":"m%d:latest","model":"m%d:latest","size":1}`, i, i)
		}
		b.WriteString(`]}`)
		return b.String()
	}()
	huge := "# HELP x y\n" + strings.Repeat("vllm:num_requests_waiting{engine=\"0\"} 1\n", 40_000) // > 1 MiB
	tests := []struct {
		name, typ, path string
		handler         http.HandlerFunc
	}{
		{"garbage metrics", "vllm", "/metrics", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, "<html>\x00\x01 not prometheus {{{{")
		}},
		{"metrics without the load metrics", "vllm", "/metrics", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, "process_cpu_seconds_total 12\n")
		}},
		{"negative and NaN counts", "vllm", "/metrics", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, "vllm:num_requests_waiting -3\nvllm:num_requests_running NaN\n")
		}},
		{"huge metrics", "vllm", "/metrics", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, huge)
		}},
		{"slow metrics", "vllm", "/metrics", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}},
		{"missing metrics", "vllm", "/metrics", http.NotFound},
		{"ps with 10,000 models", "ollama", "/api/ps", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, manyModels)
		}},
		{"ps that is not JSON", "ollama", "/api/ps", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, `{"models":[{"name":`)
		}},
		{"slots with no slots", "llamacpp", "/slots", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, `[]`)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			good := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-good:
					switch r.URL.Path {
					case "/metrics":
						fmt.Fprint(w, "vllm:num_requests_waiting 2\nvllm:num_requests_running 1\n")
					case "/api/ps":
						fmt.Fprint(w, `{"models":[{"name":"a:latest","model":"a:latest"}]}`)
					case "/slots":
						fmt.Fprint(w, `[{"id":0,"is_processing":true},{"id":1,"is_processing":false}]`)
					default:
						http.NotFound(w, r)
					}
					return
				default:
				}
				if r.URL.Path == tc.path || tc.typ == "llamacpp" {
					tc.handler(w, r)
					return
				}
				http.NotFound(w, r)
			}))
			defer srv.Close()
			core, logs := observer.New(zapcore.InfoLevel)
			log := zap.New(core)
			// Only the slow surface is meant to time out: every other read
			// gets a minute, so a busy machine (parsing 10,000 models under
			// -race) cannot turn its failure into a timeout, or a good read
			// into a failure.
			st, s := polledEndpoint(t, srv.URL, tc.typ, time.Minute)
			s.LoadTimeout = time.Minute
			if tc.name == "slow metrics" {
				s.LoadTimeout = 100 * time.Millisecond
			}
			for range 4 {
				st.pollOnce(context.Background(), log, s)
				if sig := st.sched.signals.Load(); sig != nil {
					t.Fatalf("signals kept from a bad surface: %+v", sig)
				}
				var got balancer.Signals
				st.SchedSignals("a", &got)
				if got.Warm != balancer.WarmUnknown || got.QueueKnown || got.SlotsKnown || got.KVKnown {
					t.Fatalf("a bad surface gave known values: %+v", got)
				}
			}
			if n := logs.FilterMessage("load signals unavailable; the endpoint is scored neutral").Len(); n != 1 {
				t.Errorf("%d warnings for 4 polls of one failure, want 1: %v", n, logs.All())
			}
			if st := st.signalStatus(time.Now()); st.Problem == "" || st.Failures != 4 || st.Fresh {
				t.Errorf("status does not show the failure: %+v", st)
			}
			close(good)
			s.LoadTimeout = time.Minute
			for range 3 {
				st.pollOnce(context.Background(), log, s)
			}
			if st.sched.signals.Load() == nil {
				t.Fatalf("a good read after the bad ones gave no signals (problem %+v)", st.sched.problem.Load())
			}
			if n := logs.FilterMessage("load signals readable again").Len(); n != 1 {
				t.Errorf("%d recovery lines for 3 good polls, want 1", n)
			}
			var got balancer.Signals
			if st.SchedSignals("a", &got); got.Warm == balancer.WarmUnknown && !got.QueueKnown && !got.SlotsKnown {
				t.Errorf("good signals unused: %+v", got)
			}
		})
	}
}

// TestSignalsGoStale: signals older than three load intervals are ignored.
func TestSignalsGoStale(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"models":[{"name":"a:latest","model":"a:latest"}]}`)
	}))
	defer srv.Close()
	log := zap.NewNop()
	st, s := polledEndpoint(t, srv.URL, "ollama", time.Second)
	st.pollOnce(context.Background(), log, s)
	var sig balancer.Signals
	st.SchedSignals("a", &sig)
	if st.FreshSignals(time.Now()) == nil || sig.Warm != balancer.Warm {
		t.Fatal("a fresh read is not used")
	}
	if st.FreshSignals(time.Now().Add(3*time.Second+time.Millisecond)) != nil {
		t.Error("signals older than 3 intervals are still fresh")
	}
	if st.FreshSignals(time.Now().Add(2*time.Second)) == nil {
		t.Error("signals 2 intervals old are already stale")
	}
}

// TestSlotCap: under adaptive (slotCap), a llama.cpp endpoint's slot count
// caps its concurrency when max_concurrency is unset; a configured
// max_concurrency wins, and without slotCap there is no cap.
func TestSlotCap(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `[{"id":0,"is_processing":false},{"id":1,"is_processing":false},{"id":2,"is_processing":true}]`)
	}))
	defer srv.Close()
	log := zap.NewNop()
	st, s := polledEndpoint(t, srv.URL, "llamacpp", time.Second)
	st.pollOnce(context.Background(), log, s)
	st.health.Store(&Health{Status: discovery.StatusHealthy})
	if got := st.ConcurrencyCap(); got != 0 {
		t.Errorf("cap without adaptive = %d, want 0", got)
	}
	capped := *s
	capped.SlotCap = true
	st.settings.Store(&capped)
	if got := st.ConcurrencyCap(); got != 3 {
		t.Errorf("cap from /slots = %d, want 3", got)
	}
	for range 3 {
		if !st.TryEnter() {
			t.Fatal("a slot was refused below the cap")
		}
	}
	if st.TryEnter() {
		t.Error("a fourth attempt entered an endpoint with 3 slots")
	}
	configured := capped
	configured.MaxConcurrency = 5
	st.settings.Store(&configured)
	if got := st.ConcurrencyCap(); got != 5 {
		t.Errorf("max_concurrency 5 gives cap %d", got)
	}
}

// TestSlotsLearned: a vLLM states no slot count, so the most it has been
// seen running is learned, capped at maxLearnedSlots. That count is taken
// as exact (seen full) once a poll shows a queue while it runs its most; a
// queue below the count already seen does not fix it.
func TestSlotsLearned(t *testing.T) {
	var running, waiting int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "vllm:num_requests_running{model_name=\"m\"} %d\nvllm:num_requests_waiting{model_name=\"m\"} %d\n", running, waiting)
	}))
	defer srv.Close()
	log := zap.NewNop()
	st, s := polledEndpoint(t, srv.URL, "vllm", time.Second)
	poll := func(r, w int64) (int64, bool) {
		running, waiting = r, w
		st.pollOnce(context.Background(), log, s)
		var sig balancer.Signals
		st.SchedSignals("m", &sig)
		return sig.SeenSlots, sig.SeenFull
	}
	steps := []struct {
		running, waiting int64
		slots            int64
		full             bool
		why              string
	}{
		{1, 0, 1, false, "one running, no queue: a lower bound"},
		{3, 0, 3, false, "three running: the count rises"},
		{2, 1, 3, false, "a queue below the count seen is not the count"},
		{3, 1, 3, true, "a queue at the count: exact"},
		{5, 0, 5, true, "it can still rise"},
		{1 << 40, 0, maxLearnedSlots, true, "a backend's count is capped"},
	}
	for _, step := range steps {
		slots, full := poll(step.running, step.waiting)
		if slots != step.slots || full != step.full {
			t.Fatalf("%s: slots %d full %v, want %d %v", step.why, slots, full, step.slots, step.full)
		}
	}

	// a reload turns polling off: what was learned goes with the signals,
	// since the server may restart with other slots before it comes back
	off := *s
	off.LoadInterval = 0
	st.settings.Store(&off)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); st.Run(ctx, log) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var sig balancer.Signals
		st.SchedSignals("m", &sig)
		if sig.SeenSlots == 0 && !sig.SeenFull && !sig.QueueKnown {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("polling off, still learned: slots %d full %v queue known %v", sig.SeenSlots, sig.SeenFull, sig.QueueKnown)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAttemptMarksMeasuring: a request for a model that has a TTFT average
// marks the endpoint as measuring that model (so a forgotten average is
// probed once, see balancer.TestForgottenSpeedIsProbedOnce); a model with
// no average, or one the endpoint does not list, leaves nothing behind.
// listingEndpoint is a polled endpoint of type typ listing models m and
// other, and a reader of its signals for a model.
func listingEndpoint(t *testing.T, typ string) (*Endpoint, func(model string) balancer.Signals) {
	st, _ := polledEndpoint(t, "http://127.0.0.1:1", typ, time.Second)
	st.models.Store(newModelSnapshot([]profiles.Model{{Name: "m"}, {Name: "other"}}, time.Now()))
	return st, func(model string) balancer.Signals {
		var sig balancer.Signals
		st.SchedSignals(model, &sig)
		return sig
	}
}

func TestAttemptMarksMeasuring(t *testing.T) {
	st, read := listingEndpoint(t, "vllm")
	at := time.Now()
	st.ObserveAttempt("m", at)
	if sig := read("m"); !sig.MeasuringSince.IsZero() {
		t.Fatalf("an attempt before any sample left a mark: %v", sig.MeasuringSince)
	}
	st.ObserveTTFT("m", 80*time.Millisecond)
	st.ObserveAttempt("m", at)
	st.ObserveAttempt("not-listed", at)
	if sig := read("m"); !sig.MeasuringSince.Equal(at) || sig.TTFT != 80*time.Millisecond {
		t.Fatalf("after a sample and an attempt: ttft %v measuring since %v, want 80ms and %v", sig.TTFT, sig.MeasuringSince, at)
	}
	if sig := read("other"); !sig.MeasuringSince.IsZero() || sig.TTFT != 0 {
		t.Fatalf("another model: %+v", sig)
	}
	// an attempt that brought no sample withdraws its own note only
	later := at.Add(time.Second)
	st.ObserveAttempt("m", later)
	st.EndAttempt("m", at)
	if sig := read("m"); !sig.MeasuringSince.Equal(later) {
		t.Fatalf("an older attempt's end withdrew a newer note: %v", sig.MeasuringSince)
	}
	st.EndAttempt("m", later)
	if sig := read("m"); !sig.MeasuringSince.IsZero() {
		t.Fatalf("an attempt's end left its note: %v", sig.MeasuringSince)
	}
}

// TestDecodeRateFromStatedTotals: the backend's running totals of decode
// time and tokens become its time per output token between polls, once
// enough tokens were decoded; a restart's smaller totals start afresh.
func TestDecodeRateFromStatedTotals(t *testing.T) {
	var d decodeRate
	poll := func(secs, tokens float64) {
		d.observe(&profiles.Signals{DecodeKnown: true, DecodeSeconds: secs, DecodeTokens: tokens, At: time.Now()})
	}
	rate := func() time.Duration {
		var out balancer.Signals
		d.fill(&out)
		return out.TPOT
	}
	poll(100, 1000) // whatever came before us: no rate yet
	if got := rate(); got != 0 {
		t.Fatalf("one poll: %v, want none", got)
	}
	poll(100.2, 1008) // 8 tokens: too few
	if got := rate(); got != 0 {
		t.Fatalf("8 tokens: %v, want none", got)
	}
	poll(101.5, 1040) // 40 tokens in 1.5 s
	if got := rate(); got != 37500*time.Microsecond {
		t.Fatalf("40 tokens in 1.5 s: %v, want 37.5ms", got)
	}
	poll(102.5, 1080) // 25 ms, blended half-way
	if got := rate(); got != 31250*time.Microsecond {
		t.Fatalf("then 25 ms a token: %v, want 31.25ms", got)
	}
	poll(1, 10) // restarted: a new baseline, the old rate stands
	poll(4, 50) // 75 ms a token since the restart
	if got := rate(); got != (31250*time.Microsecond+75*time.Millisecond)/2 {
		t.Fatalf("after a restart: %v", got)
	}
	d.observe(&profiles.Signals{}) // a poll without the totals changes nothing
	if rate() == 0 {
		t.Fatal("a poll without totals forgot the rate")
	}
}

// TestLoadAndServiceLearned (item 2): a cold start's TTFT beyond the warm
// floor is the endpoint's load time (all of it before any warm sample); a
// warm request's whole time is its service time; both blend half-way and
// are kept only for models the endpoint lists. ColdStart reads the fresh
// residency and counts one start per reading, and none while our load of
// the model is under way.
func TestLoadAndServiceLearned(t *testing.T) {
	st, read := listingEndpoint(t, "ollama")
	st.ObserveLoad("m", 3*time.Second) // no warm sample yet: all of it
	if sig := read("m"); sig.LoadTime != 3*time.Second {
		t.Fatalf("first load %v, want all of its 3s", sig.LoadTime)
	}
	st.ObserveTTFT("m", 200*time.Millisecond)
	st.ObserveLoad("m", 3200*time.Millisecond)
	if sig := read("m"); sig.LoadTime != 3*time.Second || sig.TTFT != 200*time.Millisecond {
		t.Fatalf("load %v, ttft %v; want 3s beyond the warm 200ms", sig.LoadTime, sig.TTFT)
	}
	st.ObserveLoad("m", 5200*time.Millisecond)
	st.ObserveService("m", time.Second)
	st.ObserveService("m", 2*time.Second)
	st.ObserveLoad("not-listed", time.Hour)
	if sig := read("m"); sig.LoadTime != 4*time.Second || sig.Service != 1500*time.Millisecond {
		t.Fatalf("load %v, service %v; want 4s and 1.5s", sig.LoadTime, sig.Service)
	}
	if sig := read("other"); sig.LoadTime != 0 || sig.Service != 0 {
		t.Fatalf("another model: %+v", sig)
	}
	now := time.Now()
	if st.ColdStart("m", now) {
		t.Fatal("a cold start with no residency read")
	}
	var ps profiles.Signals
	ps.AddLoaded("other")
	ps.At = now
	st.sched.signals.Store(&ps)
	if st.ColdStart("other", now) {
		t.Fatal("a cold start of a resident model")
	}
	if !st.ColdStart("m", now) || st.ColdStart("m", now) {
		t.Fatal("residency [other]: want one cold start of m, then none until the next reading")
	}
	if sig := read("m"); !sig.LoadingSince.Equal(now) {
		t.Fatalf("our load under way since %v, want %v", sig.LoadingSince, now)
	}
	next := ps
	next.At = ps.At.Add(time.Second)
	st.sched.signals.Store(&next)
	if st.ColdStart("m", now.Add(time.Second)) {
		t.Fatal("a new reading without m while our load of it is under way: want no second cold start")
	}
	st.EndAttempt("m", now) // it failed: no load under way any more
	if sig := read("m"); !sig.LoadingSince.IsZero() || sig.LoadTime != 4*time.Second {
		t.Fatalf("after a failed cold start: loading since %v, load %v; want none and the 4s learned before", sig.LoadingSince, sig.LoadTime)
	}
	if !st.ColdStart("m", now.Add(time.Second)) {
		t.Fatal("a new reading still without m and no load under way: want a cold start")
	}
}

// storeResidency stores a residency reading taken at at: these models
// loaded, every other one not.
func storeResidency(st *Endpoint, at time.Time, loaded ...string) {
	var ps profiles.Signals
	for _, m := range loaded {
		ps.AddLoaded(m)
	}
	ps.At = at
	st.sched.signals.Store(&ps)
}

// TestLearnedLoadIsBounded (hostile): a backend whose load takes hours (or
// hangs until a timeout) is learned at maxLoadTime at most, and a load
// that never answered teaches nothing.
func TestLearnedLoadIsBounded(t *testing.T) {
	st, read := listingEndpoint(t, "ollama")
	st.ObserveTTFT("m", 100*time.Millisecond)
	for range 3 {
		st.ObserveLoad("m", 5*time.Hour)
	}
	if sig := read("m"); sig.LoadTime != maxLoadTime {
		t.Fatalf("loads of 5 h learned as %v, want the cap %v", sig.LoadTime, maxLoadTime)
	}
	st.ObserveService("m", 24*time.Hour)
	if sig := read("m"); sig.Service != maxLoadTime {
		t.Fatalf("a service of a day learned as %v, want the cap %v", sig.Service, maxLoadTime)
	}
	// a load that timed out: the attempt ends with no first byte
	st2, read2 := listingEndpoint(t, "ollama")
	storeResidency(st2, time.Now(), "other")
	start := time.Now()
	if !st2.ColdStart("m", start) {
		t.Fatal("want a cold start")
	}
	st2.EndAttempt("m", start)
	if sig := read2("m"); sig.LoadTime != 0 || !sig.LoadingSince.IsZero() {
		t.Fatalf("a load that never answered: learned %v, loading since %v; want nothing", sig.LoadTime, sig.LoadingSince)
	}
}

// TestRidersAreNotWarm (item 2): requests that started while our load of
// the model was under way waited for it: their TTFT does not lower the
// floor a queue is measured from, and their whole time is not a round of
// the warm queue (service). A request after the load's first byte is warm
// again.
func TestRidersAreNotWarm(t *testing.T) {
	st, read := listingEndpoint(t, "ollama")
	st.ObserveTTFT("m", 100*time.Millisecond)
	st.ObserveService("m", 500*time.Millisecond)
	now := time.Now()
	storeResidency(st, now.Add(-1500*time.Millisecond), "other")
	start := now.Add(-2 * time.Second)
	if !st.ColdStart("m", start) {
		t.Fatal("want a cold start")
	}
	// a rider that started a moment after the cold start, answered now
	st.ObserveTTFT("m", 1900*time.Millisecond)
	st.ObserveService("m", 1950*time.Millisecond)
	st.ObserveLoad("m", time.Second) // the cold start's first byte, a second ago
	if sig := read("m"); sig.Queueing != 0 || sig.Service != 500*time.Millisecond || !sig.LoadingSince.IsZero() {
		t.Fatalf("after a rider: queueing %v, service %v, loading since %v; want none, 500ms and none", sig.Queueing, sig.Service, sig.LoadingSince)
	}
	if sig := read("m"); sig.LoadTime != 900*time.Millisecond {
		t.Fatalf("load %v, want 0.9s beyond the 100ms floor", sig.LoadTime)
	}
	// a rider whose sample comes at its answer's end, long after its first
	// byte (0.9 s after it started, with the load): judged on its start
	st.ObserveTTFTFrom("m", start.Add(200*time.Millisecond), 900*time.Millisecond)
	if sig := read("m"); sig.Queueing != 0 {
		t.Fatalf("a rider recorded at its end counted as warm: queueing %v", sig.Queueing)
	}
	// the reading, taken before, still says cold: our load answered since
	if sig := read("m"); sig.Warm != balancer.Warm {
		t.Fatalf("loaded by us after the reading: warmth %v, want warm", sig.Warm)
	}
	if st.ColdStart("m", time.Now()) {
		t.Fatal("loaded by us after the reading: no cold start until a reading says it is gone")
	}
	st.ObserveService("m", 700*time.Millisecond) // started after the load: warm
	if sig := read("m"); sig.Service != 600*time.Millisecond {
		t.Fatalf("a warm request after the load: service %v, want 600ms", sig.Service)
	}
	st.ObserveTTFT("m", 500*time.Millisecond) // a warm answer that queued
	if sig := read("m"); sig.Queueing <= 0 {
		t.Fatal("a warm answer 400ms above the floor: no queueing seen")
	}
}

// TestUnloadedBetweenPolls (hostile): the backend unloads the model after a
// reading that showed it resident. The next request pays a load we did not
// see coming: it is no cold start (nothing learned as a load from a
// reading that said warm), it barely moves the floor, and the next
// reading, which shows the model gone, makes the next request the counted
// cold start.
func TestUnloadedBetweenPolls(t *testing.T) {
	st, read := listingEndpoint(t, "ollama")
	st.ObserveTTFT("m", 100*time.Millisecond)
	st.ObserveLoad("m", 3100*time.Millisecond)
	now := time.Now()
	storeResidency(st, now, "m")
	if st.ColdStart("m", now) {
		t.Fatal("the reading says m is loaded: no cold start")
	}
	st.ObserveTTFT("m", 3100*time.Millisecond) // it was unloaded: a load we did not see
	sig := read("m")
	if sig.LoadTime != 3*time.Second {
		t.Fatalf("an unseen load changed the learned load to %v", sig.LoadTime)
	}
	if floor := time.Duration(st.ttftEntry("m").floor.Load()); floor > 200*time.Millisecond {
		t.Fatalf("an unseen load lifted the floor to %v", floor)
	}
	storeResidency(st, now.Add(time.Second), "other")
	if !st.ColdStart("m", now.Add(time.Second)) {
		t.Fatal("the next reading shows m gone: want the next request to be a cold start")
	}
}

// TestLlamaDecodeBesideSlots: llama.cpp's decode totals come from /metrics,
// read beside /slots on every poll (slots from the one, decode from the
// other); when /slots is missing, /metrics answers once for both.
func TestLlamaDecodeBesideSlots(t *testing.T) {
	var metricsHits atomic.Int64
	var noSlots atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slots":
			if noSlots.Load() {
				http.NotFound(w, r)
				return
			}
			fmt.Fprint(w, `[{"id":0,"is_processing":true},{"id":1,"is_processing":false}]`)
		case "/metrics":
			metricsHits.Add(1)
			fmt.Fprint(w, "llamacpp:requests_processing 1\nllamacpp:tokens_predicted_seconds_total 2\nllamacpp:tokens_predicted_total 40\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	st, s := polledEndpoint(t, srv.URL, "llamacpp", time.Second)
	st.pollOnce(context.Background(), zap.NewNop(), s)
	sig := st.sched.signals.Load()
	if sig == nil || !sig.SlotsKnown || sig.SlotsTotal != 2 || !sig.DecodeKnown || sig.DecodeTokens != 40 || metricsHits.Load() != 1 {
		t.Fatalf("with /slots: %+v, /metrics read %d times; want 2 slots and 40 tokens decoded, /metrics once", sig, metricsHits.Load())
	}
	noSlots.Store(true)
	st.pollOnce(context.Background(), zap.NewNop(), s)
	if sig = st.sched.signals.Load(); sig == nil || !sig.DecodeKnown || !sig.RunningKnown || metricsHits.Load() != 2 {
		t.Fatalf("without /slots: %+v, /metrics read %d times in all; want its values, read once more", sig, metricsHits.Load())
	}
}

// TestMeasuredDecode: our own time per output token (ObserveDecode) is the
// balancer's TPOT for a backend that states none, per model, quick to
// follow a faster sample and slow to follow a slower one, capped; a stated
// rate wins over it; a model the endpoint does not list keeps nothing.
func TestMeasuredDecode(t *testing.T) {
	st, read := listingEndpoint(t, "lm-studio")
	st.ObserveDecode("m", 40*time.Millisecond)
	st.ObserveDecode("m", 20*time.Millisecond)
	st.ObserveDecode("not-listed", time.Second)
	st.ObserveDecode("other", 0)
	if sig := read("m"); sig.TPOT != 30*time.Millisecond || time.Since(sig.TPOTAt) > time.Minute {
		t.Fatalf("measured TPOT %v at %v; want 30ms, now", sig.TPOT, sig.TPOTAt)
	}
	// one slow sample (a busy moment of ours) moves it an eighth
	st.ObserveDecode("m", 110*time.Millisecond)
	if sig := read("m"); sig.TPOT != 40*time.Millisecond {
		t.Fatalf("after a slow sample: %v, want 40ms", sig.TPOT)
	}
	if sig := read("other"); sig.TPOT != 0 {
		t.Fatalf("another model: TPOT %v", sig.TPOT)
	}
	if got := st.signalStatus(time.Now()).Learned; len(got) != 2 || got[0].Model != "m" || got[0].TPOTMs != 40 || got[1].TPOTMs != 0 {
		t.Fatalf("status learned %+v, want m with tpot_ms 40, other without", got)
	}
	st.ObserveDecode("other", time.Hour)
	if sig := read("other"); sig.TPOT != maxTPOT {
		t.Fatalf("a huge sample: %v, want it capped at %v", sig.TPOT, maxTPOT)
	}
	// the backend's own statement wins
	st.sched.decode.tpot.Store(int64(5 * time.Millisecond))
	st.sched.decode.at.Store(time.Now().UnixNano())
	if sig := read("m"); sig.TPOT != 5*time.Millisecond {
		t.Fatalf("with a stated 5ms: TPOT %v", sig.TPOT)
	}
}

// TestSlotsLearnedFromOurStreams: a server that states no slots nor
// running counts has at least as many slots as it was seen streaming our
// answers at once, a count that never falls; one that states running
// counts is judged on those alone.
func TestSlotsLearnedFromOurStreams(t *testing.T) {
	st, read := listingEndpoint(t, "lm-studio")
	for range 3 {
		st.StreamStarted()
	}
	st.StreamEnded()
	st.StreamStarted()
	st.StreamEnded()
	st.StreamEnded()
	if sig := read("m"); sig.SeenSlots != 3 || sig.SeenFull {
		t.Fatalf("after 3 at once: seen slots %d (full %v), want 3, not full", sig.SeenSlots, sig.SeenFull)
	}
	// the backend's own running counts, where it states them, win: ours
	// run a little past them
	st.sched.seenRunning.Store(2)
	if sig := read("m"); sig.SeenSlots != 2 {
		t.Fatalf("polls saw 2: seen slots %d", sig.SeenSlots)
	}
	if got := st.signalStatus(time.Now()).SeenRunning; got != 2 {
		t.Fatalf("status seen_running %d, want 2", got)
	}
}
