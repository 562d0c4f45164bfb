package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

type sseEvent struct {
	Name string
	Data map[string]any
}

// parseEvents splits our Anthropic SSE output into events, checking the
// framing: "event: X\ndata: {...}\n\n" with data.type == X.
func parseEvents(out []byte) ([]sseEvent, error) {
	var events []sseEvent
	if len(out) == 0 {
		return nil, nil
	}
	if !bytes.HasSuffix(out, []byte("\n\n")) {
		return nil, fmt.Errorf("output does not end with a blank line: %q", out)
	}
	for _, raw := range bytes.Split(bytes.TrimSuffix(out, []byte("\n\n")), []byte("\n\n")) {
		lines := bytes.Split(raw, []byte("\n"))
		if len(lines) != 2 || !bytes.HasPrefix(lines[0], []byte("event: ")) || !bytes.HasPrefix(lines[1], []byte("data: ")) {
			return nil, fmt.Errorf("malformed event %q", raw)
		}
		ev := sseEvent{Name: string(lines[0][7:])}
		if err := json.Unmarshal(lines[1][6:], &ev.Data); err != nil {
			return nil, fmt.Errorf("event data is not JSON: %q", lines[1])
		}
		if ev.Data["type"] != ev.Name {
			return nil, fmt.Errorf("event %q carries type %v", ev.Name, ev.Data["type"])
		}
		events = append(events, ev)
	}
	return events, nil
}

var deltaFor = map[string]string{"text": "text_delta", "thinking": "thinking_delta", "tool_use": "input_json_delta"}

// validateStream checks Anthropic's event grammar:
//
//	message_start ping? (content_block_start content_block_delta* content_block_stop)* message_delta message_stop
//
// with block indexes 0, 1, 2... and delta types matching their block; or any
// prefix of that followed by exactly one error event, with no message_stop.
// It returns whether the stream completed.
func validateStream(out []byte) (complete bool, err error) {
	events, err := parseEvents(out)
	if err != nil {
		return false, err
	}
	if len(events) == 0 {
		return false, fmt.Errorf("no events at all")
	}
	state := "begin" // begin, started, inblock, delta, stopped
	next, open := 0, ""
	for i, ev := range events {
		if ev.Name == "error" {
			if i != len(events)-1 {
				return false, fmt.Errorf("events after the error event: %v", events[i+1:])
			}
			e, _ := ev.Data["error"].(map[string]any)
			if e == nil || e["type"] == "" || e["message"] == "" {
				return false, fmt.Errorf("error event without an error envelope: %v", ev.Data)
			}
			return false, nil
		}
		switch {
		case state == "begin" && ev.Name == "message_start":
			m, _ := ev.Data["message"].(map[string]any)
			if m == nil || m["role"] != "assistant" || m["type"] != "message" {
				return false, fmt.Errorf("message_start without a message: %v", ev.Data)
			}
			state = "started"
		case state == "started" && ev.Name == "ping":
			state = "blocks"
		case (state == "blocks" || state == "started") && ev.Name == "content_block_start":
			if idx, _ := ev.Data["index"].(float64); int(idx) != next {
				return false, fmt.Errorf("block index %v, want %d", ev.Data["index"], next)
			}
			cb, _ := ev.Data["content_block"].(map[string]any)
			open, _ = cb["type"].(string)
			if deltaFor[open] == "" {
				return false, fmt.Errorf("unknown block type %v", cb)
			}
			state = "inblock"
		case state == "inblock" && ev.Name == "content_block_delta":
			d, _ := ev.Data["delta"].(map[string]any)
			if idx, _ := ev.Data["index"].(float64); int(idx) != next || d["type"] != deltaFor[open] {
				return false, fmt.Errorf("delta %v in block %d of type %s", ev.Data, next, open)
			}
		case state == "inblock" && ev.Name == "content_block_stop":
			if idx, _ := ev.Data["index"].(float64); int(idx) != next {
				return false, fmt.Errorf("stop index %v, want %d", ev.Data["index"], next)
			}
			next++
			state = "blocks"
		case state == "blocks" && ev.Name == "message_delta":
			if next == 0 {
				return false, fmt.Errorf("message_delta with no content block before it")
			}
			d, _ := ev.Data["delta"].(map[string]any)
			if s, _ := d["stop_reason"].(string); s == "" {
				return false, fmt.Errorf("message_delta without a stop_reason: %v", ev.Data)
			}
			state = "delta"
		case state == "delta" && ev.Name == "message_stop":
			if i != len(events)-1 {
				return false, fmt.Errorf("events after message_stop")
			}
			return true, nil
		default:
			return false, fmt.Errorf("event %q out of order (state %s, event %d)", ev.Name, state, i)
		}
	}
	return false, fmt.Errorf("stream ends in state %s with neither message_stop nor an error event", state)
}

func checkEventOrder(t *testing.T, out []byte, wantError bool) {
	t.Helper()
	// We always send Anthropic's ping right after message_start.
	if i := bytes.Index(out, []byte("event: message_start\n")); i >= 0 {
		rest := out[i+len("event: message_start\n"):]
		if j := bytes.Index(rest, []byte("\n\n")); j < 0 || !bytes.HasPrefix(rest[j+2:], []byte("event: ping\n")) {
			t.Errorf("no ping right after message_start:\n%s", out)
		}
	}
	complete, err := validateStream(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if complete == wantError {
		t.Fatalf("complete = %v, want %v:\n%s", complete, !wantError, out)
	}
}

func TestValidateStreamRejects(t *testing.T) {
	// The checker itself must catch broken grammar, or the golden tests
	// prove nothing.
	bad := []string{
		"",
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"type\":\"message\",\"role\":\"assistant\"}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n",
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"type\":\"message\",\"role\":\"assistant\"}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\"}}\n\n",
		"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"x\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
		"event: ping\ndata: {\"type\":\"message_stop\"}\n\n",
	}
	for _, b := range bad {
		if complete, err := validateStream([]byte(b)); err == nil && complete {
			t.Errorf("validateStream accepted %q as complete", b)
		} else if err == nil && b != "" && !bytes.Contains([]byte(b), []byte("event: error")) {
			t.Errorf("validateStream accepted %q", b)
		}
	}
}
