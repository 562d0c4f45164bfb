package adapter_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddy-olla/olla"
	"github.com/caddy-olla/olla/adapter"
)

// FuzzAdapt feeds arbitrary documents to the adapter: it must never panic
// or overflow its stack, and whatever it accepts must be JSON whose olla
// handler passes the handler's own Validate. The golden
// configs seed it; testdata/fuzz/FuzzAdapt holds the hostile cases (a
// merge key that includes itself, nested merges, deep nesting).
func FuzzAdapt(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	a := adapter.Adapter{
		LookupEnv: func(k string) (string, bool) { return "", false },
		Environ:   func() []string { return nil },
		// A fuzzed *_file path must not make the test open files.
		Readable: func(string) error { return nil },
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, _, err := a.Adapt(body, map[string]any{"filename": "config.yaml"})
		if err != nil {
			return
		}
		var cfg struct {
			Apps struct {
				HTTP struct {
					Servers map[string]struct {
						Routes []struct {
							Handle []json.RawMessage `json:"handle"`
						} `json:"routes"`
					} `json:"servers"`
				} `json:"http"`
			} `json:"apps"`
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatalf("accepted %q but wrote invalid JSON: %v\n%s", body, err, out)
		}
		routes := cfg.Apps.HTTP.Servers["olla"].Routes
		if len(routes) == 0 || len(routes[0].Handle) == 0 {
			t.Fatalf("accepted %q but wrote no olla handler: %s", body, out)
		}
		var h olla.Handler
		if err := json.Unmarshal(routes[0].Handle[0], &h); err != nil {
			t.Fatalf("accepted %q but the handler does not decode: %v\n%s", body, err, out)
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("accepted %q but the handler refuses what it wrote: %v\n%s", body, err, out)
		}
	})
}
