package responses

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/translate/internal/golden"
)

// fixed makes ids and created_at deterministic: resp_gen1, msg_gen2...
func fixed(t testing.TB) {
	golden.FixIDs(t, &newID)
	oldNow := now
	now = func() time.Time { return time.Unix(1700000000, 0) }
	t.Cleanup(func() { now = oldNow })
}

// TestGoldenRequests: testdata/requests/X.json → X.want.json: the chat
// body and the dropped fields, or for err_* the refusal.
func TestGoldenRequests(t *testing.T) {
	for _, in := range golden.Inputs(t, "requests", ".json") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			body, _ := os.ReadFile(in)
			r, err := Parse(body)
			var got []byte
			if strings.HasPrefix(filepath.Base(in), "err_") {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("Parse = %v, want an *Error", err)
				}
				got = []byte(fmt.Sprintf("%d %s\n", e.Status, e.Message))
			} else {
				if err != nil {
					t.Fatal(err)
				}
				got = append(ToChat(r, r.Model), '\n')
				got = append(got, []byte("dropped: "+strings.Join(r.Dropped(), ", ")+"\n")...)
			}
			golden.Check(t, golden.Want(in, ".json"), got)
		})
	}
}

const goldenRequest = `{"model":"m","instructions":"be brief","input":"hi","tools":[{"type":"function","name":"shell","parameters":{"type":"object"}}],"max_output_tokens":64}`

// TestGoldenAnswers: testdata/answers/X.json (a chat completion) → the
// response object.
func TestGoldenAnswers(t *testing.T) {
	for _, in := range golden.Inputs(t, "answers", ".json") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			fixed(t)
			body, _ := os.ReadFile(in)
			r, err := Parse([]byte(goldenRequest))
			if err != nil {
				t.Fatal(err)
			}
			got, err := FromChat(body, r)
			if err != nil {
				got = []byte("error: " + err.Error() + "\n")
			}
			golden.Check(t, golden.Want(in, ".json"), got)
		})
	}
}

// TestGoldenStreams: testdata/streams/X.sse (a chat SSE stream, ending in
// a line "#broken" for a stream that breaks) → the Responses events, fed
// in 7-byte pieces.
func TestGoldenStreams(t *testing.T) {
	for _, in := range golden.Inputs(t, "streams", ".sse") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			fixed(t)
			body, _ := os.ReadFile(in)
			var streamErr error
			if i := bytes.Index(body, []byte("#broken")); i >= 0 {
				body, streamErr = body[:i], errors.New("connection reset")
			}
			r, _ := Parse([]byte(strings.Replace(goldenRequest, `"input"`, `"stream":true,"input"`, 1)))
			var out bytes.Buffer
			tr := NewStreamTranslator(&out, r)
			for len(body) > 0 {
				n := min(7, len(body))
				if _, err := tr.Write(body[:n]); err != nil {
					t.Fatal(err)
				}
				body = body[n:]
			}
			if err := tr.Close(streamErr); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, golden.Want(in, ".sse"), out.Bytes())
			last := out.String()[strings.LastIndex(out.String(), "event: "):]
			completed := strings.HasPrefix(last, "event: response.completed")
			if completed != tr.Complete() || (!completed && !strings.HasPrefix(last, "event: response.failed")) {
				t.Errorf("stream ends with %q, Complete() = %v", last[:min(40, len(last))], tr.Complete())
			}
			if strings.Contains(filepath.Base(in), "broken") && completed {
				t.Error("a broken stream ended with response.completed")
			}
		})
	}
}
