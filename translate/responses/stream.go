package responses

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/caddy-olla/olla/translate/chat"
)

// lineReader is embedded under a name of our own, so its Write and Close
// are the translator's without the chat.Reader being an exported field.
type lineReader = chat.Reader

// maxCalls caps the function calls one streamed answer may open.
const maxCalls = 1024

var errNoDone = errors.New("the backend's stream ended before the answer was finished")

// StreamTranslator turns a chat-completions SSE stream into the Responses
// event stream. Feed it the backend's bytes with Write, in chunks split
// anywhere; end with Close. A stream that breaks, carries an error or
// garbage, or ends unfinished ends with response.failed, never
// response.completed; after that Write discards its input.
type StreamTranslator struct {
	req  *Request
	resp Response

	out chat.Out
	seq int
	// Write and Close: the backend's stream, line by line, told to the
	// translator's hooks; a Write error means the client is gone
	lineReader

	started, finished bool
	failed            error

	open      bool   // an output item is open
	openKind  string // message, function_call
	openIdx   int    // backend index of the open call
	text      bytes.Buffer
	args      bytes.Buffer
	callsSeen map[int]bool

	finishReason string
	usage        *chat.Usage
}

// NewStreamTranslator writes the events for a translation of r to w.
func NewStreamTranslator(w io.Writer, r *Request) *StreamTranslator {
	t := &StreamTranslator{req: r, resp: newResponse(r)}
	t.lineReader = chat.NewReader(w, &t.out, chat.Hooks{Live: t.live, Data: t.data, Fail: t.fail, End: t.end,
		NotSSE: func([]byte) { t.fail(errNotSSE) }})
	return t
}

// Complete reports whether the stream ended with response.completed.
func (t *StreamTranslator) Complete() bool { return t.finished }

// Err is why the stream ended with response.failed, or nil.
func (t *StreamTranslator) Err() error { return t.failed }

func (t *StreamTranslator) live() bool { return !t.finished && t.failed == nil }

// end ends a stream whose body ended cleanly before [DONE]: completed when
// the model gave a finish reason, else failed.
func (t *StreamTranslator) end() {
	if t.finishReason != "" {
		t.finish()
	} else {
		t.fail(errNoDone)
	}
}

// event is one Responses stream event; unset fields are left out.
type event struct {
	Type           string       `json:"type"`
	SequenceNumber int          `json:"sequence_number"`
	Response       *Response    `json:"response,omitempty"`
	OutputIndex    *int         `json:"output_index,omitempty"`
	ItemID         string       `json:"item_id,omitempty"`
	ContentIndex   *int         `json:"content_index,omitempty"`
	Item           *OutputItem  `json:"item,omitempty"`
	Part           *ContentPart `json:"part,omitempty"`
	Delta          *string      `json:"delta,omitempty"`
	Text           *string      `json:"text,omitempty"`
	Name           string       `json:"name,omitempty"`
	Arguments      *string      `json:"arguments,omitempty"`
	Logprobs       *[]struct{}  `json:"logprobs,omitempty"`
}

func (t *StreamTranslator) send(e event) {
	e.SequenceNumber = t.seq
	t.seq++
	t.out.WriteString("event: ")
	t.out.WriteString(e.Type)
	t.out.WriteString("\ndata: ")
	t.out.Write(marshal(e)) // ends with '\n'
	t.out.WriteByte('\n')
}

func (t *StreamTranslator) fail(err error) {
	t.failed = err
	t.start()
	r := t.resp
	r.Status = "failed"
	r.Error = &ErrorObject{Code: "server_error", Message: err.Error()}
	t.send(event{Type: "response.failed", Response: &r})
}

var errNotSSE = errors.New("backend stream is not OpenAI SSE")

// data reads one data field's value: a chunk or [DONE].
func (t *StreamTranslator) data(value []byte) {
	if chat.Done(value) {
		if t.finishReason == "" {
			t.finishReason = "stop"
		}
		t.finish()
		return
	}
	var c chat.Chunk
	if err := json.Unmarshal(value, &c); err != nil {
		t.fail(fmt.Errorf("backend sent an event that is not valid JSON: %v", err))
		return
	}
	if c.IsError() {
		t.fail(errors.New("backend error in the stream: " + string(bytes.ToValidUTF8(value[:min(len(value), 512)], nil))))
		return
	}
	t.start()
	if c.Usage != nil {
		t.usage = c.Usage
	}
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Index != 0 {
			continue
		}
		if d := ch.Delta.Content; d != nil && *d != "" {
			t.openItem("message", -1, "", "")
			t.text.WriteString(*d)
			t.send(event{Type: "response.output_text.delta", ItemID: t.item().ID, OutputIndex: t.index(),
				ContentIndex: zero(), Delta: d, Logprobs: &[]struct{}{}})
		}
		for _, tc := range ch.Delta.ToolCalls {
			same := t.open && t.openKind == "function_call" && t.openIdx == tc.Index &&
				(tc.ID == "" || tc.ID == t.item().CallID)
			if !same {
				if t.callsSeen[tc.Index] && tc.ID == "" {
					t.fail(fmt.Errorf("backend resumed tool call %d after another item began", tc.Index))
					return
				}
				if len(t.callsSeen) >= maxCalls {
					t.fail(fmt.Errorf("backend opened more than %d tool calls", maxCalls))
					return
				}
				if t.callsSeen == nil {
					t.callsSeen = map[int]bool{}
				}
				t.callsSeen[tc.Index] = true
				t.openItem("function_call", tc.Index, tc.ID, tc.Function.Name)
			}
			if a := tc.Function.Arguments; a != "" {
				t.args.WriteString(a)
				t.send(event{Type: "response.function_call_arguments.delta", ItemID: t.item().ID, OutputIndex: t.index(), Delta: &a})
			}
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			t.finishReason = *ch.FinishReason
		}
	}
}

func zero() *int { z := 0; return &z }

func (t *StreamTranslator) item() *OutputItem { return &t.resp.Output[len(t.resp.Output)-1] }

func (t *StreamTranslator) index() *int { i := len(t.resp.Output) - 1; return &i }

func (t *StreamTranslator) start() {
	if t.started {
		return
	}
	t.started = true
	r := t.resp
	t.send(event{Type: "response.created", Response: &r})
	t.send(event{Type: "response.in_progress", Response: &r})
}

// openItem opens an output item of kind unless that one is open (a call
// is always new: the caller checked).
func (t *StreamTranslator) openItem(kind string, idx int, callID, name string) {
	if t.open && t.openKind == kind && kind == "message" {
		return
	}
	t.closeItem()
	t.open, t.openKind, t.openIdx = true, kind, idx
	var it OutputItem
	if kind == "message" {
		it = OutputItem{Type: "message", ID: newID("msg_"), Status: "in_progress", Role: "assistant", Content: &[]ContentPart{}}
	} else {
		if callID == "" {
			callID = newID("call_")
		}
		empty := ""
		it = OutputItem{Type: "function_call", ID: newID("fc_"), Status: "in_progress", CallID: callID, Name: name, Arguments: &empty}
	}
	t.resp.Output = append(t.resp.Output, it)
	added := it
	t.send(event{Type: "response.output_item.added", OutputIndex: t.index(), Item: &added})
	if kind == "message" {
		t.send(event{Type: "response.content_part.added", ItemID: it.ID, OutputIndex: t.index(), ContentIndex: zero(),
			Part: &ContentPart{Type: "output_text", Annotations: []struct{}{}}})
	}
}

func (t *StreamTranslator) closeItem() {
	if !t.open {
		return
	}
	t.open = false
	it := t.item()
	it.Status = "completed"
	if t.openKind == "message" {
		text := t.text.String()
		t.text.Reset()
		part := ContentPart{Type: "output_text", Text: text, Annotations: []struct{}{}}
		it.Content = &[]ContentPart{part}
		t.send(event{Type: "response.output_text.done", ItemID: it.ID, OutputIndex: t.index(), ContentIndex: zero(),
			Text: &text, Logprobs: &[]struct{}{}})
		t.send(event{Type: "response.content_part.done", ItemID: it.ID, OutputIndex: t.index(), ContentIndex: zero(), Part: &part})
	} else {
		args := t.args.String()
		t.args.Reset()
		if args == "" {
			args = "{}"
		}
		it.Arguments = &args
		t.send(event{Type: "response.function_call_arguments.done", ItemID: it.ID, OutputIndex: t.index(), Name: it.Name, Arguments: &args})
	}
	done := *it
	t.send(event{Type: "response.output_item.done", OutputIndex: t.index(), Item: &done})
}

func (t *StreamTranslator) finish() {
	t.start()
	if len(t.resp.Output) == 0 {
		t.openItem("message", -1, "", "") // never a response without output
	}
	t.closeItem()
	t.resp.finish(t.finishReason)
	t.resp.Usage = usageOf(t.usage)
	r := t.resp
	t.send(event{Type: "response.completed", Response: &r})
	t.finished = true
}
