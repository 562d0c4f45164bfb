package integration

import (
	"strconv"
	"strings"
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

// twoVLLMs starts vLLM simulators a and b (model m) behind Caddy with the
// adaptive balancer and load polls every 100 ms.
func twoVLLMs(t *testing.T) (a, b *sim.Server) {
	t.Helper()
	a = startSim(t, sim.Config{Kind: sim.VLLM, Name: "a", Models: []string{"m"}})
	b = startSim(t, sim.Config{Kind: sim.VLLM, Name: "b", Models: []string{"m"}})
	poll := "\t\t\tload_interval 100ms"
	load(t, site(endpointBlock("a", a.URL, "vllm", poll)+endpointBlock("b", b.URL, "vllm", poll)+"load_balancer adaptive\n"))
	waitRoutable(t, "a", "b")
	return a, b
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
	a, b := twoVLLMs(t)
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

// TestPrefixMetrics, through Caddy: /internal/metrics shows each
// endpoint's prefix index (blocks, budget, evictions), the requests it
// served with their match, and what its backend lost, labelled by
// endpoint name (and a fixed match or cause) only: no prompt text, no
// model, nothing a client chose. No response header says what the index
// holds.
func TestPrefixMetrics(t *testing.T) {
	a, _ := twoVLLMs(t)
	// the sims state 8192 blocks of 16 tokens: 2048 index blocks
	waitFor(t, "budgets from the backends", 30*time.Second, func() bool {
		return strings.Contains(metricLines(t, "olla_prefix_index_budget_blocks"), `olla_prefix_index_budget_blocks{endpoint="a"} 2048`)
	})
	// the request counters are process-wide: earlier configs' endpoints of
	// the same names count in them too, so this test reads what it adds
	heldBy := func() (sum float64) {
		for _, line := range strings.Split(strings.TrimSpace(metricLines(t, "olla_prefix_requests_total")), "\n") {
			if line == "" {
				continue
			}
			_, labels, value := parseMetricLine(t, line)
			if (labels[0][1] == "a" || labels[0][1] == "b") && labels[1][1] == "held" {
				sum += value
			}
		}
		return sum
	}
	heldBefore := heldBy()
	for i := range 6 {
		for turn := range 3 {
			res := post(t, "/olla/openai/v1/chat/completions", conversation("m", i, turn))
			readAll(t, res)
			for k, v := range res.Header {
				if strings.Contains(strings.ToLower(k+strings.Join(v, " ")), "prefix") {
					t.Errorf("a response header speaks of the prefix index: %s: %v", k, v)
				}
			}
		}
	}
	lines := metricLines(t, "olla_prefix_")
	stats := prefixStats(t)
	for _, line := range strings.Split(strings.TrimSpace(lines), "\n") {
		name, labels, value := parseMetricLine(t, line)
		for _, l := range labels {
			switch {
			case l[0] == "endpoint" && !strings.ContainsAny(l[1], " ?"): // a configured name
			case l[0] == "match" && (l[1] == "held" || l[1] == "miss"):
			case l[0] == "cause" && (l[1] == "restart" || l[1] == "unload"):
			default:
				t.Errorf("unexpected label %s=%q in %s", l[0], l[1], line)
			}
		}
		if name == "olla_prefix_index_blocks" {
			if want := float64(stats[labels[0][1]].Blocks); value != want {
				t.Errorf("%s: the stats say %v", line, want)
			}
		}
	}
	// 6 conversations of 3 turns: the later 12 turns found their earlier
	// ones held where they were served
	if held := heldBy() - heldBefore; held < 12 {
		t.Errorf("olla_prefix_requests_total match=held grew by %v, want 12 or more:\n%s", held, lines)
	}
	for _, want := range []string{`olla_prefix_index_evictions_total{endpoint="a"} 0`, `olla_prefix_forgets_total{cause="restart",endpoint="b"} 0`} {
		if !strings.Contains(lines, want) {
			t.Errorf("/internal/metrics lacks %q:\n%s", want, lines)
		}
	}
	// a restart shows as a forget
	a.Close()
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's restart counted", 30*time.Second, func() bool {
		return strings.Contains(metricLines(t, "olla_prefix_forgets_total"), `olla_prefix_forgets_total{cause="restart",endpoint="a"} 1`)
	})
	if n := prefixStats(t)["a"]; n.Blocks != 0 {
		t.Errorf("after a's restart its index holds %d blocks", n.Blocks)
	}
}

// parseMetricLine splits a Prometheus text line into its name, labels (in
// order) and value.
func parseMetricLine(t *testing.T, line string) (string, [][2]string, float64) {
	t.Helper()
	name, rest, _ := strings.Cut(line, "{")
	body, val, ok := strings.Cut(rest, "} ")
	if !ok {
		name, val, _ = strings.Cut(line, " ")
		body = ""
	}
	var labels [][2]string
	for _, kv := range strings.Split(body, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			labels = append(labels, [2]string{k, strings.Trim(v, `"`)})
		}
	}
	f, err := strconv.ParseFloat(val, 64)
	if err != nil {
		t.Fatalf("metric line %q: %v", line, err)
	}
	return name, labels, f
}

// TestDashboardPrefixPanel, through Caddy: the dashboard's data lists each
// endpoint's prefix index (size against budget, hit ratio over the
// requests it served) with prefix affinity on, and nothing without it; an
// idle proxy keeps its ETag (the page's polls get 304) and a request
// changes it.
func TestDashboardPrefixPanel(t *testing.T) {
	a := startSim(t, sim.Config{Kind: sim.VLLM, Name: "a", Models: []string{"m"}})
	b := startSim(t, sim.Config{Kind: sim.VLLM, Name: "b", Models: []string{"m"}})
	eps := endpointBlock("a", a.URL, "vllm") + endpointBlock("b", b.URL, "vllm")
	type panel struct {
		Prefix []struct {
			Endpoint string  `json:"endpoint"`
			Blocks   int     `json:"blocks"`
			Budget   int     `json:"budget"`
			Routed   int64   `json:"routed"`
			Held     int64   `json:"held"`
			Ratio    float64 `json:"request_hit_ratio"`
		} `json:"prefix"`
	}
	load(t, site(eps))
	waitRoutable(t, "a", "b")
	var d panel
	getJSON(t, "/internal/ui/data", &d)
	if d.Prefix != nil {
		t.Fatalf("the priority balancer has no prefix index, but the dashboard shows %+v", d.Prefix)
	}

	load(t, site(eps+"load_balancer adaptive\n"))
	waitRoutable(t, "a", "b")
	converse(t, "m", 0, 6, 3)
	getJSON(t, "/internal/ui/data", &d)
	if len(d.Prefix) != 2 || d.Prefix[0].Endpoint != "a" || d.Prefix[1].Endpoint != "b" {
		t.Fatalf("prefix panel %+v, want a and b in config order", d.Prefix)
	}
	stats := prefixStats(t)
	routed, held := int64(0), int64(0)
	for _, p := range d.Prefix {
		if p.Blocks != stats[p.Endpoint].Blocks || p.Budget == 0 || (p.Routed > 0 && p.Ratio != float64(p.Held)/float64(p.Routed)) {
			t.Errorf("%s: %+v (stats %+v)", p.Endpoint, p, stats[p.Endpoint])
		}
		routed, held = routed+p.Routed, held+p.Held
	}
	if routed != 18 || held < 12 {
		t.Errorf("6 conversations of 3 turns: %d routed, %d held; want 18, and the 12 later turns held", routed, held)
	}

	etag := func() string {
		res, err := client.Get(base + "/internal/ui/data")
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, res)
		return res.Header.Get("ETag")
	}
	tag := idleETag(t, etag)
	converse(t, "m", 0, 1, 1)
	if etag() == tag {
		t.Error("a request that fed the index left the ETag as it was")
	}
}
