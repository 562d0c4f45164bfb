package responses

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/caddy-olla/olla/translate/chat"
)

// ChatPath is the backend path a translated request goes to.
const ChatPath = chat.Path

// Error is a request this package refuses: Status 400 for a malformed one,
// 501 for one that needs a stored response. Field names the field at fault.
type Error struct {
	Status  int
	Field   string
	Message string
}

func (e *Error) Error() string { return e.Message }

func badField(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

func unsupported(field, why string) *Error {
	return &Error{Status: http.StatusNotImplemented, Field: field,
		Message: field + " is not supported through the load balancer: " + why +
			"; send the whole conversation in input (as Codex does with store=false)"}
}

// Request is a parsed Responses request.
type Request struct {
	Raw               []byte
	Model             string
	Stream            bool
	Instructions      string
	Items             []Item
	Tools             []Tool
	ToolChoice        json.RawMessage
	ParallelToolCalls *bool
	MaxOutputTokens   int
	Temperature       *float64
	TopP              *float64
	User              string
	ReasoningEffort   string
	Format            json.RawMessage // text.format
	dropped           []string
}

// Item is one input item.
type Item struct {
	Type    string // message, function_call, function_call_output
	Role    string
	Parts   []Part
	CallID  string
	Name    string
	Args    string
	Output  string
	Content json.RawMessage
}

// Part is one content part of a message.
type Part struct {
	Type     string // text, image
	Text     string
	ImageURL string
}

// Tool is a function tool.
type Tool struct {
	Name        string
	Description string
	Parameters  json.RawMessage
	Strict      *bool
}

// Dropped lists what a translation leaves out, sorted: top-level fields
// chat completions has no place for, and "reasoning" (reasoning items),
// "tools.<type>" (tools other than functions).
func (r *Request) Dropped() []string { return r.dropped }

func (r *Request) drop(name string) {
	if !slices.Contains(r.dropped, name) && len(r.dropped) < 32 {
		r.dropped = append(r.dropped, name)
	}
}

// translated are the top-level fields ToChat carries (or that need none).
var translated = []string{"model", "input", "instructions", "stream", "tools", "tool_choice", "parallel_tool_calls",
	"max_output_tokens", "temperature", "top_p", "user", "reasoning", "text", "previous_response_id",
	"conversation", "background"}

// Limits on what one request may hold, so a hostile body costs bounded work.
const (
	maxItems = 10000
	maxTools = 1000
)

// Parse parses and checks a Responses request. An *Error says why not.
func Parse(body []byte) (*Request, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, &Error{Status: http.StatusBadRequest, Message: "request body is not a JSON object"}
	}
	r := &Request{Raw: body}
	for _, f := range []string{"previous_response_id", "conversation"} {
		if raw, ok := present(top, f); ok && !bytes.Equal(raw, []byte(`""`)) {
			return nil, unsupported(f, "responses are not stored here, and a stored one lives on one backend")
		}
	}
	if raw, ok := present(top, "background"); ok && bytes.Equal(raw, []byte("true")) {
		return nil, unsupported("background", "a background response must be stored to be fetched")
	}
	if err := str(top, "model", &r.Model); err != nil {
		return nil, err
	}
	if r.Model == "" {
		return nil, badField("model", "field required")
	}
	if raw, ok := present(top, "stream"); ok && json.Unmarshal(raw, &r.Stream) != nil {
		return nil, badField("stream", "must be a boolean")
	}
	if err := str(top, "instructions", &r.Instructions); err != nil {
		return nil, err
	}
	if err := str(top, "user", &r.User); err != nil {
		return nil, err
	}
	if err := r.parseInput(top); err != nil {
		return nil, err
	}
	if err := r.parseTools(top); err != nil {
		return nil, err
	}
	if raw, ok := present(top, "parallel_tool_calls"); ok {
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			return nil, badField("parallel_tool_calls", "must be a boolean")
		}
		r.ParallelToolCalls = &b
	}
	if raw, ok := present(top, "max_output_tokens"); ok {
		var f float64
		if json.Unmarshal(raw, &f) != nil || f < 1 || f != float64(int(f)) {
			return nil, badField("max_output_tokens", "must be an integer >= 1")
		}
		r.MaxOutputTokens = int(f)
	}
	for _, f := range []struct {
		name string
		dst  **float64
	}{{"temperature", &r.Temperature}, {"top_p", &r.TopP}} {
		if raw, ok := present(top, f.name); ok {
			var v float64
			if json.Unmarshal(raw, &v) != nil {
				return nil, badField(f.name, "must be a number")
			}
			*f.dst = &v
		}
	}
	if raw, ok := present(top, "reasoning"); ok {
		var re struct {
			Effort *string `json:"effort"`
		}
		if json.Unmarshal(raw, &re) != nil {
			return nil, badField("reasoning", "must be an object")
		}
		if re.Effort != nil {
			r.ReasoningEffort = *re.Effort
		}
	}
	if raw, ok := present(top, "text"); ok {
		var t struct {
			Format    json.RawMessage `json:"format"`
			Verbosity json.RawMessage `json:"verbosity"`
		}
		if json.Unmarshal(raw, &t) != nil {
			return nil, badField("text", "must be an object")
		}
		if len(t.Verbosity) > 0 {
			r.drop("text.verbosity")
		}
		if err := r.parseFormat(t.Format); err != nil {
			return nil, err
		}
	}
	var extra []string
	for k := range top {
		if !slices.Contains(translated, k) {
			extra = append(extra, k)
		}
	}
	for _, k := range extra {
		r.drop(k)
	}
	sort.Strings(r.dropped)
	return r, nil
}

var present = chat.Present

func str(top map[string]json.RawMessage, name string, dst *string) error {
	if raw, ok := present(top, name); ok && json.Unmarshal(raw, dst) != nil {
		return badField(name, "must be a string")
	}
	return nil
}

func (r *Request) parseInput(top map[string]json.RawMessage) error {
	raw, ok := present(top, "input")
	if !ok {
		return badField("input", "field required")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		r.Items = []Item{{Type: "message", Role: "user", Parts: []Part{{Type: "text", Text: s}}}}
		return nil
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return badField("input", "must be a string or an array of input items")
	}
	if len(list) > maxItems {
		return badField("input", "more than %d items", maxItems)
	}
	for i, m := range list {
		field := fmt.Sprintf("input.%d", i)
		var it struct {
			Type      string          `json:"type"`
			Role      string          `json:"role"`
			Content   json.RawMessage `json:"content"`
			CallID    string          `json:"call_id"`
			Name      string          `json:"name"`
			Arguments *string         `json:"arguments"`
			Output    json.RawMessage `json:"output"`
		}
		if json.Unmarshal(m, &it) != nil {
			return badField(field, "must be an object")
		}
		if it.Type == "" && it.Role != "" {
			it.Type = "message" // the short form {"role","content"}
		}
		switch it.Type {
		case "message":
			if it.Role == "" {
				return badField(field+".role", "field required")
			}
			parts, err := parseContent(field+".content", it.Content)
			if err != nil {
				return err
			}
			r.Items = append(r.Items, Item{Type: "message", Role: it.Role, Parts: parts})
		case "function_call":
			if it.CallID == "" || it.Name == "" {
				return badField(field, "a function_call needs call_id and name")
			}
			args := "{}"
			if it.Arguments != nil && *it.Arguments != "" {
				args = *it.Arguments
			}
			r.Items = append(r.Items, Item{Type: "function_call", CallID: it.CallID, Name: it.Name, Args: args})
		case "function_call_output":
			if it.CallID == "" {
				return badField(field+".call_id", "field required")
			}
			out, err := outputText(field+".output", it.Output)
			if err != nil {
				return err
			}
			r.Items = append(r.Items, Item{Type: "function_call_output", CallID: it.CallID, Output: out})
		case "reasoning":
			r.drop("reasoning") // encrypted or summarised thoughts: chat completions takes none back
		case "item_reference":
			return unsupported(field+" (item_reference)", "items are not stored here")
		case "":
			return badField(field+".type", "field required")
		default:
			r.drop("input." + it.Type)
		}
	}
	return nil
}

// parseContent reads a message's content: a string or an array of parts.
func parseContent(field string, raw json.RawMessage) ([]Part, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []Part{{Type: "text", Text: s}}, nil
	}
	var list []struct {
		Type     string          `json:"type"`
		Text     string          `json:"text"`
		Refusal  string          `json:"refusal"`
		ImageURL json.RawMessage `json:"image_url"`
	}
	if json.Unmarshal(raw, &list) != nil {
		return nil, badField(field, "must be a string or an array of content parts")
	}
	parts := make([]Part, 0, len(list))
	for j, p := range list {
		switch p.Type {
		case "input_text", "output_text", "text", "summary_text", "reasoning_text":
			parts = append(parts, Part{Type: "text", Text: p.Text})
		case "refusal":
			parts = append(parts, Part{Type: "text", Text: p.Refusal})
		case "input_image":
			var url string
			if json.Unmarshal(p.ImageURL, &url) != nil || url == "" {
				return nil, badField(fmt.Sprintf("%s.%d.image_url", field, j), "an image needs an image_url (a file_id needs the Files API)")
			}
			parts = append(parts, Part{Type: "image", ImageURL: url})
		default:
			return nil, badField(fmt.Sprintf("%s.%d.type", field, j), "content type %q cannot be translated for this backend", p.Type)
		}
	}
	return parts, nil
}

// outputText flattens a function_call_output's output to text.
func outputText(field string, raw json.RawMessage) (string, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	parts, err := parseContent(field, raw)
	if err != nil {
		return "", err
	}
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		if p.Type == "text" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n"), nil
}

func (r *Request) parseTools(top map[string]json.RawMessage) error {
	if raw, ok := present(top, "tools"); ok {
		var list []struct {
			Type        string          `json:"type"`
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
			Strict      *bool           `json:"strict"`
		}
		if json.Unmarshal(raw, &list) != nil {
			return badField("tools", "must be an array of tools")
		}
		if len(list) > maxTools {
			return badField("tools", "more than %d tools", maxTools)
		}
		for i, t := range list {
			if t.Type != "function" {
				r.drop("tools." + t.Type) // web_search, namespace, custom...: nothing to run them
				continue
			}
			if t.Name == "" {
				return badField(fmt.Sprintf("tools.%d.name", i), "field required")
			}
			r.Tools = append(r.Tools, Tool{Name: t.Name, Description: t.Description, Parameters: t.Parameters, Strict: t.Strict})
		}
	}
	if raw, ok := present(top, "tool_choice"); ok {
		var mode string
		if json.Unmarshal(raw, &mode) == nil {
			switch mode {
			case "auto", "none", "required":
				r.ToolChoice = raw
			default:
				r.drop("tool_choice")
			}
			return nil
		}
		var named struct {
			Type string `json:"type"`
			Name string `json:"name"`
		}
		if json.Unmarshal(raw, &named) != nil {
			return badField("tool_choice", "must be a string or an object")
		}
		if named.Type == "function" && named.Name != "" {
			r.ToolChoice, _ = json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": named.Name}})
		} else {
			r.drop("tool_choice")
		}
	}
	return nil
}

func (r *Request) parseFormat(raw json.RawMessage) error {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	var f struct {
		Type   string          `json:"type"`
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
		Strict *bool           `json:"strict"`
	}
	if json.Unmarshal(raw, &f) != nil {
		return badField("text.format", "must be an object")
	}
	switch f.Type {
	case "text", "":
	case "json_object":
		r.Format = json.RawMessage(`{"type":"json_object"}`)
	case "json_schema":
		js := map[string]any{"name": f.Name, "schema": f.Schema}
		if f.Strict != nil {
			js["strict"] = *f.Strict
		}
		r.Format, _ = json.Marshal(map[string]any{"type": "json_schema", "json_schema": js})
	default:
		r.drop("text.format")
	}
	return nil
}
