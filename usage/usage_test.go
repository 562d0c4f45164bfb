package usage

import (
	"os"
	"strings"
	"testing"
)

// fixtureBody reads the response body of a real capture (see
// testdata/real/README.md for the format).
func fixtureBody(t *testing.T, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile("../testdata/real/" + name)
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	_, resp, ok := strings.Cut(string(raw), "\n---\n")
	if !ok {
		t.Fatalf("%s: no --- separator", name)
	}
	_, body, ok := strings.Cut(resp, "\n\n")
	if !ok {
		t.Fatalf("%s: no header end", name)
	}
	return []byte(body)
}

// lastBytes is what the engines' 4 KiB tail holds of a body.
func lastBytes(b []byte) []byte { return b[max(len(b)-4096, 0):] }

func TestParseRealResponses(t *testing.T) {
	for _, tc := range []struct {
		fixture         string
		in, out, cached int64
		inputKnown      bool
	}{
		{"ollama-0.17.4/POST_api_chat_stream.txt", -1, 8, 0, true},
		{"ollama-0.17.4/POST_api_generate_stream.txt", -1, 8, 0, true},
		{"ollama-0.17.4/POST_v1_chat_completions_stream.txt", -1, 8, 0, true},
		{"ollama-0.17.4/POST_v1_completions_stream.txt", -1, 8, 0, true},
		{"ollama-0.17.4/POST_api_generate_nonstream.txt", -1, 8, 0, true},
		{"ollama-0.17.4/POST_v1_chat_completions_nonstream.txt", -1, 8, 0, true},
		{"llamacpp/POST_v1_chat_completions_stream.txt", -1, 8, -1, true},
		{"llamacpp/POST_v1_completions_stream.txt", -1, 8, -1, true},
		// llama.cpp's own /completion: timings only (prompt_n 5 + cache_n 1)
		{"llamacpp/POST_completion_stream.txt", 6, 8, 1, true},
		// Anthropic: input_tokens excludes the 27 cache reads
		{"llamacpp/POST_v1_messages_nonstream.txt", 28, 8, 27, true},
	} {
		c, ok := Parse(lastBytes(fixtureBody(t, tc.fixture)))
		if !ok {
			t.Errorf("%s: no usage found", tc.fixture)
			continue
		}
		if c.Output != tc.out || (tc.in >= 0 && c.Input != tc.in) || (tc.in < 0 && c.Input <= 0) ||
			(tc.cached >= 0 && c.Cached != tc.cached) || c.hasInput != tc.inputKnown {
			t.Errorf("%s: got %+v, want in %d out %d cached %d", tc.fixture, c, tc.in, tc.out, tc.cached)
		}
	}
	// a short Messages stream keeps its message_start in the tail
	body := fixtureBody(t, "llamacpp/POST_v1_messages_stream.txt")
	if c, ok := Parse(lastBytes(body)); !ok || c.Input != 28 || c.Cached != 27 || c.Output != 8 {
		t.Errorf("messages stream: %+v", c)
	}
	// a long one's message_delta has the output count only; the input is
	// then estimated, and marked so
	c, ok := Parse(body[len(body)-300:])
	if !ok || c.Output != 8 {
		t.Fatalf("messages stream: %+v %v", c, ok)
	}
	if c = c.Complete(400, Shape{}); !c.Estimated || c.Input != 100 || c.Output != 8 {
		t.Errorf("messages stream completed: %+v", c)
	}
	// a stream without usage reports none
	if c, ok := Parse(fixtureBody(t, "ollama-0.17.4/POST_v1_chat_completions_stream_no_usage.txt")); ok {
		t.Errorf("usage found in a stream that has none: %+v", c)
	}
}

func TestParseAnthropicStartAndDelta(t *testing.T) {
	tail := "event: message_start\n" +
		`data: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":12,"cache_read_input_tokens":30,"output_tokens":1}}}` + "\n\n" +
		"event: message_delta\n" +
		`data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":40}}` + "\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	c, ok := Parse([]byte(tail))
	if !ok || c.Input != 42 || c.Cached != 30 || c.Output != 40 || c.Estimated {
		t.Fatalf("got %+v", c)
	}
}

// TestParseLyingUsage: counts that are negative, fractional, exponents,
// NaN, strings or beyond any real size are not taken as counts.
func TestParseLyingUsage(t *testing.T) {
	for _, body := range []string{
		`{"usage":{"prompt_tokens":-5,"completion_tokens":-7}}`,
		`{"usage":{"prompt_tokens":1e18,"completion_tokens":1e18}}`,
		`{"usage":{"prompt_tokens":NaN,"completion_tokens":3}}`,
		`{"usage":{"prompt_tokens":"12","completion_tokens":"3"}}`,
		`{"usage":{"prompt_tokens":1.5,"completion_tokens":2.5}}`,
		`{"usage":{"prompt_tokens":99999999999999999999999,"completion_tokens":1}}`,
		`{"done":true,"eval_count":-3,"prompt_eval_count":-9}`,
		`{"done":true,"eval_count":1e18}`,
		`{"timings":{"prompt_n":-1,"predicted_n":-1}}`,
	} {
		c, ok := Parse([]byte(body + "\n"))
		if ok && (c.Input < 0 || c.Output < 0 || c.Input > maxCount || c.Output > maxCount || c.Output == 1e18) {
			t.Errorf("%s: taken as %+v", body, c)
		}
		if ok && c.Output != 3 && c.Output != 1 {
			t.Errorf("%s: taken as %+v", body, c)
		}
	}
	// a huge count that parses is clamped to what the exchange could hold
	c, ok := Parse([]byte(`{"usage":{"prompt_tokens":1099511627776,"completion_tokens":1099511627776,"prompt_tokens_details":{"cached_tokens":1099511627776}}}` + "\n"))
	if !ok {
		t.Fatal("a large but valid count was not read")
	}
	c = c.Clamp(Bounds{RequestBytes: 100, ResponseBytes: 500})
	if !c.Clamped || c.Input != 100+templateSlack || c.Output != 500 || c.Cached != c.Input {
		t.Errorf("clamped: %+v", c)
	}
}

func TestCompleteEstimates(t *testing.T) {
	var none Counts
	sse := none.Complete(40, Shape{Bytes: 5000, Lines: 2 * 22, SSE: true})
	if !sse.Estimated || sse.Input != 10 || sse.Output != 20 {
		t.Errorf("sse: %+v", sse)
	}
	nd := none.Complete(0, Shape{Lines: 11, NDJSON: true})
	if nd.Output != 10 || nd.Input != 0 {
		t.Errorf("ndjson: %+v", nd)
	}
	whole := none.Complete(8, Shape{Bytes: 400})
	if whole.Output != 100 || whole.Input != 2 {
		t.Errorf("json: %+v", whole)
	}
	reported, _ := Parse([]byte(`{"usage":{"prompt_tokens":5,"completion_tokens":6}}`))
	if r := reported.Complete(4000, Shape{Bytes: 9999}); r.Estimated || r.Input != 5 || r.Output != 6 {
		t.Errorf("reported counts changed: %+v", r)
	}
}
