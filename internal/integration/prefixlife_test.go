package integration

import (
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// prefixEndpoint is one endpoint's entry in /internal/stats/prefix.
type prefixEndpoint struct {
	Blocks    int     `json:"blocks"`
	Budget    int     `json:"budget"`
	Forgets   int64   `json:"forgets"`
	Forgotten int64   `json:"forgotten_blocks"`
	Evictions int64   `json:"evictions"`
	HitRatio  float64 `json:"hit_ratio"`
}

func prefixStats(t *testing.T) map[string]prefixEndpoint {
	t.Helper()
	var stats struct {
		Endpoints map[string]prefixEndpoint `json:"endpoints"`
	}
	getJSON(t, "/internal/stats/prefix", &stats)
	return stats.Endpoints
}

// converse sends conversations from..to-1 of model, turns each, without a
// session id.
func converse(t *testing.T, model string, from, to, turns int) {
	t.Helper()
	for i := from; i < to; i++ {
		for turn := range turns {
			res := post(t, "/olla/openai/v1/chat/completions", conversation(model, i, turn))
			if b := readAll(t, res); res.StatusCode != 200 {
				t.Fatalf("conversation %d turn %d: %d %.200s", i, turn, res.StatusCode, b)
			}
		}
	}
}

// TestPrefixForgetsRestarts, through Caddy: the index forgets what a
// backend held when the backend restarts, whether the probes saw it go
// (connection refused, then back) or not (a restart between probes, told
// by vLLM's process start time); it keeps what a backend holds whose
// health route only timed out for a while (a busy backend flapping), and
// never touches the other endpoint's part.
func TestPrefixForgetsRestarts(t *testing.T) {
	a := startSim(t, sim.Config{Kind: sim.VLLM, Name: "a", Models: []string{"m"}})
	b := startSim(t, sim.Config{Kind: sim.VLLM, Name: "b", Models: []string{"m"}})
	poll := "\t\t\tload_interval 100ms"
	load(t, site(endpointBlock("a", a.URL, "vllm", poll)+endpointBlock("b", b.URL, "vllm", poll)+"load_balancer adaptive\n"))
	waitRoutable(t, "a", "b")
	converse(t, "m", 0, 12, 2)
	before := prefixStats(t)
	if before["a"].Blocks == 0 || before["b"].Blocks == 0 {
		t.Fatalf("12 conversations did not reach both endpoints: %+v", before)
	}

	// b flaps: its health route times out until it is taken out, then
	// answers again. Its process and cache never went anywhere.
	b.SetFault(sim.Fault{Mode: sim.FaultSlowHealth, Delay: 2 * time.Second})
	waitFor(t, "b taken out by slow probes", 30*time.Second, func() bool { return !endpointsStatus(t)["b"].Routable })
	b.SetFault(sim.Fault{})
	waitRoutable(t, "b")
	if got := prefixStats(t); got["b"].Blocks != before["b"].Blocks || got["b"].Forgets != 0 {
		t.Fatalf("a flap (timeouts only) changed b's index: %+v, was %+v", got["b"], before["b"])
	}

	// a restarts between two probes: only its stated start time tells
	a.Close()
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's index forgotten after a quick restart", 30*time.Second, func() bool {
		got := prefixStats(t)["a"]
		return got.Blocks == 0 && got.Forgets >= 1 && got.Forgotten == int64(before["a"].Blocks)
	})
	if got := prefixStats(t)["b"]; got.Blocks != before["b"].Blocks || got.Forgets != 0 {
		t.Errorf("a's restart touched b's index: %+v, was %+v", got, before["b"])
	}

	// b restarts slowly: the probes see it refuse connections, then back
	b.Close()
	waitFor(t, "b seen down", 30*time.Second, func() bool { return !endpointsStatus(t)["b"].Routable })
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	waitRoutable(t, "b")
	waitFor(t, "b's index forgotten after an outage", 30*time.Second, func() bool {
		got := prefixStats(t)["b"]
		return got.Blocks == 0 && got.Forgotten == int64(before["b"].Blocks)
	})
	// and the index fills again from what they serve now
	converse(t, "m", 0, 12, 1)
	if got := prefixStats(t); got["a"].Blocks+got["b"].Blocks == 0 {
		t.Errorf("the index stays empty after the restarts: %+v", got)
	}
}

// TestPrefixForgetsUnloadedModel, through Caddy: an Ollama that evicts a
// model for another (it holds one at a time) drops that model's part of
// the index, as /api/ps shows it gone, and keeps the other's.
func TestPrefixForgetsUnloadedModel(t *testing.T) {
	o := startSim(t, sim.Config{Kind: sim.Ollama, Name: "o", Models: []string{"a:latest", "b:latest"}, Capacity: sim.Capacity{MaxLoaded: 1}})
	load(t, site(endpointBlock("o", o.URL, "ollama", "\t\t\tload_interval 100ms")+"load_balancer adaptive\n"))
	waitRoutable(t, "o")
	converse(t, "a:latest", 0, 3, 3)
	// poll until /api/ps has shown a resident, so its leaving is seen
	waitFor(t, "a resident", 10*time.Second, func() bool {
		w, _, _ := warmModels(t, "o")
		return len(w) > 0
	})
	held := prefixStats(t)["o"]
	if held.Blocks == 0 || held.Forgets != 0 {
		t.Fatalf("after a's conversations: %+v", held)
	}
	converse(t, "b:latest", 10, 11, 1) // evicts a
	waitFor(t, "a's blocks forgotten", 30*time.Second, func() bool {
		got := prefixStats(t)["o"]
		return got.Forgotten == int64(held.Blocks) && got.Blocks > 0
	})
}

// TestPrefixBudgetsFromBackends, through Caddy: each endpoint's index
// budget is the KV cache its backend states (vLLM's cache_config_info:
// 1000 blocks of 16 tokens, 16,000 tokens, 250 index blocks at 4 bytes a
// token; llama.cpp's /slots: 2 slots of 4096 tokens, 128 blocks), else the
// default (Ollama states none); a configured cache_blocks wins over all.
// A flood of unique prompts keeps each endpoint within its budget.
func TestPrefixBudgetsFromBackends(t *testing.T) {
	v := startSim(t, sim.Config{Kind: sim.VLLM, Name: "v", Models: []string{"m"}, Capacity: sim.Capacity{CacheBlocks: 1000}})
	l := startSim(t, sim.Config{Kind: sim.LlamaCpp, Name: "l", Models: []string{"m"}, ContextLength: 4096, Capacity: sim.Capacity{Slots: 2}})
	o := startSim(t, sim.Config{Kind: sim.Ollama, Name: "o", Models: []string{"m"}})
	poll := "\t\t\tload_interval 100ms"
	eps := endpointBlock("v", v.URL, "vllm", poll) + endpointBlock("l", l.URL, "llamacpp", poll) + endpointBlock("o", o.URL, "ollama", poll)
	load(t, site(eps+"load_balancer adaptive\n"))
	waitRoutable(t, "v", "l", "o")
	want := map[string]struct {
		budget int
		from   string
	}{"v": {250, "backend"}, "l": {128, "backend"}, "o": {65536, "default"}}
	var stats struct {
		Endpoints map[string]struct {
			Budget int    `json:"budget"`
			From   string `json:"budget_from"`
			Tokens int64  `json:"backend_cache_tokens"`
		} `json:"endpoints"`
	}
	waitFor(t, "budgets from the backends", 30*time.Second, func() bool {
		getJSON(t, "/internal/stats/prefix", &stats)
		for name, w := range want {
			if e := stats.Endpoints[name]; e.Budget != w.budget || e.From != w.from {
				return false
			}
		}
		return true
	})
	// a flood of unique prompts: no endpoint's index grows past its budget
	converse(t, "m", 100, 400, 1)
	for name, e := range prefixStats(t) {
		if e.Blocks > e.Budget {
			t.Errorf("%s holds %d blocks over its budget of %d", name, e.Blocks, e.Budget)
		}
	}
	if got := prefixStats(t); got["v"].Evictions == 0 && got["l"].Evictions == 0 {
		t.Errorf("the flood filled neither small budget: %+v", got)
	}

	// configured: cache_blocks wins
	load(t, site(eps+"load_balancer adaptive\nprefix_affinity {\n\tcache_blocks 500\n}\n"))
	waitRoutable(t, "v", "l", "o")
	converse(t, "m", 0, 1, 1)
	getJSON(t, "/internal/stats/prefix", &stats)
	for name := range want {
		if e := stats.Endpoints[name]; e.Budget != 500 || e.From != "cache_blocks" {
			t.Errorf("%s with cache_blocks 500: %+v", name, e)
		}
	}
}
