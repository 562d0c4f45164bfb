package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

func TestPickFleets(t *testing.T) {
	fl, err := pickFleets("c, e,c")
	if err != nil || len(fl) != 2 || fl[0].key != "c" || fl[1].key != "e" {
		t.Fatalf("pickFleets = %v, %v", fl, err)
	}
	if all, err := pickFleets("all"); err != nil || len(all) != len(fleets()) {
		t.Fatalf("all = %d fleets, %v", len(all), err)
	}
	for _, bad := range []string{"r9", "", " , ", "r2"} {
		if _, err := pickFleets(bad); err == nil {
			t.Errorf("pickFleets(%q) accepted", bad)
		}
	}
}

// TestFleetsFitTheContext keeps every fleet's longest conversation inside
// the simulators' context window (4,096 tokens at 4 bytes each unless the
// fleet sets another), beyond which Ollama truncates and vLLM refuses.
func TestFleetsFitTheContext(t *testing.T) {
	goals := map[string]bool{}
	for _, f := range fleets() {
		goals[f.goal] = true
		longest := f.system + f.turns[1]*(f.userBytes+f.replyBytes+80)
		if f.single {
			longest = f.userBytes + 80
		}
		window := sim.DefaultContextLength
		if f.ctx > 0 {
			window = f.ctx
		}
		if longest/4+20 >= window {
			t.Errorf("fleet %s: the longest conversation is about %d tokens", f.key, longest/4+20)
		}
		if len(f.opts) == 0 || f.users <= 0 {
			t.Errorf("fleet %s: %d backends, %d users", f.key, len(f.opts), f.users)
		}
		for _, o := range f.opts {
			if _, err := sim.ParseSpec(f.kind + "@127.0.0.1:1=" + strings.Join(f.models, ",") + ";" + o); err != nil {
				t.Errorf("fleet %s: %v", f.key, err)
			}
		}
		if f.proxyCount() > maxProxies {
			t.Errorf("fleet %s: %d proxies, ports for %d", f.key, f.proxyCount(), maxProxies)
		}
	}
	// every workload of the issue has a fleet
	for _, g := range []string{"a", "c", "d", "e", "f", "g"} {
		if !goals[g] {
			t.Errorf("no fleet measures goal %q", g)
		}
	}
}

func TestRoutingCaddyfiles(t *testing.T) {
	f := fleets()[0]
	backends := []string{"127.0.0.1:1", "127.0.0.1:2"}
	abl := ablations()
	if len(abl) != 5 {
		t.Fatalf("%d ablations, want one per adaptive scorer: %v", len(abl), abl)
	}
	pen := routingContender{name: "penalty 1", lb: "adaptive", sticky: true, penalty: "1"}
	for _, c := range append(routingContenders(), append(abl, pen)...) {
		cf := c.caddyfile(f, backends, 31150, 2110)
		if c.penalty != "" && (!strings.Contains(cf, "prefix_affinity {\n\t\t\trelease_penalty 1\n\t\t}") || c.adaptive()) {
			t.Errorf("%s: want release_penalty 1, and no targets for it:\n%s", c.name, cf)
		}
		if c.off != "" && (!strings.Contains(cf, "load_balancer adaptive {\n\t\t\t"+c.off+" 0\n\t\t}\n") || c.adaptive()) {
			t.Errorf("%s: want %s off, and no targets for it:\n%s", c.name, c.off, cf)
		}
		for _, want := range []string{"admin 127.0.0.1:2110", "bind 127.0.0.1", "http://:31150"} {
			if !strings.Contains(cf, want) {
				t.Errorf("%s: no %q in\n%s", c.name, want, cf)
			}
		}
		switch {
		case c.policy != "":
			if !strings.Contains(cf, "lb_policy "+c.policy) || !strings.Contains(cf, "handle_path /olla/vllm/*") {
				t.Errorf("%s:\n%s", c.name, cf)
			}
		case !strings.Contains(cf, "load_balancer "+c.lb) || !strings.Contains(cf, "type vllm"):
			t.Errorf("%s:\n%s", c.name, cf)
		}
		if c.sticky != strings.Contains(cf, "sticky_sessions") {
			t.Errorf("%s: sticky %v in\n%s", c.name, c.sticky, cf)
		}
	}
}

// TestSessionsReusePrefixes drives two users of a small fleet straight at
// one simulator with a prefix cache: every turn resends the conversation,
// so the server finds most of each prompt in its cache; the answers are
// counted as successes with a time to first token.
func TestSessionsReusePrefixes(t *testing.T) {
	s, err := sim.Start(sim.Config{Kind: sim.VLLM, Models: []string{"m"}, NoRecord: true, Tokens: 3,
		Capacity: sim.Capacity{Slots: 4, QueueMax: 16, CacheBlocks: 1000, BlockTokens: 16}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := fleet{kind: "vllm", models: []string{"m"}, users: 2, think: [2]time.Duration{time.Millisecond, 2 * time.Millisecond},
		turns: [2]int{4, 4}, system: 2000, systems: 1, userBytes: 100, replyBytes: 300, warmup: time.Second}
	var st routingStats
	// a slow machine may fit few turns in the window: run until some did
	deadline := time.Now().Add(time.Minute)
	for st.ok < 4 && time.Now().Before(deadline) {
		st = driveSessions(context.Background(), f, []string{s.URL + f.apiPath()}, newWindow(time.Now(), time.Second, 2*time.Second))
		if st.failed+st.shed429+st.shed503 != 0 {
			t.Fatalf("failures: %+v", st)
		}
	}
	if st.ok < 4 || st.ttftP50 <= 0 {
		t.Fatalf("answers: %+v", st)
	}
	cs := s.CapacityStats()
	hit := float64(cs.CachedTokens) / float64(max(cs.PromptTokens, 1))
	if cs.PromptTokens == 0 || hit < 0.5 {
		t.Errorf("prefix cache: %d of %d prompt tokens cached, want most", cs.CachedTokens, cs.PromptTokens)
	}
	t.Logf("prefix hit %.3f at the simulator, ideal %.3f, %d answers", hit, st.ideal, st.ok)
	// one server with room for everything is perfect affinity: the
	// harness's ideal must match what the simulator counted (the very
	// first system prompt, a miss the ideal does not count, aside)
	if st.ideal < hit-0.05 || st.ideal > hit+0.05 {
		t.Errorf("ideal prefix hit %.3f, the simulator counted %.3f", st.ideal, hit)
	}
}

// TestSessionsWithoutIDAcrossTwoProxies: a fleet with no session id sends
// no X-Olla-Session-ID, carries its tools array, and spreads each user's
// requests over both URLs it is given (here two simulators standing in for
// two proxies).
func TestSessionsWithoutIDAcrossTwoProxies(t *testing.T) {
	var urls []string
	var sims []*sim.Server
	for range 2 {
		s, err := sim.Start(sim.Config{Kind: sim.VLLM, Models: []string{"m"}, Tokens: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		sims = append(sims, s)
		urls = append(urls, s.URL+"/v1/chat/completions")
	}
	f := fleet{kind: "vllm", models: []string{"m"}, users: 2, think: [2]time.Duration{time.Millisecond, 2 * time.Millisecond},
		turns: [2]int{4, 4}, system: 300, systems: 1, userBytes: 50, replyBytes: 50, noSession: true, tools: 400, proxies: 2}
	var st routingStats
	deadline := time.Now().Add(time.Minute)
	for st.ok < 8 && time.Now().Before(deadline) {
		st = driveSessions(context.Background(), f, urls, newWindow(time.Now(), 200*time.Millisecond, time.Second))
	}
	if st.ok < 8 || st.failed+st.shed429+st.shed503 != 0 {
		t.Fatalf("answers: %+v", st)
	}
	for i, s := range sims {
		var last struct {
			Header http.Header `json:"header"`
			Body   string      `json:"body"`
		}
		if err := controlCall(context.Background(), http.MethodGet, s.URL+"/_sim/last", "", &last); err != nil {
			t.Fatalf("proxy %d got no request: %v", i, err)
		}
		if v := last.Header.Get(sessionHeader); v != "" {
			t.Errorf("proxy %d: session id %q sent by a fleet without one", i, v)
		}
		if !strings.Contains(last.Body, `"tools":[{"type":"function"`) {
			t.Errorf("proxy %d: no tools in %.200s", i, last.Body)
		}
	}
}

// TestOverloadBurstCounts runs the overload clients straight at one
// simulated llama-server with one slot that refuses when full: every
// request gets an answer, the refusals are 503s with a Retry-After.
func TestOverloadBurstCounts(t *testing.T) {
	s, err := sim.Start(sim.Config{Kind: sim.LlamaCpp, Models: []string{overloadModel}, NoRecord: true, Tokens: 3,
		TTFT: 20 * time.Millisecond, Capacity: sim.Capacity{Slots: 1, RejectWhenFull: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	body := []byte(`{"model":"` + overloadModel + `","messages":[{"role":"user","content":"hi"}],"stream":true}`)
	st := overloadBurst(context.Background(), s.URL+"/v1/chat/completions", body)
	total := st.ok + st.status429 + st.status503 + st.otherStatus + st.transport + st.truncated
	if total != overloadClients*overloadRequests {
		t.Fatalf("%d answers counted, want %d: %+v", total, overloadClients*overloadRequests, st)
	}
	if st.ok == 0 || st.status503 == 0 || st.status5xx != st.status503 || st.withoutRetry != 0 || st.transport != 0 {
		t.Errorf("counts: %+v", st)
	}
	if st.statuses[http.StatusServiceUnavailable] != st.status503 || s.CapacityStats().PeakRunning != 1 {
		t.Errorf("statuses %v, peak %d", st.statuses, s.CapacityStats().PeakRunning)
	}
}

func TestOverloadCaddyfiles(t *testing.T) {
	backends := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"}
	for _, c := range overloadContenders() {
		cf := c.caddyfile("llamacpp", backends, 31150, 2110)
		if got := strings.Count(cf, "\tmax_concurrency 2\n"); (c.cap > 0) != (got == len(backends)) || (c.cap == 0 && got != 0) {
			t.Errorf("%s: %d max_concurrency lines in\n%s", c.name, got, cf)
		}
		if (c.queue > 0) != strings.Contains(cf, "queue {") || (c.policy != "") != strings.Contains(cf, "reverse_proxy") {
			t.Errorf("%s:\n%s", c.name, cf)
		}
		if c.queue > 0 && !strings.Contains(cf, fmt.Sprintf("max_size %d", c.queue)) {
			t.Errorf("%s: no max_size in\n%s", c.name, cf)
		}
	}
}

func TestCurrentRSS(t *testing.T) {
	if kib, err := currentRSS(os.Getpid()); err != nil || kib <= 0 {
		t.Fatalf("currentRSS = %d, %v", kib, err)
	}
}

// TestIdleWhileQueued: a reading counts when a server holding a model runs
// nothing while another holding it queues; not when the idle one holds
// another model, nor when the one holding it is busy.
func TestIdleWhileQueued(t *testing.T) {
	for _, tc := range []struct {
		name    string
		servers []idleReading
		want    string
	}{
		{"idle warm beside a queue", []idleReading{{models: []string{"a"}, running: 4, waiting: 2}, {models: []string{"a"}}}, "1>0"},
		{"idle with another model", []idleReading{{models: []string{"a"}, running: 4, waiting: 2}, {models: []string{"b"}}}, ""},
		{"both busy", []idleReading{{models: []string{"a"}, running: 4, waiting: 2}, {models: []string{"a"}, running: 1}}, ""},
		{"no queue", []idleReading{{models: []string{"a"}, running: 4}, {models: []string{"a"}}}, ""},
	} {
		if got := idleWhileQueued(tc.servers); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
