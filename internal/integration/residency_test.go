package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// loadOn loads a model on a simulator through its own load route, as an
// operator (or another client) would.
func loadOn(t *testing.T, s *sim.Server, path, body string) {
	t.Helper()
	res, err := http.Post(s.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, res); res.StatusCode != 200 {
		t.Fatalf("load on %s: %d %s", s.Sim.Name(), res.StatusCode, b)
	}
}

// TestResidencyFeedsWarm: llama.cpp in router mode and Lemonade say which
// models they hold, the status routes show it, and the adaptive balancer
// sends each model where it is warm; a llama.cpp without router mode keeps
// "its one model".
func TestResidencyFeedsWarm(t *testing.T) {
	r1 := startSim(t, sim.Config{Kind: sim.LlamaCpp, Router: true, Models: []string{"a", "b"}, Name: "r1",
		Capacity: sim.Capacity{MaxLoaded: 1}})
	r2 := startSim(t, sim.Config{Kind: sim.LlamaCpp, Router: true, Models: []string{"a", "b"}, Name: "r2",
		Capacity: sim.Capacity{MaxLoaded: 1}})
	lem := startSim(t, sim.Config{Kind: sim.Lemonade, Models: []string{"q", "r"}, Name: "lem"})
	single := startSim(t, sim.Config{Kind: sim.LlamaCpp, Models: []string{"s"}, Name: "single"})
	loadOn(t, r1, "/models/load", `{"model":"a"}`)
	loadOn(t, r2, "/models/load", `{"model":"b"}`)
	loadOn(t, lem, "/api/v1/load", `{"model_name":"r"}`)
	poll := "\t\t\tload_interval 100ms"
	load(t, site("\t\tload_balancer adaptive\n"+endpointBlock("r1", r1.URL, "llamacpp", poll)+endpointBlock("r2", r2.URL, "llamacpp", poll)+
		endpointBlock("lem", lem.URL, "lemonade", poll)+endpointBlock("single", single.URL, "llamacpp", poll)))
	waitRoutable(t, "r1", "r2", "lem", "single")

	waitFor(t, "router and lemonade residency read", 10*time.Second, func() bool {
		w1, s1, _ := warmModels(t, "r1")
		w2, _, _ := warmModels(t, "r2")
		wl, _, _ := warmModels(t, "lem")
		return len(w1) == 1 && w1[0] == "a" && !s1 && len(w2) == 1 && w2[0] == "b" && len(wl) == 1 && wl[0] == "r"
	})
	if _, serves, problem := warmModels(t, "single"); !serves || problem != "" {
		t.Errorf("single-model llama.cpp: serves_listed %v, problem %q", serves, problem)
	}
	// each model goes where it is warm, again and again
	for i := range 4 {
		for model, want := range map[string]string{"a": "r1", "b": "r2"} {
			res := post(t, "/olla/llamacpp/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)
			b := readAll(t, res)
			if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != want {
				t.Fatalf("round %d, %s: %d from %q (reason %q): %s", i, model, res.StatusCode, res.Header.Get("X-Olla-Endpoint"),
					res.Header.Get("X-Olla-Routing-Reason"), b)
			}
		}
	}
	// an eviction shows: loading b on r1 evicts a there
	loadOn(t, r1, "/models/load", `{"model":"b"}`)
	waitFor(t, "r1's eviction seen", 10*time.Second, func() bool {
		w1, _, _ := warmModels(t, "r1")
		return len(w1) == 1 && w1[0] == "b"
	})
}
