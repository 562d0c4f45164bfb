package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// The health rules through real Caddy: transient probe failures need
// unhealthy_after in a row and are forgiven while the endpoint serves
// requests; a refusal counts at once; panic routing tries endpoints that
// only slow probes took out; a probe's Retry-After is capped; and an
// endpoint down since start-up does not hold unknown models in 503.

// slowEndpoint declares an endpoint whose probes time out when its health
// route is slowed past 150ms.
func slowEndpoint(name, url string, extra ...string) string {
	return probedEndpoint(name, url, 300*time.Millisecond, extra...)
}

// probedEndpoint is slowEndpoint probed every interval.
func probedEndpoint(name, url string, interval time.Duration, extra ...string) string {
	return fmt.Sprintf("\t\tendpoint %s {\n\t\t\turl %s\n\t\t\ttype ollama\n\t\t\tcheck_interval %s\n\t\t\tcheck_timeout 150ms\n%s\n\t\t}\n",
		name, url, interval, strings.Join(extra, "\n"))
}

// TestSlowHealthUnderTraffic: a backend whose health route misses every
// deadline stays routable while it answers proxied requests (no request
// fails, it never leaves the rotation); once idle, three timeouts in a row
// take it out.
func TestSlowHealthUnderTraffic(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
			// a probe is forgiven when a request ended within the last
			// interval + timeout: 750ms, ample for three clients in a row
			// even on a busy machine
			load(t, site("engine "+engine+"\n"+probedEndpoint("a", a.URL, 600*time.Millisecond)))
			waitRoutable(t, "a")

			var failed, served atomic.Int64
			var firstFailure atomic.Value
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						res := post(t, "/olla/ollama/api/chat", chatBodyM)
						body := readAll(t, res)
						if res.StatusCode != 200 {
							failed.Add(1)
							firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s", res.StatusCode, body))
						} else {
							served.Add(1)
						}
					}
				}()
			}
			a.SetFault(sim.Fault{Mode: sim.FaultSlowHealth, Delay: 2 * time.Second})
			a.ResetStats()
			// watch the status until the sim has seen enough probes for
			// two whole streaks of timeouts
			var unroutable []string
			forgiven := false
			waitFor(t, "8 slow probes under traffic", 60*time.Second, func() bool {
				e := endpointsStatus(t)["a"]
				if !e.Routable {
					unroutable = append(unroutable, e.Status+": "+e.Reason)
				}
				forgiven = forgiven || strings.Contains(e.Reason, "answering proxied requests")
				return a.Requests("/") >= 8
			})
			close(stop)
			wg.Wait()
			if n := failed.Load(); n > 0 {
				t.Errorf("%d of %d requests failed while the health route was slow; first: %v", n, n+served.Load(), firstFailure.Load())
			}
			if len(unroutable) > 0 {
				t.Errorf("the endpoint left the rotation while it served %d requests: %v", served.Load(), unroutable[0])
			}
			if !forgiven {
				t.Errorf("no probe was forgiven for the traffic: %+v", endpointsStatus(t)["a"])
			}

			// idle now: three timeouts in a row take it out
			waitFor(t, "the idle endpoint taken out", 30*time.Second, func() bool { return !endpointsStatus(t)["a"].Routable })
			e := endpointsStatus(t)["a"]
			if e.Status != "offline" || !strings.Contains(e.Reason, "no answer within") || !strings.Contains(e.Reason, "3 in a row") {
				t.Errorf("idle endpoint with a slow health route: %s %q, want offline after 3 timeouts in a row", e.Status, e.Reason)
			}
			a.SetFault(sim.Fault{})
		})
	}
}

// TestRefusedCountsAtOnce: a refused connection takes an endpoint out on
// its first failed probe, even with unhealthy_after 50, while a timeout
// only counts towards it.
func TestRefusedCountsAtOnce(t *testing.T) {
	a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
	b := startSim(t, sim.Config{Kind: sim.Ollama, Name: "b", Models: []string{"m"}})
	load(t, site(slowEndpoint("a", a.URL, "unhealthy_after 50")+slowEndpoint("b", b.URL, "unhealthy_after 50")))
	waitRoutable(t, "a", "b")
	b.SetFault(sim.Fault{Mode: sim.FaultSlowHealth, Delay: 2 * time.Second})
	a.Close() // nothing listens on a's port now
	waitFor(t, "a taken out", 30*time.Second, func() bool { return !endpointsStatus(t)["a"].Routable })
	st := endpointsStatus(t)
	if e := st["a"]; e.Status != "offline" || !strings.Contains(e.Reason, "connection refused") || strings.Contains(e.Reason, "of 50") {
		t.Errorf("refused endpoint: %s %q, want offline for the refusal alone", e.Status, e.Reason)
	}
	counted := regexp.MustCompile(`\((\d+) of 50 before it is taken out\)`)
	waitFor(t, "b's timeouts counted", 30*time.Second, func() bool {
		m := counted.FindStringSubmatch(endpointsStatus(t)["b"].Reason)
		n := 0
		if m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		return n >= 2
	})
	if e := endpointsStatus(t)["b"]; !e.Routable || e.Status != "healthy" {
		t.Errorf("two timeouts of 50 took b out: %+v", e)
	}
}

// TestPanicRouting: when every endpoint of a route is out only for slow
// probes, requests are tried on them anyway and say so; endpoints out for
// a refusal or a 503 are not tried. A model whose only home is out for
// slow probes is tried there too.
func TestPanicRouting(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
			b := startSim(t, sim.Config{Kind: sim.Ollama, Name: "b", Models: []string{"m"}})
			ready := startSim(t, sim.Config{Kind: sim.Ollama, Name: "ready", Models: []string{"m"}})
			gone := startSim(t, sim.Config{Kind: sim.Ollama, Name: "gone", Models: []string{"m"}})
			load(t, site("engine "+engine+"\nload_balancer round-robin\n"+
				slowEndpoint("a", a.URL)+slowEndpoint("b", b.URL)+slowEndpoint("ready", ready.URL)+slowEndpoint("gone", gone.URL)))
			waitRoutable(t, "a", "b", "ready", "gone")
			a.SetFault(sim.Fault{Mode: sim.FaultSlowHealth, Delay: 2 * time.Second})
			b.SetFault(sim.Fault{Mode: sim.FaultSlowHealth, Delay: 2 * time.Second})
			ready.SetFault(sim.Fault{Mode: sim.FaultFailHealth}) // 503: "not ready"
			gone.Close()
			waitFor(t, "every endpoint marked down", 30*time.Second, func() bool {
				for _, e := range endpointsStatus(t) {
					if e.Routable {
						return false
					}
				}
				return true
			})
			ready.ResetStats()
			servedBy := map[string]int{}
			for i := range 6 {
				res := post(t, "/olla/ollama/api/chat", chatBodyM)
				body := readAll(t, res)
				reason := res.Header.Get("X-Olla-Routing-Reason")
				if res.StatusCode != 200 || !strings.HasPrefix(reason, "panic: no healthy endpoint, trying all 2") {
					t.Fatalf("request %d with every endpoint marked down: %d, reason %q: %s", i, res.StatusCode, reason, body)
				}
				servedBy[res.Header.Get("X-Olla-Endpoint")]++
			}
			if servedBy["a"] == 0 || servedBy["b"] == 0 || len(servedBy) != 2 {
				t.Errorf("panic routing served from %v, want a and b only", servedBy)
			}
			if n := ready.Requests("/api/chat"); n != 0 {
				t.Errorf("the endpoint that answered 503 on health got %d requests", n)
			}
			if n := endpointsStatus(t)["gone"].RequestCount; n != 0 {
				t.Errorf("the refusing endpoint was tried %d times", n)
			}

			// with only "not ready" and refusing endpoints left, no panic
			a.Close()
			b.Close()
			waitFor(t, "a and b refusing", 30*time.Second, func() bool {
				st := endpointsStatus(t)
				return strings.Contains(st["a"].Reason, "refused") && strings.Contains(st["b"].Reason, "refused")
			})
			res := post(t, "/olla/ollama/api/chat", chatBodyM)
			body := readAll(t, res)
			if res.StatusCode != 503 || strings.HasPrefix(res.Header.Get("X-Olla-Routing-Reason"), "panic") {
				t.Errorf("with nothing panic may try: %d, reason %q: %s", res.StatusCode, res.Header.Get("X-Olla-Routing-Reason"), body)
			}
		})
	}
}

// TestPanicRoutingForOneModel: the only endpoint serving a model is out for
// slow probes while another endpoint is up: requests for the model are
// tried on its home anyway.
func TestPanicRoutingForOneModel(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			home := startSim(t, sim.Config{Kind: sim.Ollama, Name: "home", Models: []string{"m"}})
			other := startSim(t, sim.Config{Kind: sim.Ollama, Name: "other", Models: []string{"n"}})
			load(t, site("engine "+engine+"\n"+slowEndpoint("home", home.URL)+slowEndpoint("other", other.URL)))
			waitRoutable(t, "home", "other")
			home.SetFault(sim.Fault{Mode: sim.FaultSlowHealth, Delay: 2 * time.Second})
			waitFor(t, "home taken out", 30*time.Second, func() bool { return !endpointsStatus(t)["home"].Routable })
			res := post(t, "/olla/ollama/api/chat", chatBodyM)
			body := readAll(t, res)
			reason := res.Header.Get("X-Olla-Routing-Reason")
			if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "home" ||
				!strings.HasPrefix(reason, "panic: no healthy endpoint serves the model, trying all 1") {
				t.Errorf("model whose home is out for slow probes: %d from %q, reason %q: %s",
					res.StatusCode, res.Header.Get("X-Olla-Endpoint"), reason, body)
			}
			home.SetFault(sim.Fault{})
		})
	}
}

// TestProbeRetryAfterCapped: a health probe answered 429 with a day-long
// (or overflowing) Retry-After parks the endpoint for at most five
// minutes, as /internal/status reports, and a reload keeps it within that.
func TestProbeRetryAfterCapped(t *testing.T) {
	for _, retryAfter := range []int{86400, 1_000_000_000_000} {
		t.Run(fmt.Sprint(retryAfter), func(t *testing.T) {
			a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
			cfg := site(endpointBlock("a", a.URL, "ollama"))
			load(t, cfg)
			waitRoutable(t, "a")
			a.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: 429, RetryAfter: retryAfter, Path: "/"})
			var e struct {
				Status      string `json:"status"`
				Routable    bool   `json:"routable"`
				NextCheckAt string `json:"next_check_at"`
				ParkedUntil string `json:"parked_until"`
			}
			read := func() {
				var body struct {
					Endpoints []json.RawMessage `json:"endpoints"`
				}
				getJSON(t, "/internal/status/endpoints", &body)
				if err := json.Unmarshal(body.Endpoints[0], &e); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "a rate limited", 30*time.Second, func() bool { read(); return e.Status == "rate_limited" })
			check := func(when string) {
				t.Helper()
				limit := time.Now().Add(5*time.Minute + 2*time.Second)
				for name, v := range map[string]string{"parked_until": e.ParkedUntil, "next_check_at": e.NextCheckAt} {
					at, err := time.Parse(time.RFC3339, v)
					if err != nil {
						t.Fatalf("%s: %s %q: %v", when, name, v, err)
					}
					if at.After(limit) {
						t.Errorf("%s: Retry-After %d parks until %s (%s from now), past the 5m cap", when, retryAfter, v, time.Until(at).Round(time.Second))
					}
					if time.Until(at) < 4*time.Minute {
						t.Errorf("%s: %s %s is not the capped Retry-After (5m from the probe)", when, name, v)
					}
				}
				if e.Routable {
					t.Errorf("%s: a rate-limited endpoint is routable", when)
				}
			}
			check("after the probe")
			reload(t, cfg)
			read()
			check("after a reload")
		})
	}
}

// TestUnknownModelWithEndpointDownSinceStart: an endpoint that has refused
// since start-up had its chance: an unknown model is a 404, not "discovery
// has not finished" forever. While a first probe is in flight, it is 503.
func TestUnknownModelWithEndpointDownSinceStart(t *testing.T) {
	a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	load(t, site(endpointBlock("a", a.URL, "ollama")+endpointBlock("dead", dead, "ollama")))
	waitRoutable(t, "a")
	waitFor(t, "dead probed", 30*time.Second, func() bool { return endpointsStatus(t)["dead"].Status == "offline" })
	for _, path := range []string{"/olla/ollama/api/chat", "/olla/openai/v1/chat/completions"} {
		res := post(t, path, `{"model":"no-such-model","stream":false,"messages":[]}`)
		body := readAll(t, res)
		if res.StatusCode != 404 || !strings.Contains(body, "not found") || res.Header.Get("X-Olla-Routing-Reason") != "model_not_found" {
			t.Errorf("%s: unknown model with an endpoint down since start-up: %d, reason %q: %s",
				path, res.StatusCode, res.Header.Get("X-Olla-Routing-Reason"), body)
		}
	}

	// a first probe still in flight: the model may yet turn up
	hang := badServer(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	load(t, site(endpointBlock("a", a.URL, "ollama")+
		fmt.Sprintf("\t\tendpoint slowstart {\n\t\t\turl %s\n\t\t\ttype ollama\n\t\t\tcheck_interval 2m\n\t\t\tcheck_timeout 1m\n\t\t}\n", hang)))
	waitRoutable(t, "a")
	res := post(t, "/olla/ollama/api/chat", `{"model":"no-such-model","stream":false,"messages":[]}`)
	body := readAll(t, res)
	if res.StatusCode != 503 || res.Header.Get("X-Olla-Routing-Reason") != "discovery_pending" {
		t.Errorf("unknown model while a first probe is in flight: %d, reason %q: %s",
			res.StatusCode, res.Header.Get("X-Olla-Routing-Reason"), body)
	}
}

// TestPanicRoutingQueues: panic routing to an endpoint at its
// max_concurrency waits in the queue like any request and gets the slot
// when it frees, rather than waiting out max_wait for an endpoint the
// queue would not let it into.
func TestPanicRoutingQueues(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, TTFT: 50 * time.Millisecond, TokensPerSecond: 10, Tokens: 60_000})
	load(t, site(slowEndpoint("solo", s.URL, "max_concurrency 1")+"\t\tqueue {\n\t\t\tmax_wait 60s\n\t\t}\n"))
	waitRoutable(t, "solo")
	s.SetFault(sim.Fault{Mode: sim.FaultSlowHealth, Delay: 2 * time.Second})
	waitFor(t, "solo taken out", 30*time.Second, func() bool { return !endpointsStatus(t)["solo"].Routable })

	finish := holdSlot(t) // a panic-routed stream holds the only slot
	defer finish()
	out := make(chan queued, 1)
	enqueue(t, []string{"waiter"}, out, func(string) []string { return nil })
	finish()
	q := collect(t, out, 1)[0]
	if q.status != 200 || !strings.HasPrefix(q.header.Get("X-Olla-Routing-Reason"), "panic:") || q.header.Get("X-Olla-Queue-Time") == "" {
		t.Errorf("queued panic request: %d (%v), reason %q, queue time %q: %s",
			q.status, q.err, q.header.Get("X-Olla-Routing-Reason"), q.header.Get("X-Olla-Queue-Time"), q.body)
	}
}
