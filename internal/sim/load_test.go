package sim

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-olla/olla/preload"
	"github.com/caddy-olla/olla/profiles"
)

// residentOn reads the simulator's residency through the profile's load
// surfaces and parsers, as the load balancer does: a surface that reads the
// loaded set wins over the type's serves-what-it-lists rule.
func residentOn(t *testing.T, s *Server, p *profiles.Profile, model string) (resident, known bool) {
	t.Helper()
	for _, surface := range p.LoadSurfaces {
		res, body := get(t, s.URL+surface.Path)
		if res.StatusCode != http.StatusOK {
			continue
		}
		if sig, err := p.ParseSignals(surface, body); err == nil && sig.LoadedKnown {
			return sig.Resident(model)
		}
	}
	return false, false
}

// TestLoadRoutesMakeModelsResident sends each type's load request (as
// profiles builds it) to its simulator: the model becomes resident through
// the type's own residency surface after one cold load, a request for it
// then loads nothing, an unknown model gets 404, and a restarted server
// holds nothing.
func TestLoadRoutesMakeModelsResident(t *testing.T) {
	cases := []struct {
		typ string
		cfg Config
	}{
		{"ollama", Config{Kind: Ollama}},
		{"lm-studio", Config{Kind: LMStudio}},
		{"llamacpp", Config{Kind: LlamaCpp, Router: true}},
		{"omlx", Config{Kind: OMLX}},
		{"docker-model-runner", Config{Kind: DockerModelRunner}},
		{"lemonade", Config{Kind: Lemonade}},
	}
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Models = []string{"a", "b"}
			cfg.Tokens = 1
			cfg.Capacity = Capacity{MaxLoaded: 2, LoadTime: time.Millisecond}
			s := startT(t, cfg)
			p, _ := profiles.Lookup(tc.typ)
			if r, known := residentOn(t, s, p, "b"); !known || r {
				t.Fatalf("before loading: resident %v known %v", r, known)
			}
			status, body := sendLoad(t, s, p, "b")
			if status != http.StatusOK {
				t.Fatalf("load answered %d: %s", status, body)
			}
			if r, _ := residentOn(t, s, p, "b"); !r {
				t.Fatal("b is not resident after its load")
			}
			if st := s.CapacityStats(); st.Loads != 1 {
				t.Fatalf("cold loads %d, want 1", st.Loads)
			}
			chat := `{"model":"b","stream":false,"messages":[{"role":"user","content":"x"}]}`
			path := "/v1/chat/completions"
			if tc.typ == "docker-model-runner" {
				path = "/engines/v1/chat/completions"
			}
			if res, b := post(t, s.URL+path, chat); res.StatusCode != http.StatusOK {
				t.Fatalf("chat %d: %s", res.StatusCode, b)
			}
			if st := s.CapacityStats(); st.Loads != 1 {
				t.Fatalf("the chat after the load loaded again: %d loads", st.Loads)
			}
			if status, body := sendLoad(t, s, p, "nope"); status != http.StatusNotFound {
				t.Fatalf("loading an unknown model answered %d: %s", status, body)
			}
			s.Close()
			if err := s.Restart(); err != nil {
				t.Fatal(err)
			}
			if r, known := residentOn(t, s, p, "b"); !known || r {
				t.Fatalf("after a restart: resident %v known %v; a restarted server holds nothing", r, known)
			}
		})
	}
}

func sendLoad(t *testing.T, s *Server, p *profiles.Profile, model string) (int, []byte) {
	t.Helper()
	lr, ok := p.LoadRequest(model, -1)
	if !ok {
		t.Fatalf("%s has no load route", p.Name)
	}
	status, _, body, err := preload.SendHTTP(context.Background(), http.DefaultTransport, s.URL, nil, lr, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return status, body
}

// TestLoadWaitsForTheColdLoad: a load route answers once the model is in
// memory, and a client that leaves while it loads gets nothing.
func TestLoadWaitsForTheColdLoad(t *testing.T) {
	s := startT(t, Config{Kind: OMLX, Models: []string{"a"}, Capacity: Capacity{MaxLoaded: 1, LoadTime: time.Hour}})
	p, _ := profiles.Lookup("omlx")
	lr, _ := p.LoadRequest("a", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, lr.Method, s.URL+lr.Path, nil)
	res, err := http.DefaultClient.Do(req)
	if err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		t.Fatalf("a load that takes an hour answered %d at once", res.StatusCode)
	}
}
