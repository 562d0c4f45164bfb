package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// adminCall sends a request to Caddy's admin API and decodes the answer.
func adminCall(t *testing.T, method, path string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://localhost:2999"+path, nil)
	res, err := adminClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	body := readAll(t, res)
	var out map[string]any
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %s", method, path, res.StatusCode, body)
	}
	return res.StatusCode, out
}

const adminChat = `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`

func servedBy(t *testing.T) (int, string) {
	t.Helper()
	res := post(t, "/olla/ollama/api/chat", adminChat)
	readAll(t, res)
	return res.StatusCode, res.Header.Get("X-Olla-Endpoint")
}

// TestAdminDrainEnableRediscover drives admin.api.olla on a running config:
// a drained endpoint takes no new requests but finishes its stream, keeps
// its drain across a reload, and rediscover fetches a new model at once.
func TestAdminDrainEnableRediscover(t *testing.T) {
	a := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, TTFT: time.Millisecond, TokensPerSecond: 20, Tokens: 10})
	b := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, Tokens: 2})
	cfg := site(endpointBlock("alpha", a.URL, "ollama", "priority 100") + endpointBlock("beta", b.URL, "ollama", "priority 50"))
	load(t, cfg)
	waitRoutable(t, "alpha", "beta")

	code, out := adminCall(t, http.MethodGet, "/olla/endpoints")
	if code != 200 || !strings.Contains(toJSON(out), `"alpha"`) || !strings.Contains(toJSON(out), `"beta"`) {
		t.Fatalf("GET /olla/endpoints: %d %v", code, out)
	}

	// unknown names are a 404 that lists the known ones
	code, out = adminCall(t, http.MethodPost, "/olla/endpoints/gamma/drain")
	if code != http.StatusNotFound || !strings.Contains(toJSON(out), "alpha") || !strings.Contains(toJSON(out), "beta") {
		t.Fatalf("drain of an unknown endpoint: %d %v", code, out)
	}
	if code, _ = adminCall(t, http.MethodGet, "/olla/endpoints/alpha/drain"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET on an action: %d, want 405", code)
	}

	if code, ep := servedBy(t); code != 200 || ep != "alpha" {
		t.Fatalf("before the drain: %d from %q, want alpha", code, ep)
	}

	// a stream on alpha runs across the drain and finishes whole
	stream := post(t, "/olla/ollama/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if stream.Header.Get("X-Olla-Endpoint") != "alpha" {
		t.Fatalf("stream went to %q", stream.Header.Get("X-Olla-Endpoint"))
	}
	code, out = adminCall(t, http.MethodPost, "/olla/endpoints/alpha/drain")
	if code != 200 || !strings.Contains(toJSON(out), "drained") {
		t.Fatalf("drain: %d %v", code, out)
	}
	got, _ := lines(t, stream)
	if len(got) == 0 || !strings.Contains(got[len(got)-1], `"done":true`) {
		t.Fatalf("the stream in flight did not finish after the drain: %v", got)
	}
	for range 5 {
		if code, ep := servedBy(t); code != 200 || ep != "beta" {
			t.Fatalf("after draining alpha: %d from %q, want beta", code, ep)
		}
	}
	st := endpointsStatus(t)
	if st["alpha"].Routable {
		t.Fatalf("/internal/status shows drained alpha routable: %+v", st["alpha"])
	}

	// the drain lives on the endpoint's pooled state: a reload keeps it
	reload(t, cfg)
	waitRoutable(t, "beta")
	if code, ep := servedBy(t); code != 200 || ep != "beta" {
		t.Fatalf("after a reload: %d from %q, want beta (alpha still drained)", code, ep)
	}

	// draining the last one is allowed, and says so
	code, out = adminCall(t, http.MethodPost, "/olla/endpoints/beta/drain")
	if code != 200 || !strings.Contains(toJSON(out), "last routable ollama endpoint") {
		t.Fatalf("drain of the last endpoint: %d %v", code, out)
	}
	if code, _ := servedBy(t); code != http.StatusServiceUnavailable {
		t.Fatalf("every endpoint drained: %d, want 503", code)
	}

	adminCall(t, http.MethodPost, "/olla/endpoints/alpha/enable")
	adminCall(t, http.MethodPost, "/olla/endpoints/beta/enable")
	if code, ep := servedBy(t); code != 200 || ep != "alpha" {
		t.Fatalf("after enable: %d from %q, want alpha", code, ep)
	}

	// a model added on the backend is routable right after a rediscover,
	// long before the 5-minute discovery interval
	a.SetModels([]string{"m", "fresh"})
	code, out = adminCall(t, http.MethodPost, "/olla/endpoints/alpha/rediscover")
	if code != 200 || !strings.Contains(toJSON(out), "probed") {
		t.Fatalf("rediscover: %d %v", code, out)
	}
	res := post(t, "/olla/ollama/api/chat", `{"model":"fresh","stream":false,"messages":[{"role":"user","content":"hi"}]}`)
	if body := readAll(t, res); res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "alpha" {
		t.Fatalf("fresh model after rediscover: %d from %q: %s", res.StatusCode, res.Header.Get("X-Olla-Endpoint"), body)
	}
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
