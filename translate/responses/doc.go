// Package responses speaks OpenAI's Responses API (POST /v1/responses) for
// backends that serve only chat completions: it validates a Responses
// request, translates it to a chat-completions request, and translates the
// backend's answer (JSON or SSE) back into a response object or the
// Responses event stream. It is stateless: previous_response_id, a
// conversation, background mode and item references need a store and are
// refused (Unsupported). It has no HTTP server or Caddy types.
//
// Choices where the two APIs do not line up:
//
//   - instructions becomes the first system message; input messages keep
//     their place, "developer" becomes "system" (most OpenAI-compatible
//     servers know no developer role). Text parts of one message are
//     joined with "\n"; a message with images becomes content parts.
//   - function_call items become an assistant message's tool_calls (calls
//     in a row, and the assistant text just before them, share one
//     message); function_call_output items become tool messages.
//   - Reasoning items, tools other than function tools (web_search,
//     namespaces, custom tools) and fields chat completions has no place
//     for (store, include, prompt_cache_key, ...) are left out and named by
//     Request.Dropped.
//   - max_output_tokens becomes max_tokens, reasoning.effort
//     reasoning_effort, text.format response_format.
//   - The answer's output is a message (when there is text) and then one
//     function_call per tool call; finish_reason "length" makes the status
//     "incomplete" (max_output_tokens). The answer's model is the model the
//     client asked for.
//   - A stream sends response.created, response.in_progress, then per item
//     response.output_item.added, (for a message) response.content_part.added,
//     response.output_text.delta... response.output_text.done,
//     response.content_part.done, (for a call)
//     response.function_call_arguments.delta... .done, then
//     response.output_item.done, and last response.completed. A stream that
//     breaks, carries an error or garbage, or ends without finishing ends
//     with response.failed instead, never response.completed.
package responses
