package balancer

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-olla/olla/profiles"
	"github.com/puzpuzpuz/xsync/v3"
)

// polledEndpoint is how the olla app can hold an endpoint's scheduling state:
// the last parsed signals behind an atomic pointer (the watcher swaps in a
// new value per poll), one TTFT average per model, and the in-flight counter.
// polledCandidates shows that the app's candidates can implement SignalSource
// without allocating; BenchmarkAdaptivePolled measures it.
type polledEndpoint struct {
	name           string
	priority       int
	maxConcurrency int64
	loadInterval   time.Duration
	inFlight       Counter
	signals        atomic.Pointer[profiles.Signals]
	ttft           *xsync.MapOf[string, *EWMA]
}

type polledCandidates []*polledEndpoint

func (c *polledCandidates) Len() int             { return len(*c) }
func (c *polledCandidates) Priority(i int) int   { return (*c)[i].priority }
func (c *polledCandidates) InFlight(i int) int64 { return (*c)[i].inFlight.Load() }
func (c *polledCandidates) Name(i int) string    { return (*c)[i].name }

func (c *polledCandidates) Signals(i int, model string, out *Signals) {
	ep := (*c)[i]
	out.MaxConcurrency = ep.maxConcurrency
	if avg, ok := ep.ttft.Load(model); ok {
		out.TTFT = avg.Value()
	}
	sig := ep.signals.Load()
	if sig == nil {
		return // never polled: everything else unknown
	}
	out.At, out.MaxAge = sig.At, 3*ep.loadInterval
	if resident, known := sig.Resident(model); known {
		out.Warm = Cold
		if resident {
			out.Warm = Warm
		}
	}
	out.QueueKnown = sig.WaitingKnown || sig.RunningKnown
	out.Waiting, out.Running = sig.Waiting, sig.Running
	out.SlotsKnown, out.Slots = sig.SlotsKnown, sig.SlotsTotal
	out.KVKnown, out.KVUsage = sig.KVKnown, sig.KVUsage
}

func newPolled(n int) polledCandidates {
	c := make(polledCandidates, n)
	for i := range c {
		ep := &polledEndpoint{
			name: "endpoint-" + strconv.Itoa(i), priority: 100, maxConcurrency: 8,
			loadInterval: 2 * time.Second, ttft: xsync.NewMapOf[string, *EWMA](),
		}
		var s profiles.Signals
		switch i % 3 {
		case 0: // an Ollama-like endpoint with its loaded models
			s.AddLoaded("llama3:8b")
			s.AddLoaded("qwen3:latest")
		case 1: // a vLLM-like endpoint with a queue
			s.ServesListed, s.WaitingKnown, s.RunningKnown, s.KVKnown = true, true, true, true
			s.Waiting, s.Running, s.KVUsage = int64(i%4), 6, 0.4
		default: // an Ollama-like endpoint holding another model
			s.AddLoaded("mistral:7b")
		}
		s.At = time.Now()
		ep.signals.Store(&s)
		avg := new(EWMA)
		avg.Observe(time.Duration(40+i) * time.Millisecond)
		ep.ttft.Store("llama3:8b", avg)
		c[i] = ep
	}
	return c
}

func TestPolledCandidates(t *testing.T) {
	c := newPolled(6)
	p := mustPipeline(t, Config{Strategy: Adaptive})
	r := Request{Model: "mistral:7b", SessionKey: "k"}
	if i, why := p.Schedule(r, &c); i != 2 && i != 5 {
		t.Errorf("picked %d (%v), want an endpoint holding mistral:7b (2 or 5) or a vLLM one", i, why)
	}
	// Boxed once, as a caller holding its candidates in a struct passes a
	// pointer: converting a slice to an interface on every call would
	// allocate its header.
	var boxed Candidates = &c
	if allocs := testing.AllocsPerRun(1000, func() { p.Schedule(r, boxed) }); allocs != 0 {
		t.Errorf("Schedule over polled candidates allocates %v times per call", allocs)
	}
}

// BenchmarkAdaptivePolled is one adaptive selection over 10 endpoints whose
// signals come from parsed profiles.Signals, as the app will hold them.
func BenchmarkAdaptivePolled(b *testing.B) {
	c := newPolled(10)
	var boxed Candidates = &c
	p := mustPipeline(b, Config{Strategy: Adaptive})
	r := Request{Model: "llama3:8b", SessionKey: "0123456789abcdef0123456789abcdef"}
	b.ReportAllocs()
	for b.Loop() {
		p.Schedule(r, boxed)
	}
}
