package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

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

// TestResponsesTranslatorStats: the Responses API is counted in
// /internal/stats/translators beside the Anthropic one: passthrough and
// translation, streams, a broken stream as a failure, a request we refuse
// as rejected; the Anthropic entry does not move.
func TestResponsesTranslatorStats(t *testing.T) {
	vllm := startSim(t, sim.Config{Kind: sim.VLLM, Models: []string{"served"}, Tokens: 3})
	oai := startSim(t, sim.Config{Kind: sim.OpenAI, Models: []string{"plain"}, Tokens: 3})
	load(t, site(endpointBlock("vllm", vllm.URL, "vllm")+endpointBlock("oai", oai.URL, "openai")))
	waitRoutable(t, "vllm", "oai")

	before, anthropicBefore := translatorNamed(t, "responses"), translatorNamed(t, "anthropic")
	for _, body := range []string{
		`{"model":"served","input":"hi"}`,              // passthrough
		`{"model":"plain","input":"hi"}`,               // translation
		`{"model":"plain","input":"hi","stream":true}`, // translation, streamed
	} {
		if res := post(t, "/olla/openai/v1/responses", body); readAll(t, res) == "" || res.StatusCode != 200 {
			t.Fatalf("%s: %d", body, res.StatusCode)
		}
	}
	oai.SetFault(sim.Fault{Mode: sim.FaultDropMidStream, AfterChunks: 2, Path: "/v1/chat/completions", Times: 1})
	readAll(t, post(t, "/olla/openai/v1/responses", `{"model":"plain","input":"hi","stream":true}`)) // broken: a failure
	if res := post(t, "/olla/openai/v1/responses", `{"model":"plain","input":"hi","previous_response_id":"resp_1"}`); res.StatusCode != 501 {
		t.Fatalf("previous_response_id: %d", res.StatusCode) // refused by us: rejected
	} else {
		readAll(t, res)
	}

	after := translatorNamed(t, "responses")
	got := translatorCounts{Name: "responses", Total: after.Total - before.Total, OK: after.OK - before.OK,
		Failed: after.Failed - before.Failed, Passthrough: after.Passthrough - before.Passthrough,
		Translation: after.Translation - before.Translation, Rejected: after.Rejected - before.Rejected,
		Streaming: after.Streaming - before.Streaming, NoNative: after.NoNative - before.NoNative,
		NativeOut: after.NativeOut - before.NativeOut}
	want := translatorCounts{Name: "responses", Total: 5, OK: 3, Failed: 2, Passthrough: 1, Translation: 3, Rejected: 1,
		Streaming: 2, NoNative: 3}
	if got != want {
		t.Errorf("responses translator counted %+v, want %+v", got, want)
	}
	if a := translatorNamed(t, "anthropic"); a != anthropicBefore {
		t.Errorf("the anthropic translator moved: %+v, was %+v", a, anthropicBefore)
	}
}

// TestUnavailableSaysWhy: when the endpoints that serve a model take no
// requests, the 503 names each one and why, in the route's API format:
// drained through the admin API, a refused connection, the status its
// health route answered. The admin API's rediscover of a dead endpoint
// says why it takes no requests instead of reporting its models fetched.
func TestUnavailableSaysWhy(t *testing.T) {
	a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
	b := startSim(t, sim.Config{Kind: sim.Ollama, Name: "b", Models: []string{"m"}})
	c := startSim(t, sim.Config{Kind: sim.OpenAI, Name: "c", Models: []string{"m"}})
	load(t, site(endpointBlock("a", a.URL, "ollama")+endpointBlock("b", b.URL, "ollama")+endpointBlock("c", c.URL, "openai")))
	waitRoutable(t, "a", "b", "c")

	if code, out := adminCall(t, http.MethodPost, "/olla/endpoints/a/drain"); code != 200 {
		t.Fatalf("drain: %d %v", code, out)
	}
	b.Close() // refused from now on
	c.SetFault(sim.Fault{Mode: sim.FaultFailHealth})
	waitFor(t, "b and c taken out", 30*time.Second, func() bool {
		st := endpointsStatus(t)
		return !st["b"].Routable && !st["c"].Routable
	})
	for _, tc := range []struct{ path, body, shape string }{
		{"/olla/openai/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "openai"},
		{"/olla/ollama/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "ollama"},
		{"/olla/anthropic/v1/messages", `{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, "anthropic"},
	} {
		res := post(t, tc.path, tc.body)
		body := readAll(t, res)
		msg := errorMessage(body)
		if res.StatusCode != http.StatusServiceUnavailable || errorShape(body) != tc.shape {
			t.Errorf("%s: %d %s, want 503 in %s's format", tc.path, res.StatusCode, body, tc.shape)
			continue
		}
		for _, want := range []string{"a (ollama, drained through the admin API)", "b (ollama, offline: connection refused", "answered 503"} {
			if tc.shape == "ollama" && want == "answered 503" {
				continue // the Ollama route does not reach the OpenAI-compatible c
			}
			if !strings.Contains(msg, want) {
				t.Errorf("%s: %q lacks %q", tc.path, msg, want)
			}
		}
	}

	code, out := adminCall(t, http.MethodPost, "/olla/endpoints/b/rediscover")
	if note, _ := out["result"].(string); code != 200 || !strings.Contains(note, "takes no requests: offline: connection refused") {
		t.Errorf("rediscover of a dead endpoint: %d %q", code, note)
	}
}
