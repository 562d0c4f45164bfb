package integration

import (
	"maps"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
	"github.com/caddy-olla/olla/profiles"
)

type autoInfo struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Routable bool   `json:"routable"`
	TypeAuto *struct {
		Type     string   `json:"type"`
		Evidence []string `json:"evidence"`
		Warning  string   `json:"warning"`
		Pending  bool     `json:"pending"`
	} `json:"type_auto"`
}

func autoStatuses(t *testing.T) map[string]autoInfo {
	t.Helper()
	var body struct {
		Endpoints []autoInfo `json:"endpoints"`
	}
	getJSON(t, "/internal/status/endpoints", &body)
	out := map[string]autoInfo{}
	for _, e := range body.Endpoints {
		out[e.Name] = e
	}
	return out
}

// TestTypeAuto: endpoints declared `type auto` are typed by probing at
// start, each correctly, with the evidence in the status route: a simulator
// of every type the profiles know, and the captured real Ollama and
// llama-server exchanges (testdata/real) replayed; they are then served by
// their type's routes. An unknown server becomes openai-compatible with a
// warning. A server that comes back from an outage as another type is
// typed again.
func TestTypeAuto(t *testing.T) {
	kinds := map[string]string{
		"o": sim.Ollama, "l": sim.LlamaCpp, "s": sim.LMStudio, "v": sim.VLLM, "m": sim.VLLMMLX,
		"d": sim.DockerModelRunner, "x": sim.OMLX, "le": sim.Lemonade, "u": sim.OpenAI,
		"sg": sim.SGLang, "ld": sim.LMDeploy, "ll": sim.LiteLLM,
	}
	want := map[string]string{"o": "ollama", "l": "llamacpp", "s": "lm-studio", "v": "vllm", "m": "vllm-mlx",
		"d": "docker-model-runner", "x": "omlx", "le": "lemonade", "u": "openai-compatible",
		"sg": "sglang", "ld": "lmdeploy", "ll": "litellm", "real-ollama": "ollama", "real-llamacpp": "llamacpp"}
	// every profile but the fallback has a simulator here
	for _, typ := range profiles.Types() {
		if !slices.Contains(slices.Collect(maps.Values(want)), typ) {
			t.Errorf("type %s has no simulator in this test", typ)
		}
	}
	sims := map[string]*sim.Server{}
	block := ""
	for name, kind := range kinds {
		sims[name] = startSim(t, sim.Config{Kind: kind, Models: []string{"m-" + name}, Name: name})
		block += endpointBlock(name, sims[name].URL, "auto")
	}
	for name, dir := range map[string]string{"real-ollama": "ollama-0.17.4", "real-llamacpp": "llamacpp"} {
		h, err := sim.Replay(filepath.Join("..", "..", "testdata", "real", dir))
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		block += endpointBlock(name, srv.URL, "auto")
	}
	load(t, site(block))
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	waitRoutable(t, names...)
	st := autoStatuses(t)
	for name, typ := range want {
		e := st[name]
		if e.Type != typ || e.TypeAuto == nil || e.TypeAuto.Type != typ || e.TypeAuto.Pending {
			t.Errorf("%s: type %q, type_auto %+v; want %s", name, e.Type, e.TypeAuto, typ)
			continue
		}
		if typ == "openai-compatible" {
			if !strings.Contains(e.TypeAuto.Warning, "openai-compatible") {
				t.Errorf("%s: fallback without a warning: %+v", name, e.TypeAuto)
			}
		} else if e.TypeAuto.Warning != "" || len(e.TypeAuto.Evidence) == 0 {
			t.Errorf("%s: %+v", name, e.TypeAuto)
		}
	}
	// each is reached through its type's own route
	for path, name := range map[string]string{"/olla/ollama/api/chat": "o", "/olla/dmr/v1/chat/completions": "d",
		"/olla/lemonade/api/v1/chat/completions": "le", "/olla/llamacpp/v1/chat/completions": "l",
		"/olla/sglang/v1/chat/completions": "sg", "/olla/lmdeploy/v1/chat/completions": "ld",
		"/olla/litellm/v1/chat/completions": "ll"} {
		res := post(t, path, `{"model":"m-`+name+`","messages":[{"role":"user","content":"hi"}],"stream":false}`)
		if b := readAll(t, res); res.StatusCode != 200 || res.Header.Get("X-Sim-Name") != name {
			t.Errorf("%s: %d from %q: %s", path, res.StatusCode, res.Header.Get("X-Sim-Name"), b)
		}
	}

	// the Ollama box goes down and comes back as LM Studio on the same address
	addr := sims["o"].Addr
	sims["o"].Close()
	waitFor(t, "o down", 15*time.Second, func() bool { return !autoStatuses(t)["o"].Routable })
	back, err := sim.StartAt(addr, sim.Config{Kind: sim.LMStudio, Models: []string{"m-o2"}, Name: "o2"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(back.Close)
	waitFor(t, "o typed again as lm-studio", 15*time.Second, func() bool {
		e := autoStatuses(t)["o"]
		return e.Routable && e.Type == "lm-studio" && e.TypeAuto != nil && e.TypeAuto.Type == "lm-studio"
	})
	res := post(t, "/olla/lmstudio/v1/chat/completions", `{"model":"m-o2","messages":[{"role":"user","content":"hi"}]}`)
	if b := readAll(t, res); res.StatusCode != 200 || res.Header.Get("X-Sim-Name") != "o2" {
		t.Errorf("after the change: %d from %q: %s", res.StatusCode, res.Header.Get("X-Sim-Name"), b)
	}
}
