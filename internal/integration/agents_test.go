package integration

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddy-olla/olla/internal/sim"
)

// claudeCodeRequest has the shape Claude Code 2.1.197 sends with its tools
// on (the texts are ours): system blocks with cache_control, a system
// message inside messages (its anthropic-beta names
// mid-conversation-system-2026-04-07), adaptive thinking, and fields chat
// completions has no place for (context_management, output_config).
const claudeCodeRequest = `{"model":"MODEL","max_tokens":32000,"stream":STREAM,
"system":[{"type":"text","text":"billing line"},{"type":"text","text":"You are a coding agent.","cache_control":{"type":"ephemeral"}}],
"messages":[
 {"role":"user","content":[{"type":"text","text":"<reminder>context</reminder>"},{"type":"text","text":"say hi","cache_control":{"type":"ephemeral"}}]},
 {"role":"system","content":"Agent types: claude, Explore"}],
"tools":[{"name":"Bash","description":"Run a command","input_schema":{"type":"object","properties":{"command":{"type":"string"}},"required":["command"]}}],
"metadata":{"user_id":"{\"session_id\":\"s1\"}"},
"thinking":{"type":"adaptive"},
"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},
"output_config":{"effort":"high"}}`

func claudeCodeBody(model string, stream bool) string {
	s := strings.ReplaceAll(claudeCodeRequest, "MODEL", model)
	return strings.ReplaceAll(s, "STREAM", map[bool]string{true: "true", false: "false"}[stream])
}

// TestAnthropicAgentShapes: Claude Code's request passes through unchanged
// to a native server and is translated for an OpenAI-compatible one, its
// mid-conversation system message an OpenAI system message in place, and
// what translation leaves out is named in X-Olla-Translation-Dropped.
func TestAnthropicAgentShapes(t *testing.T) {
	native := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"tiny"}, Name: "native"})
	oai := startSim(t, sim.Config{Kind: sim.OpenAI, Models: []string{"gpt-ish"}, Name: "oai"})
	load(t, site(endpointBlock("native", native.URL, "ollama")+endpointBlock("oai", oai.URL, "openai")))
	waitRoutable(t, "native", "oai")

	for _, stream := range []bool{false, true} {
		body := claudeCodeBody("tiny", stream)
		res := post(t, anthropicMessages+"?beta=true", body, "anthropic-beta", "mid-conversation-system-2026-04-07")
		out := readAll(t, res)
		if res.StatusCode != 200 || res.Header.Get("X-Olla-Mode") != "passthrough" || res.Header.Get("X-Olla-Translation-Dropped") != "" {
			t.Fatalf("passthrough (stream %v): %d mode %q dropped %q\n%s", stream, res.StatusCode,
				res.Header.Get("X-Olla-Mode"), res.Header.Get("X-Olla-Translation-Dropped"), out)
		}
		if rec, ok := native.LastRequestTo("/v1/messages"); !ok || string(rec.Body) != body {
			t.Fatalf("the native server got %q, want the body unchanged", rec.Body)
		}

		body = claudeCodeBody("gpt-ish", stream)
		res = post(t, anthropicMessages+"?beta=true", body)
		out = readAll(t, res)
		if res.StatusCode != 200 || res.Header.Get("X-Olla-Mode") != "translation" {
			t.Fatalf("translation (stream %v): %d mode %q\n%s", stream, res.StatusCode, res.Header.Get("X-Olla-Mode"), out)
		}
		if got, want := res.Header.Get("X-Olla-Translation-Dropped"), "context_management, output_config, cache_control, thinking"; got != want {
			t.Errorf("X-Olla-Translation-Dropped = %q, want %q", got, want)
		}
		if stream && (!strings.Contains(out, "event: message_stop") || !strings.Contains(out, "text_delta")) {
			t.Errorf("translated stream lacks text or message_stop:\n%s", out)
		}
		rec, ok := oai.LastRequestTo("/v1/chat/completions")
		if !ok {
			t.Fatal("the OpenAI server got no chat completion")
		}
		var sent struct {
			Messages []struct {
				Role    string `json:"role"`
				Content any    `json:"content"`
			} `json:"messages"`
			Tools []any `json:"tools"`
		}
		if err := json.Unmarshal(rec.Body, &sent); err != nil {
			t.Fatal(err)
		}
		roles := []string{}
		for _, m := range sent.Messages {
			roles = append(roles, m.Role)
		}
		if strings.Join(roles, ",") != "system,user,system" || sent.Messages[2].Content != "Agent types: claude, Explore" || len(sent.Tools) != 1 {
			t.Errorf("translated to roles %v, messages %+v; want system,user,system with the system message in place and the tool", roles, sent.Messages)
		}
	}

	// a role a newer client adds passes through; translation cannot carry it
	body := `{"model":"tiny","max_tokens":8,"messages":[{"role":"user","content":"hi"},{"role":"developer","content":"be brief"}]}`
	res := post(t, anthropicMessages, body)
	readAll(t, res)
	if rec, ok := native.LastRequestTo("/v1/messages"); res.StatusCode != 200 || !ok || string(rec.Body) != body {
		t.Fatalf("unknown role on passthrough: %d, backend got %q", res.StatusCode, rec.Body)
	}
	res = post(t, anthropicMessages, strings.Replace(body, "tiny", "gpt-ish", 1))
	m := decodeMessage(t, res)
	if res.StatusCode != 400 || !strings.Contains(m.Error.Message, `"developer"`) {
		t.Fatalf("unknown role on translation: %d %+v, want a 400 naming the role", res.StatusCode, m)
	}
	// an empty role is still refused
	res = post(t, anthropicMessages, `{"model":"tiny","max_tokens":8,"messages":[{"role":"","content":"hi"}]}`)
	if m := decodeMessage(t, res); res.StatusCode != 400 || !strings.Contains(m.Error.Message, "messages.0.role") {
		t.Fatalf("empty role: %d %+v", res.StatusCode, m)
	}
}

// sseEvents splits a Responses event stream into its event names, checking
// each data line's type and sequence number.
func sseEvents(t *testing.T, body string) []string {
	t.Helper()
	var names []string
	for i, block := range strings.Split(strings.TrimSpace(body), "\n\n") {
		name, data, ok := strings.Cut(block, "\ndata: ")
		var e struct {
			Type string `json:"type"`
			Seq  int    `json:"sequence_number"`
		}
		if !ok || json.Unmarshal([]byte(data), &e) != nil || "event: "+e.Type != name || e.Seq != i {
			t.Fatalf("event %d is not a Responses event: %q\nin %s", i, block, body)
		}
		names = append(names, e.Type)
	}
	return names
}

// TestResponsesNativeAndTranslated: POST /v1/responses goes as it came to a
// type that serves it (vLLM) and is translated to chat completions for the
// others (llama.cpp, a generic OpenAI-compatible server), streamed in the
// event order the openai SDK and Codex read; a broken backend stream ends
// in response.failed, never response.completed; what needs a store is a
// 501 naming why.
func TestResponsesNativeAndTranslated(t *testing.T) {
	vllm := startSim(t, sim.Config{Kind: sim.VLLM, Models: []string{"served"}, Name: "vllm", Tokens: 3})
	llama := startSim(t, sim.Config{Kind: sim.LlamaCpp, Models: []string{"local"}, Name: "llama", Tokens: 3})
	oai := startSim(t, sim.Config{Kind: sim.OpenAI, Models: []string{"plain"}, Name: "oai", Tokens: 3})
	load(t, site(endpointBlock("vllm", vllm.URL, "vllm")+endpointBlock("llama", llama.URL, "llamacpp")+endpointBlock("oai", oai.URL, "openai")))
	waitRoutable(t, "vllm", "llama", "oai")

	wantEvents := "response.created response.in_progress response.output_item.added response.content_part.added " +
		"response.output_text.delta response.output_text.delta response.output_text.delta response.output_text.done " +
		"response.content_part.done response.output_item.done response.completed"
	for _, tc := range []struct{ prefix, model, sim, mode string }{
		{"openai", "served", "vllm", "passthrough"},
		{"vllm", "served", "vllm", "passthrough"},
		{"proxy", "served", "vllm", "passthrough"},
		{"openai", "local", "llama", "translation"},
		{"llamacpp", "local", "llama", "translation"},
		{"proxy", "plain", "oai", "translation"},
	} {
		path := "/olla/" + tc.prefix + "/v1/responses"
		body := `{"model":"` + tc.model + `","instructions":"be brief","input":[{"type":"message","role":"developer","content":[{"type":"input_text","text":"rules"}]},{"role":"user","content":"hi"}],"store":false}`
		res := post(t, path, body)
		out := readAll(t, res)
		var r struct {
			Object, Status, Model string
			Output                []struct {
				Type    string
				Content []struct{ Type, Text string }
			}
		}
		if res.StatusCode != 200 || res.Header.Get("X-Sim-Name") != tc.sim || res.Header.Get("X-Olla-Mode") != tc.mode ||
			json.Unmarshal([]byte(out), &r) != nil || r.Object != "response" || r.Status != "completed" || r.Model != tc.model ||
			len(r.Output) != 1 || r.Output[0].Type != "message" || len(strings.Fields(r.Output[0].Content[0].Text)) != 3 {
			t.Fatalf("%s %s: %d from %q mode %q: %s", path, tc.model, res.StatusCode, res.Header.Get("X-Sim-Name"), res.Header.Get("X-Olla-Mode"), out)
		}
		res = post(t, path, strings.Replace(body, `"store":false`, `"stream":true`, 1))
		out = readAll(t, res)
		if got := strings.Join(sseEvents(t, out), " "); res.StatusCode != 200 || got != wantEvents || res.Header.Get("X-Olla-Mode") != tc.mode {
			t.Fatalf("%s %s stream: %d mode %q events\n%s\nwant\n%s", path, tc.model, res.StatusCode, res.Header.Get("X-Olla-Mode"), got, wantEvents)
		}
	}
	if llama.Requests("/v1/responses") != 0 || oai.Requests("/v1/responses") != 0 {
		t.Error("a backend without the Responses API was sent /v1/responses")
	}
	rec, _ := llama.LastRequestTo("/v1/chat/completions")
	if !strings.Contains(string(rec.Body), `"messages":[{"role":"system","content":"be brief"},{"role":"system","content":"rules"},{"role":"user","content":"hi"}]`) {
		t.Errorf("translated body %s", rec.Body)
	}

	// a broken backend stream ends in response.failed
	oai.SetFault(sim.Fault{Mode: sim.FaultDropMidStream, AfterChunks: 2, Path: "/v1/chat/completions", Times: 1})
	res := post(t, "/olla/openai/v1/responses", `{"model":"plain","input":"hi","stream":true}`)
	names := sseEvents(t, readAll(t, res))
	if last := names[len(names)-1]; last != "response.failed" || strings.Contains(strings.Join(names, " "), "response.completed") {
		t.Fatalf("broken stream events %v; want response.failed last and no response.completed", names)
	}

	// a backend's error speaks OpenAI's envelope with its status
	oai.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: 429, Path: "/v1/chat/completions", Times: 1})
	res = post(t, "/olla/openai/v1/responses", `{"model":"plain","input":"hi"}`)
	var refusal struct {
		Error struct{ Message, Type string } `json:"error"`
	}
	raw := readAll(t, res)
	if res.StatusCode != 429 || json.Unmarshal([]byte(raw), &refusal) != nil || refusal.Error.Type != "rate_limit_error" {
		t.Fatalf("backend 429 became %d %s", res.StatusCode, raw)
	}

	for _, tc := range []struct{ path, body, mentions string }{
		{"/olla/openai/v1/responses/resp_123", ``, "stored response"},
		{"/olla/openai/v1/responses", `{"model":"plain","input":"hi","previous_response_id":"resp_1"}`, "previous_response_id"},
		{"/olla/vllm/v1/responses", `{"model":"served","input":"hi","previous_response_id":"resp_1"}`, "not stored"},
	} {
		res := post(t, tc.path, tc.body)
		raw := readAll(t, res)
		if json.Unmarshal([]byte(raw), &refusal) != nil || res.StatusCode != 501 || !strings.Contains(refusal.Error.Message, tc.mentions) {
			t.Errorf("%s %s: %d %s; want 501 mentioning %q", tc.path, tc.body, res.StatusCode, raw, tc.mentions)
		}
	}
}
