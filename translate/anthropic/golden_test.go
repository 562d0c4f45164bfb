package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-olla/olla/translate/internal/golden"
)

// fixedIDs makes ids deterministic for golden output: toolu_gen1, msg_gen2...
func fixedIDs(t testing.TB) { golden.FixIDs(t, &newID) }

func indent(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatalf("output is not JSON: %v: %s", err, b)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// TestGoldenRequests: testdata/requests/X.json → X.want.json (the OpenAI
// body), or for err_* the Anthropic error the client gets.
func TestGoldenRequests(t *testing.T) {
	for _, in := range golden.Inputs(t, "requests", ".json") {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			req, err := ParseRequest(bytes.TrimSpace(body))
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			out, err := ToOpenAI(req)
			want := golden.Want(in, ".json")
			if strings.HasPrefix(name, "err_") {
				var re *RequestError
				if !errors.As(err, &re) {
					t.Fatalf("ToOpenAI = %v, %s; want a *RequestError", err, out)
				}
				if req.Features().Translatable() {
					t.Errorf("Features().Translatable() = true for a request ToOpenAI refuses: %+v", req.Features())
				}
				golden.Check(t, want, indent(t, re.Body()))
				return
			}
			if err != nil {
				t.Fatalf("ToOpenAI: %v", err)
			}
			if !req.Features().Translatable() {
				t.Errorf("Features().Translatable() = false for a request ToOpenAI takes: %+v", req.Features())
			}
			golden.Check(t, want, indent(t, out))
		})
	}
}

// goldenRequest is the request the answer and stream goldens answer.
func goldenRequest(t *testing.T) *Request {
	req, err := ParseRequest([]byte(`{"model":"claude-test","max_tokens":100,"stop_sequences":["END"],"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestGoldenAnswers: testdata/answers/X.json (an OpenAI completion) →
// X.want.json (the Anthropic message), or for err_* the api_error body.
func TestGoldenAnswers(t *testing.T) {
	for _, in := range golden.Inputs(t, "answers", ".json") {
		name := strings.TrimSuffix(filepath.Base(in), ".json")
		t.Run(name, func(t *testing.T) {
			fixedIDs(t)
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := FromOpenAI(body, goldenRequest(t))
			want := golden.Want(in, ".json")
			if strings.HasPrefix(name, "err_") {
				var be *BackendError
				if !errors.As(err, &be) {
					t.Fatalf("FromOpenAI = %v, %s; want a *BackendError", err, out)
				}
				golden.Check(t, want, indent(t, be.Body()))
				return
			}
			if err != nil {
				t.Fatalf("FromOpenAI: %v", err)
			}
			golden.Check(t, want, indent(t, out))
		})
	}
}

var goldenStreamOpts = StreamOptions{Model: "claude-test", MessageID: "msg_test", InputTokens: 7, StopSequences: []string{"END"}}

// translateStream feeds in split at the given offsets (sorted) and closes
// cleanly.
func translateStream(t testing.TB, in []byte, cuts ...int) []byte {
	var out bytes.Buffer
	st := NewStreamTranslator(&out, goldenStreamOpts)
	prev := 0
	for _, c := range append(cuts, len(in)) {
		if _, err := st.Write(in[prev:c]); err != nil {
			t.Fatal(err)
		}
		prev = c
	}
	if err := st.Close(nil); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestGoldenStreams: testdata/streams/X.sse → X.want.sse, the same output
// however the input is split: at every byte offset, and byte by byte.
func TestGoldenStreams(t *testing.T) {
	for _, in := range golden.Inputs(t, "streams", ".sse") {
		name := strings.TrimSuffix(filepath.Base(in), ".sse")
		t.Run(name, func(t *testing.T) {
			fixedIDs(t)
			body, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			whole := translateStream(t, body)
			golden.Check(t, golden.Want(in, ".sse"), whole)
			checkEventOrder(t, whole, strings.HasPrefix(name, "err_"))
			for cut := 1; cut < len(body); cut++ {
				fixedIDs(t)
				if got := translateStream(t, body, cut); !bytes.Equal(got, whole) {
					t.Fatalf("split at byte %d changes the output:\n%s\nwant:\n%s", cut, got, whole)
				}
			}
			every := make([]int, 0, len(body))
			for i := 1; i < len(body); i++ {
				every = append(every, i)
			}
			fixedIDs(t)
			if got := translateStream(t, body, every...); !bytes.Equal(got, whole) {
				t.Fatalf("byte-by-byte input changes the output:\n%s", got)
			}
		})
	}
}
