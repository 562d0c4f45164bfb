package sim

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// recorder is a minimal flushing ResponseWriter.
type recorder struct {
	h       http.Header
	status  int
	body    bytes.Buffer
	flushes int
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}
func (r *recorder) Flush() { r.flushes++ }

func benchStream(b *testing.B, kind, path, body string) {
	s := New(Config{Kind: kind, Models: []string{"m"}, Tokens: 64, NoRecord: true})
	rec := &recorder{h: http.Header{}}
	req, _ := http.NewRequest(http.MethodPost, path, nil)
	rd := strings.NewReader(body)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rd.Reset(body)
		req.Body = readCloser{rd}
		clear(rec.h)
		rec.status = 0
		rec.body.Reset()
		s.ServeHTTP(rec, req)
		if rec.status != 200 {
			b.Fatalf("status %d: %s", rec.status, rec.body.String())
		}
	}
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

// Each iteration is one 64-token stream (66 to 67 flushed events).
func BenchmarkStreamOllamaChat(b *testing.B) {
	benchStream(b, Ollama, "/api/chat", `{"model":"m","messages":[{"role":"user","content":"hello there"}]}`)
}

func BenchmarkStreamOpenAIChat(b *testing.B) {
	benchStream(b, OpenAI, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hello there"}],"stream":true,"stream_options":{"include_usage":true}}`)
}

func BenchmarkStreamLlamaCppChat(b *testing.B) {
	benchStream(b, LlamaCpp, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hello there"}],"stream":true}`)
}

func BenchmarkNonStreamVLLMChat(b *testing.B) {
	benchStream(b, VLLM, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hello there"}]}`)
}
