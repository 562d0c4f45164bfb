package adapter_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/caddy-olla/olla/adapter"
)

// FuzzAdapt feeds arbitrary documents to the adapter: it must never panic
// or overflow its stack, and whatever it accepts must be JSON. The golden
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
		if !json.Valid(out) {
			t.Fatalf("accepted %q but wrote invalid JSON: %s", body, out)
		}
	})
}
