package genai

import (
	"bytes"
	"encoding/json"
	"slices"
)

// Bounds on what ParseTail keeps from a backend's bytes.
const (
	maxReasons   = 8
	maxNameBytes = 256
)

var (
	modelKey   = []byte(`"model"`)
	reasonKeys = [][]byte{
		[]byte(`"finish_reason"`), // OpenAI chat and completions
		[]byte(`"done_reason"`),   // Ollama
		[]byte(`"stop_reason"`),   // Anthropic Messages
	}
)

// ParseTail reads the model that answered and why it stopped from the end
// of a response (engines.Tail: the last 4 KiB, raw JSON or an SSE or
// NDJSON stream): the last "model" string, and each distinct
// finish_reason, done_reason or stop_reason string in order of
// appearance. A quoted key cannot appear unescaped inside a JSON string, so
// generated text never passes for one. What it cannot read, it leaves out.
func ParseTail(b []byte) (model string, reasons []string) {
	if v, ok := lastString(b, modelKey); ok {
		model = v
	}
	for _, key := range reasonKeys {
		for rest := b; ; {
			i := bytes.Index(rest, key)
			if i < 0 {
				break
			}
			rest = rest[i+len(key):]
			v, ok := stringValue(rest)
			if !ok || v == "" || slices.Contains(reasons, v) {
				continue
			}
			if len(reasons) == maxReasons {
				return model, reasons
			}
			reasons = append(reasons, v)
		}
	}
	return model, reasons
}

// lastString is the string value of key's last occurrence that has one.
func lastString(b, key []byte) (string, bool) {
	for end := len(b); end > 0; {
		i := bytes.LastIndex(b[:end], key)
		if i < 0 {
			return "", false
		}
		if v, ok := stringValue(b[i+len(key):]); ok && v != "" {
			return v, true
		}
		end = i
	}
	return "", false
}

// stringValue reads `: "..."` at the start of b (after a key): a JSON
// string of at most maxNameBytes, decoded. null, numbers, objects and
// longer strings are not read.
func stringValue(b []byte) (string, bool) {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 || b[0] != ':' {
		return "", false
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	if len(b) == 0 || b[0] != '"' {
		return "", false
	}
	end := -1
	for i := 1; i < len(b) && i <= maxNameBytes+1; i++ {
		if b[i] == '\\' {
			i++
			continue
		}
		if b[i] == '"' {
			end = i
			break
		}
	}
	if end < 0 {
		return "", false
	}
	var s string
	if json.Unmarshal(b[:end+1], &s) != nil {
		return "", false
	}
	return s, true
}
