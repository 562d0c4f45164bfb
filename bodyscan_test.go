package olla

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestExtractModel(t *testing.T) {
	for i, tc := range []struct {
		body    string
		model   string
		wantErr string
	}{
		{body: `{"model":"llama3.2:latest","messages":[]}`, model: "llama3.2:latest"},
		{body: ` { "messages" : [{"role":"user","content":"say \"model\": x"}], "model" : "Qwen/Qwen2.5-7B" } `, model: "Qwen/Qwen2.5-7B"},
		{body: `{"stream":true,"options":{"model":"inner"},"model":"outer"}`, model: "outer"},
		{body: `{"messages":[]}`, model: ""},
		{body: `{"mod\u0065l":"escaped-key"}`, model: "escaped-key"},
		{body: `{"model":"caf\u00e9"}`, model: "café"},
		{body: `{"model":"KeepCase"}`, model: "KeepCase"},
		{body: ``, wantErr: "empty"},
		{body: `[]`, wantErr: "must be a JSON object"},
		{body: `"model"`, wantErr: "must be a JSON object"},
		{body: `{"model":7}`, wantErr: `"model" must be a string, got a number`},
		{body: `{"model":["a"]}`, wantErr: `got an array`},
		{body: `{"model":null}`, wantErr: `got null`},
		{body: `{"model":"a","model":"b"}`, wantErr: `more than once (keys "model", "model")`},
		// Go servers (Ollama) match keys without regard to case, last one
		// wins: every spelling of "model" beside "model" is refused, by name
		{body: `{"model":"a","MODEL":"b"}`, wantErr: `more than once (keys "model", "MODEL")`},
		{body: `{"Model":"b","model":"a"}`, wantErr: `more than once (keys "Model", "model")`},
		{body: `{"model":"a","mOdEl":"b"}`, wantErr: `"mOdEl"`},
		{body: `{"model":"a","mod\u0065l":"b"}`, wantErr: `more than once (keys "model", "mod\u0065l")`},
		{body: `{"model":"a","\u004dODEL":"b"}`, wantErr: `"\u004dODEL"`},
		{body: `{"model":"a","\u004DoDeL":"b","x":1}`, wantErr: `"\u004DoDeL"`},
		{body: `{"model":"a","messages":[],"MODEL":{"x":1}}`, wantErr: `"MODEL"`},
		{body: `{"model":"a","Model":"b","MODEL":"c"}`, wantErr: `(keys "model", "Model", "MODEL")`},
		// alone, another spelling is read by some backends and not others
		{body: `{"Model":"b"}`, wantErr: `"Model"`},
		{body: `{"\u004dodel":"b"}`, wantErr: `"\u004dodel"`},
		// keys that only look alike are other keys
		{body: `{"model":"a","models":"b","modal":"c","mode":"d","model_id":"e"}`, model: "a"},
		{body: `{"options":{"MODEL":"inner"},"model":"outer"}`, model: "outer"},
		{body: `{"model":"a","messages":[{"role":"user"`, wantErr: "not valid JSON"},
		{body: `{"model":"a"} {"model":"b"}`, wantErr: "not valid JSON"},
		{body: "{\"model\":\"\xff\"}", wantErr: "UTF-8"},
		{body: `{"model":"a","deep":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`, wantErr: "nested more than"},
	} {
		model, span, err := extractModel([]byte(tc.body))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%d: %s: got err %v, want one containing %q", i, tc.body, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%d: %s: unexpected error %v", i, tc.body, err)
			continue
		}
		if model != tc.model {
			t.Errorf("%d: got model %q, want %q", i, model, tc.model)
		}
		if model != "" {
			var got string
			if err := json.Unmarshal([]byte(tc.body[span.start:span.end]), &got); err != nil || got != model {
				t.Errorf("%d: span %v covers %q, not the model value", i, span, tc.body[span.start:span.end])
			}
		}
	}
}

func TestRewriteModel(t *testing.T) {
	body := []byte(`{"stream":true, "model" : "fast", "messages":[{"content":"fast"}]}`)
	model, span, err := extractModel(body)
	if err != nil || model != "fast" {
		t.Fatalf("extract: %q %v", model, err)
	}
	out := rewriteModel(body, span, `phi-4-mini "q"`)
	want := `{"stream":true, "model" : "phi-4-mini \"q\"", "messages":[{"content":"fast"}]}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
	if again, _, err := extractModel(out); err != nil || again != `phi-4-mini "q"` {
		t.Fatalf("rewritten body does not parse back: %q %v", again, err)
	}
}

// FuzzExtractModel checks the extractor never panics or hangs, and that
// whatever it accepts is valid JSON whose top-level "model" it reports.
func FuzzExtractModel(f *testing.F) {
	for _, seed := range []string{
		`{"model":"a"}`, `{"model":1}`, `{"model":"a","model":"b"}`, `{"a":[1,{"b":"}"}],"model":"x\"y"}`,
		`{`, `[]`, ``, `{"model":"a"`, `{"mod\u0065l":"e"}`, "{\"model\":\"\xc3\"}",
		`{"model":"a","MODEL":"b"}`, `{"Model":"b"}`, `{"model":"a","\u004dODEL":"b"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		model, span, err := extractModel(body)
		if err != nil {
			return
		}
		var top map[string]json.RawMessage
		if json.Unmarshal(body, &top) != nil {
			t.Fatalf("accepted a body that is not a JSON object: %q", body)
		}
		var want string
		if raw, ok := top["model"]; ok {
			if json.Unmarshal(raw, &want) != nil {
				t.Fatalf("accepted a non-string model: %q", body)
			}
			var got string
			if json.Unmarshal(body[span.start:span.end], &got) != nil || got != want {
				t.Fatalf("span %v does not cover the model in %q", span, body)
			}
		}
		if model != want {
			t.Fatalf("got model %q, want %q for %q", model, want, body)
		}
		// a Go backend reads keys without regard to case, last one wins:
		// it must run the model we routed on
		var goBackend struct {
			Model json.RawMessage `json:"model"`
		}
		if json.Unmarshal(body, &goBackend) == nil && goBackend.Model != nil {
			var ran string
			if json.Unmarshal(goBackend.Model, &ran) != nil || ran != model {
				t.Fatalf("routed on %q but a Go backend runs %s for %q", model, goBackend.Model, body)
			}
		}
	})
}

func chatBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"llama3.2:latest","stream":true,"messages":[`)
	for i := 0; b.Len() < size-80; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"role":"user","content":"Tell me about \"quotes\" and the sea, please. 12345"}`)
	}
	b.WriteString(`],"options":{"temperature":0.2}}`)
	return []byte(b.String())
}

func BenchmarkExtractModel(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KB", 1 << 10}, {"1MB", 1 << 20}} {
		body := chatBody(size.n)
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if m, _, err := extractModel(body); err != nil || m != "llama3.2:latest" {
					b.Fatal(m, err)
				}
			}
		})
	}
}
