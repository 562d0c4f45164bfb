package olla

import (
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/profiles"
)

// scheduledEndpoints builds n endpoints as the app holds them, with fresh
// signals of every kind (Ollama residency, a vLLM queue, llama.cpp slots)
// and a TTFT sample for the model.
func scheduledEndpoints(tb testing.TB, n int) candidates {
	tb.Helper()
	c := make(candidates, n)
	types := []string{"ollama", "vllm", "llamacpp"}
	for i := range c {
		e := &Endpoint{Name: "endpoint-" + strconv.Itoa(i), URL: "http://127.0.0.1:" + strconv.Itoa(20000+i), Type: types[i%3], MaxConcurrency: 8}
		s, err := e.resolve(caddy.NewReplacer(), zap.NewNop())
		if err != nil {
			tb.Fatal(err)
		}
		s.SlotCap = true
		st := fleet.New(s)
		tb.Cleanup(func() { _ = st.Destruct() })
		st.SetModelsForTest([]profiles.Model{{Name: "llama3:8b"}, {Name: "qwen3:latest"}})
		var sig profiles.Signals
		switch i % 3 {
		case 0:
			if i%2 == 0 {
				sig.AddLoaded("llama3:8b")
			} else {
				sig.AddLoaded("qwen3:latest")
			}
		case 1:
			sig.ServesListed, sig.WaitingKnown, sig.RunningKnown, sig.KVKnown = true, true, true, true
			sig.Waiting, sig.Running, sig.KVUsage = int64(i%4), 6, 0.4
		default:
			sig.ServesListed, sig.SlotsKnown, sig.RunningKnown = true, true, true
			sig.SlotsTotal, sig.SlotsBusy, sig.Running = 4, 1, 1
		}
		sig.At = time.Now()
		st.SetSignalsForTest(&sig)
		st.ObserveTTFT("llama3:8b", time.Duration(40+i)*time.Millisecond)
		c[i] = st
	}
	return c
}

// BenchmarkAdaptiveSelect is one adaptive selection (with its reason) over
// 10 endpoints through the app's own candidates type, as the picker runs
// it: the target is under 1 µs and no allocation.
func BenchmarkAdaptiveSelect(b *testing.B) {
	c := scheduledEndpoints(b, 10)
	p, err := balancer.NewPipeline(balancer.Config{Strategy: balancer.Adaptive})
	if err != nil {
		b.Fatal(err)
	}
	req := balancer.Request{Model: "llama3:8b", Key: 0x9e3779b97f4a7c15, Pinned: "endpoint-3"}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if i, _ := p.Schedule(req, &c); i < 0 {
			b.Fatal("no choice")
		}
	}
}

// TestAdaptiveSelectAllocs holds the benchmark's zero-allocation promise
// in the test suite.
func TestAdaptiveSelectAllocs(t *testing.T) {
	c := scheduledEndpoints(t, 10)
	p, err := balancer.NewPipeline(balancer.Config{Strategy: balancer.Adaptive})
	if err != nil {
		t.Fatal(err)
	}
	req := balancer.Request{Model: "llama3:8b", Key: 42}
	var won int
	allocs := testing.AllocsPerRun(200, func() { won, _ = p.Schedule(req, &c) })
	if allocs != 0 {
		t.Errorf("an adaptive selection over 10 endpoints allocates %.1f times", allocs)
	}
	// the winner is warm for the model (an Ollama holding it or a server
	// that serves what it lists), never an Ollama holding another model
	var sig balancer.Signals
	if c[won].SchedSignals("llama3:8b", &sig); sig.Warm != balancer.Warm {
		t.Errorf("winner %s is not warm: %+v", c[won].Name(), sig)
	}
}
