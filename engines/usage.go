package engines

import (
	"bytes"
	"encoding/json"
	"strconv"
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

// usageObject is an OpenAI (or Anthropic) usage object.
type usageObject struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	InputTokens      int64 `json:"input_tokens"`
	OutputTokens     int64 `json:"output_tokens"`
}

// ParseUsage reads token counts from the end of a response: the last NDJSON
// line or SSE event that carries them. It scans backwards, so the real
// usage wins over the zero counts some servers put on every chunk, and it
// decodes only the counts, never the whole (possibly large) answer.
func ParseUsage(tail []byte) (Usage, bool) {
	end := len(tail)
	for end > 0 {
		start := bytes.LastIndexByte(tail[:end], '\n') + 1
		line := tail[start:end]
		end = start - 1
		if n, ok := intAfter(line, `"eval_count":`); ok {
			out := Usage{CompletionTokens: n}
			out.PromptTokens, _ = intAfter(line, `"prompt_eval_count":`)
			d, _ := intAfter(line, `"eval_duration":`)
			out.GenerationTime = time.Duration(d)
			return out, true
		}
		i := bytes.LastIndex(line, []byte(`"usage":`))
		if i < 0 {
			continue
		}
		var u usageObject
		if json.NewDecoder(bytes.NewReader(line[i+len(`"usage":`):])).Decode(&u) != nil {
			continue
		}
		out := Usage{PromptTokens: u.PromptTokens + u.InputTokens, CompletionTokens: u.CompletionTokens + u.OutputTokens}
		if out.PromptTokens == 0 && out.CompletionTokens == 0 {
			continue // a placeholder usage on an early chunk
		}
		return out, true
	}
	return Usage{}, false
}

// intAfter reads the whole number that follows key in line.
func intAfter(line []byte, key string) (int64, bool) {
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := bytes.TrimLeft(line[i+len(key):], " ")
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 {
		return 0, false
	}
	v, err := strconv.ParseInt(string(rest[:n]), 10, 64)
	return v, err == nil
}
