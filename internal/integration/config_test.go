package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-olla/olla/internal/sim"

	// The olla config adapter, reachable through the admin API's /load
	// with Content-Type text/olla.
	_ "github.com/caddy-olla/olla/adapter"
)

// TestAdminLoadRefusesHostileYAML posts standalone config.yaml documents
// built to exhaust the adapter (a merge key that includes itself, nested
// merges that expand to billions of values) to the admin API's /load. Each
// is a 400 naming the problem, and the running config keeps serving.
// Before the guard, the first was a fatal stack overflow of the process.
func TestAdminLoadRefusesHostileYAML(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
	load(t, site(endpointBlock("a", s.URL, "ollama")))
	waitRoutable(t, "a")

	laughs := "l0: &l0 {a: 1, b: 2}\n"
	for i := 1; i <= 9; i++ {
		prev := "*l" + string(rune('0'+i-1))
		laughs += "l" + string(rune('0'+i)) + ": &l" + string(rune('0'+i)) + " {<<: [" + strings.Repeat(prev+", ", 9) + prev + "]}\n"
	}
	endpoints := "discovery:\n  static:\n    endpoints:\n      - {url: '" + s.URL + "', name: a, type: ollama}\n"
	tests := []struct{ name, yaml, want string }{
		{"self-referencing merge", "proxy: &p {<<: *p}\n" + endpoints, "*p"},
		{"billion laughs through merge keys", laughs + "proxy: {<<: *l9}\n" + endpoints, "100000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "http://localhost:2999/load", strings.NewReader(tt.yaml))
			req.Header.Set("Content-Type", "text/olla")
			res, err := adminClient.Do(req)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			body := readAll(t, res)
			if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, tt.want) {
				t.Errorf("load: %d %s, want 400 naming %q", res.StatusCode, body, tt.want)
			}
			res = post(t, "/olla/ollama/api/chat", `{"model":"m","stream":false}`)
			if b := readAll(t, res); res.StatusCode != 200 {
				t.Errorf("after the refused load: %d %s", res.StatusCode, b)
			}
		})
	}
}
