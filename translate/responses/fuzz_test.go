package responses

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzStreamTranslator: whatever the backend sends, in whatever pieces,
// the client gets well-formed events with sequence numbers in order,
// exactly one ending (response.completed or response.failed) and nothing
// after it.
func FuzzStreamTranslator(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"), uint8(3))
	f.Add([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}}]}\n"+
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n"), uint8(1))
	f.Add([]byte("{\"error\":\"boom\"}\n"), uint8(5))
	f.Add([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"a\"}}]}}]}\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1\"}}]}}]}\n"), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, piece uint8) {
		r, err := Parse([]byte(`{"model":"m","input":"hi","stream":true}`))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		tr := NewStreamTranslator(&out, r)
		step := int(piece%16) + 1
		for p := in; len(p) > 0; {
			n := min(step, len(p))
			_, _ = tr.Write(p[:n])
			p = p[n:]
		}
		_ = tr.Close(nil)
		endings := 0
		for i, block := range strings.Split(strings.TrimSuffix(out.String(), "\n\n"), "\n\n") {
			name, data, ok := strings.Cut(block, "\ndata: ")
			var e struct {
				Type string `json:"type"`
				Seq  int    `json:"sequence_number"`
			}
			if !ok || json.Unmarshal([]byte(data), &e) != nil || "event: "+e.Type != name || e.Seq != i {
				t.Fatalf("event %d malformed: %q", i, block)
			}
			if endings > 0 {
				t.Fatalf("event %s after the stream ended", e.Type)
			}
			if e.Type == "response.completed" || e.Type == "response.failed" {
				endings++
			}
		}
		if endings != 1 {
			t.Fatalf("%d endings in %q", endings, out.String())
		}
	})
}
