package fleet

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-olla/olla/internal/sim"
)

// losses reads st's cache losses after seq: the models lost ("" for the
// whole cache) and the seq to read from next.
func losses(st *Endpoint, seq uint64) ([]string, uint64) {
	var got []string
	next := st.CacheLosses(seq, func(m string) { got = append(got, m) })
	return got, next
}

// TestCacheLossLog: losses come back in order from any point; a reader
// further behind than the log keeps is told the whole cache went; reading
// costs nothing when nothing was lost.
func TestCacheLossLog(t *testing.T) {
	st := newEndpoint(testSettings(t, "ep", "http://127.0.0.1:1", "ollama"))
	defer st.Destruct()
	if got, seq := losses(st, st.CacheSeq()); got != nil || seq != 0 {
		t.Fatalf("a fresh endpoint lost %v (seq %d)", got, seq)
	}
	st.cache.add("a")
	st.cache.add("")
	st.cache.add("b")
	if got, seq := losses(st, 0); !slices.Equal(got, []string{"a", "", "b"}) || seq != 3 || seq != st.CacheSeq() {
		t.Errorf("losses %v up to %d, want a, whole, b up to 3", got, seq)
	}
	if got, _ := losses(st, 2); !slices.Equal(got, []string{"b"}) {
		t.Errorf("losses after 2: %v, want b", got)
	}
	for i := range cacheLogSize + 5 {
		st.cache.add(string(rune('c' + i%20)))
	}
	if got, seq := losses(st, 3); !slices.Equal(got, []string{""}) || seq != st.CacheSeq() {
		t.Errorf("a reader %d losses behind got %v, want the whole cache", cacheLogSize+5, got)
	}
	if got, _ := losses(st, st.CacheSeq()-2); len(got) != 2 || got[0] == "" {
		t.Errorf("the last two losses: %v", got)
	}
	if r, u := st.CacheLossCounts(); r != 1 || u != 2+cacheLogSize+5 {
		t.Errorf("counts %d restarts, %d unloads", r, u)
	}
}

// probeSim starts a simulator (stopped with the test) and makes an
// endpoint's state for it with fast probes.
func probeSim(t *testing.T, cfg sim.Config, typ string) (*sim.Server, *Endpoint, *Settings) {
	t.Helper()
	srv, err := sim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	s := testSettings(t, "ep", srv.URL, typ)
	s.CheckInterval, s.CheckTimeout, s.UnhealthyAfter = 50*time.Millisecond, 200*time.Millisecond, 2
	if err := s.PollLoad(time.Minute); err != nil {
		t.Fatal(err)
	}
	s.LoadTimeout = time.Minute
	st := newEndpoint(s)
	t.Cleanup(func() { _ = st.Destruct() })
	return srv, st, s
}

// TestCacheLostOnRestartNotOnFlap, through the probes against a real
// simulator: a backend that goes away (connection refused) and comes back
// has lost its cache, once; a backend whose health route only times out
// (a busy one) and recovers, again and again, has lost nothing; and steady
// probes of a healthy backend lose nothing.
func TestCacheLostOnRestartNotOnFlap(t *testing.T) {
	srv, st, s := probeSim(t, sim.Config{Kind: sim.VLLM, Models: []string{"m"}}, "vllm")
	ctx, log := context.Background(), zap.NewNop()
	probe := func(n int) {
		for range n {
			st.check(ctx, log, s)
		}
	}
	probe(20)
	if seq := st.CacheSeq(); seq != 0 || !st.HealthStatus().Routable() {
		t.Fatalf("20 healthy probes: %d losses, status %s", seq, st.HealthStatus())
	}
	// flapping: the health route times out until the backend is taken
	// out, then answers again; four times over
	for range 4 {
		srv.SetFault(sim.Fault{Mode: sim.FaultSlowHealth, Delay: time.Second})
		probe(3)
		if st.HealthStatus().Routable() {
			t.Fatalf("three timed-out probes left it %s", st.HealthStatus())
		}
		srv.SetFault(sim.Fault{})
		probe(2)
		if !st.HealthStatus().Routable() {
			t.Fatalf("after the fault: %s (%s)", st.HealthStatus(), st.Health().Reason)
		}
	}
	if seq := st.CacheSeq(); seq != 0 {
		t.Errorf("a backend whose health route only timed out lost its cache %d times", seq)
	}
	// a restart: nothing listens for a while, then it is back
	srv.Close()
	probe(5)
	if st.HealthStatus().Routable() || st.CacheSeq() != 0 {
		t.Fatalf("while it is down: %s, %d losses (a loss is noted when it is back)", st.HealthStatus(), st.CacheSeq())
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	probe(10)
	if got, _ := losses(st, 0); !slices.Equal(got, []string{""}) || !st.HealthStatus().Routable() {
		t.Errorf("after a restart and 10 probes: losses %v (want the whole cache, once), %s", got, st.HealthStatus())
	}
}

// TestCacheNotLostBeforeUp: a backend that is not up yet when the proxy
// starts (connection refused, then up) has lost nothing: no restart is
// counted for it. Once it has been up, the same refusal and return is one.
func TestCacheNotLostBeforeUp(t *testing.T) {
	srv, st, s := probeSim(t, sim.Config{Kind: sim.VLLM, Models: []string{"m"}}, "vllm")
	ctx, log := context.Background(), zap.NewNop()
	srv.Close()
	for range 3 {
		st.check(ctx, log, s)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		st.check(ctx, log, s)
	}
	if seq := st.CacheSeq(); seq != 0 || !st.HealthStatus().Routable() {
		t.Fatalf("a backend that came up late: %d losses, %s", seq, st.HealthStatus())
	}
	srv.Close()
	st.check(ctx, log, s)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	st.check(ctx, log, s)
	if got, _ := losses(st, 0); !slices.Equal(got, []string{""}) {
		t.Errorf("a restart after it was up: losses %v, want the whole cache once", got)
	}
}

// TestCacheLostOnStatedRestart: vLLM states its process start time on
// /metrics; a new one means a restart the probes never saw, and loses the
// cache once. Polls of the same process lose nothing.
func TestCacheLostOnStatedRestart(t *testing.T) {
	srv, st, s := probeSim(t, sim.Config{Kind: sim.VLLM, Models: []string{"m"}}, "vllm")
	ctx, log := context.Background(), zap.NewNop()
	for range 3 {
		st.pollOnce(ctx, log, s)
	}
	if sig := st.sched.signals.Load(); sig == nil || !sig.StartedKnown || st.CacheSeq() != 0 {
		t.Fatalf("polls of one process: signals %+v, %d losses", sig, st.CacheSeq())
	}
	srv.Close()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		st.pollOnce(ctx, log, s)
	}
	if got, _ := losses(st, 0); !slices.Equal(got, []string{""}) {
		t.Errorf("a new process start time: losses %v, want the whole cache once", got)
	}
	// a slow restart both tell, the probes (gone, then back) and the
	// start time: it is one loss, not two
	srv.Close()
	for range 3 {
		st.check(ctx, log, s)
		st.pollOnce(ctx, log, s)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		st.check(ctx, log, s)
		st.pollOnce(ctx, log, s)
	}
	if got, _ := losses(st, 0); !slices.Equal(got, []string{"", ""}) || !st.HealthStatus().Routable() {
		t.Errorf("after a slow restart: losses %v, want the whole cache twice in all (once a restart); %s", got, st.HealthStatus())
	}
	// and a later quick restart is still seen
	srv.Close()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	st.pollOnce(ctx, log, s)
	if got, _ := losses(st, 0); len(got) != 3 {
		t.Errorf("a quick restart after a slow one: losses %v, want a third", got)
	}
}

// TestCacheLostOnUnload: Ollama's /api/ps says which models are resident;
// a model that leaves it (evicted for another) loses its blocks, named as
// the backend names it; a failed poll in between loses nothing.
func TestCacheLostOnUnload(t *testing.T) {
	srv, st, s := probeSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"a:latest", "b:latest"}, Capacity: sim.Capacity{MaxLoaded: 1}}, "ollama")
	ctx, log := context.Background(), zap.NewNop()
	use := func(model string) {
		res, err := http.Post(srv.URL+"/api/generate", "application/json",
			strings.NewReader(`{"model":"`+model+`","prompt":"hi","stream":false}`))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	use("a:latest")
	st.pollOnce(ctx, log, s)
	st.pollOnce(ctx, log, s)
	if st.CacheSeq() != 0 {
		t.Fatalf("a stays resident: %d losses", st.CacheSeq())
	}
	srv.SetFault(sim.Fault{Mode: sim.FaultStatus, Path: "/api/ps"})
	st.pollOnce(ctx, log, s) // a failed poll says nothing about residency
	srv.SetFault(sim.Fault{})
	use("b:latest") // evicts a
	st.pollOnce(ctx, log, s)
	st.pollOnce(ctx, log, s)
	got, _ := losses(st, 0)
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "a:latest"}) {
		t.Errorf("a evicted for b: losses %v, want a and a:latest (both names Ollama answers to)", got)
	}
}
