package anthropic_test

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/caddy-olla/olla/translate/anthropic"
)

// The request side of the seam: validate, pick passthrough or translation,
// and build the body for the backend.
func Example_request() {
	body := []byte(`{"model":"qwen3","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	req, err := anthropic.ParseRequest(body)
	var bad *anthropic.RequestError
	if errors.As(err, &bad) {
		fmt.Println(bad.Status(), string(bad.Body())) // 400 invalid_request_error naming bad.Field
		return
	}
	// A backend whose profile has an AnthropicPath gets req.Raw unchanged
	// (when it supports req.Features()); the others get the translation.
	fmt.Println("translatable:", req.Features().Translatable())
	out, _ := anthropic.ToOpenAI(req)
	fmt.Println(anthropic.OpenAIPath, string(out))
	fmt.Println("count_tokens estimate:", string(anthropic.CountTokensBody(anthropic.EstimateTokens(req))))
	// Output:
	// translatable: true
	// /v1/chat/completions {"model":"qwen3","messages":[{"role":"user","content":"hi"}],"max_tokens":64,"stream":true,"stream_options":{"include_usage":true}}
	// count_tokens estimate: {"input_tokens":1}
}

// The response side for a streamed answer: wrap the client's writer, feed the
// backend's 2xx SSE body through, and Close with how the backend's body ended.
// A non-2xx answer is not streamed: it becomes TranslateError(status, body).
func Example_stream() {
	backend := "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"
	st := anthropic.NewStreamTranslator(os.Stdout, anthropic.StreamOptions{Model: "qwen3", MessageID: "msg_1", InputTokens: 3})
	for _, chunk := range []string{backend[:17], backend[17:]} { // split anywhere
		st.Write([]byte(chunk))
	}
	st.Close(nil) // a read error here instead ends the stream with an error event
	fmt.Println("complete:", st.Complete())
	// Output:
	// event: message_start
	// data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"qwen3","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":0}}}
	//
	// event: ping
	// data: {"type":"ping"}
	//
	// event: content_block_start
	// data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}
	//
	// event: content_block_delta
	// data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}
	//
	// event: content_block_stop
	// data: {"type":"content_block_stop","index":0}
	//
	// event: message_delta
	// data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":3,"output_tokens":0}}
	//
	// event: message_stop
	// data: {"type":"message_stop"}
	//
	// complete: true
}

// A backend's error answer, in the envelope Anthropic clients parse.
func ExampleTranslateError() {
	fmt.Println(string(anthropic.TranslateError(404, []byte(`{"error":{"message":"model 'nope' not found","type":"api_error"}}`))))
	fmt.Println(strings.Contains(string(anthropic.ErrorBody(529, "busy")), "overloaded_error"))
	// Output:
	// {"type":"error","error":{"type":"not_found_error","message":"model 'nope' not found"}}
	// true
}
