package anthropic

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/caddy-olla/olla/translate/chat"
)

// lineReader is embedded under a name of our own, so its Write and Close
// are the translator's without the chat.Reader being an exported field.
type lineReader = chat.Reader

// maxToolCalls caps the tool calls one streamed answer may open.
const maxToolCalls = 1024

// StreamOptions configure a StreamTranslator.
type StreamOptions struct {
	// Model is echoed in message_start; empty means the backend's.
	Model string
	// MessageID is the message id; empty means a fresh msg_ id.
	MessageID string
	// InputTokens goes in message_start (the backend's count arrives only at
	// the end, in message_delta); pass EstimateTokens or 0.
	InputTokens int
	// StopSequences are the request's, to recognise a matched one.
	StopSequences []string
}

// StreamTranslator turns an OpenAI chat-completions SSE stream into an
// Anthropic Messages event stream. Feed it the backend's bytes with Write, in
// chunks split anywhere; end with Close. The events are written to the
// underlying writer once per Write (flushed when it has Flush()).
//
// A stream that breaks, carries an error object or garbage, or ends without
// finishing gets an `event: error` and never a message_stop, so a client can
// not take half an answer for a whole one. After that, Write discards input.
type StreamTranslator struct {
	opts StreamOptions

	out chat.Out
	enc *json.Encoder
	// Write and Close: the backend's stream, line by line, told to the
	// translator's hooks; a translation failure is told in the stream and
	// by Err, a Write error means the client is gone
	lineReader

	started  bool // message_start sent
	finished bool // message_stop sent
	failed   error

	blockOpen  bool
	blockKind  string // text, thinking, tool_use
	blockIndex int    // index of the open block, or of the next one
	toolIndex  int    // backend index of the open tool call
	toolID     string // backend id of the open tool call
	toolCalls  int    // tool calls opened
	toolsSeen  map[int]bool

	finishReason string
	stopMatch    json.RawMessage
	usage        *oaUsage
}

// NewStreamTranslator writes Anthropic events to w.
func NewStreamTranslator(w io.Writer, opts StreamOptions) *StreamTranslator {
	t := &StreamTranslator{opts: opts}
	t.lineReader = chat.NewReader(w, &t.out, chat.Hooks{Live: t.live, Data: t.data, NotSSE: t.notSSE, Fail: t.fail, End: t.end})
	t.enc = json.NewEncoder(&t.out)
	t.enc.SetEscapeHTML(false)
	return t
}

// Complete reports whether the stream ended with message_stop.
func (t *StreamTranslator) Complete() bool { return t.finished }

// Err is why the translated stream ended with an error event, or nil.
func (t *StreamTranslator) Err() error { return t.failed }

// end ends a stream whose body ended cleanly before [DONE]: finished when
// the model said it was done, else an error.
func (t *StreamTranslator) end() {
	if t.finishReason != "" {
		t.finish()
	} else {
		t.fail(errNoDone)
	}
}

func (t *StreamTranslator) live() bool { return !t.finished && t.failed == nil }

func (t *StreamTranslator) event(name string, v any) {
	t.out.WriteString("event: ")
	t.out.WriteString(name)
	t.out.WriteString("\ndata: ")
	_ = t.enc.Encode(v) // our own types: cannot fail; ends the line
	t.out.WriteByte('\n')
}

func (t *StreamTranslator) fail(err error) {
	t.failed = err
	t.closeBlockSilently()
	t.out.WriteString("event: error\ndata: ")
	t.out.Write(marshalError("api_error", err.Error(), ""))
	t.out.WriteString("\n\n")
}

// closeBlockSilently forgets the open block: after an error no stop events
// follow, so nothing looks finished.
func (t *StreamTranslator) closeBlockSilently() { t.blockOpen = false }

// chunk is one chat.completion.chunk (or an error object in its place).
type chunk = chat.Chunk

// notSSE fails a stream that is not SSE: a plain JSON error sent with a
// 200, or garbage.
func (t *StreamTranslator) notSSE(line []byte) {
	t.fail(fmt.Errorf("backend stream is not OpenAI SSE: %s", BackendErrorMessage(502, line)))
}

// data reads one data field's value: a chunk or [DONE].
func (t *StreamTranslator) data(value []byte) {
	if chat.Done(value) {
		t.finish()
		return
	}
	var c chunk
	if err := json.Unmarshal(value, &c); err != nil {
		t.fail(fmt.Errorf("backend sent an event that is not valid JSON: %v", err))
		return
	}
	if c.IsError() {
		t.fail(fmt.Errorf("backend error: %s", BackendErrorMessage(502, value)))
		return
	}
	t.start(c.Model)
	if c.Usage != nil {
		t.usage = c.Usage // the last one wins: some servers send zeros early
	}
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Index != 0 {
			continue // n>1 has no Anthropic counterpart
		}
		d := &ch.Delta
		reasoning := d.ReasoningContent
		if reasoning == nil || *reasoning == "" {
			reasoning = d.Reasoning
		}
		if reasoning != nil && *reasoning != "" {
			t.ensureBlock("thinking", -1, "", "")
			t.event("content_block_delta", blockDelta{"content_block_delta", t.blockIndex, thinkingDelta{"thinking_delta", *reasoning}})
		}
		if d.Content != nil && *d.Content != "" {
			t.ensureBlock("text", -1, "", "")
			t.event("content_block_delta", blockDelta{"content_block_delta", t.blockIndex, textDelta{"text_delta", *d.Content}})
		}
		for _, tc := range d.ToolCalls {
			sameCall := t.blockOpen && t.blockKind == "tool_use" && t.toolIndex == tc.Index
			// Servers that leave out the index send every call as index 0;
			// a new id is then a new call.
			anotherID := tc.ID != "" && tc.ID != t.toolID
			if !sameCall || anotherID {
				if t.toolsSeen[tc.Index] && !(sameCall && anotherID) {
					t.fail(fmt.Errorf("backend resumed tool call %d after another block began", tc.Index))
					return
				}
				if t.toolCalls >= maxToolCalls {
					t.fail(fmt.Errorf("backend opened more than %d tool calls", maxToolCalls))
					return
				}
				if t.toolsSeen == nil {
					t.toolsSeen = map[int]bool{}
				}
				t.toolsSeen[tc.Index] = true
				t.toolCalls++
				t.ensureBlock("tool_use", tc.Index, tc.ID, tc.Function.Name)
			}
			if tc.Function.Arguments != "" {
				t.event("content_block_delta", blockDelta{"content_block_delta", t.blockIndex, jsonDelta{"input_json_delta", tc.Function.Arguments}})
			}
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			t.finishReason = *ch.FinishReason
			t.stopMatch = append(t.stopMatch[:0], ch.StopReason...)
		}
	}
}

func (t *StreamTranslator) start(backendModel string) {
	if t.started {
		return
	}
	t.started = true
	id := t.opts.MessageID
	if id == "" {
		id = newID("msg_")
	}
	model := t.opts.Model
	if model == "" {
		model = backendModel
	}
	t.event("message_start", messageStart{Type: "message_start", Message: anMessageStart{
		ID: id, Type: "message", Role: "assistant", Model: model, Content: []struct{}{},
		Usage: anUsage{InputTokens: t.opts.InputTokens},
	}})
	t.event("ping", typeOnly{"ping"})
}

// ensureBlock opens a block of kind unless one is open already (a tool_use
// block is always new: the caller checked it is another call).
func (t *StreamTranslator) ensureBlock(kind string, toolIndex int, id, name string) {
	if t.blockOpen && t.blockKind == kind && kind != "tool_use" {
		return
	}
	t.closeBlock()
	t.blockOpen, t.blockKind, t.toolIndex, t.toolID = true, kind, toolIndex, id
	var cb any
	switch kind {
	case "text":
		cb = textStart{Type: "text"}
	case "thinking":
		cb = thinkingStart{Type: "thinking"}
	default:
		if id == "" {
			id = newID("toolu_") // t.toolID stays "": the backend gave none
		}
		cb = toolStart{Type: "tool_use", ID: id, Name: name, Input: struct{}{}}
	}
	t.event("content_block_start", blockStart{"content_block_start", t.blockIndex, cb})
}

func (t *StreamTranslator) closeBlock() {
	if !t.blockOpen {
		return
	}
	t.event("content_block_stop", blockStop{"content_block_stop", t.blockIndex})
	t.blockOpen = false
	t.blockIndex++
}

func (t *StreamTranslator) finish() {
	t.start("")
	if !t.blockOpen && t.blockIndex == 0 {
		t.ensureBlock("text", -1, "", "") // never an answer without content
	}
	t.closeBlock()
	reason, seq := stopReason(t.finishReason, t.stopMatch, t.opts.StopSequences)
	if t.toolCalls > 0 && reason == "end_turn" {
		reason = "tool_use"
	}
	md := messageDelta{Type: "message_delta", Delta: stopDelta{StopReason: reason, StopSequence: seq}}
	if t.usage != nil {
		u := usageOf(t.usage)
		md.Usage = u
	} else {
		md.Usage = anUsage{InputTokens: t.opts.InputTokens}
	}
	t.event("message_delta", md)
	t.event("message_stop", typeOnly{"message_stop"})
	t.finished = true
}

// Event payloads, in Anthropic's field order.
type (
	typeOnly struct {
		Type string `json:"type"`
	}
	messageStart struct {
		Type    string         `json:"type"`
		Message anMessageStart `json:"message"`
	}
	anMessageStart struct {
		ID           string     `json:"id"`
		Type         string     `json:"type"`
		Role         string     `json:"role"`
		Model        string     `json:"model"`
		Content      []struct{} `json:"content"`
		StopReason   *string    `json:"stop_reason"`
		StopSequence *string    `json:"stop_sequence"`
		Usage        anUsage    `json:"usage"`
	}
	blockStart struct {
		Type         string `json:"type"`
		Index        int    `json:"index"`
		ContentBlock any    `json:"content_block"`
	}
	textStart struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	thinkingStart struct {
		Type      string `json:"type"`
		Thinking  string `json:"thinking"`
		Signature string `json:"signature"`
	}
	toolStart struct {
		Type  string   `json:"type"`
		ID    string   `json:"id"`
		Name  string   `json:"name"`
		Input struct{} `json:"input"`
	}
	blockDelta struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
		Delta any    `json:"delta"`
	}
	textDelta struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	thinkingDelta struct {
		Type     string `json:"type"`
		Thinking string `json:"thinking"`
	}
	jsonDelta struct {
		Type        string `json:"type"`
		PartialJSON string `json:"partial_json"`
	}
	blockStop struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
	}
	messageDelta struct {
		Type  string    `json:"type"`
		Delta stopDelta `json:"delta"`
		Usage anUsage   `json:"usage"`
	}
	stopDelta struct {
		StopReason   string  `json:"stop_reason"`
		StopSequence *string `json:"stop_sequence"`
	}
)
