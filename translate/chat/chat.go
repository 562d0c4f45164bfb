// Package chat holds what the translators (translate/anthropic,
// translate/responses) share about the API they translate to, OpenAI chat
// completions: its request types, and the pieces of reading a request and
// writing an event stream that do not depend on the API translated from.
package chat

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
)

// Path is the backend path a translated request goes to.
const Path = "/v1/chat/completions"

// Message is one chat message.
type Message struct {
	Role       string     `json:"role"`
	Content    any        `json:"content"` // string, []Part or nil
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// Part is one content part of a message.
type Part struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is an image part's address (a URL or a data: URL).
type ImageURL struct {
	URL string `json:"url"`
}

// ToolCall is one call in an assistant message.
type ToolCall struct {
	ID       string   `json:"id"`
	Type     string   `json:"type"`
	Function Function `json:"function"`
}

// Function is a call's function and its JSON arguments.
type Function struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Tool is one function tool definition.
type Tool struct {
	Type     string      `json:"type"`
	Function FunctionDef `json:"function"`
}

// FunctionDef is a tool's function.
type FunctionDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// StreamOptions asks for the usage chunk at the end of a stream.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// NewID makes a fresh id with prefix (msg_, resp_, toolu_...).
func NewID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Present returns a top-level field that is there and not null.
func Present(top map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	raw, ok := top[name]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, false
	}
	return raw, true
}

// Out collects one write's worth of translated events and sends them to
// the client at once, flushed; after a failed write it only discards.
type Out struct {
	bytes.Buffer
	err error
}

type flusher interface{ Flush() }

// Emit writes what was collected to w; its error is the first write error.
func (o *Out) Emit(w io.Writer) error {
	if o.Len() == 0 || o.err != nil {
		o.Reset()
		return o.err
	}
	_, o.err = w.Write(o.Bytes())
	o.Reset()
	if f, ok := w.(flusher); ok && o.err == nil {
		f.Flush()
	}
	return o.err
}

// Usage is an answer's token counts.
type Usage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// Completion is a non-stream answer (or an error object in its place:
// Error, or Object "error" with Message).
type Completion struct {
	Model   string          `json:"model"`
	Choices []Choice        `json:"choices"`
	Usage   *Usage          `json:"usage"`
	Error   json.RawMessage `json:"error"`
	Object  string          `json:"object"`
	Message string          `json:"message"`
}

// Choice is one choice of a Completion.
type Choice struct {
	Index   int `json:"index"`
	Message struct {
		Content          json.RawMessage `json:"content"` // string, null or parts
		ReasoningContent string          `json:"reasoning_content"`
		Reasoning        string          `json:"reasoning"`
		Refusal          string          `json:"refusal"`
		ToolCalls        []struct {
			ID       string `json:"id"`
			Function struct {
				Name      string          `json:"name"`
				Arguments json.RawMessage `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"message"`
	FinishReason string          `json:"finish_reason"`
	StopReason   json.RawMessage `json:"stop_reason"` // vLLM: the matched stop string or token id
}

// Chunk is one chat.completion.chunk of a stream (or an error object in
// its place).
type Chunk struct {
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Content          *string `json:"content"`
			ReasoningContent *string `json:"reasoning_content"`
			Reasoning        *string `json:"reasoning"`
			ToolCalls        []struct {
				Index    int    `json:"index"`
				ID       string `json:"id"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string         `json:"finish_reason"`
		StopReason   json.RawMessage `json:"stop_reason"`
	} `json:"choices"`
	Usage   *Usage          `json:"usage"`
	Error   json.RawMessage `json:"error"`
	Object  string          `json:"object"`
	Message string          `json:"message"`
}

// IsError reports whether the chunk is an error object.
func (c *Chunk) IsError() bool {
	return len(c.Error) > 0 && !bytes.Equal(c.Error, []byte("null")) || c.Object == "error"
}
