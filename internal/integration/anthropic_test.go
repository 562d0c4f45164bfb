package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-olla/olla/internal/sim"
)

// The Anthropic Messages API under /olla/anthropic/: passthrough to
// backends that speak it (the Ollama and llama.cpp simulators serve
// /v1/messages as the captured servers do), translation for the others (the
// OpenAI-compatible simulator), every answer naming its mode.

const anthropicMessages = "/olla/anthropic/v1/messages"

func messagesBody(model string, stream bool) string {
	s := ""
	if stream {
		s = `"stream":true,`
	}
	return `{"model":"` + model + `","max_tokens":16,` + s + `"messages":[{"role":"user","content":"hi"}]}`
}

// translatorCounts reads the counters tests compare before and after.
type translatorCounts struct {
	Name        string `json:"translator_name"`
	Total       int64  `json:"total_requests"`
	OK          int64  `json:"successful_requests"`
	Failed      int64  `json:"failed_requests"`
	Passthrough int64  `json:"passthrough_requests"`
	Translation int64  `json:"translation_requests"`
	Rejected    int64  `json:"rejected_requests"`
	Streaming   int64  `json:"streaming_requests"`
	NoNative    int64  `json:"fallback_no_compatible_endpoints"`
	NativeOut   int64  `json:"fallback_cannot_passthrough"`
}

// translatorStats reads the Anthropic translator's counts.
func translatorStats(t *testing.T) translatorCounts { return translatorNamed(t, "anthropic") }

// translatorNamed reads one translator's counts from
// /internal/stats/translators, which lists the Anthropic one and the
// Responses one, in that order.
func translatorNamed(t *testing.T, name string) translatorCounts {
	t.Helper()
	res, err := client.Get(base + "/internal/stats/translators")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Translators []translatorCounts `json:"translators"`
		Summary     map[string]any     `json:"summary"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if len(body.Translators) != 2 || body.Translators[0].Name != "anthropic" || body.Translators[1].Name != "responses" {
		t.Fatalf("translators = %+v, want anthropic and responses", body.Translators)
	}
	for _, tr := range body.Translators {
		if tr.Name == name {
			return tr
		}
	}
	t.Fatalf("no translator %q", name)
	return translatorCounts{}
}

// anthropicMessage is the part of a message answer tests read.
type anthropicMessage struct {
	Type    string `json:"type"`
	Model   string `json:"model"`
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	StopReason string `json:"stop_reason"`
	Error      struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

func decodeMessage(t *testing.T, res *http.Response) anthropicMessage {
	t.Helper()
	body := readAll(t, res)
	var m anthropicMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, body)
	}
	return m
}

func TestAnthropicPassthroughAndTranslation(t *testing.T) {
	native := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"tiny"}, Name: "native"})
	oai := startSim(t, sim.Config{Kind: sim.OpenAI, Models: []string{"gpt-ish"}, Name: "oai"})
	load(t, site(endpointBlock("native", native.URL, "ollama")+endpointBlock("oai", oai.URL, "openai")))
	waitRoutable(t, "native", "oai")

	before := translatorStats(t)

	// passthrough: the body reaches the native route unchanged
	body := messagesBody("tiny", false)
	res := post(t, anthropicMessages, body, "anthropic-version", "2023-06-01", "x-api-key", "sk-ant-client-secret")
	if got := res.Header.Get("X-Olla-Mode"); got != "passthrough" {
		t.Errorf("X-Olla-Mode = %q, want passthrough", got)
	}
	m := decodeMessage(t, res)
	if res.StatusCode != 200 || m.Type != "message" || len(m.Content) == 0 || m.Content[0].Type != "text" {
		t.Fatalf("passthrough answer %d %+v", res.StatusCode, m)
	}
	rec, ok := native.LastRequestTo("/v1/messages")
	if !ok || string(rec.Body) != body || rec.Header.Get("Anthropic-Version") != "2023-06-01" {
		t.Fatalf("native backend got %q (%v), want the body unchanged with anthropic-version", rec.Body, ok)
	}
	if rec.Header.Get("X-Api-Key") != "" {
		t.Error("the client's x-api-key reached the backend")
	}

	// translation: the OpenAI backend sees chat completions, the client a message
	res = post(t, anthropicMessages, messagesBody("gpt-ish", false))
	if got := res.Header.Get("X-Olla-Mode"); got != "translation" {
		t.Errorf("X-Olla-Mode = %q, want translation", got)
	}
	m = decodeMessage(t, res)
	if res.StatusCode != 200 || m.Type != "message" || m.Model != "gpt-ish" || len(m.Content) != 1 || m.Content[0].Text == "" ||
		m.StopReason != "end_turn" {
		t.Fatalf("translated answer %d %+v", res.StatusCode, m)
	}
	if res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type = %q", res.Header.Get("Content-Type"))
	}
	rec, ok = oai.LastRequestTo("/v1/chat/completions")
	if !ok || !strings.Contains(string(rec.Body), `"messages":[{"role":"user","content":"hi"}]`) {
		t.Fatalf("OpenAI backend got %q (%v), want a chat completion", rec.Body, ok)
	}
	if oai.Requests("/v1/messages") != 0 {
		t.Error("the OpenAI backend was sent /v1/messages")
	}

	after := translatorStats(t)
	if after.Passthrough-before.Passthrough != 1 || after.Translation-before.Translation != 1 ||
		after.OK-before.OK != 2 || after.NoNative-before.NoNative != 1 {
		t.Errorf("stats moved from %+v to %+v; want one passthrough, one translation (no native endpoint), two successes", before, after)
	}

	// the Anthropic model list spans both
	res, err := client.Get(base + "/olla/anthropic/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct {
			Type, ID, DisplayName, CreatedAt string
		} `json:"data"`
		HasMore bool    `json:"has_more"`
		FirstID *string `json:"first_id"`
		LastID  *string `json:"last_id"`
	}
	raw := readAll(t, res)
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || len(list.Data) != 2 || list.Data[0].Type != "model" || list.FirstID == nil || list.LastID == nil ||
		res.Header.Get("X-Olla-Mode") == "" {
		t.Fatalf("models list %d %s", res.StatusCode, raw)
	}
	ids := list.Data[0].ID + "," + list.Data[1].ID
	if !strings.Contains(ids, "tiny") || !strings.Contains(ids, "gpt-ish") {
		t.Errorf("models list ids %s", ids)
	}
}

// TestAnthropicTranslatedStream: both engines drive the stream translator
// the same way, a broken backend stream ends with an error event and never
// a message_stop, and garbage in place of a completion is a 502 api_error.
func TestAnthropicTranslatedStream(t *testing.T) {
	for _, engine := range engineNames {
		t.Run(engine, func(t *testing.T) {
			oai := startSim(t, sim.Config{Kind: sim.OpenAI, Models: []string{"gpt-ish"}, Tokens: 4})
			load(t, site("engine "+engine+"\n"+endpointBlock("oai", oai.URL, "openai")))
			waitRoutable(t, "oai")

			res := post(t, anthropicMessages, messagesBody("gpt-ish", true))
			if res.StatusCode != 200 || res.Header.Get("X-Olla-Mode") != "translation" ||
				!strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
				t.Fatalf("stream answer %d %v", res.StatusCode, res.Header)
			}
			events := sseEventNames(t, res)
			want := []string{"message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
				"content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
			if strings.Join(events, ",") != strings.Join(want, ",") {
				t.Fatalf("events %v, want %v", events, want)
			}

			// the backend drops the stream: an error event, no message_stop
			oai.SetFault(sim.Fault{Mode: sim.FaultDropMidStream, AfterChunks: 3, Path: "/v1/chat/completions", Times: 1})
			res = post(t, anthropicMessages, messagesBody("gpt-ish", true))
			events = sseEventNames(t, res)
			if len(events) == 0 || events[len(events)-1] != "error" || strings.Contains(strings.Join(events, ","), "message_stop") {
				t.Fatalf("broken stream became events %v; want an error event last and no message_stop", events)
			}

			// garbage instead of a completion: 502 api_error, not a 200
			oai.SetFault(sim.Fault{Mode: sim.FaultMalformedModels, Path: "/v1/chat/completions", Times: 1})
			res = post(t, anthropicMessages, messagesBody("gpt-ish", false))
			m := decodeMessage(t, res)
			if res.StatusCode != http.StatusBadGateway || m.Type != "error" || m.Error.Type != "api_error" ||
				res.Header.Get("Request-Id") == "" || res.Header.Get("X-Olla-Mode") != "translation" {
				t.Fatalf("garbage answer became %d %+v %v", res.StatusCode, m, res.Header)
			}
		})
	}
}

// sseEventNames reads a whole SSE body and returns its event names.
func sseEventNames(t *testing.T, res *http.Response) []string {
	t.Helper()
	var names []string
	for _, line := range strings.Split(readAll(t, res), "\n") {
		if name, ok := strings.CutPrefix(line, "event: "); ok {
			names = append(names, name)
		}
	}
	return names
}

// TestAnthropicFailoverAcrossModes: the native endpoint is tried first; when
// it fails before answering, the translated one answers the same request.
func TestAnthropicFailoverAcrossModes(t *testing.T) {
	native := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"tiny"}, Name: "native"})
	oai := startSim(t, sim.Config{Kind: sim.OpenAI, Models: []string{"tiny"}, Name: "oai"})
	load(t, site("load_balancer round-robin\n"+endpointBlock("native", native.URL, "ollama")+endpointBlock("oai", oai.URL, "openai")))
	waitRoutable(t, "native", "oai")

	// passthrough first, whatever the balancer's turn
	for i := 0; i < 3; i++ {
		res := post(t, anthropicMessages, messagesBody("tiny", false))
		readAll(t, res)
		if res.Header.Get("X-Olla-Mode") != "passthrough" || res.Header.Get("X-Sim-Name") != "native" {
			t.Fatalf("request %d went to %s in mode %s; want the native endpoint first", i,
				res.Header.Get("X-Sim-Name"), res.Header.Get("X-Olla-Mode"))
		}
	}

	before := translatorStats(t)
	native.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: 503, Path: "/v1/messages", Times: 1})
	res := post(t, anthropicMessages, messagesBody("tiny", true))
	events := sseEventNames(t, res)
	if res.StatusCode != 200 || res.Header.Get("X-Olla-Mode") != "translation" || res.Header.Get("X-Sim-Name") != "oai" ||
		len(events) == 0 || events[len(events)-1] != "message_stop" {
		t.Fatalf("failover answer %d mode %q from %q, events %v", res.StatusCode, res.Header.Get("X-Olla-Mode"),
			res.Header.Get("X-Sim-Name"), events)
	}
	after := translatorStats(t)
	if after.NativeOut-before.NativeOut != 1 || after.Translation-before.Translation != 1 {
		t.Errorf("stats moved from %+v to %+v; want one translation with fallback_cannot_passthrough", before, after)
	}
}

// TestAnthropicBadInput: every refusal is an Anthropic envelope naming the
// field, with request-id and X-Olla-Mode.
func TestAnthropicBadInput(t *testing.T) {
	native := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"tiny"}})
	oai := startSim(t, sim.Config{Kind: sim.OpenAI, Models: []string{"gpt-ish"}})
	load(t, site("request_limits {\n max_body_size 4096\n}\n"+endpointBlock("native", native.URL, "ollama")+endpointBlock("oai", oai.URL, "openai")))
	waitRoutable(t, "native", "oai")

	before := translatorStats(t)
	cases := []struct {
		name, method, path, body string
		status                   int
		typ, mentions            string
	}{
		{"no model", "POST", anthropicMessages, `{"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "model"},
		{"model not a string", "POST", anthropicMessages, `{"model":7,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "model"},
		{"no messages", "POST", anthropicMessages, `{"model":"tiny","max_tokens":8,"messages":[]}`, 400, "invalid_request_error", "messages"},
		{"max_tokens 0", "POST", anthropicMessages, `{"model":"tiny","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "max_tokens"},
		{"temperature out of range", "POST", anthropicMessages, `{"model":"tiny","max_tokens":8,"temperature":7,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "temperature"},
		{"top_p out of range", "POST", anthropicMessages, `{"model":"tiny","max_tokens":8,"top_p":-1,"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request_error", "top_p"},
		{"not JSON", "POST", anthropicMessages, `{"model":`, 400, "invalid_request_error", "JSON"},
		{"unknown model", "POST", anthropicMessages, messagesBody("nope", false), 404, "not_found_error", "nope"},
		{"unknown block on translation", "POST", anthropicMessages,
			`{"model":"gpt-ish","max_tokens":8,"messages":[{"role":"user","content":[{"type":"hologram","data":"x"}]}]}`, 400, "invalid_request_error", "hologram"},
		{"huge body", "POST", anthropicMessages, `{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`, 413, "request_too_large", "limit"},
		{"GET messages", "GET", anthropicMessages, "", 405, "api_error", "POST"},
		{"unknown route", "GET", "/olla/anthropic/v1/complete", "", 404, "not_found_error", "no such route"},
		{"unknown model entry", "GET", "/olla/anthropic/v1/models/nope", "", 404, "not_found_error", "nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			m := decodeMessage(t, res)
			if res.StatusCode != tc.status || m.Type != "error" || m.Error.Type != tc.typ || !strings.Contains(m.Error.Message, tc.mentions) {
				t.Fatalf("%d %+v; want %d %s mentioning %q", res.StatusCode, m, tc.status, tc.typ, tc.mentions)
			}
			if id := res.Header.Get("Request-Id"); id == "" || id != m.RequestID {
				t.Errorf("request-id header %q, body request_id %q", id, m.RequestID)
			}
			if res.Header.Get("X-Olla-Mode") == "" {
				t.Error("no X-Olla-Mode")
			}
		})
	}

	// an unknown block type is kept on passthrough: the native server decides
	body := `{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":[{"type":"hologram","data":"x"},{"type":"text","text":"hi"}]}]}`
	res := post(t, anthropicMessages, body)
	readAll(t, res)
	if rec, ok := native.LastRequestTo("/v1/messages"); res.StatusCode != 200 || !ok || string(rec.Body) != body {
		t.Fatalf("unknown block on passthrough: %d, backend got %q", res.StatusCode, rec.Body)
	}
	after := translatorStats(t)
	if after.Rejected-before.Rejected < 8 {
		t.Errorf("rejected went from %d to %d", before.Rejected, after.Rejected)
	}

	// a backend's own error, translated: the OpenAI envelope becomes Anthropic's
	oai.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: 429, Path: "/v1/chat/completions", Times: 1})
	res = post(t, anthropicMessages, messagesBody("gpt-ish", true))
	m := decodeMessage(t, res)
	if res.StatusCode != 429 || m.Error.Type != "rate_limit_error" || res.Header.Get("Request-Id") == "" {
		t.Fatalf("backend 429 became %d %+v", res.StatusCode, m)
	}
}

// TestAnthropicCountTokens: llama.cpp counts natively; others get the
// estimate, labelled by X-Olla-Token-Count.
func TestAnthropicCountTokens(t *testing.T) {
	llama := startSim(t, sim.Config{Kind: sim.LlamaCpp, Models: []string{"counter"}})
	native := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"tiny"}})
	load(t, site(endpointBlock("llama", llama.URL, "llamacpp")+endpointBlock("native", native.URL, "ollama")))
	waitRoutable(t, "llama", "native")

	for _, tc := range []struct{ model, source, mode string }{
		{"counter", "backend", "passthrough"},
		{"tiny", "estimate", "translation"},
	} {
		res := post(t, anthropicMessages+"/count_tokens", `{"model":"`+tc.model+`","messages":[{"role":"user","content":"how many tokens is this"}]}`)
		raw := readAll(t, res)
		var body struct {
			InputTokens int `json:"input_tokens"`
		}
		if err := json.Unmarshal([]byte(raw), &body); err != nil || res.StatusCode != 200 || body.InputTokens < 1 {
			t.Fatalf("%s: count_tokens %d %s", tc.model, res.StatusCode, raw)
		}
		if got := res.Header.Get("X-Olla-Token-Count"); got != tc.source {
			t.Errorf("%s: X-Olla-Token-Count = %q, want %q", tc.model, got, tc.source)
		}
		if got := res.Header.Get("X-Olla-Mode"); got != tc.mode {
			t.Errorf("%s: X-Olla-Mode = %q, want %q", tc.model, got, tc.mode)
		}
	}
	if llama.Requests("/v1/messages/count_tokens") != 1 || native.Requests("/v1/messages/count_tokens") != 0 {
		t.Error("count_tokens went to the wrong backend")
	}
	// the backend cannot count: the estimate stands in, labelled
	llama.SetFault(sim.Fault{Mode: sim.FaultError, Path: "/v1/messages/count_tokens", Times: 1})
	res := post(t, anthropicMessages+"/count_tokens", `{"model":"counter","messages":[{"role":"user","content":"how many tokens is this"}]}`)
	raw := readAll(t, res)
	if res.StatusCode != 200 || res.Header.Get("X-Olla-Token-Count") != "estimate" || !strings.Contains(raw, `"input_tokens":`) ||
		res.Header.Get("Request-Id") != "" {
		t.Fatalf("count_tokens on a failing backend: %d %v %s", res.StatusCode, res.Header, raw)
	}
	res = post(t, anthropicMessages+"/count_tokens", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`)
	if m := decodeMessage(t, res); res.StatusCode != 404 || m.Error.Type != "not_found_error" {
		t.Fatalf("unknown model count_tokens %d %+v", res.StatusCode, m)
	}
}

// TestAnthropicAliasesAndLimits: an alias is renamed to each endpoint's own
// name in both modes, and a refusal before routing (a rate limit) still
// names the mode and speaks Anthropic's envelope.
func TestAnthropicAliasesAndLimits(t *testing.T) {
	native := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"tiny:latest"}, Name: "native"})
	oai := startSim(t, sim.Config{Kind: sim.OpenAI, Models: []string{"small"}, Name: "oai"})
	load(t, site(endpointBlock("native", native.URL, "ollama")+endpointBlock("oai", oai.URL, "openai")+
		"\naliases {\n claude-local tiny:latest small\n}\n"))
	waitRoutable(t, "native", "oai")

	res := post(t, anthropicMessages, messagesBody("claude-local", false))
	m := decodeMessage(t, res)
	if res.StatusCode != 200 || res.Header.Get("X-Olla-Mode") != "passthrough" || len(res.Header.Values("X-Olla-Mode")) != 1 {
		t.Fatalf("alias on passthrough: %d %v %+v", res.StatusCode, res.Header.Values("X-Olla-Mode"), m)
	}
	if rec, _ := native.LastRequestTo("/v1/messages"); !strings.Contains(string(rec.Body), `"model":"tiny:latest"`) {
		t.Errorf("native backend got model %s, want tiny:latest", rec.Body)
	}

	// the native endpoint fails: the translated one gets its own name
	native.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: 502, Path: "/v1/messages", Times: 1})
	res = post(t, anthropicMessages, messagesBody("claude-local", false))
	m = decodeMessage(t, res)
	if res.StatusCode != 200 || res.Header.Get("X-Olla-Mode") != "translation" || len(res.Header.Values("X-Olla-Mode")) != 1 ||
		m.Model != "claude-local" {
		t.Fatalf("alias on translation: %d %v %+v", res.StatusCode, res.Header.Values("X-Olla-Mode"), m)
	}
	if rec, _ := oai.LastRequestTo("/v1/chat/completions"); !strings.Contains(string(rec.Body), `"model":"small"`) {
		t.Errorf("OpenAI backend got %s, want model small", rec.Body)
	}

	// a rate limit answers before routing: still Anthropic's envelope and a mode
	load(t, site(endpointBlock("native", native.URL, "ollama")+"\nrate_limits {\n per_ip_requests_per_minute 1\n burst_size 1\n}\n"))
	waitRoutable(t, "native")
	var last *http.Response
	for i := 0; i < 3; i++ {
		last = post(t, anthropicMessages, messagesBody("tiny", false))
		if last.StatusCode == http.StatusTooManyRequests {
			break
		}
		readAll(t, last)
	}
	m = decodeMessage(t, last)
	if last.StatusCode != http.StatusTooManyRequests || m.Error.Type != "rate_limit_error" || last.Header.Get("X-Olla-Mode") == "" ||
		last.Header.Get("Request-Id") == "" {
		t.Fatalf("rate limited: %d %+v %v", last.StatusCode, m, last.Header)
	}
}

// TestAnthropicFullNativeTier: a native endpoint at its max_concurrency
// does not hold a request back from a translated endpoint with room, with
// or without a queue.
func TestAnthropicFullNativeTier(t *testing.T) {
	for _, queue := range []string{"", "\nqueue {\n max_wait 10s\n}\n"} {
		native := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"tiny"}, Name: "native"})
		oai := startSim(t, sim.Config{Kind: sim.OpenAI, Models: []string{"tiny"}, Name: "oai"})
		load(t, site(endpointBlock("native", native.URL, "ollama", "max_concurrency 1")+endpointBlock("oai", oai.URL, "openai")+queue))
		waitRoutable(t, "native", "oai")

		// hold the native endpoint's one slot with a slow stream
		native.SetTiming(0, 2, 1000)
		held := post(t, anthropicMessages, messagesBody("tiny", true))
		if held.Header.Get("X-Olla-Mode") != "passthrough" {
			t.Fatalf("first request in mode %q", held.Header.Get("X-Olla-Mode"))
		}
		res := post(t, anthropicMessages, messagesBody("tiny", false))
		m := decodeMessage(t, res)
		held.Body.Close()
		if res.StatusCode != 200 || res.Header.Get("X-Olla-Mode") != "translation" || res.Header.Get("X-Sim-Name") != "oai" || m.Type != "message" {
			t.Fatalf("queue %q: with the native slot taken: %d mode %q from %q %+v", queue, res.StatusCode,
				res.Header.Get("X-Olla-Mode"), res.Header.Get("X-Sim-Name"), m)
		}
	}
}
