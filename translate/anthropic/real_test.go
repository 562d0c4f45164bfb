package anthropic

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// capture is one exchange from testdata/real (format in its README).
type capture struct {
	reqBody []byte
	status  int
	body    []byte
}

func readCapture(t *testing.T, path string) capture {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	req, resp, ok := bytes.Cut(raw, []byte("\n---\n"))
	if !ok {
		t.Fatalf("%s: no --- separator", path)
	}
	_, reqBody, _ := bytes.Cut(req, []byte("\n\n"))
	head, body, ok := bytes.Cut(resp, []byte("\n\n"))
	if !ok {
		t.Fatalf("%s: no header end", path)
	}
	statusLine, _, _ := bytes.Cut(head, []byte("\n"))
	fields := strings.Fields(string(statusLine))
	status, err := strconv.Atoi(fields[1])
	if err != nil {
		t.Fatalf("%s: status line %q", path, statusLine)
	}
	return capture{reqBody: reqBody, status: status, body: body}
}

// realCaptures lists repo testdata/real/*/<pattern>.
func realCaptures(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "real", "*", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures match %s: %v", pattern, err)
	}
	return files
}

// TestRealStreams translates every real OpenAI stream capture from Ollama
// 0.17.4 and llama.cpp: the 200 streams must come out complete, with the
// same text and usage; the error answers must come out as Anthropic errors.
func TestRealStreams(t *testing.T) {
	for _, path := range realCaptures(t, "POST_v1_chat_completions_stream*.txt") {
		name := filepath.Base(filepath.Dir(path)) + "/" + filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			c := readCapture(t, path)
			var out bytes.Buffer
			st := NewStreamTranslator(&out, StreamOptions{Model: "tiny"})
			if _, err := st.Write(c.body); err != nil {
				t.Fatal(err)
			}
			if err := st.Close(nil); err != nil {
				t.Fatal(err)
			}
			if c.status != 200 {
				// The caller translates a non-2xx answer with TranslateError;
				// fed to the stream translator by mistake it still fails.
				checkEventOrder(t, out.Bytes(), true)
				var env struct {
					Error struct{ Type, Message string }
				}
				if err := json.Unmarshal(TranslateError(c.status, c.body), &env); err != nil || env.Error.Type != ErrorType(c.status) || env.Error.Message == "" || strings.HasPrefix(env.Error.Message, "backend error (HTTP") {
					t.Errorf("TranslateError(%d) = %s", c.status, TranslateError(c.status, c.body))
				}
				return
			}
			checkEventOrder(t, out.Bytes(), false)
			wantText, wantOut := openAIStreamSummary(t, c.body)
			events, _ := parseEvents(out.Bytes())
			var text strings.Builder
			var last map[string]any
			for _, ev := range events {
				if ev.Name == "content_block_delta" {
					text.WriteString(ev.Data["delta"].(map[string]any)["text"].(string))
				}
				if ev.Name == "message_delta" {
					last = ev.Data
				}
			}
			if text.String() != wantText || wantText == "" {
				t.Errorf("text = %q, want %q", text.String(), wantText)
			}
			if r := last["delta"].(map[string]any)["stop_reason"]; r != "max_tokens" {
				t.Errorf("stop_reason = %v, want max_tokens (every capture hit the 8-token cap)", r)
			}
			gotOut := last["usage"].(map[string]any)["output_tokens"].(float64)
			if int(gotOut) != wantOut {
				t.Errorf("output_tokens = %v, want %d", gotOut, wantOut)
			}
		})
	}
}

// openAIStreamSummary reads the content and completion_tokens of a stream
// (0 tokens when it carried no usage).
func openAIStreamSummary(t *testing.T, body []byte) (string, int) {
	var text strings.Builder
	tokens := 0
	for _, line := range strings.Split(string(body), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct{ Content *string }
			}
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatal(err)
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				text.WriteString(*ch.Delta.Content)
			}
		}
		if c.Usage != nil {
			tokens = c.Usage.CompletionTokens
		}
	}
	return text.String(), tokens
}

// TestRealNativeMessages checks this package against what Ollama and
// llama.cpp answer on their own /v1/messages: their requests parse, their
// event streams follow the grammar our output is checked with, and our
// translation of their OpenAI answer to the same prompt has the same shape.
func TestRealNativeMessages(t *testing.T) {
	for _, dir := range []string{"ollama-0.17.4", "llamacpp"} {
		t.Run(dir, func(t *testing.T) {
			base := filepath.Join("..", "..", "testdata", "real", dir)
			stream := readCapture(t, filepath.Join(base, "POST_v1_messages_stream.txt"))
			if _, err := ParseRequest(stream.reqBody); err != nil {
				t.Errorf("ParseRequest(real request) = %v", err)
			}
			if complete, err := validateStream(stream.body); err != nil || !complete {
				t.Errorf("the real %s stream fails our grammar: complete=%v %v", dir, complete, err)
			}

			native := readCapture(t, filepath.Join(base, "POST_v1_messages_nonstream.txt"))
			chat := readCapture(t, filepath.Join(base, "POST_v1_chat_completions_nonstream.txt"))
			req, err := ParseRequest(native.reqBody)
			if err != nil {
				t.Fatal(err)
			}
			ours, err := FromOpenAI(chat.body, req)
			if err != nil {
				t.Fatal(err)
			}
			var a, b struct {
				Type       string `json:"type"`
				Role       string `json:"role"`
				Model      string `json:"model"`
				StopReason string `json:"stop_reason"`
				Content    []struct {
					Type string `json:"type"`
				} `json:"content"`
				Usage struct {
					OutputTokens int `json:"output_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(native.body, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(ours, &b); err != nil {
				t.Fatal(err)
			}
			if a.Type != b.Type || a.Role != b.Role || a.Model != b.Model || a.StopReason != b.StopReason ||
				len(a.Content) != len(b.Content) || a.Content[0].Type != b.Content[0].Type || a.Usage.OutputTokens != b.Usage.OutputTokens {
				t.Errorf("native %s\nours   %s", native.body, ours)
			}
		})
	}
}
