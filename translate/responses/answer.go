package responses

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-olla/olla/translate/chat"
)

// newID makes a fresh id with prefix (resp_, msg_, fc_); tests replace it.
var newID = chat.NewID

// now is the clock for created_at; tests replace it.
var now = time.Now

// Response is a response object, in the field order of OpenAI's.
type Response struct {
	ID                string           `json:"id"`
	Object            string           `json:"object"`
	CreatedAt         int64            `json:"created_at"`
	Status            string           `json:"status"`
	Error             *ErrorObject     `json:"error"`
	IncompleteDetails *incomplete      `json:"incomplete_details"`
	Instructions      *string          `json:"instructions"`
	MaxOutputTokens   *int             `json:"max_output_tokens"`
	Model             string           `json:"model"`
	Output            []OutputItem     `json:"output"`
	ParallelToolCalls bool             `json:"parallel_tool_calls"`
	Store             bool             `json:"store"`
	Temperature       *float64         `json:"temperature"`
	ToolChoice        json.RawMessage  `json:"tool_choice"`
	Tools             []map[string]any `json:"tools"`
	TopP              *float64         `json:"top_p"`
	Usage             *Usage           `json:"usage"`
}

// ErrorObject is a failed response's error.
type ErrorObject struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type incomplete struct {
	Reason string `json:"reason"`
}

// OutputItem is a message or a function_call in a response's output.
type OutputItem struct {
	Type      string         `json:"type"`
	ID        string         `json:"id"`
	Status    string         `json:"status"`
	Role      string         `json:"role,omitempty"`
	Content   *[]ContentPart `json:"content,omitempty"` // a message's, [] while it opens`
	CallID    string         `json:"call_id,omitempty"`
	Name      string         `json:"name,omitempty"`
	Arguments *string        `json:"arguments,omitempty"`
}

// ContentPart is an output_text part.
type ContentPart struct {
	Type        string     `json:"type"`
	Text        string     `json:"text"`
	Annotations []struct{} `json:"annotations"`
}

// Usage is a response's token usage.
type Usage struct {
	InputTokens         int          `json:"input_tokens"`
	InputTokensDetails  cachedTokens `json:"input_tokens_details"`
	OutputTokens        int          `json:"output_tokens"`
	OutputTokensDetails reasonTokens `json:"output_tokens_details"`
	TotalTokens         int          `json:"total_tokens"`
}

type cachedTokens struct {
	CachedTokens int `json:"cached_tokens"`
}

type reasonTokens struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

func usageOf(u *chat.Usage) *Usage {
	if u == nil {
		return nil
	}
	total := u.TotalTokens
	if total == 0 {
		total = u.PromptTokens + u.CompletionTokens
	}
	return &Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: total}
}

// newResponse is the response object's frame for r, in progress.
func newResponse(r *Request) Response {
	resp := Response{ID: newID("resp_"), Object: "response", CreatedAt: now().Unix(), Status: "in_progress",
		Model: r.Model, Output: []OutputItem{}, ParallelToolCalls: true, Temperature: r.Temperature, TopP: r.TopP,
		ToolChoice: json.RawMessage(`"auto"`), Tools: []map[string]any{}}
	if r.Instructions != "" {
		resp.Instructions = &r.Instructions
	}
	if r.MaxOutputTokens > 0 {
		n := r.MaxOutputTokens
		resp.MaxOutputTokens = &n
	}
	if r.ParallelToolCalls != nil {
		resp.ParallelToolCalls = *r.ParallelToolCalls
	}
	if len(r.ToolChoice) > 0 && r.ToolChoice[0] == '"' {
		resp.ToolChoice = r.ToolChoice
	}
	for _, t := range r.Tools {
		resp.Tools = append(resp.Tools, map[string]any{"type": "function", "name": t.Name, "description": t.Description,
			"parameters": t.Parameters, "strict": t.Strict})
	}
	return resp
}

// finishStatus sets a finished response's status from the finish reason.
func (resp *Response) finish(reason string) {
	resp.Status = "completed"
	if reason == "length" {
		resp.Status = "incomplete"
		resp.IncompleteDetails = &incomplete{Reason: "max_output_tokens"}
	}
	if reason == "content_filter" {
		resp.Status = "incomplete"
		resp.IncompleteDetails = &incomplete{Reason: "content_filter"}
	}
}

// errNotCompletion is a 2xx answer that is not a chat completion.
var errNotCompletion = errors.New("the backend's answer is not a chat completion")

// FromChat translates a non-stream chat completion into a response object.
func FromChat(body []byte, r *Request) ([]byte, error) {
	var c chat.Completion
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotCompletion, err)
	}
	if len(c.Error) > 0 && !bytes.Equal(c.Error, []byte("null")) || len(c.Choices) == 0 {
		return nil, fmt.Errorf("%w: it has no choices", errNotCompletion)
	}
	resp := newResponse(r)
	ch := c.Choices[0]
	text := ch.Message.Refusal
	var s string
	if json.Unmarshal(ch.Message.Content, &s) == nil && s != "" {
		text = s
	}
	if text != "" || len(ch.Message.ToolCalls) == 0 {
		resp.Output = append(resp.Output, OutputItem{Type: "message", ID: newID("msg_"), Status: "completed", Role: "assistant",
			Content: &[]ContentPart{{Type: "output_text", Text: text, Annotations: []struct{}{}}}})
	}
	for _, tc := range ch.Message.ToolCalls {
		args := argumentsText(tc.Function.Arguments)
		id := tc.ID
		if id == "" {
			id = newID("call_")
		}
		resp.Output = append(resp.Output, OutputItem{Type: "function_call", ID: newID("fc_"), Status: "completed",
			CallID: id, Name: tc.Function.Name, Arguments: &args})
	}
	resp.finish(ch.FinishReason)
	resp.Usage = usageOf(c.Usage)
	return marshal(resp), nil
}

// argumentsText is a call's arguments as the JSON text Responses carries:
// a string as it is, an object (some servers send one) as its JSON.
func argumentsText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return "{}"
		}
		return s
	}
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "{}"
	}
	return string(raw)
}

func marshal(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // our own types
	return buf.Bytes()
}

// ErrorBody is OpenAI's error envelope (the Responses API uses it too).
func ErrorBody(status int, message string) []byte {
	typ := "invalid_request_error"
	switch {
	case status == 429:
		typ = "rate_limit_error"
	case status >= 500:
		typ = "api_error"
	}
	return marshal(map[string]any{"error": map[string]any{"message": message, "type": typ, "param": nil, "code": nil}})
}
