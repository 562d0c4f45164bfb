package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// warmModels reads an endpoint's warm models from /internal/status/endpoints.
func warmModels(t testing.TB, name string) (warm []string, serves bool, problem string) {
	t.Helper()
	var body struct {
		Endpoints []struct {
			Name    string `json:"name"`
			Signals *struct {
				Warm    []string `json:"warm_models"`
				Serves  bool     `json:"serves_listed"`
				Problem string   `json:"problem"`
			} `json:"signals"`
		} `json:"endpoints"`
	}
	getJSON(t, "/internal/status/endpoints", &body)
	for _, e := range body.Endpoints {
		if e.Name == name && e.Signals != nil {
			return e.Signals.Warm, e.Signals.Serves, e.Signals.Problem
		}
	}
	return nil, false, ""
}

func containsAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// TestNewBackendTypes runs vllm-mlx, Docker Model Runner and oMLX through
// real Caddy against their simulators: discovery, a chat through each API
// flavour each serves (OpenAI plain and streamed, Anthropic passthrough to
// its own path, Responses where native), the listing formats, and
// residency feeding the warm signal.
func TestNewBackendTypes(t *testing.T) {
	mlx := startSim(t, sim.Config{Kind: sim.VLLMMLX, Models: []string{"mlx-community/Qwen3-8B-4bit"}, Name: "mlx"})
	dmr := startSim(t, sim.Config{Kind: sim.DockerModelRunner, Models: []string{"ai/smollm2", "ai/qwen3"}, Name: "dmr"})
	omlx := startSim(t, sim.Config{Kind: sim.OMLX, Models: []string{"Qwen3-8B-MLX-4bit", "gemma-3-4b-it"}, Name: "omlx"})
	load(t, site(endpointBlock("mlx", mlx.URL, "vllm-mlx", "\t\t\tload_interval 100ms")+
		endpointBlock("dmr", dmr.URL, "dmr", "\t\t\tload_interval 100ms")+
		endpointBlock("omlx", omlx.URL, "omlx", "\t\t\tload_interval 100ms")))
	waitRoutable(t, "mlx", "dmr", "omlx")

	st := endpointsStatus(t)
	for name, typ := range map[string]string{"mlx": "vllm-mlx", "dmr": "docker-model-runner", "omlx": "omlx"} {
		if st[name].Type != typ {
			t.Errorf("%s: type %q, want %q", name, st[name].Type, typ)
		}
	}
	if st["dmr"].ModelCount != 2 || st["omlx"].ModelCount != 2 || st["mlx"].ModelCount != 1 {
		t.Errorf("model counts: dmr %d omlx %d mlx %d", st["dmr"].ModelCount, st["omlx"].ModelCount, st["mlx"].ModelCount)
	}
	// Docker Model Runner was discovered at /engines/v1/models and health-checked at /
	if dmr.Sim.Requests("/") == 0 || dmr.Sim.Stats().ByPath["GET /v1/models"] == 0 {
		t.Errorf("dmr probes: %v", dmr.Sim.Stats().ByPath)
	}

	chats := []struct {
		sim         *sim.Server
		path, model string
	}{
		{mlx, "/olla/vllm-mlx/v1/chat/completions", "mlx-community/Qwen3-8B-4bit"},
		{dmr, "/olla/dmr/v1/chat/completions", "ai/smollm2"},
		// a client configured with Docker Model Runner's own base URL
		{dmr, "/olla/dmr/engines/v1/chat/completions", "ai/qwen3"},
		{dmr, "/olla/docker-model-runner/engines/llama.cpp/v1/chat/completions", "ai/qwen3"},
		{omlx, "/olla/omlx/v1/chat/completions", "gemma-3-4b-it"},
		{dmr, "/olla/openai/v1/chat/completions", "ai/smollm2"},
		{omlx, "/olla/proxy/v1/chat/completions", "Qwen3-8B-MLX-4bit"},
	}
	for _, c := range chats {
		for _, stream := range []bool{false, true} {
			body := `{"model":"` + c.model + `","messages":[{"role":"user","content":"hi"}],"stream":` + map[bool]string{false: "false", true: "true"}[stream] + `}`
			res := post(t, c.path, body)
			b := readAll(t, res)
			if res.StatusCode != 200 || res.Header.Get("X-Sim-Name") != c.sim.Sim.Name() {
				t.Errorf("%s %s stream=%v: %d from %q: %s", c.path, c.model, stream, res.StatusCode, res.Header.Get("X-Sim-Name"), b)
				continue
			}
			if stream && !strings.Contains(b, "data: [DONE]") {
				t.Errorf("%s: stream not ended with [DONE]: %q", c.path, b)
			}
		}
	}

	// Anthropic: all three speak Messages natively, so the body passes
	// through to each one's own path (Docker Model Runner's /anthropic/v1/messages)
	for _, c := range []struct {
		sim   *sim.Server
		model string
	}{{mlx, "mlx-community/Qwen3-8B-4bit"}, {dmr, "ai/qwen3"}, {omlx, "gemma-3-4b-it"}} {
		before := c.sim.Sim.Stats().ByPath["POST /v1/messages"]
		chatsBefore := c.sim.Sim.Stats().ByPath["POST /v1/chat/completions"]
		res := post(t, "/olla/anthropic/v1/messages", `{"model":"`+c.model+`","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`)
		b := readAll(t, res)
		if res.StatusCode != 200 || res.Header.Get("X-Olla-Mode") != "passthrough" || !strings.Contains(b, `"type":"message"`) {
			t.Errorf("anthropic to %s: %d mode %q: %s", c.sim.Sim.Name(), res.StatusCode, res.Header.Get("X-Olla-Mode"), b)
		}
		if got := c.sim.Sim.Stats().ByPath; got["POST /v1/messages"] != before+1 || got["POST /v1/chat/completions"] != chatsBefore {
			t.Errorf("anthropic to %s was not passed through natively: %v", c.sim.Sim.Name(), got)
		}
	}
	// vllm-mlx and oMLX serve Responses themselves
	for _, c := range []struct {
		sim         *sim.Server
		path, model string
	}{{mlx, "/olla/vllm-mlx/v1/responses", "mlx-community/Qwen3-8B-4bit"}, {omlx, "/olla/omlx/v1/responses", "gemma-3-4b-it"}} {
		res := post(t, c.path, `{"model":"`+c.model+`","input":"hi"}`)
		b := readAll(t, res)
		if res.StatusCode != 200 || c.sim.Sim.Stats().ByPath["POST /v1/responses"] == 0 || !strings.Contains(b, `"object":"response"`) {
			t.Errorf("responses via %s: %d %s", c.path, res.StatusCode, b)
		}
	}

	// listing formats: the catalogue in each type's own shape, and each
	// provider's own list
	for format, owner := range map[string]string{"vllm-mlx": "vllm-mlx", "docker-model-runner": "docker", "omlx": "omlx"} {
		var list struct {
			Object string `json:"object"`
			Data   []struct {
				ID      string `json:"id"`
				OwnedBy string `json:"owned_by"`
			} `json:"data"`
		}
		getJSON(t, "/olla/models?format="+format, &list)
		ids := map[string]bool{}
		for _, m := range list.Data {
			ids[m.ID] = true
			if m.OwnedBy != owner {
				t.Errorf("format=%s: %s owned_by %q, want %q", format, m.ID, m.OwnedBy, owner)
			}
		}
		if list.Object != "list" || !ids["ai/smollm2"] || !ids["gemma-3-4b-it"] || !ids["mlx-community/Qwen3-8B-4bit"] {
			t.Errorf("format=%s: %+v", format, list)
		}
	}
	for prefix, want := range map[string]string{"dmr": "ai/qwen3", "omlx": "Qwen3-8B-MLX-4bit", "vllm-mlx": "mlx-community/Qwen3-8B-4bit"} {
		var list struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		getJSON(t, "/olla/"+prefix+"/v1/models", &list)
		if raw, _ := json.Marshal(list); !strings.Contains(string(raw), `"`+want+`"`) || len(list.Data) > 2 {
			t.Errorf("/olla/%s/v1/models = %s", prefix, raw)
		}
	}

	// residency: oMLX's /v1/models/status and Docker Model Runner's
	// /engines/ps name the models used above; vllm-mlx serves its one model
	waitFor(t, "residency read from oMLX and Docker Model Runner", 10*time.Second, func() bool {
		ow, _, _ := warmModels(t, "omlx")
		dw, _, _ := warmModels(t, "dmr")
		return containsAll(ow, "gemma-3-4b-it", "qwen3-8b-mlx-4bit") && containsAll(dw, "ai/qwen3", "ai/smollm2")
	})
	if _, serves, problem := warmModels(t, "mlx"); !serves || problem != "" {
		t.Errorf("vllm-mlx: serves_listed %v, problem %q", serves, problem)
	}
	for _, name := range []string{"mlx", "dmr", "omlx"} {
		if e := endpointsStatus(t)[name]; e.CircuitBreaker != "closed" || e.Status != "healthy" {
			t.Errorf("%s after the run: %+v", name, e)
		}
	}
}
