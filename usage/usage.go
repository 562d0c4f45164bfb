// Package usage reads the token counts a backend reports at the end of a
// response (OpenAI usage, including the final streamed chunk; Ollama
// eval_count and prompt_eval_count; Anthropic usage; llama.cpp timings),
// checks them against what the response could hold, and estimates the
// counts a response did not report.
package usage

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// Counts is what one response came to in tokens.
type Counts struct {
	// Input is every prompt token, cached ones included.
	Input int64
	// Output is the generated tokens.
	Output int64
	// Cached is the part of Input read from the server's prompt cache.
	Cached int64
	// GenerationTime is the backend's own generation time, when it
	// reports it (Ollama's eval_duration), for tokens per second.
	GenerationTime time.Duration
	// Estimated: some count was not reported and was estimated from
	// bytes (see Complete).
	Estimated bool
	// Clamped: a reported count was more than the response could hold
	// and was cut down to that bound (see Clamp).
	Clamped bool

	hasInput, hasOutput bool
}

// Reported says whether the backend reported any count.
func (c Counts) Reported() bool { return c.hasInput || c.hasOutput }

// Total is input plus output tokens.
func (c Counts) Total() int64 { return c.Input + c.Output }

// usageObject is the union of the usage objects the APIs send. Numbers are
// kept raw so a negative, fractional or huge value is refused by validCount
// rather than silently wrapped.
type usageObject struct {
	// OpenAI chat and completions
	PromptTokens        json.RawMessage `json:"prompt_tokens"`
	CompletionTokens    json.RawMessage `json:"completion_tokens"`
	PromptTokensDetails *struct {
		CachedTokens json.RawMessage `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	// OpenAI Responses and Anthropic Messages
	InputTokens        json.RawMessage `json:"input_tokens"`
	OutputTokens       json.RawMessage `json:"output_tokens"`
	InputTokensDetails *struct {
		CachedTokens json.RawMessage `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	// Anthropic: input_tokens excludes these
	CacheRead     json.RawMessage `json:"cache_read_input_tokens"`
	CacheCreation json.RawMessage `json:"cache_creation_input_tokens"`
}

// timingsObject is llama.cpp's non-standard timings: prompt_n tokens were
// evaluated, cache_n more came from its cache.
type timingsObject struct {
	PromptN    json.RawMessage `json:"prompt_n"`
	PredictedN json.RawMessage `json:"predicted_n"`
	CacheN     json.RawMessage `json:"cache_n"`
}

// maxCount bounds any single reported count: nothing real comes near it,
// and sums of such counts stay far from overflowing an int64.
const maxCount = 1 << 40

// validCount reads a JSON whole number in [0, maxCount]. A negative, a
// fraction, an exponent, a string or NaN is not a count.
func validCount(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || raw[0] < '0' || raw[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || n > maxCount {
		return 0, false
	}
	return n, true
}

// Parse reads token counts from the end of a response: the last NDJSON
// line or SSE event that carries them. It scans backwards, so the real
// usage wins over the zero counts some servers put on every chunk, and it
// decodes only the counts, never the whole (possibly large) answer. A count
// that is not a whole number in range is ignored, as if absent.
func Parse(tail []byte) (Counts, bool) {
	end := len(tail)
	var partial Counts // an Anthropic message_delta: output only
	for end > 0 {
		start := bytes.LastIndexByte(tail[:end], '\n') + 1
		line := tail[start:end]
		end = start - 1
		if c, ok := parseOllama(line); ok {
			return c, true
		}
		if c, ok := parseUsageObject(line); ok {
			if c.hasInput {
				if partial.hasOutput { // a message_start before its message_delta: the later count wins
					c.Output, c.hasOutput = partial.Output, true
				}
				return c, true
			}
			if !partial.hasOutput {
				partial = c
			}
			continue
		}
		if c, ok := parseTimings(line); ok {
			return c, true
		}
	}
	return partial, partial.Reported()
}

// parseOllama reads an Ollama final line's counts.
func parseOllama(line []byte) (Counts, bool) {
	out, ok := intAfter(line, `"eval_count":`)
	if !ok {
		return Counts{}, false
	}
	c := Counts{Output: out, hasOutput: true}
	if in, ok := intAfter(line, `"prompt_eval_count":`); ok {
		c.Input, c.hasInput = in, true
	}
	if d, ok := intAfter(line, `"eval_duration":`); ok {
		c.GenerationTime = time.Duration(d)
	}
	return c, true
}

// parseUsageObject reads the last "usage" object of line.
func parseUsageObject(line []byte) (Counts, bool) {
	i := bytes.LastIndex(line, []byte(`"usage":`))
	if i < 0 {
		return Counts{}, false
	}
	var u usageObject
	if json.NewDecoder(bytes.NewReader(line[i+len(`"usage":`):])).Decode(&u) != nil {
		return Counts{}, false
	}
	var c Counts
	if n, ok := validCount(u.PromptTokens); ok {
		c.Input, c.hasInput = n, true
	} else if n, ok := validCount(u.InputTokens); ok {
		c.Input, c.hasInput = n, true
	}
	if n, ok := validCount(u.CompletionTokens); ok {
		c.Output, c.hasOutput = n, true
	} else if n, ok := validCount(u.OutputTokens); ok {
		c.Output, c.hasOutput = n, true
	}
	switch {
	case u.PromptTokensDetails != nil:
		c.Cached, _ = validCount(u.PromptTokensDetails.CachedTokens)
	case u.InputTokensDetails != nil:
		c.Cached, _ = validCount(u.InputTokensDetails.CachedTokens)
	}
	// Anthropic counts cache reads and writes apart from input_tokens
	read, okRead := validCount(u.CacheRead)
	created, okCreated := validCount(u.CacheCreation)
	if okRead || okCreated {
		c.Input += read + created
		c.Cached += read
		c.hasInput = true
	}
	if c.Input == 0 && c.Output == 0 {
		return Counts{}, false // a placeholder usage on an early chunk
	}
	return c, c.Reported()
}

// parseTimings reads llama.cpp's timings object.
func parseTimings(line []byte) (Counts, bool) {
	i := bytes.LastIndex(line, []byte(`"timings":`))
	if i < 0 {
		return Counts{}, false
	}
	var t timingsObject
	if json.NewDecoder(bytes.NewReader(line[i+len(`"timings":`):])).Decode(&t) != nil {
		return Counts{}, false
	}
	var c Counts
	if n, ok := validCount(t.PredictedN); ok {
		c.Output, c.hasOutput = n, true
	}
	if n, ok := validCount(t.PromptN); ok {
		c.Input, c.hasInput = n, true
		if cached, ok := validCount(t.CacheN); ok {
			c.Input += cached
			c.Cached = cached
		}
	}
	return c, c.Reported()
}

// intAfter reads the whole number that follows key in line; a number that
// goes on as a fraction or exponent, or is out of range, is not one.
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
	if n == 0 || n < len(rest) && (rest[n] == '.' || rest[n] == 'e' || rest[n] == 'E') {
		return 0, false
	}
	return validCount(json.RawMessage(rest[:n]))
}

// Bounds is what a response could hold, for Clamp.
type Bounds struct {
	// RequestBytes is the request body's size. A prompt is at most one
	// token per byte of it, plus a chat template's tokens (templateSlack).
	RequestBytes int64
	// ResponseBytes is the response body's size; no token takes less
	// than a byte of it.
	ResponseBytes int64
}

// templateSlack is the prompt tokens a server adds around the body's text
// (chat templates, system prompts baked into a model).
const templateSlack = 8192

// Clamp cuts reported counts down to what the exchange could hold, so a
// backend that lies (1e18 tokens) cannot exhaust a key's budget at once.
// Image inputs can count more tokens than bytes only in theory; a model
// that charges so would be clamped, which errs on the client's side.
func (c Counts) Clamp(b Bounds) Counts {
	maxIn := b.RequestBytes + templateSlack
	if c.Input > maxIn {
		c.Input, c.Clamped = maxIn, true
	}
	if b.ResponseBytes >= 0 && c.Output > b.ResponseBytes {
		c.Output, c.Clamped = b.ResponseBytes, true
	}
	if c.Cached > c.Input {
		c.Cached, c.Clamped = c.Input, true
	}
	return c
}

// bytesPerToken is the usual estimate for English text and code.
const bytesPerToken = 4

// Shape says how a response body was framed, for estimating its tokens.
type Shape struct {
	Bytes int64
	// Lines is the count of newlines in the body as the client saw it.
	Lines int64
	// SSE: each event is "data: ...\n\n"; NDJSON: one line per chunk.
	SSE, NDJSON bool
}

// Complete fills in the counts a response did not report: input from the
// request body's size, output from the stream's events (about one token
// each) or, for a whole JSON answer, its size. Counts filled in mark the
// result Estimated.
func (c Counts) Complete(requestBytes int64, s Shape) Counts {
	if !c.hasInput {
		c.Input = (requestBytes + bytesPerToken - 1) / bytesPerToken
		c.hasInput, c.Estimated = true, true
	}
	if !c.hasOutput {
		switch {
		case s.SSE:
			c.Output = max(s.Lines/2-2, 0) // less the role and [DONE] events
		case s.NDJSON:
			c.Output = max(s.Lines-1, 0) // less the final statistics line
		default:
			c.Output = (s.Bytes + bytesPerToken - 1) / bytesPerToken
		}
		c.hasOutput, c.Estimated = true, true
	}
	return c
}
