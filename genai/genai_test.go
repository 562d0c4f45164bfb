package genai

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseTail(t *testing.T) {
	for _, c := range []struct {
		name, tail, model string
		reasons           []string
	}{
		{"openai stream", `data: {"id":"x","model":"qwen3:8b","choices":[{"delta":{"content":"hi"},"finish_reason":null}]}

data: {"id":"x","model":"qwen3:8b","choices":[{"delta":{},"finish_reason":"stop"}]}

data: {"id":"x","model":"qwen3:8b","choices":[],"usage":{"prompt_tokens":3}}

data: [DONE]
`, "qwen3:8b", []string{"stop"}},
		{"openai n=2", `{"model":"m","choices":[{"finish_reason":"length"},{"finish_reason":"stop"},{"finish_reason":"length"}]}`, "m", []string{"length", "stop"}},
		{"ollama", `{"model":"llama3.2","created_at":"x","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":4}` + "\n", "llama3.2", []string{"stop"}},
		{"anthropic", `event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":4}}
`, "", []string{"end_turn"}},
		// generated text holding the words: escaped quotes are not keys
		{"in content", `{"model":"real","choices":[{"message":{"content":"say \"finish_reason\": \"evil\" and \"model\":\"fake\""},"finish_reason":"stop"}]}`, "real", []string{"stop"}},
		{"cut off", `ason":"stop"}]}`, "", nil},
		{"null and numbers", `{"model":null,"finish_reason":null,"done_reason":7}`, "", nil},
		{"too long", `{"model":"` + strings.Repeat("x", 300) + `","finish_reason":"` + strings.Repeat("y", 300) + `"}`, "", nil},
		{"escapes", `{"model":"a\u0062c","finish_reason" : "st\"op"}`, "abc", []string{`st"op`}},
	} {
		model, reasons := ParseTail([]byte(c.tail))
		if model != c.model || !slices.Equal(reasons, c.reasons) {
			t.Errorf("%s: %q %q, want %q %q", c.name, model, reasons, c.model, c.reasons)
		}
	}
	// many distinct reasons: a bounded list
	var b strings.Builder
	for i := range 100 {
		b.WriteString(`{"finish_reason":"r` + strings.Repeat("x", i) + `"}`)
	}
	if _, reasons := ParseTail([]byte(b.String())); len(reasons) != maxReasons {
		t.Errorf("%d reasons kept, want %d", len(reasons), maxReasons)
	}
}

// TestUntraced: without a recording span in the context there is no
// trace, and every method of the nil trace does nothing.
func TestUntraced(t *testing.T) {
	tr := Start(context.Background(), "chat", "openai", "m", time.Now())
	if tr != nil {
		t.Fatal("a trace without a span to hang it on")
	}
	tr.Routed("priority", "strict", "routed", "model_found")
	tr.Key("k:1")
	tr.Attempt(Endpoint{Name: "e"}, "m", time.Now())
	tr.FirstToken(time.Now())
	tr.AttemptDone(Outcome{Status: 200}, time.Now())
	tr.End(Result{Status: 200}, time.Now())
	if Operation("/api/tags") != "" || Operation("/api/chat") != "chat" || Operation("/v1/embeddings") != "embeddings" {
		t.Error("operations")
	}
}

// BenchmarkUntraced is what a request pays with tracing off: the calls
// the request path makes, on a context as Caddy hands it over.
func BenchmarkUntraced(b *testing.B) {
	ctx := context.WithValue(context.WithValue(context.Background(), struct{ a int }{}, 1), struct{ b int }{}, 2)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		tr := Start(ctx, Operation("/v1/chat/completions"), "openai", "m", now)
		tr.Routed("priority", "strict", "routed", "model_found")
		tr.Attempt(Endpoint{Name: "e"}, "m", now)
		tr.FirstToken(now)
		tr.AttemptDone(Outcome{Status: 200}, now)
		tr.End(Result{Status: 200}, now)
	}
}
