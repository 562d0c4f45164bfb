package sim

// Wire formats of the generated answers, one set per dialect. Each append*
// function writes one complete NDJSON line or SSE event (framing included)
// or one complete non-stream body into b, without allocating.
//
// Field orders follow the real servers: Ollama 0.17.4 and llama.cpp b11669
// from the captured fixtures; vLLM, LM Studio and OpenAI from their
// documented and commonly observed responses.

const (
	fpOllama = `"fp_ollama"`
	fpLlama  = `"b11669-Debian"`
	fpOpenAI = `"fp_sim"`
)

// appendEvent appends stream event k (0-based over pre, token and post events).
func (s *Sim) appendEvent(b []byte, g *gen, k int) []byte {
	switch g.d {
	case dOllamaMessages, dMessages:
		return g.appendMessagesEvent(b, k)
	case dResponses:
		return g.appendResponsesEvent(b, k)
	}
	if k < g.pre {
		return g.appendPre(b)
	}
	if tok := k - g.pre; tok < g.n {
		return g.appendToken(b, tok)
	}
	p := k - g.pre - g.n
	switch g.d {
	case dOllamaChat, dOllamaGenerate:
		return g.appendOllamaFinal(b)
	}
	if p == g.post-1 {
		return append(b, sseDone...)
	}
	if p == 0 {
		return g.appendFinish(b)
	}
	return g.appendUsageEvent(b)
}

// head appends `{"id":ID,"object":OBJ,"created":C,"model":M[,"system_fingerprint":FP],"choices":[`.
// fp is a JSON literal, "" for none, or "model" for the model name.
func (g *gen) head(b []byte, object, fp string) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, g.id...)
	b = append(b, `","object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = g.appendCreated(b)
	b = append(b, `,"model":`...)
	b = append(b, g.model...)
	switch fp {
	case "":
	case "model":
		b = append(b, `,"system_fingerprint":`...)
		b = append(b, g.model...)
	default:
		b = append(b, `,"system_fingerprint":`...)
		b = append(b, fp...)
	}
	return append(b, `,"choices":[`...)
}

func (g *gen) chunkHead(b []byte) []byte {
	b = append(b, sseData...)
	switch g.d {
	case dOllamaV1Chat:
		return g.head(b, "chat.completion.chunk", fpOllama)
	case dVLLMChat:
		return g.head(b, "chat.completion.chunk", "")
	case dVLLMCompletion, dLMSCompletion:
		return g.head(b, "text_completion", "")
	case dLMSChat:
		return g.head(b, "chat.completion.chunk", "model")
	case dOpenAIChat:
		return g.head(b, "chat.completion.chunk", fpOpenAI)
	case dOpenAICompletion:
		return g.head(b, "text_completion", fpOpenAI)
	}
	return b
}

// llamaTail appends llama-server's fields after "choices".
func (g *gen) llamaTail(b []byte, object string) []byte {
	b = append(b, `],"created":`...)
	b = g.appendCreated(b)
	if g.d == dLlamaChat {
		b = append(b, `,"id":"`...)
		b = append(b, g.id...)
		b = append(b, '"')
	}
	b = append(b, `,"model":`...)
	b = append(b, g.model...)
	b = append(b, `,"system_fingerprint":`...)
	b = append(b, fpLlama...)
	b = append(b, `,"object":"`...)
	b = append(b, object...)
	return append(b, '"')
}

func (g *gen) usageNull(b []byte) []byte {
	if g.usage && g.d == dOpenAIChat {
		return append(b, `,"usage":null`...)
	}
	return b
}

func (g *gen) appendPre(b []byte) []byte {
	switch g.d {
	case dLlamaChat:
		b = append(b, `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}`...)
		b = g.llamaTail(b, "chat.completion.chunk")
	case dVLLMChat:
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]`...)
	default: // dOpenAIChat
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]`...)
		b = g.usageNull(b)
	}
	b = append(b, '}')
	return append(b, sseEnd...)
}

func (g *gen) appendToken(b []byte, i int) []byte {
	w := g.word(i)
	switch g.d {
	case dOllamaChat:
		b = append(b, `{"model":`...)
		b = append(b, g.model...)
		b = append(b, `,"created_at":`...)
		b = appendNow(b)
		b = append(b, `,"message":{"role":"assistant","content":"`...)
		b = append(b, w...)
		return append(b, "\"},\"done\":false}\n"...)
	case dOllamaGenerate:
		b = append(b, `{"model":`...)
		b = append(b, g.model...)
		b = append(b, `,"created_at":`...)
		b = appendNow(b)
		b = append(b, `,"response":"`...)
		b = append(b, w...)
		return append(b, "\",\"done\":false}\n"...)
	case dOllamaV1Chat:
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"delta":{"role":"assistant","content":"`...)
		b = append(b, w...)
		b = append(b, `"},"finish_reason":null}]`...)
	case dOllamaV1Completion:
		b = append(b, sseData...)
		b = g.ollamaCmplHead(b)
		b = append(b, `{"text":"`...)
		b = append(b, w...)
		b = append(b, `","index":0,"finish_reason":null}]`...)
		b = g.ollamaCmplTail(b, true)
	case dLlamaChat:
		b = append(b, `data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"`...)
		b = append(b, w...)
		b = append(b, `"}}`...)
		b = g.llamaTail(b, "chat.completion.chunk")
	case dLlamaCompletion:
		b = append(b, `data: {"choices":[{"text":"`...)
		b = append(b, w...)
		b = append(b, `","index":0,"logprobs":null,"finish_reason":null}`...)
		b = g.llamaTail(b, "text_completion")
		b = g.llamaID(b)
	case dVLLMChat, dOpenAIChat:
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"delta":{"content":"`...)
		b = append(b, w...)
		b = append(b, `"},"logprobs":null,"finish_reason":null}]`...)
		b = g.usageNull(b)
	case dVLLMCompletion:
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"text":"`...)
		b = append(b, w...)
		b = append(b, `","logprobs":null,"finish_reason":null,"stop_reason":null}]`...)
	case dLMSChat:
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"delta":{"role":"assistant","content":"`...)
		b = append(b, w...)
		b = append(b, `"},"logprobs":null,"finish_reason":null}]`...)
	case dLMSCompletion:
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"text":"`...)
		b = append(b, w...)
		b = append(b, `","logprobs":null,"finish_reason":null}]`...)
	case dOpenAICompletion:
		b = g.chunkHead(b)
		b = append(b, `{"text":"`...)
		b = append(b, w...)
		b = append(b, `","index":0,"logprobs":null,"finish_reason":null}]`...)
	}
	b = append(b, '}')
	return append(b, sseEnd...)
}

func (g *gen) appendFinishReason(b []byte) []byte {
	b = append(b, '"')
	b = append(b, g.finish...)
	return append(b, '"')
}

// appendFinish appends the event that carries finish_reason.
func (g *gen) appendFinish(b []byte) []byte {
	switch g.d {
	case dOllamaV1Chat:
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `}]`...)
	case dOllamaV1Completion:
		b = append(b, sseData...)
		b = g.ollamaCmplHead(b)
		b = append(b, `{"text":"","index":0,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `}]`...)
		b = g.ollamaCmplTail(b, true)
	case dLlamaChat:
		b = append(b, `data: {"choices":[{"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `,"index":0,"delta":{}}`...)
		b = g.llamaTail(b, "chat.completion.chunk")
		if !g.usage {
			b = append(b, ',')
			b = g.appendTimings(b)
		}
	case dLlamaCompletion:
		b = append(b, `data: {"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, '}')
		b = g.llamaTail(b, "text_completion")
		if g.usage {
			b = append(b, ',')
			b = g.appendLlamaUsage(b)
		}
		b = g.llamaID(b)
		b = append(b, ',')
		b = g.appendTimings(b)
	case dVLLMChat:
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `,"stop_reason":null}]`...)
	case dVLLMCompletion:
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"text":"","logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `,"stop_reason":null}]`...)
	case dLMSChat, dOpenAIChat:
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"delta":{},"logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `}]`...)
		b = g.usageNull(b)
	case dLMSCompletion:
		b = g.chunkHead(b)
		b = append(b, `{"index":0,"text":"","logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `}]`...)
	case dOpenAICompletion:
		b = g.chunkHead(b)
		b = append(b, `{"text":"","index":0,"logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `}]`...)
	}
	b = append(b, '}')
	return append(b, sseEnd...)
}

// appendUsageEvent appends the `"choices":[]` usage event (include_usage).
func (g *gen) appendUsageEvent(b []byte) []byte {
	switch g.d {
	case dOllamaV1Completion:
		b = append(b, sseData...)
		b = g.ollamaCmplHead(b)
		b = append(b, ']')
		b = g.ollamaCmplTail(b, false)
	case dLlamaChat:
		b = append(b, `data: {"choices":[`...)
		b = g.llamaTail(b, "chat.completion.chunk")
		b = append(b, ',')
		b = g.appendLlamaUsage(b)
		b = append(b, ',')
		b = g.appendTimings(b)
	case dVLLMChat, dVLLMCompletion:
		b = g.chunkHead(b)
		b = append(b, `],`...)
		b = g.appendVLLMUsage(b, false)
	default:
		b = g.chunkHead(b)
		b = append(b, `],`...)
		b = g.appendUsage(b)
	}
	b = append(b, '}')
	return append(b, sseEnd...)
}

func (g *gen) llamaID(b []byte) []byte {
	b = append(b, `,"id":"`...)
	b = append(b, g.id...)
	return append(b, '"')
}

// Ollama /v1/completions chunks put "choices" before "model".
func (g *gen) ollamaCmplHead(b []byte) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, g.id...)
	b = append(b, `","object":"text_completion","created":`...)
	b = g.appendCreated(b)
	return append(b, `,"choices":[`...)
}

func (g *gen) ollamaCmplTail(b []byte, zeroUsage bool) []byte {
	b = append(b, `,"model":`...)
	b = append(b, g.model...)
	b = append(b, `,"system_fingerprint":"fp_ollama",`...)
	if zeroUsage {
		return append(b, `"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}`...)
	}
	return g.appendUsage(b)
}

// appendOllamaFinal appends the done:true line of an Ollama native stream.
func (g *gen) appendOllamaFinal(b []byte) []byte {
	b = append(b, `{"model":`...)
	b = append(b, g.model...)
	b = append(b, `,"created_at":`...)
	b = appendNow(b)
	if g.d == dOllamaChat {
		b = append(b, `,"message":{"role":"assistant","content":""}`...)
	} else {
		b = append(b, `,"response":""`...)
	}
	b = g.appendOllamaDone(b)
	return append(b, "}\n"...)
}

func (g *gen) appendOllamaDone(b []byte) []byte {
	b = append(b, `,"done":true,"done_reason":`...)
	b = g.appendFinishReason(b)
	if g.d == dOllamaGenerate {
		b = append(b, `,"context":[`...)
		for i := 0; i < g.prompt+g.n; i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendInt(b, int64((g.seed>>7+uint64(i)*2654435761)%640))
		}
		b = append(b, ']')
	}
	b = append(b, ',')
	return g.appendOllamaStats(b)
}

// appendFull appends the complete non-stream answer.
func (s *Sim) appendFull(b []byte, g *gen) []byte {
	if g.tool != "" && g.d != dOllamaMessages && g.d != dMessages {
		return g.appendToolCallCompletion(b)
	}
	switch g.d {
	case dOllamaMessages, dMessages:
		return g.appendMessage(b)
	case dOllamaChat, dOllamaGenerate:
		b = append(b, `{"model":`...)
		b = append(b, g.model...)
		b = append(b, `,"created_at":`...)
		b = appendNow(b)
		if g.d == dOllamaChat {
			b = append(b, `,"message":{"role":"assistant","content":`...)
			b = g.appendText(b)
			b = append(b, '}')
		} else {
			b = append(b, `,"response":`...)
			b = g.appendText(b)
		}
		b = g.appendOllamaDone(b)
		return append(b, '}')
	case dOllamaV1Chat:
		b = g.head(b, "chat.completion", fpOllama)
		b = append(b, `{"index":0,"message":{"role":"assistant","content":`...)
		b = g.appendText(b)
		b = append(b, `},"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `}],`...)
		b = g.appendUsage(b)
		return append(b, "}\n"...)
	case dOllamaV1Completion:
		b = g.head(b, "text_completion", fpOllama)
		b = append(b, `{"text":`...)
		b = g.appendText(b)
		b = append(b, `,"index":0,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `}],`...)
		b = g.appendUsage(b)
		return append(b, "}\n"...)
	case dLlamaChat:
		b = append(b, `{"choices":[{"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `,"index":0,"message":{"role":"assistant","content":`...)
		b = g.appendText(b)
		b = append(b, `}}],"created":`...)
		b = g.appendCreated(b)
		b = append(b, `,"model":`...)
		b = append(b, g.model...)
		b = append(b, `,"system_fingerprint":`+fpLlama+`,"object":"chat.completion",`...)
		b = g.appendLlamaUsage(b)
		b = g.llamaID(b)
		b = append(b, ',')
		b = g.appendTimings(b)
		return append(b, '}')
	case dLlamaCompletion:
		b = append(b, `{"choices":[{"text":`...)
		b = g.appendText(b)
		b = append(b, `,"index":0,"logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, '}')
		b = g.llamaTail(b, "text_completion")
		b = append(b, ',')
		b = g.appendLlamaUsage(b)
		b = g.llamaID(b)
		b = append(b, ',')
		b = g.appendTimings(b)
		return append(b, '}')
	case dVLLMChat:
		b = g.head(b, "chat.completion", "")
		b = append(b, `{"index":0,"message":{"role":"assistant","content":`...)
		b = g.appendText(b)
		b = append(b, `,"refusal":null,"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning_content":null},"logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `,"stop_reason":null}],"service_tier":null,"system_fingerprint":null,`...)
		b = g.appendVLLMUsage(b, true)
		return append(b, `,"prompt_logprobs":null,"kv_transfer_params":null}`...)
	case dVLLMCompletion:
		b = g.head(b, "text_completion", "")
		b = append(b, `{"index":0,"text":`...)
		b = g.appendText(b)
		b = append(b, `,"logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `,"stop_reason":null,"prompt_logprobs":null}],`...)
		b = g.appendVLLMUsage(b, true)
		return append(b, `,"kv_transfer_params":null}`...)
	case dLMSChat:
		b = g.head(b, "chat.completion", "")
		b = append(b, `{"index":0,"logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `,"message":{"role":"assistant","content":`...)
		b = g.appendText(b)
		b = append(b, `}}],`...)
		b = g.appendUsage(b)
		b = append(b, `,"stats":{},"system_fingerprint":`...)
		b = append(b, g.model...)
		return append(b, '}')
	case dLMSCompletion:
		b = g.head(b, "text_completion", "")
		b = append(b, `{"index":0,"text":`...)
		b = g.appendText(b)
		b = append(b, `,"logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `}],`...)
		b = g.appendUsage(b)
		b = append(b, `,"stats":{},"system_fingerprint":`...)
		b = append(b, g.model...)
		return append(b, '}')
	case dOpenAIChat:
		b = g.head(b, "chat.completion", "")
		b = append(b, `{"index":0,"message":{"role":"assistant","content":`...)
		b = g.appendText(b)
		b = append(b, `,"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `}],`...)
		b = g.appendUsage(b)
		return append(b, `,"service_tier":"default","system_fingerprint":`+fpOpenAI+`}`...)
	default: // dOpenAICompletion
		b = g.head(b, "text_completion", fpOpenAI)
		b = append(b, `{"text":`...)
		b = g.appendText(b)
		b = append(b, `,"index":0,"logprobs":null,"finish_reason":`...)
		b = g.appendFinishReason(b)
		b = append(b, `}],`...)
		b = g.appendUsage(b)
		return append(b, '}')
	}
}
