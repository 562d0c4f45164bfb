package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/caddy-olla/olla/translate/chat"
)

// OpenAIPath is the backend path a translated request goes to.
const OpenAIPath = chat.Path

type oaRequest struct {
	Model           string        `json:"model"`
	Messages        []oaMessage   `json:"messages"`
	MaxTokens       int           `json:"max_tokens"`
	Stream          bool          `json:"stream,omitempty"`
	StreamOptions   *oaStreamOpts `json:"stream_options,omitempty"`
	Temperature     *float64      `json:"temperature,omitempty"`
	TopP            *float64      `json:"top_p,omitempty"`
	TopK            *int          `json:"top_k,omitempty"`
	Stop            []string      `json:"stop,omitempty"`
	Tools           []oaTool      `json:"tools,omitempty"`
	ToolChoice      any           `json:"tool_choice,omitempty"`
	ParallelTools   *bool         `json:"parallel_tool_calls,omitempty"`
	User            string        `json:"user,omitempty"`
	ReasoningEffort string        `json:"reasoning_effort,omitempty"`
}

// The chat-completions types, shared with translate/responses.
type (
	oaStreamOpts  = chat.StreamOptions
	oaMessage     = chat.Message
	oaPart        = chat.Part
	oaImageURL    = chat.ImageURL
	oaToolCall    = chat.ToolCall
	oaFunction    = chat.Function
	oaTool        = chat.Tool
	oaFunctionDef = chat.FunctionDef
)

// ToOpenAI translates a Messages request into an OpenAI chat-completions body
// for OpenAIPath. A *RequestError names what cannot be translated (an unknown
// block type, a server tool, a binary document).
func ToOpenAI(r *Request) ([]byte, error) {
	out := oaRequest{
		Model:       r.Model,
		MaxTokens:   r.MaxTokens,
		Stream:      r.Stream,
		Temperature: r.Temperature,
		TopP:        r.TopP,
		TopK:        r.TopK,
		Stop:        r.StopSequences,
		User:        r.UserID,
	}
	if r.Stream {
		out.StreamOptions = &oaStreamOpts{IncludeUsage: true}
	}
	if len(r.System) > 0 {
		text, err := joinText("system", r.System)
		if err != nil {
			return nil, err
		}
		out.Messages = append(out.Messages, oaMessage{Role: "system", Content: text})
	}
	for i, m := range r.Messages {
		field := fmt.Sprintf("messages.%d.content", i)
		var msgs []oaMessage
		var err error
		switch m.Role {
		case "assistant":
			msgs, err = assistantMessage(field, m.Content)
		case "user":
			msgs, err = userMessages(field, m.Content)
		case "system":
			// a system message mid-conversation stays where it was
			var text string
			text, err = joinText(field, m.Content)
			msgs = []oaMessage{{Role: "system", Content: text}}
		default:
			return nil, fieldError(fmt.Sprintf("messages.%d.role", i), "role %q cannot be translated for this backend", m.Role)
		}
		if err != nil {
			return nil, err
		}
		out.Messages = append(out.Messages, msgs...)
	}
	for i, t := range r.Tools {
		if t.Type != "" && t.Type != "custom" {
			return nil, fieldError(fmt.Sprintf("tools.%d.type", i), "server tool %q cannot be translated for this backend", t.Type)
		}
		params := t.InputSchema
		if len(params) == 0 {
			params = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, oaTool{Type: "function", Function: oaFunctionDef{Name: t.Name, Description: t.Description, Parameters: params}})
	}
	if tc := r.ToolChoice; tc != nil {
		switch tc.Type {
		case "auto":
			out.ToolChoice = "auto"
		case "any":
			out.ToolChoice = "required"
		case "none":
			out.ToolChoice = "none"
		case "tool":
			out.ToolChoice = map[string]any{"type": "function", "function": map[string]string{"name": tc.Name}}
		}
		if tc.DisableParallelToolUse && tc.Type != "none" {
			f := false
			out.ParallelTools = &f
		}
	}
	if t := r.Thinking; t != nil && t.Type == "enabled" {
		switch {
		case t.BudgetTokens < 4096:
			out.ReasoningEffort = "low"
		case t.BudgetTokens < 16384:
			out.ReasoningEffort = "medium"
		default:
			out.ReasoningEffort = "high"
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// joinText joins text blocks (and text-source documents); anything else in a
// place that only takes text is an error naming it.
func joinText(field string, blocks []Block) (string, error) {
	var parts []string
	for j, b := range blocks {
		switch {
		case b.Type == "text":
			parts = append(parts, b.Text)
		case b.Type == "document" && b.Source != nil && b.Source.Type == "text":
			parts = append(parts, b.Source.Data)
		default:
			return "", untranslatable(fmt.Sprintf("%s.%d", field, j), b)
		}
	}
	return strings.Join(parts, "\n"), nil
}

func untranslatable(field string, b Block) *RequestError {
	if b.Type == "document" {
		return fieldError(field, "document blocks with a %q source cannot be translated for this backend", sourceType(b))
	}
	return fieldError(field+".type", "content block type %q cannot be translated for this backend", b.Type)
}

func sourceType(b Block) string {
	if b.Source == nil {
		return ""
	}
	return b.Source.Type
}

func imagePart(b Block) oaPart {
	url := b.Source.URL
	if b.Source.Type == "base64" {
		url = "data:" + b.Source.MediaType + ";base64," + b.Source.Data
	}
	return oaPart{Type: "image_url", ImageURL: &oaImageURL{URL: url}}
}

// userMessages turns one user turn into tool messages (one per tool_result,
// first, as OpenAI wants them right after the assistant's tool_calls) and then
// one user message with the rest.
func userMessages(field string, blocks []Block) ([]oaMessage, error) {
	var out []oaMessage
	var parts []oaPart
	hasImage := false
	for j, b := range blocks {
		bf := fmt.Sprintf("%s.%d", field, j)
		switch b.Type {
		case "text":
			parts = append(parts, oaPart{Type: "text", Text: b.Text})
		case "image":
			parts = append(parts, imagePart(b))
			hasImage = true
		case "document":
			if b.Source == nil || b.Source.Type != "text" {
				return nil, untranslatable(bf, b)
			}
			parts = append(parts, oaPart{Type: "text", Text: b.Source.Data})
		case "tool_result":
			text, images, err := toolResultContent(bf+".content", b)
			if err != nil {
				return nil, err
			}
			out = append(out, oaMessage{Role: "tool", ToolCallID: b.ToolUseID, Content: text})
			if len(images) > 0 {
				parts = append(parts, images...)
				hasImage = true
			}
		case "thinking", "redacted_thinking":
			// Nothing on the OpenAI side takes these back.
		default:
			return nil, untranslatable(bf, b)
		}
	}
	if len(parts) > 0 || len(out) == 0 {
		// An empty turn stays a turn, so roles keep alternating.
		if hasImage {
			out = append(out, oaMessage{Role: "user", Content: parts})
		} else {
			out = append(out, oaMessage{Role: "user", Content: joinParts(parts)})
		}
	}
	return out, nil
}

func joinParts(parts []oaPart) string {
	texts := make([]string, len(parts))
	for i, p := range parts {
		texts[i] = p.Text
	}
	return strings.Join(texts, "\n")
}

// toolResultContent flattens a tool_result's content to text; its images are
// returned to ride on the following user message.
func toolResultContent(field string, b Block) (string, []oaPart, error) {
	var text string
	var images []oaPart
	if len(b.Content) > 0 && !bytes.Equal(b.Content, []byte("null")) {
		var s string
		if json.Unmarshal(b.Content, &s) == nil {
			text = s
		} else {
			var blocks []Block
			if json.Unmarshal(b.Content, &blocks) != nil {
				return "", nil, fieldError(field, "must be a string or an array of content blocks")
			}
			var texts []string
			for k, nb := range blocks {
				switch nb.Type {
				case "text":
					texts = append(texts, nb.Text)
				case "image":
					if nb.Source == nil {
						return "", nil, fieldError(fmt.Sprintf("%s.%d.source", field, k), "field required")
					}
					images = append(images, imagePart(nb))
				case "document":
					if nb.Source == nil || nb.Source.Type != "text" {
						return "", nil, untranslatable(fmt.Sprintf("%s.%d", field, k), nb)
					}
					texts = append(texts, nb.Source.Data)
				default:
					return "", nil, untranslatable(fmt.Sprintf("%s.%d", field, k), nb)
				}
			}
			text = strings.Join(texts, "\n")
		}
	}
	if b.IsError {
		text = "Error: " + text
	}
	return text, images, nil
}

// assistantMessage turns one assistant turn into one message with text and
// tool_calls; content is null when there are only tool calls.
func assistantMessage(field string, blocks []Block) ([]oaMessage, error) {
	var texts []string
	var calls []oaToolCall
	for j, b := range blocks {
		switch b.Type {
		case "text":
			texts = append(texts, b.Text)
		case "tool_use":
			args := "{}"
			if len(b.Input) > 0 {
				var c bytes.Buffer
				if json.Compact(&c, b.Input) == nil {
					args = c.String()
				}
			}
			calls = append(calls, oaToolCall{ID: b.ID, Type: "function", Function: oaFunction{Name: b.Name, Arguments: args}})
		case "thinking", "redacted_thinking":
		default:
			return nil, untranslatable(fmt.Sprintf("%s.%d", field, j), b)
		}
	}
	msg := oaMessage{Role: "assistant", ToolCalls: calls}
	if len(texts) > 0 || len(calls) == 0 {
		msg.Content = strings.Join(texts, "\n")
	}
	return []oaMessage{msg}, nil
}
