package engines

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

func TestParseUsageOnRealStreams(t *testing.T) {
	for _, tc := range []struct {
		fixture          string
		prompt, complete int64
	}{
		{"ollama-0.17.4/POST_api_chat_stream.txt", 0, 8},
		{"ollama-0.17.4/POST_api_generate_stream.txt", 0, 8},
		{"ollama-0.17.4/POST_v1_chat_completions_stream.txt", 0, 8},
		// every chunk carries zero usage; only the last one is real
		{"ollama-0.17.4/POST_v1_completions_stream.txt", 0, 8},
		{"ollama-0.17.4/POST_api_generate_nonstream.txt", 0, 8},
		{"ollama-0.17.4/POST_v1_chat_completions_nonstream.txt", 0, 8},
		{"llamacpp/POST_v1_chat_completions_stream.txt", 0, 8},
		{"llamacpp/POST_v1_completions_stream.txt", 0, 8},
	} {
		body := fixtureBody(t, tc.fixture)
		// feed it in small pieces, as a stream arrives
		var tail Tail
		for i := 0; i < len(body); i += 7 {
			tail.Write(body[i:min(i+7, len(body))])
		}
		u, ok := ParseUsage(tail.Bytes())
		if !ok {
			t.Errorf("%s: no usage found", tc.fixture)
			continue
		}
		if u.CompletionTokens != tc.complete || u.PromptTokens <= 0 {
			t.Errorf("%s: got %+v, want %d completion tokens and some prompt tokens", tc.fixture, u, tc.complete)
		}
	}
	// a stream without usage reports none
	var tail Tail
	tail.Write(fixtureBody(t, "ollama-0.17.4/POST_v1_chat_completions_stream_no_usage.txt"))
	if u, ok := ParseUsage(tail.Bytes()); ok {
		t.Errorf("usage found in a stream that has none: %+v", u)
	}
}

func TestTailKeepsTheEnd(t *testing.T) {
	var tail Tail
	long := strings.Repeat("x", 10000) + "END"
	for i := 0; i < len(long); i += 1000 {
		tail.Write([]byte(long[i:min(i+1000, len(long))]))
	}
	got := string(tail.Bytes())
	if len(got) != tailSize || !strings.HasSuffix(got, "END") {
		t.Fatalf("tail kept %d bytes ending %q", len(got), got[len(got)-5:])
	}
}
