// Package anthropic speaks the Anthropic Messages API for backends that do not:
// it validates a Messages request, translates it to an OpenAI chat-completions
// request, and translates the backend's OpenAI answer (JSON or SSE) back into an
// Anthropic message or event stream. It has no HTTP server or Caddy types; the
// caller routes, forwards and writes.
//
// Choices where the two APIs do not line up (each has a test):
//
//   - Text blocks of one message are joined with "\n" into one string; a user
//     message with images becomes an array of content parts instead.
//   - Base64 images become image_url data URLs (data:<media_type>;base64,<data>),
//     URL images keep their URL. Images inside a tool_result cannot ride on an
//     OpenAI tool message, so they join the user message that follows the
//     tool messages.
//   - A tool_result with is_error is sent as "Error: <content>".
//   - Thinking blocks in the history are dropped (OpenAI-compatible servers have
//     no field that takes them back). A thinking config of type "enabled"
//     becomes reasoning_effort (budget < 4096 low, < 16384 medium, else high),
//     which vLLM, Ollama and LM Studio understand; "disabled" sends nothing.
//   - top_k is passed through: vLLM, llama.cpp, SGLang and LM Studio accept it
//     as an extension and the others ignore it.
//   - Answer content comes out as thinking (from reasoning_content, else
//     reasoning), then text, then one tool_use per tool call. Tool arguments
//     that are not a JSON object are kept as {"_raw": "<arguments>"} rather
//     than dropped; a JSON string holding an object is unwrapped. In a stream,
//     arguments are forwarded as partial_json exactly as the backend sent them.
//   - stop_reason: stop→end_turn (stop_sequence when the backend names the
//     matched sequence, as vLLM does in choices[].stop_reason), length→
//     max_tokens, tool_calls/function_call→tool_use, content_filter→refusal,
//     anything else→end_turn.
//   - The answer's model is the model the client asked for (backends such as
//     llama.cpp answer with their own alias).
package anthropic
