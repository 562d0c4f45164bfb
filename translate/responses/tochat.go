package responses

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/caddy-olla/olla/translate/chat"
)

type chatRequest struct {
	Model           string              `json:"model"`
	Messages        []chat.Message      `json:"messages"`
	MaxTokens       int                 `json:"max_tokens,omitempty"`
	Stream          bool                `json:"stream,omitempty"`
	StreamOptions   *chat.StreamOptions `json:"stream_options,omitempty"`
	Temperature     *float64            `json:"temperature,omitempty"`
	TopP            *float64            `json:"top_p,omitempty"`
	Tools           []chat.Tool         `json:"tools,omitempty"`
	ToolChoice      json.RawMessage     `json:"tool_choice,omitempty"`
	ParallelTools   *bool               `json:"parallel_tool_calls,omitempty"`
	User            string              `json:"user,omitempty"`
	ReasoningEffort string              `json:"reasoning_effort,omitempty"`
	ResponseFormat  json.RawMessage     `json:"response_format,omitempty"`
}

// ToChat translates a Responses request into a chat-completions body for
// ChatPath, naming model (the name the endpoint knows).
func ToChat(r *Request, model string) []byte {
	out := chatRequest{
		Model:           model,
		MaxTokens:       r.MaxOutputTokens,
		Stream:          r.Stream,
		Temperature:     r.Temperature,
		TopP:            r.TopP,
		ToolChoice:      r.ToolChoice,
		ParallelTools:   r.ParallelToolCalls,
		User:            r.User,
		ReasoningEffort: r.ReasoningEffort,
		ResponseFormat:  r.Format,
	}
	if r.Stream {
		out.StreamOptions = &chat.StreamOptions{IncludeUsage: true}
	}
	if r.Instructions != "" {
		out.Messages = append(out.Messages, chat.Message{Role: "system", Content: r.Instructions})
	}
	for _, it := range r.Items {
		switch it.Type {
		case "message":
			role := it.Role
			if role == "developer" {
				role = "system"
			}
			out.Messages = append(out.Messages, chat.Message{Role: role, Content: partsContent(it.Parts)})
		case "function_call":
			call := chat.ToolCall{ID: it.CallID, Type: "function", Function: chat.Function{Name: it.Name, Arguments: it.Args}}
			// calls in a row, and the assistant's text before them, are one
			// assistant turn
			if n := len(out.Messages); n > 0 && out.Messages[n-1].Role == "assistant" {
				last := &out.Messages[n-1]
				last.ToolCalls = append(last.ToolCalls, call)
				if s, ok := last.Content.(string); ok && s == "" {
					last.Content = nil
				}
				continue
			}
			out.Messages = append(out.Messages, chat.Message{Role: "assistant", ToolCalls: []chat.ToolCall{call}})
		case "function_call_output":
			out.Messages = append(out.Messages, chat.Message{Role: "tool", ToolCallID: it.CallID, Content: it.Output})
		}
	}
	for _, t := range r.Tools {
		params := t.Parameters
		if len(params) == 0 {
			params = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, chat.Tool{Type: "function",
			Function: chat.FunctionDef{Name: t.Name, Description: t.Description, Parameters: params, Strict: t.Strict}})
	}
	if len(out.Tools) == 0 {
		out.ToolChoice, out.ParallelTools = nil, nil // no tools left to choose from
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(out) // our own types: cannot fail
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// partsContent is a string when every part is text, content parts when
// there is an image.
func partsContent(parts []Part) any {
	image := false
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		if p.Type == "image" {
			image = true
		} else {
			texts = append(texts, p.Text)
		}
	}
	if !image {
		return strings.Join(texts, "\n")
	}
	out := make([]chat.Part, 0, len(parts))
	for _, p := range parts {
		if p.Type == "image" {
			out = append(out, chat.Part{Type: "image_url", ImageURL: &chat.ImageURL{URL: p.ImageURL}})
		} else {
			out = append(out, chat.Part{Type: "text", Text: p.Text})
		}
	}
	return out
}
