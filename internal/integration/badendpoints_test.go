package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
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
// healthy endpoint's checks or requests.
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
	load(t, site(endpointBlock("good", good.URL, "ollama")+
		endpointBlock("html", html, "ollama")+
		endpointBlock("garbage", garbage, "ollama")+
		endpointBlock("truncated", truncated, "ollama")+
		endpointBlock("hang", hang, "ollama")))
	start := time.Now()
	waitRoutable(t, "good")
	if d := time.Since(start); d > time.Second {
		t.Errorf("the good endpoint took %s to become routable next to bad ones", d)
	}
	type info struct {
		Status, Reason, ModelError string
		Routable                   bool
	}
	var st map[string]info
	waitFor(t, "every bad endpoint classified", 5*time.Second, func() bool {
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
	// and the good endpoint keeps being probed on time
	good.ResetStats()
	time.Sleep(time.Second)
	if n := good.Requests("/"); n < 3 {
		t.Errorf("good probed %d times in 1s at a 200ms interval: bad neighbours delay its checks", n)
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
		fmt.Fprintf(&eps, "endpoint %s {\n url %s/\n type ollama\n check_interval 1s\n check_timeout 500ms\n}\n", names[i], srv)
	}
	load(t, site(eps.String()))
	waitRoutable(t, names...)
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
	busiest := 0
	for i := range window {
		j := i
		for j < len(window) && window[j].Sub(window[i]) < 20*time.Millisecond {
			j++
		}
		busiest = max(busiest, j-i)
	}
	t.Logf("%d probes in the last 3s; the busiest 20 ms held %d", len(window), busiest)
	if len(window) < 200 || len(window) > 400 {
		t.Errorf("%d probes in 3s from 100 endpoints at 1s", len(window))
	}
	if busiest > 40 {
		t.Errorf("%d of 100 endpoints probed within the same 20 ms: lock-step", busiest)
	}
}
