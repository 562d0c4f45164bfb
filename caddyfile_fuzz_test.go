package olla_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-olla/olla"
)

// FuzzCaddyfile parses arbitrary bodies of the olla directive: the parser
// must never panic, whatever the tokens, what it accepts must encode as
// JSON, and Validate must judge it without panicking. Seeded with the olla blocks of the golden adapt cases.
func FuzzCaddyfile(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(adaptDir, "*.caddyfiletest"))
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		text, _, _ := strings.Cut(string(data), "\n----------\n")
		if _, body, ok := strings.Cut(text, "olla {"); ok {
			f.Add(body)
		}
	}
	f.Fuzz(func(t *testing.T, body string) {
		// Tokenize, not NewTestDispenser: that one calls log.Fatal on a
		// lexer error (an unterminated quote), which ends the fuzz run.
		tokens, err := caddyfile.Tokenize([]byte("olla {\n"+body+"\n}\n"), "Caddyfile")
		if err != nil {
			return
		}
		h := new(olla.Handler)
		if err := h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens)); err != nil {
			return
		}
		if _, err := json.Marshal(h); err != nil {
			t.Fatalf("parsed %q into a handler that does not encode: %v", body, err)
		}
		_ = h.Validate() // may refuse it, must not panic
	})
}
