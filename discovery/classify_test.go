package discovery

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

func classifyURL(t *testing.T, raw string, timeout time.Duration) (typ string, evidence []string, warning string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, _ := ClassifyType(context.Background(), http.DefaultTransport, u, nil, timeout)
		typ, evidence, warning = c.Type, c.Evidence, c.Warning
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // generous: the bound is the probe timeout
		t.Fatal("classification did not end")
	}
	return
}

// TestClassifySimulators: a simulator of every kind is typed as its kind.
func TestClassifySimulators(t *testing.T) {
	want := map[string]string{
		sim.Ollama: "ollama", sim.OpenAI: "openai-compatible", sim.LMStudio: "lm-studio", sim.VLLM: "vllm",
		sim.LlamaCpp: "llamacpp", sim.VLLMMLX: "vllm-mlx", sim.DockerModelRunner: "docker-model-runner",
		sim.OMLX: "omlx", sim.Lemonade: "lemonade", sim.SGLang: "sglang", sim.LMDeploy: "lmdeploy", sim.LiteLLM: "litellm",
	}
	for _, kind := range sim.Kinds() {
		t.Run(kind, func(t *testing.T) {
			s, err := sim.Start(sim.Config{Kind: kind, Models: []string{"m1", "m2"}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			typ, ev, warning := classifyURL(t, s.URL, 5*time.Second)
			if typ != want[kind] {
				t.Fatalf("typed %q, want %q (evidence %q, warning %q)", typ, want[kind], ev, warning)
			}
			if typ == "openai-compatible" {
				if !strings.Contains(warning, "openai-compatible") {
					t.Errorf("the fallback came without a warning saying why: %q", warning)
				}
			} else if warning != "" || len(ev) == 0 {
				t.Errorf("evidence %q, warning %q", ev, warning)
			}
		})
	}
	// llama-server in router mode is llama.cpp too
	s, err := sim.Start(sim.Config{Kind: sim.LlamaCpp, Router: true, Models: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if typ, ev, _ := classifyURL(t, s.URL, 5*time.Second); typ != "llamacpp" {
		t.Errorf("router mode typed %q (%q)", typ, ev)
	}
}

// replay serves the captured real exchanges of one server (testdata/real).
func replay(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	h, err := sim.Replay(filepath.Join("..", "testdata", "real", dir))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// TestClassifyRealCaptures: the captured Ollama 0.17.4 and llama-server
// b11669 exchanges are typed as what they are (llama-server answers
// Ollama's /api/tags too, and is still llama.cpp).
func TestClassifyRealCaptures(t *testing.T) {
	for dir, want := range map[string]string{"ollama-0.17.4": "ollama", "llamacpp": "llamacpp"} {
		srv := replay(t, dir)
		if typ, ev, warning := classifyURL(t, srv.URL, 5*time.Second); typ != want || warning != "" {
			t.Errorf("%s typed %q (evidence %q, warning %q), want %q", dir, typ, ev, warning, want)
		}
	}
}

// TestClassifyBadServers: a server that claims to be every type, one that
// never answers, one that changes its story between probes and one that
// sends a huge body each get an answer in bounded time: openai-compatible
// with a warning naming why.
func TestClassifyBadServers(t *testing.T) {
	everything := map[string]string{
		"/":                  "Ollama is running",
		"/api/v0/models":     `{"data":[]}`,
		"/props":             `{"default_generation_settings":{}}`,
		"/v1/status":         `{"model":"x","num_running":0}`,
		"/v1/models/status":  `{"models":[{"id":"x","loaded":true}]}`,
		"/api/v1/health":     `{"status":"ok","model_loaded":"x"}`,
		"/health/liveliness": `"I'm alive!"`,
		"/v1/models":         `{"data":[{"id":"x","owned_by":"vllm"}]}`,
	}
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "llama.cpp")
		_, _ = w.Write([]byte(everything[r.URL.Path]))
	}))
	defer liar.Close()
	typ, ev, warning := classifyURL(t, liar.URL, 5*time.Second)
	if typ != "openai-compatible" || !strings.Contains(warning, "ambiguous") || !strings.Contains(warning, "ollama") || !strings.Contains(warning, "lm-studio") || len(ev) < 5 {
		t.Errorf("every-type server: %q, %q, %q", typ, warning, ev)
	}

	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	defer hang.CloseClientConnections()
	if typ, _, warning := classifyURL(t, hang.URL, 150*time.Millisecond); typ != "openai-compatible" || !strings.Contains(warning, "no answer in 150ms") {
		t.Errorf("hanging server: %q, %q", typ, warning)
	}

	// A server that changes its story between probes: one round answers as
	// Ollama, the next as LM Studio. Each round is typed by what it said
	// (the root logs the change, autotype.go). The round is set by the test,
	// not counted from requests: a round's probes run at once, so a
	// per-request flip would make the answer depend on their order.
	var round atomic.Int64
	flip := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asOllama := round.Load()%2 == 0
		switch {
		case r.URL.Path == "/" && asOllama:
			_, _ = w.Write([]byte("Ollama is running"))
		case r.URL.Path == "/api/v0/models" && !asOllama:
			_, _ = w.Write([]byte(`{"data":[]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer flip.Close()
	for i, want := range []string{"ollama", "lm-studio", "ollama"} {
		round.Store(int64(i))
		if typ, ev, warning := classifyURL(t, flip.URL, 5*time.Second); typ != want || warning != "" {
			t.Errorf("story %d: typed %q (evidence %q, warning %q), want %q", i, typ, ev, warning, want)
		}
	}

	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			_, _ = w.Write([]byte("Ollama is running"))
			_, _ = w.Write(bytes.Repeat([]byte("x"), 16<<20))
			return
		}
		http.NotFound(w, r)
	}))
	defer huge.Close()
	if typ, _, _ := classifyURL(t, huge.URL, 5*time.Second); typ != "ollama" {
		t.Errorf("huge body: typed %q", typ)
	}
}
