package sim

import (
	"encoding/json"
	"net/http"
)

// The Anthropic Messages API, as the servers that speak it natively answer
// it (Ollama 0.14+, llama.cpp, vLLM 0.11.1+, LM Studio 0.4.1+). Shapes follow
// the captures in testdata/real (Ollama 0.17.4, llama.cpp b11669): Ollama
// leaves out stop_sequence and sends input_tokens in message_delta;
// llama.cpp adds stop_sequence and cache_read_input_tokens. A request that
// defines tools and forces one with tool_choice {"type":"tool"} or
// {"type":"any"} is answered with a tool_use block for that (or the first)
// tool, its input {} (non-stream answers only; a stream answers with text).

// messagesFields are the Messages request fields the simulator reads beyond
// reqFields.
type messagesFields struct {
	Tools []struct {
		Name string `json:"name"`
	} `json:"tools"`
	ToolChoice struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"tool_choice"`
}

// forcedTool is the tool a Messages request forces, or "".
func forcedTool(body []byte) string {
	var f messagesFields
	if json.Unmarshal(body, &f) != nil || len(f.Tools) == 0 {
		return ""
	}
	switch f.ToolChoice.Type {
	case "tool":
		return f.ToolChoice.Name
	case "any":
		return f.Tools[0].Name
	}
	return ""
}

func (s *Sim) handleMessages(c *call) {
	req, err := c.parse()
	if err != nil {
		s.invalidJSON(c, err)
		return
	}
	if req.Messages.empty() {
		s.writeErr(c, errSpec{status: http.StatusBadRequest, msg: "messages: field required"})
		return
	}
	ms := s.models.Load()
	e, model, ok := s.resolveModel(c, ms, req.Model)
	if !ok {
		return
	}
	ms.markUsed(e, c.start)
	d := dMessages
	if s.kind == Ollama {
		d = dOllamaMessages
	}
	g := s.newGen(c, d, req, model, e.ctx)
	release, ok := s.admit(c, g, e.id, promptBytes(req))
	if !ok {
		return
	}
	defer release()
	if req.Stream == boolTrue {
		s.stream(c, g)
		return
	}
	g.tool = forcedTool(c.body)
	s.complete(c, g)
}

// handleCountTokens is llama.cpp's /v1/messages/count_tokens.
func (s *Sim) handleCountTokens(c *call) {
	req, err := c.parse()
	if err != nil {
		s.invalidJSON(c, err)
		return
	}
	b := append(c.sc.buf[:0], `{"input_tokens":`...)
	b = appendInt(b, int64(req.promptTokens()))
	b = append(b, '}')
	c.sc.buf = b
	s.writeOK(c, b, false)
}

// appendAnthropicError appends the Anthropic error envelope.
func appendAnthropicError(b []byte, status int, msg string) []byte {
	typ := "api_error"
	switch status {
	case http.StatusBadRequest:
		typ = "invalid_request_error"
	case http.StatusUnauthorized:
		typ = "authentication_error"
	case http.StatusNotFound:
		typ = "not_found_error"
	case http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case http.StatusServiceUnavailable, 529:
		typ = "overloaded_error"
	}
	b = append(b, `{"type":"error","error":{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","message":`...)
	b = appendString(b, msg)
	b = append(b, `},"request_id":"req_`...)
	for i := 0; i < 24; i++ {
		b = append(b, hexDigits[(i*7+len(msg))&15])
	}
	return append(b, `"}`...)
}

func (g *gen) stopReason(b []byte) []byte {
	switch {
	case g.tool != "":
		return append(b, `"tool_use"`...)
	case g.finish == "length":
		return append(b, `"max_tokens"`...)
	}
	return append(b, `"end_turn"`...)
}

// appendMessageUsage appends the usage object of a message (out: output
// tokens so far).
func (g *gen) appendMessageUsage(b []byte, out int) []byte {
	b = append(b, `"usage":{`...)
	if g.d == dMessages {
		b = append(b, `"cache_read_input_tokens":0,`...)
	}
	b = append(b, `"input_tokens":`...)
	b = appendInt(b, int64(g.prompt))
	b = append(b, `,"output_tokens":`...)
	b = appendInt(b, int64(out))
	return append(b, '}')
}

// messageHead appends a message object's fields up to its content array.
func (g *gen) messageHead(b []byte) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, g.id...)
	b = append(b, `","type":"message","role":"assistant",`...)
	if g.d == dOllamaMessages {
		b = append(b, `"model":`...)
		b = append(b, g.model...)
		return append(b, `,"content":[`...)
	}
	return append(b, `"content":[`...)
}

// messageTail appends what follows the content array.
func (g *gen) messageTail(b []byte, stop bool, out int) []byte {
	b = append(b, `],`...)
	if g.d == dMessages {
		b = append(b, `"model":`...)
		b = append(b, g.model...)
		b = append(b, ',')
	}
	switch {
	case stop:
		b = append(b, `"stop_reason":`...)
		b = g.stopReason(b)
		b = append(b, ',')
		if g.d == dMessages {
			b = append(b, `"stop_sequence":null,`...)
		}
	case g.d == dMessages:
		b = append(b, `"stop_reason":null,"stop_sequence":null,`...)
	}
	b = g.appendMessageUsage(b, out)
	return append(b, '}')
}

// idTail is the last 12 characters of the completion id, or all of it:
// Ollama's ids are as short as "chatcmpl-7".
func (g *gen) idTail() []byte { return g.id[max(len(g.id)-12, 0):] }

// appendMessage appends a complete (non-stream) message.
func (g *gen) appendMessage(b []byte) []byte {
	b = g.messageHead(b)
	if g.tool != "" {
		b = append(b, `{"type":"tool_use","id":"toolu_`...)
		b = append(b, g.idTail()...)
		b = append(b, `","name":`...)
		b = appendString(b, g.tool)
		b = append(b, `,"input":{}}`...)
	} else {
		b = append(b, `{"type":"text","text":`...)
		b = g.appendText(b)
		b = append(b, '}')
	}
	b = g.messageTail(b, true, g.n)
	if g.d == dOllamaMessages {
		b = append(b, '\n')
	}
	return b
}

func appendSSEEvent(b []byte, name string) []byte {
	b = append(b, "event: "...)
	b = append(b, name...)
	return append(b, "\ndata: "...)
}

// appendMessagesEvent appends stream event k of a Messages stream.
func (g *gen) appendMessagesEvent(b []byte, k int) []byte {
	tok := k - g.pre
	switch {
	case k == 0:
		b = appendSSEEvent(b, "message_start")
		b = append(b, `{"type":"message_start","message":`...)
		b = g.messageHead(b)
		b = g.messageTail(b, false, 0)
		b = append(b, '}')
	case k == 1:
		b = appendSSEEvent(b, "content_block_start")
		b = append(b, `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`...)
	case tok < g.n:
		b = appendSSEEvent(b, "content_block_delta")
		b = append(b, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"`...)
		b = append(b, g.word(tok)...)
		b = append(b, `"}}`...)
	case tok == g.n:
		b = appendSSEEvent(b, "content_block_stop")
		b = append(b, `{"type":"content_block_stop","index":0}`...)
	case tok == g.n+1:
		b = appendSSEEvent(b, "message_delta")
		b = append(b, `{"type":"message_delta","delta":{"stop_reason":`...)
		b = g.stopReason(b)
		if g.d == dMessages {
			b = append(b, `,"stop_sequence":null},"usage":{"output_tokens":`...)
			b = appendInt(b, int64(g.n))
			b = append(b, `}}`...)
		} else {
			b = append(b, `},`...)
			b = g.appendMessageUsage(b, g.n)
			b = append(b, '}')
		}
	default:
		b = appendSSEEvent(b, "message_stop")
		b = append(b, `{"type":"message_stop"}`...)
	}
	return append(b, sseEnd...)
}

// openAIToolFields are the chat-completion fields that force a tool call.
type openAIToolFields struct {
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
}

// forcedFunction is the function a chat-completion request forces with
// tool_choice "required" (the first tool) or {"type":"function",
// "function":{"name":...}}, or "".
func forcedFunction(body []byte) string {
	var f openAIToolFields
	if json.Unmarshal(body, &f) != nil || len(f.Tools) == 0 || len(f.ToolChoice) == 0 {
		return ""
	}
	var mode string
	if json.Unmarshal(f.ToolChoice, &mode) == nil {
		if mode == "required" {
			return f.Tools[0].Function.Name
		}
		return ""
	}
	var named struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(f.ToolChoice, &named) == nil {
		return named.Function.Name
	}
	return ""
}

// appendToolCallCompletion appends a non-stream chat completion that calls
// g.tool with {} (OpenAI's shape, whatever the server).
func (g *gen) appendToolCallCompletion(b []byte) []byte {
	b = g.head(b, "chat.completion", "")
	b = append(b, `{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_`...)
	b = append(b, g.idTail()...)
	b = append(b, `","type":"function","function":{"name":`...)
	b = appendString(b, g.tool)
	b = append(b, `,"arguments":"{}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],`...)
	b = g.appendUsage(b)
	return append(b, '}')
}

// handleResponses is OpenAI's Responses API as Ollama, vLLM and LM Studio
// serve it (stateless): one response object, or with "stream":true its
// event stream (response.created ... response.completed).
func (s *Sim) handleResponses(c *call) {
	req, err := c.parse()
	if err != nil {
		s.invalidJSON(c, err)
		return
	}
	if req.Input.empty() {
		s.writeErr(c, errSpec{status: http.StatusBadRequest, msg: "input: field required", param: "input"})
		return
	}
	ms := s.models.Load()
	e, model, ok := s.resolveModel(c, ms, req.Model)
	if !ok {
		return
	}
	ms.markUsed(e, c.start)
	d := dialectFor(s.kind, true)
	if req.Stream == boolTrue {
		d = dResponses
	}
	g := s.newGen(c, d, req, model, e.ctx)
	if req.MaxOutputTokens > 0 && int(req.MaxOutputTokens) < g.n {
		g.n, g.finish = int(req.MaxOutputTokens), "length"
	}
	release, ok := s.admit(c, g, e.id, req.Input)
	if !ok {
		return
	}
	defer release()
	if d == dResponses {
		s.stream(c, g)
		return
	}
	p := pacer{ctx: c.r.Context()}
	defer p.stop()
	if !p.until(g.start.Add(g.ttft)) {
		return
	}
	b := g.appendResponse(c.sc.buf[:0], "completed")
	c.sc.buf = b
	s.tokensOut.Add(int64(g.n))
	s.writeOK(c, b, false)
}

// appendResponse appends a response object with status, its output the
// whole text once it is completed (none while in progress).
func (g *gen) appendResponse(b []byte, status string) []byte {
	idTail := g.idTail()
	b = append(b, `{"id":"resp_`...)
	b = append(b, idTail...)
	b = append(b, `","object":"response","created_at":`...)
	b = g.appendCreated(b)
	b = append(b, `,"status":"`...)
	if status == "completed" && g.finish == "length" {
		b = append(b, `incomplete","incomplete_details":{"reason":"max_output_tokens"}`...)
	} else {
		b = append(b, status...)
		b = append(b, '"')
	}
	b = append(b, `,"model":`...)
	b = append(b, g.model...)
	if status != "completed" {
		return append(b, `,"output":[],"usage":null}`...)
	}
	b = append(b, `,"output":[`...)
	b = g.appendResponseItem(b, true)
	b = append(b, `],"usage":{"input_tokens":`...)
	b = appendInt(b, int64(g.prompt))
	b = append(b, `,"output_tokens":`...)
	b = appendInt(b, int64(g.n))
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, int64(g.prompt+g.n))
	return append(b, `}}`...)
}

// appendResponseItem appends the answer's message item, whole or as it
// opens.
func (g *gen) appendResponseItem(b []byte, done bool) []byte {
	b = append(b, `{"type":"message","id":"msg_`...)
	b = append(b, g.idTail()...)
	if !done {
		return append(b, `","status":"in_progress","role":"assistant","content":[]}`...)
	}
	b = append(b, `","status":"completed","role":"assistant","content":[`...)
	b = g.appendOutputText(b, true)
	return append(b, `]}`...)
}

// appendOutputText appends the output_text part, whole or empty.
func (g *gen) appendOutputText(b []byte, whole bool) []byte {
	b = append(b, `{"type":"output_text","text":`...)
	if whole {
		b = g.appendText(b)
	} else {
		b = append(b, `""`...)
	}
	return append(b, `,"annotations":[]}`...)
}

// appendResponsesEvent appends stream event k of a Responses stream, in
// the order OpenAI's server sends them; sequence_number is k.
func (g *gen) appendResponsesEvent(b []byte, k int) []byte {
	tok := k - g.pre
	head := func(b []byte, name string) []byte {
		b = appendSSEEvent(b, name)
		b = append(b, `{"type":"`...)
		b = append(b, name...)
		b = append(b, `","sequence_number":`...)
		return appendInt(b, int64(k))
	}
	itemRef := func(b []byte) []byte {
		b = append(b, `,"item_id":"msg_`...)
		b = append(b, g.idTail()...)
		return append(b, `","output_index":0,"content_index":0`...)
	}
	switch {
	case k == 0 || k == 1:
		name := "response.created"
		if k == 1 {
			name = "response.in_progress"
		}
		b = head(b, name)
		b = append(b, `,"response":`...)
		b = g.appendResponse(b, "in_progress")
	case k == 2:
		b = head(b, "response.output_item.added")
		b = append(b, `,"output_index":0,"item":`...)
		b = g.appendResponseItem(b, false)
	case k == 3:
		b = head(b, "response.content_part.added")
		b = itemRef(b)
		b = append(b, `,"part":`...)
		b = g.appendOutputText(b, false)
	case tok < g.n:
		b = head(b, "response.output_text.delta")
		b = itemRef(b)
		b = append(b, `,"delta":"`...)
		b = append(b, g.word(tok)...)
		b = append(b, `","logprobs":[]`...)
	case tok == g.n:
		b = head(b, "response.output_text.done")
		b = itemRef(b)
		b = append(b, `,"text":`...)
		b = g.appendText(b)
		b = append(b, `,"logprobs":[]`...)
	case tok == g.n+1:
		b = head(b, "response.content_part.done")
		b = itemRef(b)
		b = append(b, `,"part":`...)
		b = g.appendOutputText(b, true)
	case tok == g.n+2:
		b = head(b, "response.output_item.done")
		b = append(b, `,"output_index":0,"item":`...)
		b = g.appendResponseItem(b, true)
	default:
		b = head(b, "response.completed")
		b = append(b, `,"response":`...)
		b = g.appendResponse(b, "completed")
	}
	b = append(b, '}')
	return append(b, sseEnd...)
}
