package profiles

import (
	"bytes"
	"fmt"
	"testing"
)

// TestResidencyWrittenFixtures reads bodies written from each engine's
// documented residency route (profiles/testdata), through the profile's
// own load surfaces.
func TestResidencyWrittenFixtures(t *testing.T) {
	tests := []struct {
		file, typ string
		surface   int // index in the profile's LoadSurfaces
		want      want
		resident  string // a model Resident must report
	}{
		{"omlx_v1_models_status.json", "omlx", 0, want{loaded: []string{"bge-m3-mlx", "qwen3-8b-mlx-4bit"}}, "Qwen3-8B-MLX-4bit"},
		// a runner still loading is not resident yet
		{"dmr_engines_ps.json", "docker-model-runner", 0, want{loaded: []string{"ai/mxbai-embed-large", "ai/smollm2:360m-q4_k_m"}}, "ai/smollm2:360M-Q4_K_M"},
		// vllm-mlx serves its one model: counts from /v1/status, residency by the type's rule
		{"vllm_mlx_v1_status.json", "vllm-mlx", 0, want{running: n(1), waiting: n(3)}, "anything-it-lists"},
		{"llamacpp_router_models.json", "llamacpp", 2, want{loaded: []string{"ggml-org/gemma-3-4b-it-gguf:q4_k_m"}}, "ggml-org/gemma-3-4b-it-GGUF:Q4_K_M"},
		{"lemonade_api_v1_health.json", "lemonade", 0, want{loaded: []string{"nomic-embed-text-v1-gguf", "qwen3-0.6b-gguf"}}, "Qwen3-0.6B-GGUF"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			p := mustLookup(t, tt.typ)
			got, err := p.ParseSignals(p.LoadSurfaces[tt.surface], testdata(t, tt.file))
			checkSignals(t, got, err, tt.want)
			if r, known := got.Resident(tt.resident); !r || !known {
				t.Errorf("Resident(%q) = %v, %v", tt.resident, r, known)
			}
		})
	}
}

// TestLlamaRouterResidency: a router-mode /models replaces "serves what it
// lists" with the loaded set; a single-model /models (no status) leaves the
// slots' signals and the rule as they were.
func TestLlamaRouterResidency(t *testing.T) {
	p := mustLookup(t, "llamacpp")
	slots, err := p.ParseSignals(p.LoadSurfaces[0], testdata(t, "llamacpp_slots_busy.json"))
	if err != nil || !slots.ServesListed {
		t.Fatalf("slots: %v, ServesListed %v", err, slots.ServesListed)
	}
	router, err := p.ParseSignals(p.LoadSurfaces[2], testdata(t, "llamacpp_router_models.json"))
	if err != nil {
		t.Fatal(err)
	}
	merged := slots.WithResidency(router)
	if merged.ServesListed || !merged.SlotsKnown || merged.SlotsTotal != 4 {
		t.Errorf("merged = %+v", merged)
	}
	if r, known := merged.Resident("ggml-org/SmolLM3-3B-GGUF:Q4_K_M"); r || !known {
		t.Errorf("an unloaded router model is resident: %v %v", r, known)
	}
	single, err := p.ParseSignals(p.LoadSurfaces[2], fixtureBody(t, "llamacpp/GET_models.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if single.LoadedKnown {
		t.Errorf("a single-model llama-server's /models read as a loaded set: %v", single.LoadedModels())
	}
	if kept := slots.WithResidency(single); !kept.ServesListed {
		t.Error("a single-model /models took away 'serves what it lists'")
	}
}

// TestResidencyBadInput: lists past the bound are refused whole (a backend
// claiming 100,000 resident models), other junk is an error, never a panic.
func TestResidencyBadInput(t *testing.T) {
	many := func(head, entry, tail string, k int) []byte {
		var b bytes.Buffer
		b.WriteString(head)
		for i := range k {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, entry, i)
		}
		b.WriteString(tail)
		return b.Bytes()
	}
	tests := []struct {
		name, format string
		body         []byte
		wantErr      string
	}{
		{"omlx 100000", SignalsOMLXStatus, many(`{"models":[`, `{"id":"m%d","loaded":true}`, `]}`, 100000), "more than 1024"},
		{"dmr 100000", SignalsDMRPS, many(`[`, `{"model_name":"m%d"}`, `]`, 100000), "more than 1024"},
		{"router 100000", SignalsLlamaModels, many(`{"data":[`, `{"id":"m%d","status":{"value":"loaded"}}`, `]}`, 100000), "more than 1024"},
		{"lemonade 100000", SignalsLemonadeHealth, many(`{"status":"ok","all_models_loaded":[`, `{"model_name":"m%d"}`, `]}`, 100000), "more than 1024"},
		{"omlx no list", SignalsOMLXStatus, []byte(`{"status":"ok"}`), "no \"models\""},
		{"omlx html", SignalsOMLXStatus, []byte(`<html>`), "not the expected JSON"},
		{"dmr object", SignalsDMRPS, []byte(`{"error":"x"}`), "not the expected JSON"},
		{"dmr null", SignalsDMRPS, []byte(`null`), "not a list"},
		{"vllm-mlx nothing", SignalsVLLMMLXStatus, []byte(`{}`), "no status"},
		{"router not a list", SignalsLlamaModels, []byte(`{"data":{}}`), "not the expected JSON"},
		{"lemonade empty", SignalsLemonadeHealth, []byte(`{}`), "no status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSignals(tt.format, tt.body)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	// counts a backend reports are capped, not trusted
	s, err := ParseSignals(SignalsVLLMMLXStatus, []byte(`{"status":"running","num_running":1e300,"num_waiting":-3}`))
	if err != nil || s.RunningKnown || s.WaitingKnown {
		t.Errorf("absurd counts read: %+v %v", s, err)
	}
}

func TestCanonicalAndUpstreamPaths(t *testing.T) {
	dmr := mustLookup(t, "dmr")
	for in, want := range map[string]string{
		"/engines/v1/chat/completions":           "/v1/chat/completions",
		"/engines/llama.cpp/v1/chat/completions": "/v1/chat/completions",
		"/engines/vllm/v1/models":                "/v1/models",
		"/engines/ps":                            "/engines/ps",
		"/engines/../v1/models":                  "/engines/../v1/models",
		"/anthropic/v1/messages":                 "/v1/messages",
		"/anthropic/v1/messages/count_tokens":    "/v1/messages/count_tokens",
		"/anthropic/v1/models":                   "/anthropic/v1/models",
		"/v1/chat/completions":                   "/v1/chat/completions",
		"/api/chat":                              "/api/chat",
	} {
		if got := CanonicalAPIPath(in); got != want {
			t.Errorf("CanonicalAPIPath(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"/v1/chat/completions":      "/engines/v1/chat/completions",
		"/v1/models":                "/engines/v1/models",
		"/v1/messages":              "/anthropic/v1/messages",
		"/v1/messages/count_tokens": "/anthropic/v1/messages/count_tokens",
		"/anthropic/v1/messages":    "/anthropic/v1/messages",
		"/engines/ps":               "/engines/ps",
		"/models":                   "/models",
	} {
		if got := dmr.UpstreamPath(in); got != want {
			t.Errorf("dmr UpstreamPath(%q) = %q, want %q", in, got, want)
		}
	}
	for _, p := range All() {
		if p.Name != "docker-model-runner" && (p.MapsPaths() || p.UpstreamPath("/v1/chat/completions") != "/v1/chat/completions") {
			t.Errorf("%s maps paths", p.Name)
		}
	}
}
