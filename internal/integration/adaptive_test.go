package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/internal/sim"
)

// overlaySim is a simulator whose answer on one path is replaced by
// handler: a backend with a hostile or hand-set load surface that still
// serves requests like the real thing.
func overlaySim(t *testing.T, cfg sim.Config, path string, handler http.HandlerFunc) (string, *sim.Sim) {
	t.Helper()
	s := sim.New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			handler(w, r)
			return
		}
		s.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String(), s
}

// signalInfo is the signals part of /internal/status/endpoints.
type signalInfo struct {
	Polling  string   `json:"polling"`
	Fresh    bool     `json:"fresh"`
	Warm     []string `json:"warm_models"`
	Serves   bool     `json:"serves_listed"`
	Waiting  *int64   `json:"waiting"`
	Running  *int64   `json:"running"`
	Slots    *int64   `json:"slots"`
	KVUsage  *float64 `json:"kv_usage"`
	Problem  string   `json:"problem"`
	Polls    int64    `json:"polls"`
	Failures int64    `json:"failed_polls"`
	// Learned is what the proxy learned per model (load times: see
	// loadlearn_test.go)
	Learned []struct {
		Model  string  `json:"model"`
		LoadMs float64 `json:"load_ms"`
		// our timing of its streams and the service time, to the
		// backend's last byte (streamtime_test.go)
		TPOTMs    float64 `json:"tpot_ms"`
		ServiceMs float64 `json:"service_ms"`
	} `json:"learned"`
}

func signalsStatus(t testing.TB) map[string]signalInfo {
	t.Helper()
	var body struct {
		Endpoints []struct {
			Name     string     `json:"name"`
			Routable bool       `json:"routable"`
			Signals  signalInfo `json:"signals"`
		} `json:"endpoints"`
	}
	getJSON(t, "/internal/status/endpoints", &body)
	out := map[string]signalInfo{}
	for _, e := range body.Endpoints {
		out[e.Name] = e.Signals
	}
	return out
}

// chat posts a short non-streamed Ollama chat for model and returns the
// status, the endpoint and the response headers.
func chat(t testing.TB, path, model string, header ...string) (int, string, http.Header) {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"stream":false,"options":{"num_predict":2},"messages":[{"role":"user","content":"hi"}]}`, model)
	res := post(t, path, body, header...)
	readAll(t, res)
	return res.StatusCode, res.Header.Get("X-Olla-Endpoint"), res.Header
}

// TestAdaptiveWarmModel: two Ollama servers that each hold one model in
// memory (max loaded 1) and list both. Under adaptive every request goes to
// the server that holds its model, so neither loads a model again; the
// routing reason says warm.
func TestAdaptiveWarmModel(t *testing.T) {
	capacity := sim.Capacity{MaxLoaded: 1, LoadTime: 200 * time.Millisecond}
	models := []string{"alpha:latest", "beta:latest"}
	o1 := startSim(t, sim.Config{Kind: sim.Ollama, Name: "o1", Models: models, Capacity: capacity})
	o2 := startSim(t, sim.Config{Kind: sim.Ollama, Name: "o2", Models: models, Capacity: capacity})
	// alpha resident on o1, beta on o2, straight at the servers
	for _, w := range []struct{ url, model string }{{o1.URL, "alpha:latest"}, {o2.URL, "beta:latest"}} {
		res, err := client.Post(w.url+"/api/chat", "application/json",
			strings.NewReader(fmt.Sprintf(`{"model":%q,"stream":false,"messages":[{"role":"user","content":"load"}]}`, w.model)))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, res)
	}
	// what each server holds does not change during the test: polls 2 s
	// apart stay fresh (3 intervals) however late a busy machine runs them
	load(t, site(endpointBlock("o1", o1.URL, "ollama", "load_interval 2s")+
		endpointBlock("o2", o2.URL, "ollama", "load_interval 2s")+"load_balancer adaptive\n"+
		"aliases {\n first alpha:latest\n second beta:latest\n}\n"))
	waitRoutable(t, "o1", "o2")
	waitFor(t, "both endpoints' resident models in the status", 30*time.Second, func() bool {
		s := signalsStatus(t)
		return s["o1"].Fresh && s["o2"].Fresh && strings.Contains(strings.Join(s["o1"].Warm, ","), "alpha") &&
			strings.Contains(strings.Join(s["o2"].Warm, ","), "beta")
	})
	// the dashboard's data marks the resident model of each endpoint
	var dash struct {
		Endpoints []struct {
			Name string   `json:"name"`
			Warm []string `json:"warm_models"`
		} `json:"endpoints"`
	}
	getJSON(t, "/internal/ui/data", &dash)
	for _, e := range dash.Endpoints {
		want := map[string]string{"o1": "alpha:latest", "o2": "beta:latest"}[e.Name]
		if len(e.Warm) != 1 || e.Warm[0] != want {
			t.Errorf("dashboard: %s warm models %v, want [%s]", e.Name, e.Warm, want)
		}
	}
	loads1, loads2 := o1.CapacityStats().Loads, o2.CapacityStats().Loads
	for i := range 8 {
		// by name, and by an alias whose target the endpoint holds
		for _, want := range []struct{ model, endpoint string }{{"alpha", "o1"}, {"beta", "o2"}, {"first", "o1"}, {"second", "o2"}} {
			status, ep, h := chat(t, "/olla/ollama/api/chat", want.model)
			if status != 200 || ep != want.endpoint {
				t.Fatalf("request %d for %s: %d from %q, want %s (reason %q)", i, want.model, status, ep, want.endpoint, h.Get("X-Olla-Routing-Reason"))
			}
			if r := h.Get("X-Olla-Routing-Reason"); !strings.Contains(r, "adaptive: "+want.endpoint) || !strings.Contains(r, "warm=1") {
				t.Errorf("routing reason %q does not name the warm winner", r)
			}
		}
	}
	if l1, l2 := o1.CapacityStats().Loads-loads1, o2.CapacityStats().Loads-loads2; l1 != 0 || l2 != 0 {
		t.Errorf("model loads during the run: o1 %d, o2 %d; want none", l1, l2)
	}

	// control: the default balancer ignores residency and swaps models
	reload(t, site(endpointBlock("o1", o1.URL, "ollama")+endpointBlock("o2", o2.URL, "ollama")))
	waitRoutable(t, "o1", "o2")
	seen := map[string]bool{}
	for range 6 {
		_, ep, _ := chat(t, "/olla/ollama/api/chat", "alpha")
		seen[ep] = true
	}
	if !seen["o2"] {
		t.Log("control: priority sent every alpha request to o1 too; the adaptive check above proves less")
	}
}

// TestAdaptiveBackendQueue: of two vLLM servers, the one whose /metrics
// reports a long queue (20 waiting, 4 running, KV cache 90% full) gets
// (almost) nothing while the other is idle; the gauges show in the status
// and in /internal/metrics.
func TestAdaptiveBackendQueue(t *testing.T) {
	idle := startSim(t, sim.Config{Kind: sim.VLLM, Name: "idle", Models: []string{"m"}})
	busyURL, _ := overlaySim(t, sim.Config{Kind: sim.VLLM, Name: "busy", Models: []string{"m"}}, "/metrics",
		func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"m\"} 20\n"+
				"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 4\n"+
				"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=\"m\"} 0.9\n")
		})
	// the reports do not change: polls 2 s apart stay fresh on a busy machine
	load(t, site(endpointBlock("busy", busyURL, "vllm", "load_interval 2s")+
		endpointBlock("idle", idle.URL, "vllm", "load_interval 2s")+"load_balancer adaptive\n"))
	waitRoutable(t, "busy", "idle")
	waitFor(t, "the busy queue in the status", 30*time.Second, func() bool {
		s := signalsStatus(t)
		return s["busy"].Fresh && s["busy"].Waiting != nil && *s["busy"].Waiting == 20 && s["idle"].Fresh
	})
	count := map[string]int{}
	for range 20 {
		status, ep, h := chat(t, "/olla/openai/v1/chat/completions", "m")
		if status != 200 {
			t.Fatalf("status %d (reason %q)", status, h.Get("X-Olla-Routing-Reason"))
		}
		count[ep]++
	}
	if count["busy"] > 2 || count["idle"] < 18 {
		t.Errorf("requests: busy %d, idle %d; the queued server should get (almost) none", count["busy"], count["idle"])
	}
	metrics := metricLines(t, "olla_endpoint_backend_")
	for _, want := range []string{`olla_endpoint_backend_waiting{endpoint="busy"} 20`, `olla_endpoint_backend_running{endpoint="busy"} 4`,
		`olla_endpoint_backend_kv_cache_usage{endpoint="busy"} 0.9`, `olla_endpoint_backend_waiting{endpoint="idle"} `} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/internal/metrics lacks %q:\n%s", want, metrics)
		}
	}
}

// metricLines returns the /internal/metrics lines that start with prefix.
func metricLines(t testing.TB, prefix string) string {
	t.Helper()
	res, err := client.Get(base + "/internal/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			b.WriteString(sc.Text() + "\n")
		}
	}
	return b.String()
}

// TestAdaptiveBadSignals: load surfaces that are garbage, huge, slow or
// missing, and an /api/ps listing 10,000 models, leave the endpoint's
// signals absent (a problem in the status, nothing fresh) and the endpoint
// routable; an /api/ps with fields nobody knows is read for what it has.
// One row per hostile surface.
func TestAdaptiveBadSignals(t *testing.T) {
	var many strings.Builder
	many.WriteString(`{"models":[`)
	for i := range 10_000 {
		if i > 0 {
			many.WriteByte(',')
		}
		fmt.Fprintf(&many, `{"name":"x%d:latest","model":"x%d:latest"}`, i, i)
	}
	many.WriteString(`]}`)
	huge := strings.Repeat("vllm:num_requests_waiting 1\n", 80_000) // 2 MiB
	rows := []struct {
		name, kind, typ, path string
		handler               http.HandlerFunc
		readable              bool // the surface is odd but still says something true
	}{
		{"garbage", sim.VLLM, "vllm", "/metrics", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, "\x00\xff{{{ not prometheus\n<html>")
		}, false},
		{"huge", sim.VLLM, "vllm", "/metrics", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, huge) }, false},
		{"slow", sim.VLLM, "vllm", "/metrics", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}, false},
		{"missing", sim.VLLM, "vllm", "/metrics", http.NotFound, false},
		{"psmany", sim.Ollama, "ollama", "/api/ps", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, many.String()) }, false},
		{"psodd", sim.Ollama, "ollama", "/api/ps", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, `{"models":[{"name":"m-psodd:latest","model":"m-psodd:latest","gpu_fans":[1,2],"quantum":{"x":null}}],"cluster":"yes"}`)
		}, true},
	}
	var block string
	for _, row := range rows {
		url, _ := overlaySim(t, sim.Config{Kind: row.kind, Name: row.name, Models: []string{"m-" + row.name + ":latest"}}, row.path, row.handler)
		// only the slow surface is meant to time out (200 ms); the others
		// get a second, which a busy machine does not miss
		interval := "1s"
		if row.name == "slow" {
			interval = "200ms"
		}
		block += endpointBlock(row.name, url, row.typ, "load_interval "+interval)
	}
	load(t, site(block+"load_balancer adaptive\n"))
	names := make([]string, len(rows))
	for i, row := range rows {
		names[i] = row.name
	}
	waitRoutable(t, names...)
	waitFor(t, "two polls of every surface", 30*time.Second, func() bool {
		s := signalsStatus(t)
		for _, row := range rows {
			if s[row.name].Polls < 2 {
				return false
			}
		}
		return true
	})
	s := signalsStatus(t)
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			sig := s[row.name]
			if row.readable {
				if !sig.Fresh || len(sig.Warm) == 0 || sig.Problem != "" {
					t.Errorf("a readable surface was not used: %+v", sig)
				}
			} else if sig.Fresh || sig.Problem == "" || sig.Failures == 0 || sig.Waiting != nil || len(sig.Warm) > 0 {
				t.Errorf("a bad surface left signals or no problem: %+v", sig)
			}
			path := "/olla/openai/v1/chat/completions"
			if row.typ == "ollama" {
				path = "/olla/ollama/api/chat"
			}
			status, ep, h := chat(t, path, "m-"+row.name+":latest")
			if status != 200 || ep != row.name {
				t.Errorf("request: %d from %q (reason %q); the endpoint must stay routable", status, ep, h.Get("X-Olla-Routing-Reason"))
			}
		})
	}
	if st := endpointsStatus(t); !st["slow"].Routable || !st["huge"].Routable {
		t.Errorf("a bad load surface made an endpoint unroutable: %+v", st)
	}
}

// stickyFleet is three vLLM servers serving one model, for the sticky tests.
type stickyFleet struct{ sims map[string]*sim.Server }

func startStickyFleet(t *testing.T) stickyFleet {
	f := stickyFleet{sims: map[string]*sim.Server{}}
	for _, n := range []string{"s1", "s2", "s3"} {
		f.sims[n] = startSim(t, sim.Config{Kind: sim.VLLM, Name: n, Models: []string{"m"}})
	}
	return f
}

func (f stickyFleet) endpoints() string {
	var b string
	for _, n := range []string{"s1", "s2", "s3"} {
		b += endpointBlock(n, f.sims[n].URL, "vllm", "load_interval 100ms")
	}
	return b
}

const stickyBlock = `sticky_sessions {
	idle_ttl 10m
	max_sessions 1000
	key_sources session_header prefix_hash
	prefix_hash_bytes 256
}
`

// stickyChat sends one turn and returns status, endpoint, sticky outcome
// and key source.
func stickyChat(t *testing.T, body string, header ...string) (int, string, string, string) {
	t.Helper()
	res := post(t, "/olla/openai/v1/chat/completions", body, header...)
	readAll(t, res)
	return res.StatusCode, res.Header.Get("X-Olla-Endpoint"), res.Header.Get("X-Olla-Sticky-Session"), res.Header.Get("X-Olla-Sticky-Key-Source")
}

// TestStickySessions, under every balancer: a session's first request is a
// miss and the next ones hit the same endpoint (round-robin included); two
// turns of one conversation with no session header go to one endpoint (by
// the prefix index under adaptive, a prefix_hash key of the conversation
// elsewhere) with no hit or miss said; when the session's endpoint dies the next request is a
// repin to another endpoint, never an error; a request without any key
// says disabled; /internal/stats/sticky counts it all.
func TestStickySessions(t *testing.T) {
	f := startStickyFleet(t)
	for _, strategy := range []string{"priority", "round-robin", "least-connections", "adaptive"} {
		t.Run(strategy, func(t *testing.T) {
			load(t, site(f.endpoints()+"load_balancer "+strategy+"\n"+stickyBlock))
			waitRoutable(t, "s1", "s2", "s3")
			session := []string{"X-Olla-Session-ID", "conversation-" + strategy}
			turn := `{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"hello from ` + strategy + `"}]}`
			status, first, outcome, source := stickyChat(t, turn, session...)
			if status != 200 || outcome != "miss" || source != "session_header" {
				t.Fatalf("first turn: %d %q %q from %q", status, outcome, source, first)
			}
			for i := range 4 {
				status, ep, outcome, _ := stickyChat(t, turn, session...)
				if status != 200 || outcome != "hit" || ep != first {
					t.Fatalf("turn %d: %d %q from %q, want hit on %s", i+2, status, outcome, ep, first)
				}
			}
			res := post(t, "/olla/openai/v1/chat/completions", turn, session...)
			readAll(t, res)
			if res.Header.Get("X-Olla-Session-ID") != session[1] {
				t.Errorf("session id not echoed: %q", res.Header.Get("X-Olla-Session-ID"))
			}

			// no session id: the prompt names the conversation (under
			// adaptive the prefix index places it, elsewhere its prefix key
			// is the conversation), and no response says whether anyone
			// sent that prompt before
			question := strings.Repeat("a question of some length ", 24)
			prefixed := `{"model":"m","max_tokens":2,"messages":[{"role":"system","content":"shared system prompt ` + strategy + `"},{"role":"user","content":"` + question + `"}]}`
			next := strings.TrimSuffix(prefixed, "]}") + `,{"role":"assistant","content":"ok"},{"role":"user","content":"and then?"}]}`
			_, p1, o1, src := stickyChat(t, prefixed)
			_, p2, o2, _ := stickyChat(t, next)
			if o1 == "hit" || o1 == "miss" || o2 == "hit" || o2 == "miss" || p1 != p2 {
				t.Errorf("a conversation without a session id: sticky %q then %q, %s then %s; want no hit or miss, one endpoint", o1, o2, p1, p2)
			}
			if (strategy == "adaptive") != (src == "") {
				t.Errorf("prefix key source %q under %s", src, strategy)
			}
			if _, _, o, _ := stickyChat(t, `{"model":"m","max_tokens":2}`); o != "disabled" {
				t.Errorf("a request with no key: sticky %q, want disabled", o)
			}

			// the session's endpoint dies: the next turn goes elsewhere
			f.sims[first].Close()
			waitFor(t, first+" down", 30*time.Second, func() bool { return !endpointsStatus(t)[first].Routable })
			status, moved, outcome, _ := stickyChat(t, turn, session...)
			if status != 200 || outcome != "repin" || moved == first || moved == "" {
				t.Errorf("after %s died: %d %q from %q, want a repin elsewhere", first, status, outcome, moved)
			}
			if _, ep, outcome, _ := stickyChat(t, turn, session...); outcome != "hit" || ep != moved {
				t.Errorf("after the repin: %q from %q, want hit on %s", outcome, ep, moved)
			}
			var stats map[string]any
			getJSON(t, "/internal/stats/sticky", &stats)
			if stats["enabled"] != true || stats["hits"].(float64) < 6 || stats["repins"].(float64) < 1 || stats["misses"].(float64) < 1 {
				t.Errorf("sticky stats: %v", stats)
			}
			if err := f.sims[first].Restart(); err != nil {
				t.Fatal(err)
			}
			waitRoutable(t, "s1", "s2", "s3")
		})
	}
	t.Run("off", func(t *testing.T) {
		load(t, site(f.endpoints()))
		waitRoutable(t, "s1", "s2", "s3")
		res := post(t, "/olla/openai/v1/chat/completions", `{"model":"m","max_tokens":2}`, "X-Olla-Session-ID", "x")
		readAll(t, res)
		if h := res.Header.Get("X-Olla-Sticky-Session"); h != "" {
			t.Errorf("sticky header %q without sticky_sessions", h)
		}
		var stats map[string]any
		getJSON(t, "/internal/stats/sticky", &stats)
		if stats["enabled"] != false {
			t.Errorf("stats without sticky_sessions: %v", stats)
		}
	})
}

// TestStickyStoreBounded: 3,000 distinct sessions through Caddy leave at
// most max_sessions pins (the unit test in the olla package does 100,000
// keys and the heap).
func TestStickyStoreBounded(t *testing.T) {
	f := startStickyFleet(t)
	load(t, site(f.endpoints()+"sticky_sessions {\n max_sessions 50\n}\n"))
	waitRoutable(t, "s1", "s2", "s3")
	const sessions, workers = 3000, 8
	ids := make(chan int)
	errs := make(chan error, workers)
	for range workers {
		go func() {
			var first error
			for i := range ids { // drains ids even after an error
				if first != nil {
					continue
				}
				req, _ := http.NewRequest(http.MethodPost, base+"/olla/openai/v1/chat/completions",
					strings.NewReader(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`))
				req.Header.Set("X-Olla-Session-ID", "s-"+strconv.Itoa(i)+strings.Repeat("k", 1000))
				res, err := client.Do(req)
				if err == nil {
					b, _ := io.ReadAll(res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						err = fmt.Errorf("session %d: status %d: %s", i, res.StatusCode, b)
					}
				}
				first = err
			}
			errs <- first
		}()
	}
	for i := range sessions {
		ids <- i
	}
	close(ids)
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var stats struct {
		Active     int   `json:"active_sessions"`
		Insertions int64 `json:"insertions"`
		Evictions  int64 `json:"evictions"`
		Max        int   `json:"max_sessions"`
	}
	getJSON(t, "/internal/stats/sticky", &stats)
	if stats.Active > 50 || stats.Max != 50 || stats.Insertions != sessions || stats.Evictions < sessions-50 {
		t.Errorf("pin store after %d sessions: %+v", sessions, stats)
	}
	if b, _ := json.Marshal(stats); strings.Contains(string(b), "kkkk") {
		t.Error("a raw session key is shown")
	}
}

// TestHangUpDoesNotHoldProbe: when a slow endpoint's TTFT average has been
// forgotten, one request goes to measure it again, and while that one is
// out the old average stands. A client that hangs up before the first byte
// ends its attempt without a sample, so the next request measures instead:
// hanging up cannot keep an old judgement standing against a backend.
func TestHangUpDoesNotHoldProbe(t *testing.T) {
	fast := startSim(t, sim.Config{Kind: sim.Ollama, Name: "fast", Models: []string{"m"}, TTFT: 5 * time.Millisecond, TokensPerSecond: 200, Tokens: 3})
	// slow answers after 3 s, far past the client that hangs up at 100 ms
	// even when a busy machine fires its timer late
	slow := startSim(t, sim.Config{Kind: sim.VLLM, Name: "slow", Models: []string{"m"}, TTFT: 3 * time.Second, TokensPerSecond: 200, Tokens: 3})
	// slow wins whenever its speed is unknown (priority), and loses while
	// it is known to be slow (ttft counts double; warmth, which differs
	// between the two types before the first request, not at all). With
	// prefix affinity on, tiers are hard and speed never leaves the top
	// tier (TestPrefixTiersAreHard); off, priority is one score, which is
	// what lets this test watch the speed judgement
	load(t, site(endpointBlock("fast", fast.URL, "ollama", "priority 50")+endpointBlock("slow", slow.URL, "vllm", "priority 100")+
		"load_balancer adaptive {\n ttft 2\n warm 0\n}\nprefix_affinity off\n"))
	waitRoutable(t, "fast", "slow")
	const both, fastOnly = "/olla/openai/v1/chat/completions", "/olla/ollama/api/chat"
	expect := func(path, want, why string) {
		t.Helper()
		if status, ep, h := chat(t, path, "m"); status != 200 || ep != want {
			t.Fatalf("%s: %d from %q (%s), want %s", why, status, ep, h.Get("X-Olla-Routing-Reason"), want)
		}
	}
	expect(both, "slow", "unmeasured")
	expect(fastOnly, "fast", "the fast one measured")
	expect(both, "fast", "slow measured slow")
	// let slow's average be forgotten while fast's stays fresh
	for end := time.Now().Add(balancer.EWMAMaxAge + time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		expect(fastOnly, "fast", "keeping fast measured")
	}

	// the probe: a client that hangs up before slow's first token
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+both,
		strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Content-Type", "application/json")
	if res, err := client.Do(req); err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	waitFor(t, "the hung-up attempt to end at slow", 30*time.Second, func() bool {
		return endpointsStatus(t)["slow"].ActiveConnections == 0
	})
	expect(both, "slow", "after the probe's client hung up, the next request measures")
}
