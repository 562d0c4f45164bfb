package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// modelFleet is three kinds of backend holding different models.
type modelFleet struct {
	o1, o2, lms, vllm *sim.Server
}

func startFleet(t *testing.T) modelFleet {
	return modelFleet{
		o1:   startSim(t, sim.Config{Kind: sim.Ollama, Name: "o1", Models: []string{"llama3.2:latest", "phi-4-mini:latest"}}),
		o2:   startSim(t, sim.Config{Kind: sim.Ollama, Name: "o2", Models: []string{"qwen2.5:0.5b"}}),
		lms:  startSim(t, sim.Config{Kind: sim.LMStudio, Name: "lms", Models: []string{"qwen2.5-7b-instruct", "Llama-3.2-1B-Instruct"}}),
		vllm: startSim(t, sim.Config{Kind: sim.VLLM, Name: "vllm", Models: []string{"Qwen/Qwen2.5-7B-Instruct"}}),
	}
}

// posts counts the POSTs (requests, not probes) the fleet's backends got.
func (f modelFleet) posts() int64 {
	var n int64
	for _, s := range []*sim.Server{f.o1, f.o2, f.lms, f.vllm} {
		for k, v := range s.Stats().ByPath {
			if strings.HasPrefix(k, "POST ") {
				n += v
			}
		}
	}
	return n
}

func (f modelFleet) endpoints() string {
	return endpointBlock("o1", f.o1.URL, "ollama") + endpointBlock("o2", f.o2.URL, "ollama") +
		endpointBlock("lms", f.lms.URL, "lm-studio") + endpointBlock("vllm", f.vllm.URL, "vllm")
}

// TestModelRouting checks every request for a model lands on an endpoint
// that has it, on each kind of route.
func TestModelRouting(t *testing.T) {
	f := startFleet(t)
	load(t, site(f.endpoints()))
	waitRoutable(t, "o1", "o2", "lms", "vllm")
	for _, tc := range []struct {
		path, model, want string
	}{
		{"/olla/ollama/api/chat", "llama3.2:latest", "o1"},
		{"/olla/ollama/api/chat", "llama3.2", "o1"},
		{"/olla/ollama/api/chat", "qwen2.5:0.5b", "o2"},
		{"/olla/ollama/v1/chat/completions", "phi-4-mini", "o1"},
		{"/olla/lmstudio/v1/chat/completions", "qwen2.5-7b-instruct", "lms"},
		{"/olla/vllm/v1/chat/completions", "Qwen/Qwen2.5-7B-Instruct", "vllm"},
		{"/olla/openai/v1/chat/completions", "qwen2.5:0.5b", "o2"},
		{"/olla/openai/v1/chat/completions", "Qwen/Qwen2.5-7B-Instruct", "vllm"},
		{"/olla/openai/v1/chat/completions", "Llama-3.2-1B-Instruct", "lms"},
		{"/olla/proxy/v1/chat/completions", "qwen2.5-7b-instruct", "lms"},
		{"/olla/proxy/api/generate", "qwen2.5:0.5b", "o2"},
		{"/olla/proxy/v1/chat/completions", "llama3.2:latest", "o1"},
	} {
		for range 3 {
			res := post(t, tc.path, fmt.Sprintf(`{"model":%q,"stream":false,"messages":[{"role":"user","content":"hi"}],"prompt":"hi"}`, tc.model))
			b := readAll(t, res)
			if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != tc.want {
				t.Fatalf("%s %s: %d from %q, want 200 from %s: %s", tc.path, tc.model, res.StatusCode, res.Header.Get("X-Olla-Endpoint"), tc.want, b)
			}
		}
	}
	// a model served only by another type is not routed across types
	res := post(t, "/olla/ollama/api/chat", `{"model":"qwen2.5-7b-instruct"}`)
	if b := readAll(t, res); res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || !strings.Contains(b, "lms") {
		t.Errorf("cross-type model on a provider route: %d %s", res.StatusCode, b)
	}
}

// TestAliasAndCaseRewrite checks the body the backend sees.
func TestAliasAndCaseRewrite(t *testing.T) {
	f := startFleet(t)
	load(t, site(f.endpoints()+"\naliases {\n fast phi-4-mini:latest qwen2.5-7b-instruct\n}\n"))
	waitRoutable(t, "o1", "o2", "lms", "vllm")
	seen := map[string]bool{}
	for range 6 {
		res := post(t, "/olla/openai/v1/chat/completions", `{"messages":[{"role":"user","content":"model: fast"}], "model" : "fast","stream":false}`)
		b := readAll(t, res)
		ep := res.Header.Get("X-Olla-Endpoint")
		if res.StatusCode != 200 || (ep != "o1" && ep != "lms") {
			t.Fatalf("alias: %d from %q: %s", res.StatusCode, ep, b)
		}
		if res.Header.Get("X-Olla-Model") != "fast" || res.Header.Get("X-Olla-Routing-Strategy") != "alias" {
			t.Errorf("alias headers: model %q strategy %q", res.Header.Get("X-Olla-Model"), res.Header.Get("X-Olla-Routing-Strategy"))
		}
		seen[ep] = true
	}
	last, ok := f.o1.LastRequestTo("/v1/chat/completions")
	if !ok || !strings.Contains(string(last.Body), `"model" : "phi-4-mini:latest"`) || !strings.Contains(string(last.Body), `"content":"model: fast"`) {
		t.Errorf("o1 saw body %s; want the model rewritten in place and nothing else", last.Body)
	}
	last, ok = f.lms.LastRequestTo("/v1/chat/completions")
	if !ok || !strings.Contains(string(last.Body), `"model" : "qwen2.5-7b-instruct"`) {
		t.Errorf("lms saw body %s", last.Body)
	}
	if !seen["o1"] || !seen["lms"] {
		t.Errorf("alias spread over %v, want both o1 and lms", seen)
	}
	// case-insensitive fallback: the backend gets the name it knows
	res := post(t, "/olla/lmstudio/v1/chat/completions", `{"model":"LLAMA-3.2-1b-instruct","stream":false,"messages":[{"role":"user","content":"hi"}]}`)
	readAll(t, res)
	last, _ = f.lms.LastRequestTo("/v1/chat/completions")
	if res.StatusCode != 200 || !strings.Contains(string(last.Body), `"model":"Llama-3.2-1B-Instruct"`) {
		t.Errorf("case fallback: %d, backend saw %s", res.StatusCode, last.Body)
	}
	if res.Header.Get("X-Olla-Model") != "LLAMA-3.2-1b-instruct" {
		t.Errorf("X-Olla-Model should keep the client's spelling, got %q", res.Header.Get("X-Olla-Model"))
	}
}

// TestErrorFormats checks each error case's status and body shape, in the
// dialect of the path, as the real servers write them.
func TestErrorFormats(t *testing.T) {
	f := startFleet(t)
	load(t, site(f.endpoints()+"\nrequest_limits {\n max_body_size 64KiB\n}\n"))
	waitRoutable(t, "o1", "o2", "lms", "vllm")
	type shape int
	const (
		ollama shape = iota
		openai
		anthropic
	)
	for _, tc := range []struct {
		name, path, body string
		status           int
		shape            shape
		contains         string
	}{
		{"ollama unknown model", "/olla/ollama/api/chat", `{"model":"nope"}`, 404, ollama, "model 'nope' not found"},
		{"ollama show unknown", "/olla/ollama/api/show", `{"model":"nope"}`, 404, ollama, "model 'nope' not found"},
		{"openai unknown model", "/olla/openai/v1/chat/completions", `{"model":"nope","stream":true}`, 404, openai, "model 'nope' not found"},
		{"anthropic unknown model", "/olla/ollama/v1/messages", `{"model":"nope","max_tokens":8,"messages":[]}`, 404, anthropic, "model 'nope' not found"},
		{"ollama invalid json", "/olla/ollama/api/chat", `{"model":"llama3.2",`, 400, ollama, "not valid JSON"},
		{"openai invalid json", "/olla/openai/v1/chat/completions", `{"model"`, 400, openai, "not valid JSON"},
		{"anthropic invalid json", "/olla/ollama/v1/messages", `{`, 400, anthropic, "not valid JSON"},
		{"empty body", "/olla/openai/v1/chat/completions", ``, 400, openai, "empty"},
		{"model a number", "/olla/openai/v1/chat/completions", `{"model":42}`, 400, openai, "must be a string"},
		{"model an array", "/olla/openai/v1/embeddings", `{"model":["a"],"input":"x"}`, 400, openai, "must be a string"},
		{"duplicate model", "/olla/openai/v1/chat/completions", `{"model":"llama3.2","model":"qwen2.5:0.5b"}`, 400, openai, "more than once"},
		{"invalid utf-8", "/olla/openai/v1/chat/completions", "{\"model\":\"\xff\xfe\"}", 400, openai, "UTF-8"},
		{"cut off after model", "/olla/openai/v1/chat/completions", `{"model":"llama3.2","messages":[{"role":"us`, 400, openai, "not valid JSON"},
		{"deep nesting", "/olla/openai/v1/chat/completions", `{"model":"llama3.2","x":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`, 400, openai, "nested"},
		{"too large", "/olla/openai/v1/chat/completions", `{"model":"llama3.2","x":"` + strings.Repeat("a", 64<<10) + `"}`, 413, openai, "limit"},
		{"management", "/olla/ollama/api/pull", `{"model":"llama3.2"}`, 501, ollama, "not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.posts()
			res := post(t, tc.path, tc.body)
			b := readAll(t, res)
			if res.StatusCode != tc.status || !strings.Contains(b, tc.contains) {
				t.Fatalf("status %d body %s; want %d containing %q", res.StatusCode, b, tc.status, tc.contains)
			}
			// answered by the proxy itself: nothing was tried on a backend
			// (a hang would be the client's 30 s timeout)
			if n := f.posts() - before; n != 0 {
				t.Errorf("%d requests reached a backend", n)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(b), &m); err != nil {
				t.Fatalf("not JSON: %s", b)
			}
			switch tc.shape {
			case ollama:
				var s string
				if json.Unmarshal(m["error"], &s) != nil || len(m) != 1 {
					t.Errorf("not Ollama's {\"error\":\"...\"}: %s", b)
				}
			case openai:
				var e struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
				}
				if json.Unmarshal(m["error"], &e) != nil || e.Message == "" || e.Type == "" {
					t.Errorf("not the OpenAI envelope: %s", b)
				}
			case anthropic:
				var typ string
				var e struct{ Type, Message string }
				if json.Unmarshal(m["type"], &typ) != nil || typ != "error" || json.Unmarshal(m["error"], &e) != nil || e.Type == "" || e.Message == "" {
					t.Errorf("not the Anthropic envelope: %s", b)
				}
			}
		})
	}

	// a chunked body over the cap: 413 too, never a 5xx
	req, _ := http.NewRequest(http.MethodPost, base+"/olla/openai/v1/chat/completions",
		strings.NewReader(`{"model":"llama3.2","x":"`+strings.Repeat("b", 70<<10)+`"}`))
	req.ContentLength = -1 // sent chunked
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, res); res.StatusCode != 413 {
		t.Errorf("chunked over the cap: %d %s", res.StatusCode, b)
	}

	// a model known only on an endpoint that is down: 503 with Retry-After
	f.o2.SetFault(sim.Fault{Mode: "fail_health"})
	waitFor(t, "o2 down", 30*time.Second, func() bool { return !endpointsStatus(t)["o2"].Routable })
	res = post(t, "/olla/ollama/api/chat", `{"model":"qwen2.5:0.5b"}`)
	if b := readAll(t, res); res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || !strings.Contains(b, "o2") {
		t.Errorf("known but unroutable: %d retry-after %q %s", res.StatusCode, res.Header.Get("Retry-After"), b)
	}
	f.o2.SetFault(sim.Fault{})
}

// TestOllamaNativeAPI checks /api/show, /api/version and management routes.
func TestOllamaNativeAPI(t *testing.T) {
	f := startFleet(t)
	load(t, site(f.endpoints()))
	waitRoutable(t, "o1", "o2", "lms", "vllm")
	res := post(t, "/olla/ollama/api/show", `{"model":"qwen2.5:0.5b"}`)
	if b := readAll(t, res); res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "o2" {
		t.Errorf("/api/show: %d from %q: %s", res.StatusCode, res.Header.Get("X-Olla-Endpoint"), b)
	}
	res, err := client.Get(base + "/olla/ollama/api/version")
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, res); res.StatusCode != 200 || !strings.Contains(b, "version") {
		t.Errorf("/api/version: %d %s", res.StatusCode, b)
	}
	for _, p := range []string{"/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"} {
		res := post(t, "/olla/ollama"+p, `{"model":"x"}`)
		if b := readAll(t, res); res.StatusCode != 501 || !strings.Contains(b, "directly") {
			t.Errorf("%s: %d %s", p, res.StatusCode, b)
		}
	}
}

// TestRoutingStrategies checks the optimistic fallback and the discovery
// strategy's refresh on a miss.
func TestRoutingStrategies(t *testing.T) {
	f := startFleet(t)
	t.Run("optimistic all", func(t *testing.T) {
		load(t, site(f.endpoints()+"\nmodel_registry {\n routing_strategy optimistic\n fallback_behavior all\n}\n"))
		waitRoutable(t, "o1", "o2", "lms", "vllm")
		res := post(t, "/olla/vllm/v1/chat/completions", `{"model":"not-listed-anywhere"}`)
		readAll(t, res)
		if res.Header.Get("X-Olla-Routing-Decision") != "fallback" || res.Header.Get("X-Olla-Endpoint") != "vllm" {
			t.Errorf("optimistic/all: decision %q endpoint %q status %d", res.Header.Get("X-Olla-Routing-Decision"),
				res.Header.Get("X-Olla-Endpoint"), res.StatusCode)
		}
	})
	t.Run("discovery refresh", func(t *testing.T) {
		load(t, site(f.endpoints()+"\nmodel_registry {\n routing_strategy discovery\n discovery_refresh_on_miss\n}\nmodel_discovery {\n interval 1h\n}\n"))
		waitRoutable(t, "o1", "o2", "lms", "vllm")
		f.o2.SetModels([]string{"qwen2.5:0.5b", "just-pulled:latest"})
		res := post(t, "/olla/ollama/api/chat", `{"model":"just-pulled","stream":false}`)
		readAll(t, res)
		if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "o2" {
			t.Errorf("discovery refresh on miss: %d from %q reason %q", res.StatusCode, res.Header.Get("X-Olla-Endpoint"),
				res.Header.Get("X-Olla-Routing-Reason"))
		}
	})
}
