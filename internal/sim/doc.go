// Package sim simulates the LLM servers Olla balances (Ollama, LM Studio,
// vLLM, llama.cpp's llama-server and generic OpenAI-compatible servers, and
// vllm-mlx, oMLX, Docker Model Runner, Lemonade, SGLang, LMDeploy and LiteLLM
// on top of those dialects: see flavors.go) for tests, the demo (make run)
// and the load harness. Replay serves a real server's captured answers.
//
// The wire formats follow the captured fixtures in
// testdata/real (Ollama 0.17.4, llama.cpp b11669): content types
// (with or without charset), trailing newlines, one NDJSON line or SSE event
// per flush, stream endings (`data: [DONE]` for OpenAI SSE, a `"done":true`
// line with statistics for Ollama NDJSON, a `"choices":[]` usage event when
// stream_options.include_usage is set), and error shapes and statuses. vLLM,
// LM Studio and OpenAI formats follow those servers' documented answers.
//
// # Routes
//
// Every kind: GET /v1/models, GET /v1/models/{id} (not llama.cpp),
// POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings.
//
//   - ollama: GET|HEAD / ("Ollama is running"), GET|HEAD /api/tags, GET /api/ps
//     (models used in the last 5 minutes), GET|HEAD /api/version, POST /api/show,
//     POST /api/chat and /api/generate (streaming unless "stream":false),
//     POST /api/embed, POST /api/embeddings. Health: /. Models: /api/tags, /v1/models.
//     A generate or chat with no prompt or messages loads the model (paying
//     the capacity model's load time when it is cold) and answers
//     "done_reason":"load", as Ollama does.
//   - lmstudio: GET /api/v0/models and /api/v0/models/{id}, POST
//     /api/v1/models/load {"model"} (LM Studio 0.4's load route). Health and
//     models: /v1/models.
//   - vllm: GET /health (200, empty body), GET /version; /v1/models entries carry
//     max_model_len. Health: /health.
//   - llamacpp: GET /health and /v1/health ({"status":"ok"}), GET /models (same as
//     /v1/models, in llama.cpp's dual models/data shape). The model field of a
//     request is ignored: the answer names the served model. Embeddings are
//     served (as with llama-server --embeddings).
//   - openai: only the common routes. Health and models: /v1/models.
//
// Every kind but openai also serves the Anthropic Messages API, POST
// /v1/messages (streaming when "stream":true), in the captured shapes of
// Ollama and llama.cpp (the others answer like llama.cpp); llama.cpp also
// answers POST /v1/messages/count_tokens. Errors there are Anthropic
// envelopes (llama.cpp: its own shape, as captured). A non-stream request
// that forces a tool (tool_choice "tool" or "any") is answered with a
// tool_use block.
//
// Ollama, vLLM and LM Studio serve OpenAI's Responses API, POST
// /v1/responses, statelessly: one response object, or with "stream":true
// the event stream (response.created, response.in_progress,
// response.output_item.added, response.content_part.added,
// response.output_text.delta per token, the .done events,
// response.completed).
//
// Unknown paths and wrong methods get the server's own 404/405 answer.
// Bodies that are not JSON get 400; unknown models get 404 in the server's
// error shape. The answer's "model" echoes the request's model name.
//
// Generation: Config.Tokens words (default 5) from a fixed vocabulary, the
// first after Config.TTFT, then one every 1/TokensPerSecond. A smaller
// max_tokens / max_completion_tokens / options.num_predict / n_predict in
// the request caps the count and makes the finish reason "length"
// (otherwise "stop"). Non-stream answers are sent when the stream would
// have ended. Ollama and llama.cpp send stream headers with the first token;
// the others send them at once. Streams stop as soon as the client leaves.
//
// # Test aids
//
// When Config.Name is set, every response carries the header
// X-Sim-Name: <Name>, so a test can tell which backend answered. Real
// servers send no such header; leave Name empty for byte-faithful headers.
// Stats, Requests, LastRequest and LastRequestTo report what arrived.
// SetFault injects faults (see Fault); SetModels and SetTiming change the
// served models and pacing at run time. A running simulator is steered over
// HTTP through its control routes, which are never counted or faulted:
//
//	GET|POST|DELETE /_sim/fault   {"mode","status","retry_after","delay":"2s","after_chunks","path","times"}; {} or empty clears
//	GET|DELETE      /_sim/stats   Stats as JSON; DELETE resets the counters
//	POST            /_sim/reset   clear the fault and the counters
//	GET|POST        /_sim/models  ["a","b"]
//	GET|POST        /_sim/timing  {"ttft":"100ms","tokens_per_second":50,"tokens":20}
//	GET             /_sim/last    the last recorded request; ?path=/api/chat for one path
//
// Start and StartAt run a Sim on a real listener; Server.Close kills it
// (open connections included) and Server.Restart brings it back on the same
// address, holding no model in memory, as a restarted server. ParseSpec
// reads the KIND@ADDR=models;options form used by the olla-sim command.
package sim
