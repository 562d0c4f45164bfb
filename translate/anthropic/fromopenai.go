package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"

	"github.com/caddy-olla/olla/translate/chat"
)

// newID makes message and tool-use ids; tests replace it for golden output.
var newID = chat.NewID

// BackendError is an answer from the backend that is not a usable chat
// completion: invalid JSON, an error object, no choices. The caller answers
// with Body (an Anthropic api_error).
type BackendError struct{ Message string }

func (e *BackendError) Error() string { return e.Message }

// Body is the Anthropic envelope for the client (502 api_error shape).
func (e *BackendError) Body() []byte { return marshalError("api_error", e.Message, "") }

type (
	oaUsage    = chat.Usage
	oaResponse = chat.Completion
	oaChoice   = chat.Choice
)

// Message is an Anthropic message answer.
type anMessage struct {
	ID           string    `json:"id"`
	Type         string    `json:"type"`
	Role         string    `json:"role"`
	Model        string    `json:"model"`
	Content      []anBlock `json:"content"`
	StopReason   string    `json:"stop_reason"`
	StopSequence *string   `json:"stop_sequence"`
	Usage        anUsage   `json:"usage"`
}

type anBlock struct {
	Type      string          `json:"type"`
	Text      *string         `json:"text,omitempty"`
	Thinking  *string         `json:"thinking,omitempty"`
	Signature *string         `json:"signature,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      *string         `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
}

type anUsage struct {
	InputTokens          int  `json:"input_tokens"`
	OutputTokens         int  `json:"output_tokens"`
	CacheReadInputTokens *int `json:"cache_read_input_tokens,omitempty"`
}

func usageOf(u *oaUsage) anUsage {
	if u == nil {
		return anUsage{}
	}
	out := anUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}
	// OpenAI counts cached prompt tokens inside prompt_tokens; Anthropic's
	// input_tokens excludes what was read from the cache.
	if d := u.PromptTokensDetails; d != nil && d.CachedTokens > 0 && d.CachedTokens <= u.PromptTokens {
		cached := d.CachedTokens
		out.InputTokens -= cached
		out.CacheReadInputTokens = &cached
	}
	return out
}

// FromOpenAI translates a chat-completion answer into an Anthropic message.
// req supplies the model to echo and the stop sequences to recognise; it may be
// nil. A *BackendError says the body was not a usable completion.
func FromOpenAI(body []byte, req *Request) ([]byte, error) {
	var resp oaResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, &BackendError{Message: "backend answer is not valid OpenAI JSON: " + err.Error()}
	}
	if len(resp.Error) > 0 && !bytes.Equal(resp.Error, []byte("null")) || resp.Object == "error" {
		return nil, &BackendError{Message: "backend error: " + BackendErrorMessage(502, body)}
	}
	if len(resp.Choices) == 0 {
		return nil, &BackendError{Message: "backend answer has no choices"}
	}
	c := resp.Choices[0]
	msg := anMessage{ID: newID("msg_"), Type: "message", Role: "assistant", Model: resp.Model, Usage: usageOf(resp.Usage)}
	var stops []string
	if req != nil {
		stops = req.StopSequences
		if req.Model != "" {
			msg.Model = req.Model
		}
	}
	reasoning := c.Message.ReasoningContent
	if reasoning == "" {
		reasoning = c.Message.Reasoning
	}
	if reasoning != "" {
		empty := ""
		msg.Content = append(msg.Content, anBlock{Type: "thinking", Thinking: &reasoning, Signature: &empty})
	}
	text, err := contentText(c.Message.Content)
	if err != nil {
		return nil, err
	}
	if text == "" && c.Message.Refusal != "" {
		text = c.Message.Refusal
	}
	if text != "" {
		msg.Content = append(msg.Content, anBlock{Type: "text", Text: &text})
	}
	for _, tc := range c.Message.ToolCalls {
		id := tc.ID
		if id == "" {
			id = newID("toolu_")
		}
		name := tc.Function.Name
		msg.Content = append(msg.Content, anBlock{Type: "tool_use", ID: id, Name: &name, Input: toolInput(tc.Function.Arguments)})
	}
	if len(msg.Content) == 0 {
		// Anthropic never answers with no content; clients index content[0].
		empty := ""
		msg.Content = append(msg.Content, anBlock{Type: "text", Text: &empty})
	}
	msg.StopReason, msg.StopSequence = stopReason(c.FinishReason, c.StopReason, stops)
	if len(c.Message.ToolCalls) > 0 && msg.StopReason == "end_turn" {
		msg.StopReason = "tool_use" // some servers say "stop" after a tool call
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(msg); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// contentText reads message.content: a string, null, or text parts.
func contentText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return "", &BackendError{Message: "backend answer has a message content that is neither a string nor parts"}
	}
	var buf bytes.Buffer
	for _, p := range parts {
		buf.WriteString(p.Text)
	}
	return buf.String(), nil
}

// toolInput makes tool_use.input from function.arguments (normally a JSON
// string holding an object). Arguments that are no JSON object are kept as
// {"_raw": "<arguments>"}; a few servers send the object itself, not a string.
func toolInput(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return json.RawMessage("{}")
	}
	if raw[0] == '{' {
		return raw // an object instead of a string
	}
	var args string
	if json.Unmarshal(raw, &args) != nil {
		return rawInput(string(raw))
	}
	return toolInputString(args)
}

func toolInputString(args string) json.RawMessage {
	trimmed := bytes.TrimSpace([]byte(args))
	if len(trimmed) == 0 {
		return json.RawMessage("{}")
	}
	if trimmed[0] == '{' && json.Valid(trimmed) {
		var c bytes.Buffer
		_ = json.Compact(&c, trimmed)
		return c.Bytes()
	}
	var inner string // double-encoded: "{\"a\":1}"
	if json.Unmarshal(trimmed, &inner) == nil {
		in := bytes.TrimSpace([]byte(inner))
		if len(in) > 0 && in[0] == '{' && json.Valid(in) {
			var c bytes.Buffer
			_ = json.Compact(&c, in)
			return c.Bytes()
		}
	}
	return rawInput(args)
}

func rawInput(s string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"_raw": s})
	return b
}

// stopReason maps finish_reason; stopMatch is vLLM's choices[].stop_reason.
func stopReason(finish string, stopMatch json.RawMessage, stops []string) (string, *string) {
	switch finish {
	case "length":
		return "max_tokens", nil
	case "tool_calls", "function_call":
		return "tool_use", nil
	case "content_filter":
		return "refusal", nil
	case "stop":
		var s string
		if len(stopMatch) > 0 && json.Unmarshal(stopMatch, &s) == nil && slices.Contains(stops, s) {
			return "stop_sequence", &s
		}
	}
	return "end_turn", nil
}

var errNoDone = errors.New("backend stream ended before it finished")
