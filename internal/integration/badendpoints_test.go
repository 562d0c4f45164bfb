package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// badServer answers every request in one broken way.
func badServer(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestBadEndpoints checks endpoints that answer HTML, garbage, a cut-off
// body or nothing are marked with a clear reason, and never delay the
// healthy endpoint's checks or requests (shown by order: the good one is
// probed again and again while a neighbour's probe hangs).
func TestBadEndpoints(t *testing.T) {
	good := startSim(t, sim.Config{Kind: sim.Ollama, Name: "good", Models: []string{"m"}})
	html := badServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Welcome to nginx!</body></html>")
	})
	garbage := badServer(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "\x00\x01 not json {{{")
	})
	truncated := badServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		fmt.Fprint(w, `{"models":[{"name":"cut`)
	})
	hang := badServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	// stuck never answers either, and its probe may wait 50 s: the good
	// endpoint's probes must go on while it hangs
	var stuckProbes, stuckReturned atomic.Int64
	stuck := badServer(t, func(w http.ResponseWriter, r *http.Request) {
		stuckProbes.Add(1)
		defer stuckReturned.Add(1)
		<-r.Context().Done()
	})
	load(t, site(endpointBlock("good", good.URL, "ollama")+
		endpointBlock("html", html, "ollama")+
		endpointBlock("garbage", garbage, "ollama")+
		endpointBlock("truncated", truncated, "ollama")+
		endpointBlock("hang", hang, "ollama")+
		"endpoint stuck {\n url "+stuck+"\n type ollama\n check_interval 1m\n check_timeout 50s\n}\n"))
	waitRoutable(t, "good")
	type info struct {
		Status, Reason, ModelError string
		Routable                   bool
	}
	var st map[string]info
	waitFor(t, "every bad endpoint classified", 30*time.Second, func() bool {
		var body struct {
			Endpoints []struct {
				Name       string `json:"name"`
				Status     string `json:"status"`
				Reason     string `json:"reason"`
				ModelError string `json:"model_error"`
				Routable   bool   `json:"routable"`
			} `json:"endpoints"`
		}
		getJSON(t, "/internal/status/endpoints", &body)
		st = map[string]info{}
		for _, e := range body.Endpoints {
			st[e.Name] = info{e.Status, e.Reason, e.ModelError, e.Routable}
		}
		return st["hang"].Status == "offline" && st["truncated"].Status != "unknown" &&
			st["html"].ModelError != "" && st["garbage"].ModelError != ""
	})
	// an HTML or garbage 200 on the health path still answers, but its model
	// list is not a model list: no models, and a reason saying so
	for _, name := range []string{"html", "garbage"} {
		if !strings.Contains(st[name].ModelError, "not JSON") && !strings.Contains(st[name].ModelError, "JSON") {
			t.Errorf("%s: model error %q does not say the list is not JSON", name, st[name].ModelError)
		}
	}
	if st["truncated"].Routable || !strings.Contains(st["truncated"].Reason, "cut off") {
		t.Errorf("truncated: %+v", st["truncated"])
	}
	if !strings.Contains(st["hang"].Reason, "no answer within") {
		t.Errorf("hang: %+v", st["hang"])
	}
	// requests for the good endpoint's model are untouched
	for range 5 {
		res := post(t, "/olla/ollama/api/chat", chatBodyM)
		if b := readAll(t, res); res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "good" {
			t.Fatalf("request with bad neighbours: %d from %q: %s", res.StatusCode, res.Header.Get("X-Olla-Endpoint"), b)
		}
	}
	// and the good endpoint keeps being probed while a neighbour's probe
	// hangs: three of its probes arrive before stuck's first one ends
	waitFor(t, "stuck's first probe", 30*time.Second, func() bool { return stuckProbes.Load() > 0 })
	from := good.Requests("/")
	waitFor(t, "three probes of good while stuck's probe hangs", 30*time.Second, func() bool { return good.Requests("/") >= from+3 })
	if n := stuckReturned.Load(); n != 0 {
		t.Errorf("stuck's probe ended (%d) before good was probed three times: bad neighbours delay its checks", n)
	}
}

// TestProbesSpreadOut runs a hundred endpoints and checks their probes do
// not arrive in lock-step.
func TestProbesSpreadOut(t *testing.T) {
	var mu sync.Mutex
	var arrivals []time.Time
	srv := badServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			mu.Lock()
			arrivals = append(arrivals, time.Now())
			mu.Unlock()
			fmt.Fprint(w, "Ollama is running")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"models": []map[string]string{{"name": "m:latest"}}})
	})
	var eps strings.Builder
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("ep%03d", i)
		fmt.Fprintf(&eps, "endpoint %s {\n url %s/\n type ollama\n check_interval 1s\n check_timeout 900ms\n}\n", names[i], srv)
	}
	load(t, site(eps.String()))
	// a hundred endpoints' first probes and model lists take a busy
	// machine a while
	waitFor(t, "the 100 endpoints routable", 3*time.Minute, func() bool {
		st := endpointsStatus(t)
		for _, n := range names {
			if e := st[n]; !e.Routable || e.ModelCount == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(5 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	// look at the last 3 s: with ±10 % jitter the rounds drift apart
	cutoff := time.Now().Add(-3 * time.Second)
	var window []time.Time
	for _, a := range arrivals {
		if a.After(cutoff) {
			window = append(window, a)
		}
	}
	sort.Slice(window, func(i, j int) bool { return window[i].Before(window[j]) })
	busiest := make([]int, 3) // per second of the window
	for i := range window {
		j := i
		for j < len(window) && window[j].Sub(window[i]) < 20*time.Millisecond {
			j++
		}
		sec := min(int(window[i].Sub(cutoff)/time.Second), 2)
		busiest[sec] = max(busiest[sec], j-i)
	}
	t.Logf("%d probes in the last 3s; the busiest 20 ms of each second held %v", len(window), busiest)
	// A stall of the machine bunches the probes due during it, but not
	// in every second; probes in lock-step bunch in every one. More than
	// 400 is probing more often than the interval; fewer than 100 (one per
	// endpoint where 300 are due) is probing stopped, not a slow machine.
	if len(window) < 100 || len(window) > 400 {
		t.Errorf("%d probes in 3s from 100 endpoints at 1s", len(window))
	}
	if least := slices.Min(busiest); least > 40 {
		t.Errorf("in every second of three, %d or more of 100 endpoints were probed within the same 20 ms: lock-step (%v)", least, busiest)
	}
}
