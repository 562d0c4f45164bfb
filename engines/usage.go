package engines

import (
	"bytes"
	"encoding/json"
	"time"
)

// tailSize is how much of a response's end is kept for accounting: the
// final Ollama line or the OpenAI usage chunk, with room to spare.
const tailSize = 4 << 10

// Tail keeps the last bytes of a response as they pass, so token counts can
// be read from its final event without buffering the stream.
type Tail struct {
	buf  [tailSize]byte
	n    int // bytes held, up to tailSize
	next int // where the next byte goes, once the buffer has wrapped
}

// Reset empties the tail for reuse.
func (t *Tail) Reset() { t.n, t.next = 0, 0 }

// Write keeps the end of p. It never fails.
func (t *Tail) Write(p []byte) {
	if len(p) >= tailSize {
		copy(t.buf[:], p[len(p)-tailSize:])
		t.n, t.next = tailSize, 0
		return
	}
	for len(p) > 0 {
		c := copy(t.buf[t.next:], p)
		t.next = (t.next + c) % tailSize
		p = p[c:]
		t.n = min(t.n+c, tailSize)
	}
}

// Bytes returns the kept bytes in order.
func (t *Tail) Bytes() []byte {
	if t.n < tailSize {
		return t.buf[:t.n]
	}
	out := make([]byte, 0, tailSize)
	out = append(out, t.buf[t.next:]...)
	return append(out, t.buf[:t.next]...)
}

// Usage is what a response said about its tokens.
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
	// GenerationTime is the backend's own generation time, when it reports
	// it (Ollama's eval_duration), for tokens per second.
	GenerationTime time.Duration
}

// usageLine is the subset of an Ollama final line or an OpenAI chunk (or
// whole answer) that carries token counts.
type usageLine struct {
	PromptEvalCount *int64 `json:"prompt_eval_count"`
	EvalCount       *int64 `json:"eval_count"`
	EvalDuration    int64  `json:"eval_duration"`
	Usage           *struct {
		PromptTokens     int64 `json:"prompt_tokens"`
		CompletionTokens int64 `json:"completion_tokens"`
		InputTokens      int64 `json:"input_tokens"`
		OutputTokens     int64 `json:"output_tokens"`
	} `json:"usage"`
}

// ParseUsage reads token counts from the end of a response: the last NDJSON
// line or SSE event that carries them. It scans backwards, so the real
// usage wins over the zero counts some servers put on every chunk.
func ParseUsage(tail []byte) (Usage, bool) {
	end := len(tail)
	for end > 0 {
		start := bytes.LastIndexByte(tail[:end], '\n') + 1
		line := bytes.TrimSpace(tail[start:end])
		end = start - 1
		line = bytes.TrimPrefix(line, []byte("data:"))
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		if !bytes.Contains(line, []byte(`"eval_count"`)) && !bytes.Contains(line, []byte(`"usage"`)) {
			continue
		}
		var u usageLine
		if json.Unmarshal(line, &u) != nil {
			// a long one-line answer whose start fell out of the tail:
			// read the usage object on its own
			i := bytes.LastIndex(line, []byte(`"usage":`))
			if i < 0 || json.NewDecoder(bytes.NewReader(line[i+len(`"usage":`):])).Decode(&u.Usage) != nil {
				continue
			}
		}
		switch {
		case u.EvalCount != nil:
			out := Usage{CompletionTokens: *u.EvalCount, GenerationTime: time.Duration(u.EvalDuration)}
			if u.PromptEvalCount != nil {
				out.PromptTokens = *u.PromptEvalCount
			}
			return out, true
		case u.Usage != nil:
			uu := u.Usage
			out := Usage{PromptTokens: uu.PromptTokens + uu.InputTokens, CompletionTokens: uu.CompletionTokens + uu.OutputTokens}
			if out.PromptTokens == 0 && out.CompletionTokens == 0 {
				continue // a placeholder usage on an early chunk
			}
			return out, true
		}
	}
	return Usage{}, false
}
