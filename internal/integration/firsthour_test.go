package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-olla/olla/internal/sim"
)

// The first hour's friction (issue 22): answers a newcomer trips over,
// each in the API format of the route asked.

// TestWrongMethodOnPostRoutes: GET, HEAD, PUT or DELETE on a route that
// takes only POST is a 405 from the proxy, in the route's API format and
// with Allow: POST, and never reaches a backend (which would answer in
// plain text); the GET routes beside them still answer.
func TestWrongMethodOnPostRoutes(t *testing.T) {
	ollama := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, Tokens: 3})
	oai := startSim(t, sim.Config{Kind: sim.OpenAI, Models: []string{"o"}, Tokens: 3})
	load(t, site(endpointBlock("ollama", ollama.URL, "ollama")+endpointBlock("oai", oai.URL, "openai")))
	waitRoutable(t, "ollama", "oai")

	for _, tc := range []struct{ method, path, shape string }{
		{http.MethodGet, "/olla/openai/v1/chat/completions", "openai"},
		{http.MethodGet, "/olla/proxy/v1/chat/completions", "openai"},
		{http.MethodPut, "/olla/openai/v1/completions", "openai"},
		{http.MethodDelete, "/olla/openai/v1/embeddings", "openai"},
		{http.MethodGet, "/olla/openai/v1/responses", "openai"},
		{http.MethodGet, "/olla/ollama/v1/chat/completions", "openai"},
		{http.MethodGet, "/olla/ollama/api/chat", "ollama"},
		{http.MethodGet, "/olla/ollama/api/generate", "ollama"},
		{http.MethodPatch, "/olla/ollama/api/embed", "ollama"},
		{http.MethodGet, "/olla/anthropic/v1/messages", "anthropic"},
		{http.MethodHead, "/olla/openai/v1/chat/completions", ""},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, res)
		if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "POST" {
			t.Errorf("%s %s: %d Allow %q, want 405 Allow POST: %s", tc.method, tc.path, res.StatusCode, res.Header.Get("Allow"), body)
			continue
		}
		if tc.method == http.MethodHead {
			continue // no body to speak a format
		}
		if got := errorShape(body); got != tc.shape || !strings.Contains(errorMessage(body), "use POST") {
			t.Errorf("%s %s: %s-shaped %s, want %s saying to use POST", tc.method, tc.path, got, body, tc.shape)
		}
	}
	for _, p := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/api/chat", "/api/generate", "/api/embed"} {
		if n := ollama.Requests(p) + oai.Requests(p); n != 0 {
			t.Errorf("%s reached a backend %d times", p, n)
		}
	}
	for _, p := range []string{"/olla/openai/v1/models", "/olla/ollama/api/tags"} {
		readAll(t, getOK(t, p))
	}
	// POST still works on each
	if res := post(t, "/olla/openai/v1/chat/completions", `{"model":"o","messages":[{"role":"user","content":"hi"}]}`); res.StatusCode != 200 {
		t.Errorf("POST chat completions: %d %s", res.StatusCode, readAll(t, res))
	} else {
		readAll(t, res)
	}
}

// TestDashboardOff: `dashboard off` (the adapter's dashboard.enabled:
// false) answers the page and its data 404 saying so; the status JSON
// stays.
func TestDashboardOff(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}})
	load(t, site("dashboard off\n"+endpointBlock("a", s.URL, "ollama")))
	waitRoutable(t, "a")
	for _, p := range []string{"/internal/ui", "/internal/ui/", "/internal/ui/data", "/internal/ui/app.js"} {
		res, err := client.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, res); res.StatusCode != http.StatusNotFound || !strings.Contains(errorMessage(body), "dashboard off") {
			t.Errorf("%s: %d %s, want 404 naming dashboard off", p, res.StatusCode, body)
		}
	}
	readAll(t, getOK(t, "/internal/status"))
}
