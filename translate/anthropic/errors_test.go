package anthropic

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestErrorType(t *testing.T) {
	want := map[int]string{
		400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
		404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
		500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error",
		529: "overloaded_error", 418: "api_error",
	}
	for status, typ := range want {
		if got := ErrorType(status); got != typ {
			t.Errorf("ErrorType(%d) = %q, want %q", status, got, typ)
		}
		var env struct {
			Type  string `json:"type"`
			Error struct{ Type, Message string }
		}
		if err := json.Unmarshal(ErrorBody(status, "m <&>"), &env); err != nil || env.Type != "error" || env.Error.Type != typ || env.Error.Message != "m <&>" {
			t.Errorf("ErrorBody(%d) = %s", status, ErrorBody(status, "m <&>"))
		}
	}
	if got := string(ErrorBodyWithRequestID(404, "no", "req_1")); got != `{"type":"error","error":{"type":"not_found_error","message":"no"},"request_id":"req_1"}` {
		t.Errorf("ErrorBodyWithRequestID = %s", got)
	}
}

func TestTranslateError(t *testing.T) {
	long := strings.Repeat("é", 3000)
	cases := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		// Shapes from testdata/real: Ollama /v1, Ollama native, llama.cpp.
		{"openai envelope", 404, `{"error":{"message":"model 'nope' not found","type":"api_error","param":null,"code":null}}`, `{"type":"error","error":{"type":"not_found_error","message":"model 'nope' not found"}}`},
		{"ollama native", 400, `{"error":"unexpected EOF"}`, `{"type":"error","error":{"type":"invalid_request_error","message":"unexpected EOF"}}`},
		{"llama.cpp context", 400, `{"error":{"code":400,"message":"request (15023 tokens) exceeds the available context size (1024 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":15023,"n_ctx":1024}}`, `{"type":"error","error":{"type":"invalid_request_error","message":"request (15023 tokens) exceeds the available context size (1024 tokens), try increasing it"}}`},
		{"anthropic envelope", 429, `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`, `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`},
		{"vllm", 404, `{"object":"error","message":"The model does not exist.","type":"NotFoundError","code":404}`, `{"type":"error","error":{"type":"not_found_error","message":"The model does not exist."}}`},
		{"fastapi detail", 422, `{"detail":"bad field"}`, `{"type":"error","error":{"type":"api_error","message":"bad field"}}`},
		{"plain text", 404, "404 page not found\n", `{"type":"error","error":{"type":"not_found_error","message":"404 page not found"}}`},
		{"empty", 502, "", `{"type":"error","error":{"type":"api_error","message":"backend error (HTTP 502)"}}`},
		{"json without message", 500, `{"error":{}}`, `{"type":"error","error":{"type":"api_error","message":"backend error (HTTP 500)"}}`},
		{"invalid utf-8", 500, "bad \xff byte", `{"type":"error","error":{"type":"api_error","message":"bad  byte"}}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := string(TranslateError(c.status, []byte(c.body))); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	msg := BackendErrorMessage(500, []byte(`{"error":"`+long+`"}`))
	if len(msg) > maxErrorMessage+len("…") || !strings.HasSuffix(msg, "…") || !json.Valid(TranslateError(500, []byte(`{"error":"`+long+`"}`))) {
		t.Errorf("a long message is not capped on a rune boundary: %d bytes", len(msg))
	}
}

func TestEstimateTokens(t *testing.T) {
	r, err := ParseRequest([]byte(`{"model":"m","max_tokens":1,"system":"12345678","tools":[{"name":"abcd","description":"efgh","input_schema":{"a":1}}],"messages":[{"role":"user","content":[{"type":"text","text":"1234"},{"type":"image","source":{"type":"url","url":"http://x"}},{"type":"tool_result","tool_use_id":"t","content":"12345678"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	// chars: system 8 + text 4 + tool_result 8 + tool 4+4+7 = 35 → 9, plus one image.
	if got, want := EstimateTokens(r), 9+imageTokens; got != want {
		t.Errorf("EstimateTokens = %d, want %d", got, want)
	}
	small, _ := ParseRequest([]byte(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":""}]}`))
	if got := EstimateTokens(small); got != 1 {
		t.Errorf("EstimateTokens(empty) = %d, want the minimum 1", got)
	}
	if got := string(CountTokensBody(12)); got != `{"input_tokens":12}` {
		t.Errorf("CountTokensBody = %s", got)
	}
}

func TestModelsBody(t *testing.T) {
	at := time.Date(2026, 11, 30, 18, 0, 0, 0, time.FixedZone("x", 3600))
	got := string(ModelsBody([]string{"llama3:8b", "qwen3"}, at))
	want := `{"data":[{"type":"model","id":"llama3:8b","display_name":"llama3:8b","created_at":"2026-11-30T17:00:00Z"},{"type":"model","id":"qwen3","display_name":"qwen3","created_at":"2026-11-30T17:00:00Z"}],"has_more":false,"first_id":"llama3:8b","last_id":"qwen3"}`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := string(ModelsBody(nil, at)); got != `{"data":[],"has_more":false,"first_id":null,"last_id":null}` {
		t.Errorf("empty list = %s", got)
	}
}
