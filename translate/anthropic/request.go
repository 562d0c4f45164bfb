package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/caddy-olla/olla/translate/chat"
)

// RequestError is a request the Messages API must refuse with 400
// invalid_request_error. Field names the offending field ("max_tokens",
// "messages.1.content.0.type").
type RequestError struct {
	Field   string
	Message string
}

func (e *RequestError) Error() string { return e.Message }

// Status is the HTTP status to answer with.
func (e *RequestError) Status() int { return http.StatusBadRequest }

// Body is the Anthropic error envelope for the client.
func (e *RequestError) Body() []byte { return ErrorBody(http.StatusBadRequest, e.Message) }

func fieldError(field, format string, args ...any) *RequestError {
	return &RequestError{Field: field, Message: field + ": " + fmt.Sprintf(format, args...)}
}

// Request is a parsed, validated Messages request. Raw holds the body as
// received, for passthrough.
type Request struct {
	Raw           []byte
	Model         string
	MaxTokens     int
	System        []Block // a string system prompt is one text block
	Messages      []Message
	Stream        bool
	Temperature   *float64
	TopP          *float64
	TopK          *int
	StopSequences []string
	Tools         []Tool
	ToolChoice    *ToolChoice
	Thinking      *Thinking
	UserID        string // metadata.user_id

	features Features
	dropped  []string
}

// Message is one turn; a string content is one text block.
type Message struct {
	Role    string
	Content []Block
}

// Block is one content block. Only the fields of its Type are set; Raw keeps
// the block as sent.
type Block struct {
	Type string `json:"type"`
	// text
	Text string `json:"text,omitempty"`
	// image, document
	Source *Source `json:"source,omitempty"`
	// tool_use
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
	// tool_result: Content is a string or an array of blocks
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"`
	IsError   bool            `json:"is_error,omitempty"`
	// thinking
	Thinking string `json:"thinking,omitempty"`
}

// Source is an image's or document's data.
type Source struct {
	Type      string `json:"type"` // base64, url, text
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

// Tool is one tool definition. Type is empty or "custom" for a client tool;
// anything else is one of Anthropic's server tools.
type Tool struct {
	Type        string          `json:"type,omitempty"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
}

// ToolChoice is tool_choice.
type ToolChoice struct {
	Type                   string `json:"type"` // auto, any, tool, none
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

// Thinking is the extended-thinking config.
type Thinking struct {
	Type         string `json:"type"` // enabled, disabled, adaptive
	BudgetTokens int    `json:"budget_tokens,omitempty"`
}

// Features says what a request uses, so a router can tell whether a backend's
// native Messages API serves it (passthrough) or it must be translated.
type Features struct {
	Images    bool
	Documents bool
	// BinaryDocuments: a document block whose source is not plain text (a
	// PDF); only a native backend can read it.
	BinaryDocuments bool
	Tools           bool // tools defined, or tool_use / tool_result blocks present
	ServerTools     bool // a tool whose type is an Anthropic server tool
	Thinking        bool // a thinking config, or thinking blocks in the history
	// UnknownBlocks lists content block types this package cannot translate,
	// in order of first appearance. Passthrough keeps them.
	UnknownBlocks []string
	// UnknownRoles lists message roles other than user, assistant and
	// system (a newer client's), in order of first appearance. Passthrough
	// keeps them; translation cannot.
	UnknownRoles []string
}

// Translatable reports whether ToOpenAI can carry the request.
func (f Features) Translatable() bool {
	return len(f.UnknownBlocks) == 0 && len(f.UnknownRoles) == 0 && !f.ServerTools && !f.BinaryDocuments
}

// Dropped lists what a translation leaves out, in order of first
// appearance: top-level fields chat completions has no place for
// (context_management, output_config, ...), and inside the request
// "cache_control", "citations", "thinking" (a type other than enabled or
// disabled) and "tool_choice" (an unknown form). Passthrough keeps them
// all; the proxy names them in X-Olla-Translation-Dropped.
func (r *Request) Dropped() []string { return r.dropped }

func (r *Request) drop(name string) {
	if !slices.Contains(r.dropped, name) && len(r.dropped) < 32 {
		r.dropped = append(r.dropped, name)
	}
}

// translatedFields are the top-level fields ToOpenAI carries.
var translatedFields = []string{"model", "max_tokens", "system", "messages", "stream", "temperature", "top_p",
	"top_k", "stop_sequences", "tools", "tool_choice", "metadata", "thinking"}

// Features reports what the request uses.
func (r *Request) Features() Features { return r.features }

// knownBlocks are the block types ToOpenAI handles.
var knownBlocks = []string{"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}

// ParseRequest parses and validates a Messages request. A *RequestError
// names the field at fault. Unknown content block types are not an error here
// (a native backend may know them); they show in Features.
func ParseRequest(body []byte) (*Request, error) { return parse(body, true) }

// ParseCountTokens parses and validates a count_tokens request: a Messages
// request without max_tokens (one that is given is still checked).
func ParseCountTokens(body []byte) (*Request, error) { return parse(body, false) }

func parse(body []byte, needMaxTokens bool) (*Request, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, &RequestError{Message: "request body is not a JSON object"}
	}
	r := &Request{Raw: body}
	var extra []string
	for k := range top {
		if !slices.Contains(translatedFields, k) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra) // a map's order is random; the note's is not
	for _, k := range extra {
		r.drop(k)
	}

	if err := decodeString(top, "model", &r.Model, true); err != nil {
		return nil, err
	}
	if r.Model == "" {
		return nil, fieldError("model", "must not be empty")
	}
	if _, given := present(top, "max_tokens"); given || needMaxTokens {
		if err := decodeMaxTokens(top, r); err != nil {
			return nil, err
		}
	}
	if raw, ok := present(top, "system"); ok {
		blocks, err := decodeContent("system", raw, r, false)
		if err != nil {
			return nil, err
		}
		r.System = blocks
	}
	if err := decodeMessages(top["messages"], r); err != nil {
		return nil, err
	}
	if raw, ok := present(top, "stream"); ok {
		if json.Unmarshal(raw, &r.Stream) != nil {
			return nil, fieldError("stream", "must be a boolean")
		}
	}
	var err error
	if r.Temperature, err = decodeRange(top, "temperature", 0, 1); err != nil {
		return nil, err
	}
	if r.TopP, err = decodeRange(top, "top_p", 0, 1); err != nil {
		return nil, err
	}
	if raw, ok := present(top, "top_k"); ok {
		k, ok := wholeNumber(raw)
		if !ok || k < 0 {
			return nil, fieldError("top_k", "must be an integer >= 0")
		}
		r.TopK = &k
	}
	if raw, ok := present(top, "stop_sequences"); ok {
		if json.Unmarshal(raw, &r.StopSequences) != nil {
			return nil, fieldError("stop_sequences", "must be an array of strings")
		}
	}
	if err := decodeTools(top, r); err != nil {
		return nil, err
	}
	if raw, ok := present(top, "metadata"); ok {
		var m struct {
			UserID *string `json:"user_id"`
		}
		if json.Unmarshal(raw, &m) != nil {
			return nil, fieldError("metadata", "must be an object with a string user_id")
		}
		if m.UserID != nil {
			r.UserID = *m.UserID
		}
	}
	if raw, ok := present(top, "thinking"); ok {
		var t Thinking
		if json.Unmarshal(raw, &t) != nil || t.Type == "" {
			return nil, fieldError("thinking", "must be an object with a type")
		}
		if t.Type == "enabled" && t.BudgetTokens < 1 {
			return nil, fieldError("thinking.budget_tokens", "must be an integer >= 1")
		}
		r.Thinking = &t
		if t.Type != "disabled" {
			r.features.Thinking = true
		}
		if t.Type != "enabled" && t.Type != "disabled" {
			r.drop("thinking") // adaptive, or newer: chat completions has no such mode
		}
	}
	return r, nil
}

// present returns a field that is there and not null.
var present = chat.Present

func decodeString(top map[string]json.RawMessage, name string, dst *string, required bool) error {
	raw, ok := present(top, name)
	if !ok {
		if required {
			return fieldError(name, "field required")
		}
		return nil
	}
	if json.Unmarshal(raw, dst) != nil {
		return fieldError(name, "must be a string")
	}
	return nil
}

func decodeMaxTokens(top map[string]json.RawMessage, r *Request) error {
	raw, ok := present(top, "max_tokens")
	if !ok {
		return fieldError("max_tokens", "field required")
	}
	n, ok := wholeNumber(raw)
	if !ok || n < 1 {
		return fieldError("max_tokens", "must be an integer >= 1")
	}
	r.MaxTokens = n
	return nil
}

// wholeNumber reads a JSON integer (1 and 1.0 both count) that fits an int.
func wholeNumber(raw json.RawMessage) (int, bool) {
	var f float64
	if json.Unmarshal(raw, &f) != nil || f > 1<<53 || f < -(1<<53) || f != float64(int64(f)) {
		return 0, false
	}
	return int(f), true
}

func decodeRange(top map[string]json.RawMessage, name string, lo, hi float64) (*float64, error) {
	raw, ok := present(top, name)
	if !ok {
		return nil, nil
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil || f < lo || f > hi {
		return nil, fieldError(name, "must be a number between %g and %g", lo, hi)
	}
	return &f, nil
}

func decodeMessages(raw json.RawMessage, r *Request) error {
	var list []json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &list) != nil || list == nil {
		return fieldError("messages", "field required: an array of messages")
	}
	if len(list) == 0 {
		return fieldError("messages", "must contain at least one message")
	}
	r.Messages = make([]Message, 0, len(list))
	for i, m := range list {
		field := fmt.Sprintf("messages.%d", i)
		var msg struct {
			Role    *string         `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(m, &msg) != nil {
			return fieldError(field, "must be an object")
		}
		// user and assistant, system (Claude Code sends one mid-conversation),
		// and any role a newer client adds: passthrough carries it as sent
		if msg.Role == nil || *msg.Role == "" {
			return fieldError(field+".role", "must be a non-empty string")
		}
		if role := *msg.Role; role != "user" && role != "assistant" && role != "system" &&
			!slices.Contains(r.features.UnknownRoles, role) && len(r.features.UnknownRoles) < 16 {
			r.features.UnknownRoles = append(r.features.UnknownRoles, role)
		}
		if len(msg.Content) == 0 || bytes.Equal(msg.Content, []byte("null")) {
			return fieldError(field+".content", "field required")
		}
		blocks, err := decodeContent(field+".content", msg.Content, r, false)
		if err != nil {
			return err
		}
		r.Messages = append(r.Messages, Message{Role: *msg.Role, Content: blocks})
	}
	return nil
}

// decodeContent reads a string or an array of blocks, noting features.
// inResult is set for a tool_result's content, where tool blocks may not
// appear (which also keeps hostile nesting from being parsed once per level).
func decodeContent(field string, raw json.RawMessage, r *Request, inResult bool) ([]Block, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []Block{{Type: "text", Text: s}}, nil
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil, fieldError(field, "must be a string or an array of content blocks")
	}
	blocks := make([]Block, 0, len(list))
	for j, b := range list {
		bf := fmt.Sprintf("%s.%d", field, j)
		var head struct {
			Type         *string         `json:"type"`
			CacheControl json.RawMessage `json:"cache_control"`
			Citations    json.RawMessage `json:"citations"`
		}
		if json.Unmarshal(b, &head) != nil || head.Type == nil || *head.Type == "" {
			return nil, fieldError(bf+".type", "field required")
		}
		typ := *head.Type
		if len(head.CacheControl) > 0 {
			r.drop("cache_control")
		}
		if len(head.Citations) > 0 {
			r.drop("citations")
		}
		if inResult && (typ == "tool_result" || typ == "tool_use") {
			return nil, fieldError(bf+".type", "%s cannot appear inside a tool_result", typ)
		}
		if !slices.Contains(knownBlocks, typ) {
			if !slices.Contains(r.features.UnknownBlocks, typ) && len(r.features.UnknownBlocks) < 16 {
				r.features.UnknownBlocks = append(r.features.UnknownBlocks, typ)
			}
			blocks = append(blocks, Block{Type: typ})
			continue
		}
		var blk Block
		if json.Unmarshal(b, &blk) != nil {
			return nil, fieldError(bf, "malformed %s block", typ)
		}
		if err := checkBlock(bf, &blk, r); err != nil {
			return nil, err
		}
		blocks = append(blocks, blk)
	}
	return blocks, nil
}

func checkBlock(field string, b *Block, r *Request) error {
	switch b.Type {
	case "image":
		r.features.Images = true
		if b.Source == nil || (b.Source.Type == "base64" && (b.Source.MediaType == "" || b.Source.Data == "")) ||
			(b.Source.Type == "url" && b.Source.URL == "") || (b.Source.Type != "base64" && b.Source.Type != "url") {
			return fieldError(field+".source", `must be {"type":"base64","media_type","data"} or {"type":"url","url"}`)
		}
	case "document":
		r.features.Documents = true
		if b.Source == nil {
			return fieldError(field+".source", "field required")
		}
		if b.Source.Type != "text" {
			r.features.BinaryDocuments = true
		}
	case "tool_use":
		r.features.Tools = true
		if b.ID == "" || b.Name == "" {
			return fieldError(field, "tool_use needs an id and a name")
		}
		if len(b.Input) > 0 && b.Input[0] != '{' {
			return fieldError(field+".input", "must be an object")
		}
	case "tool_result":
		r.features.Tools = true
		if b.ToolUseID == "" {
			return fieldError(field+".tool_use_id", "field required")
		}
		if len(b.Content) > 0 && b.Content[0] == '[' {
			// Nested blocks count for features (an image in a result).
			if _, err := decodeContent(field+".content", b.Content, r, true); err != nil {
				return err
			}
		}
	case "thinking", "redacted_thinking":
		r.features.Thinking = true
	}
	return nil
}

func decodeTools(top map[string]json.RawMessage, r *Request) error {
	if raw, ok := present(top, "tools"); ok {
		if json.Unmarshal(raw, &r.Tools) != nil {
			return fieldError("tools", "must be an array of tool definitions")
		}
		var marks []struct {
			CacheControl json.RawMessage `json:"cache_control"`
		}
		_ = json.Unmarshal(raw, &marks) // same array: cannot fail where the one above did not
		for _, m := range marks {
			if len(m.CacheControl) > 0 {
				r.drop("cache_control")
			}
		}
		for i, t := range r.Tools {
			if t.Name == "" {
				return fieldError(fmt.Sprintf("tools.%d.name", i), "field required")
			}
			if t.Type != "" && t.Type != "custom" {
				r.features.ServerTools = true
			}
		}
		if len(r.Tools) > 0 {
			r.features.Tools = true
		}
	}
	if raw, ok := present(top, "tool_choice"); ok {
		var tc ToolChoice
		if json.Unmarshal(raw, &tc) != nil {
			return fieldError("tool_choice", "must be an object")
		}
		switch tc.Type {
		case "auto", "any", "none":
		case "tool":
			if tc.Name == "" {
				return fieldError("tool_choice.name", "field required")
			}
		case "":
			return fieldError("tool_choice.type", "field required")
		default:
			// a newer form: passthrough carries it, translation drops it
			r.drop("tool_choice")
			return nil
		}
		r.ToolChoice = &tc
	}
	return nil
}
