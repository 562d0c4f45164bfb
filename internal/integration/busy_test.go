package integration

import (
	"testing"

	"github.com/caddy-olla/olla/internal/sim"
)

// TestBusyAnswersFailOver: a backend's "busy" answer (Lemonade's 409
// slots_pinned_error, Ollama's 503 "server busy", llama-server's 503 with no
// free slot) moves the request to the next candidate and is never counted
// as a failure: the busy endpoint's breaker stays closed, its failure count
// at zero and its health untouched, on both engines.
func TestBusyAnswersFailOver(t *testing.T) {
	for _, engine := range []string{"sherpa", "olla"} {
		for _, kind := range []string{sim.Lemonade, sim.Ollama, sim.LlamaCpp} {
			t.Run(engine+"/"+kind, func(t *testing.T) {
				busy := startSim(t, sim.Config{Kind: kind, Models: []string{"m"}, Name: "busy"})
				ok := startSim(t, sim.Config{Kind: kind, Models: []string{"m"}, Name: "ok"})
				busy.SetFault(sim.Fault{Mode: sim.FaultBusy})
				typ := map[string]string{sim.Lemonade: "lemonade", sim.Ollama: "ollama", sim.LlamaCpp: "llamacpp"}[kind]
				load(t, site("\t\tengine "+engine+"\n\t\tcircuit_breaker {\n\t\t\tfailures 2\n\t\t}\n"+
					endpointBlock("busy", busy.URL, typ, "\t\t\tpriority 200")+
					endpointBlock("ok", ok.URL, typ, "\t\t\tpriority 100")))
				waitRoutable(t, "busy", "ok")
				const n = 6
				for i := range n {
					res := post(t, "/olla/openai/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}`)
					b := readAll(t, res)
					if res.StatusCode != 200 || res.Header.Get("X-Sim-Name") != "ok" {
						t.Fatalf("request %d: %d from %q: %s", i, res.StatusCode, res.Header.Get("X-Sim-Name"), b)
					}
				}
				if f := busy.Sim.Stats().Faults; f < 2 {
					t.Fatalf("the busy endpoint was asked %d times; the test needs it asked", f)
				}
				var body struct {
					Endpoints []struct {
						Name           string `json:"name"`
						Status         string `json:"status"`
						Failures       int64  `json:"failure_count"`
						CircuitBreaker string `json:"circuit_breaker"`
						BreakerOpens   int64  `json:"circuit_breaker_opens"`
					} `json:"endpoints"`
				}
				getJSON(t, "/internal/status/endpoints", &body)
				for _, e := range body.Endpoints {
					if e.Name == "busy" && (e.Failures != 0 || e.CircuitBreaker != "closed" || e.BreakerOpens != 0 || e.Status != "healthy") {
						t.Errorf("busy endpoint blamed: %+v", e)
					}
				}
			})
		}
	}
}

// TestBusyAnswerRequeues: with a queue and one endpoint, a busy answer puts
// the request back in line (parked for the backend's Retry-After) and it is
// served once the backend has room.
func TestBusyAnswerRequeues(t *testing.T) {
	lem := startSim(t, sim.Config{Kind: sim.Lemonade, Models: []string{"m"}, Name: "lem"})
	lem.SetFault(sim.Fault{Mode: sim.FaultBusy, Times: 1, RetryAfter: 1})
	load(t, site("\t\tqueue {\n\t\t\tmax_wait 20s\n\t\t}\n"+endpointBlock("lem", lem.URL, "lemonade")))
	waitRoutable(t, "lem")
	res := post(t, "/olla/lemonade/api/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	b := readAll(t, res)
	if res.StatusCode != 200 || lem.Sim.Stats().Faults != 1 {
		t.Fatalf("requeued request: %d (faults %d): %s", res.StatusCode, lem.Sim.Stats().Faults, b)
	}
	if e := endpointsStatus(t)["lem"]; e.CircuitBreaker != "closed" || e.Status != "healthy" {
		t.Errorf("lemonade after a busy answer: %+v", e)
	}
}
