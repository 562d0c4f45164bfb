package integration

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// These fault tests are the engines' shared conformance suite for failover:
// each runs once per engine.

const chatBodyM = `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`

// TestBackendKilledMidRun kills one of two backends while requests run:
// requests not yet started succeed on the other, streams in flight end.
func TestBackendKilledMidRun(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}, TokensPerSecond: 20, Tokens: 40})
			b := startSim(t, sim.Config{Kind: sim.Ollama, Name: "b", Models: []string{"m"}, TokensPerSecond: 20, Tokens: 40})
			load(t, site("engine "+engine+"\nload_balancer round-robin\n"+endpointBlock("a", a.URL, "ollama")+endpointBlock("b", b.URL, "ollama")))
			waitRoutable(t, "a", "b")

			// two streams in flight, one on each backend
			var wg sync.WaitGroup
			ended := make(chan string, 2)
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res := post(t, "/olla/ollama/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
					got, _ := lines(t, res)
					ended <- res.Header.Get("X-Olla-Endpoint") + ":" + strings.Join(got, "\n")
				}()
			}
			// both streams have started (each takes 2 s) before a dies
			waitFor(t, "two streams started", 30*time.Second, func() bool { return a.Stats().Streams+b.Stats().Streams == 2 })
			a.Close()            // the backend dies
			b.SetTiming(0, 0, 5) // quick answers from here on
			for i := range 20 {
				res := post(t, "/olla/ollama/api/chat", chatBodyM)
				body := readAll(t, res)
				if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "b" {
					t.Fatalf("request %d after the kill: %d from %q: %s", i, res.StatusCode, res.Header.Get("X-Olla-Endpoint"), body)
				}
			}
			wg.Wait()
			close(ended)
			for s := range ended {
				ep, stream, _ := strings.Cut(s, ":")
				complete := strings.Contains(stream, `"done":true`)
				if ep == "a" && complete {
					t.Errorf("stream on the killed backend looks complete")
				}
				if ep == "b" && !complete {
					t.Errorf("stream on the surviving backend was cut")
				}
			}
		})
	}
}

// TestRetryAfterFailover puts one of two endpoints at 503 + Retry-After:
// every request succeeds through the other, and the busy one is left
// alone for as long as it asked.
func TestRetryAfterFailover(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
			b := startSim(t, sim.Config{Kind: sim.Ollama, Name: "b", Models: []string{"m"}})
			load(t, site("engine "+engine+"\nload_balancer round-robin\n"+endpointBlock("a", a.URL, "ollama")+endpointBlock("b", b.URL, "ollama")))
			waitRoutable(t, "a", "b")
			a.SetFault(sim.Fault{Mode: "status", Status: 503, RetryAfter: 30, Path: "/api/chat"})
			a.ResetStats()
			for i := range 20 {
				res := post(t, "/olla/ollama/api/chat", chatBodyM)
				body := readAll(t, res)
				if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "b" {
					t.Fatalf("request %d: %d from %q: %s", i, res.StatusCode, res.Header.Get("X-Olla-Endpoint"), body)
				}
			}
			if n := a.Requests("/api/chat"); n != 1 {
				t.Errorf("the busy endpoint got %d chat requests; after its first 503 with Retry-After it should get none", n)
			}
		})
	}
}

// TestHeaderTimeoutFailover hangs one backend before its headers: with a
// response_header_timeout the request fails over to the other. Without the
// timeout a request sent to a would hang until the client's own 30 s
// timeout and fail; the timeout is 2 s so that b's answers on a busy
// machine stay well inside it.
func TestHeaderTimeoutFailover(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
			b := startSim(t, sim.Config{Kind: sim.Ollama, Name: "b", Models: []string{"m"}})
			load(t, site("engine "+engine+"\nload_balancer round-robin\nresponse_header_timeout 2s\n"+
				endpointBlock("a", a.URL, "ollama")+endpointBlock("b", b.URL, "ollama")))
			waitRoutable(t, "a", "b")
			a.SetFault(sim.Fault{Mode: "hang", Path: "/api/chat"})
			for i := range 6 {
				res := post(t, "/olla/ollama/api/chat", chatBodyM)
				body := readAll(t, res)
				if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "b" {
					t.Fatalf("request %d: %d from %q: %s", i, res.StatusCode, res.Header.Get("X-Olla-Endpoint"), body)
				}
			}
			if a.Requests("/api/chat") == 0 {
				t.Error("no request tried the hanging endpoint: the failover was not tested")
			}
			a.SetFault(sim.Fault{})
		})
	}
}

// TestStreamIdleTimeout stalls a stream: the proxy cuts it after the idle
// timeout (400 ms) instead of holding the client forever; the client's own
// deadline, a minute, is what a broken timeout would run into.
func TestStreamIdleTimeout(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}, TokensPerSecond: 50, Tokens: 50})
			load(t, site("engine "+engine+"\nstream_idle_timeout 400ms\n"+endpointBlock("a", a.URL, "ollama")))
			waitRoutable(t, "a")
			a.SetFault(sim.Fault{Mode: "stall_mid_stream", AfterChunks: 2})
			defer a.SetFault(sim.Fault{})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/olla/ollama/api/chat",
				strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := lines(t, res)
			if ctx.Err() != nil {
				t.Fatalf("the stalled stream held the client for a minute, until the client gave up (%d lines)", len(got))
			}
			if strings.Contains(strings.Join(got, "\n"), `"done":true`) {
				t.Fatalf("a stalled stream looks complete: %q", got)
			}
			waitFor(t, "in-flight back to 0", 30*time.Second, func() bool { return endpointsStatus(t)["a"].ActiveConnections == 0 })
		})
	}
}

// TestCircuitBreaker opens an endpoint's breaker with repeated 5xx answers
// and closes it again once the backend is well. The breaker stays open for
// an hour while the requests are counted (however slowly a busy machine
// sends them, none reaches a trial), then a reload, which keeps the
// breaker's state, shortens that to 100 ms for the recovery.
func TestCircuitBreaker(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
			b := startSim(t, sim.Config{Kind: sim.Ollama, Name: "b", Models: []string{"m"}})
			config := func(openFor string) string {
				return site("engine " + engine + "\nload_balancer round-robin\ncircuit_breaker {\n failures 3\n open_for " + openFor + "\n}\n" +
					endpointBlock("a", a.URL, "ollama") + endpointBlock("b", b.URL, "ollama"))
			}
			load(t, config("1h"))
			waitRoutable(t, "a", "b")
			a.SetFault(sim.Fault{Mode: "error", Path: "/api/chat"})
			fromA := 0
			for range 12 {
				res := post(t, "/olla/ollama/api/chat", chatBodyM)
				readAll(t, res)
				if res.Header.Get("X-Olla-Endpoint") == "a" {
					fromA++
					if res.StatusCode != http.StatusInternalServerError {
						t.Fatalf("a's 500 was not passed through: %d", res.StatusCode)
					}
				}
			}
			if fromA != 3 {
				t.Errorf("a answered %d requests; its breaker should open after 3 failures", fromA)
			}
			if e := endpointsStatus(t)["a"]; e.CircuitBreaker == "closed" || e.BreakerOpens != 1 {
				t.Errorf("after repeated failures: breaker %s, opened %d times (want open, once)", e.CircuitBreaker, e.BreakerOpens)
			}
			a.SetFault(sim.Fault{})
			reload(t, config("100ms"))
			if e := endpointsStatus(t)["a"]; e.BreakerOpens != 1 {
				t.Errorf("the reload reset the breaker: %+v", e)
			}
			waitFor(t, "breaker closed by a passing probe", 30*time.Second, func() bool {
				e := endpointsStatus(t)["a"]
				return e.CircuitBreaker == "closed" && e.Routable
			})
			seen := false
			for range 4 {
				res := post(t, "/olla/ollama/api/chat", chatBodyM)
				readAll(t, res)
				seen = seen || res.Header.Get("X-Olla-Endpoint") == "a"
			}
			if !seen {
				t.Errorf("a did not get traffic back after its breaker closed")
			}
		})
	}
}
