package profiles

// Model-list formats: the parser ParseModels uses for a profile's ModelsPath.
const (
	FormatOllama   = "ollama"   // /api/tags: {"models":[{name, digest, size, details{...}}]}
	FormatLMStudio = "lmstudio" // /api/v0/models: {"data":[{id, type, arch, quantization, state, ...}]}
	FormatOpenAI   = "openai"   // /v1/models: {"object":"list","data":[{id, created, owned_by}]}
	FormatVLLM     = "vllm"     // OpenAI-shaped plus max_model_len, root, parent
	FormatSGLang   = "sglang"   // OpenAI-shaped plus max_model_len
	FormatLlamaCpp = "llamacpp" // {"models":[...], "object":"list", "data":[{id, aliases, meta{...}}]}
	FormatLemonade = "lemonade" // OpenAI-shaped plus checkpoint, recipe
	FormatLMDeploy = "lmdeploy" // OpenAI-shaped plus root, parent
)

// Paths shared by every OpenAI-compatible backend.
const (
	pathModels          = "/v1/models"
	pathChatCompletions = "/v1/chat/completions"
	pathCompletions     = "/v1/completions"
	pathEmbeddings      = "/v1/embeddings"
	pathMessages        = "/v1/messages"
	// PathResponses is OpenAI's Responses API, served (stateless) by Ollama
	// 0.13.3+, LM Studio 0.3.29+ and vLLM; the others answer it with 501
	// from the load balancer.
	PathResponses = "/v1/responses"
)

// table holds every backend type, in the order All returns them. To add a
// backend type, add an entry here (and, if its model list has a new shape, a
// Format constant and a case in ParseModels).
//
// AnthropicPath marks the backends whose own server speaks the Anthropic
// Messages API: Ollama (0.14+; captured from 0.17.4 in testdata/real), LM
// Studio (0.4.1+), vLLM (0.11.1+) and llama.cpp (captured in testdata/real).
// SGLang, Lemonade, LMDeploy, LiteLLM and plain OpenAI-compatible servers get
// translated requests. Of these, only llama.cpp counts tokens natively (Ollama
// answers 404 there, vLLM has no such route).
//
// Sources: the reference's shipped-profile table (prefixes, discovery and
// health paths, parsers, api.paths, default ports), completed with each
// backend's documented routes where the reference list was short (Ollama's
// model-management and /api/ps routes, LM Studio's /api/v0 routes, llama.cpp's
// /health, /props, /slots and /metrics, Lemonade's newer /v1 routes).
var table = []*Profile{
	{
		Name:             "ollama",
		DisplayName:      "Ollama",
		Prefixes:         []string{"ollama"},
		OpenAICompatible: true,
		HealthPath:       "/", // 200 "Ollama is running"
		ModelsPath:       "/api/tags",
		ModelFormat:      FormatOllama,
		AnthropicPath:    pathMessages,
		Paths: []string{
			"/",
			"/api/generate", "/api/chat", "/api/embed", "/api/embeddings",
			"/api/tags", "/api/show", "/api/ps", "/api/version",
			"/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete",
			"/api/blobs/{digest}",
			pathModels, "/v1/models/{model...}",
			pathChatCompletions, pathCompletions, pathEmbeddings, pathMessages, PathResponses,
		},
		DefaultPort:  11434,
		LoadSurfaces: []LoadSurface{{Path: "/api/ps", Format: SignalsOllamaPS}},
	},
	{
		Name:             "lm-studio",
		DisplayName:      "LM Studio",
		Prefixes:         []string{"lmstudio", "lm-studio", "lm_studio"},
		OpenAICompatible: true,
		HealthPath:       pathModels,
		ModelsPath:       "/api/v0/models",
		ModelFormat:      FormatLMStudio,
		AnthropicPath:    pathMessages,
		Paths: []string{
			pathModels, pathChatCompletions, pathCompletions, pathEmbeddings, pathMessages, PathResponses,
			"/api/v0/models", "/api/v0/models/{model...}",
			"/api/v0/chat/completions", "/api/v0/completions", "/api/v0/embeddings",
		},
		DefaultPort:  1234,
		LoadSurfaces: []LoadSurface{{Path: "/api/v0/models", Format: SignalsLMStudio}},
	},
	{
		Name:             "vllm",
		DisplayName:      "vLLM",
		Prefixes:         []string{"vllm"},
		OpenAICompatible: true,
		HealthPath:       "/health",
		ModelsPath:       pathModels,
		ModelFormat:      FormatVLLM,
		AnthropicPath:    pathMessages,
		Paths: []string{
			"/health", "/metrics", "/version",
			pathModels, pathChatCompletions, pathCompletions, pathEmbeddings, pathMessages, PathResponses,
			"/tokenize", "/detokenize", "/v1/tokenize", "/v1/detokenize",
			"/rerank", "/v1/rerank", "/v2/rerank", "/get_tokenizer_info",
		},
		DefaultPort:  8000,
		LoadSurfaces: []LoadSurface{{Path: "/metrics", Format: SignalsMetrics}},
		ServesListed: true,
	},
	{
		Name:             "sglang",
		DisplayName:      "SGLang",
		Prefixes:         []string{"sglang"},
		OpenAICompatible: true,
		HealthPath:       "/health",
		ModelsPath:       pathModels,
		ModelFormat:      FormatSGLang,
		Paths: []string{
			"/health", "/metrics", "/version",
			pathModels, pathChatCompletions, pathCompletions, pathEmbeddings,
			"/generate", "/batch", "/extend", "/v1/chat/completions/vision",
		},
		DefaultPort:  30000,
		LoadSurfaces: []LoadSurface{{Path: "/metrics", Format: SignalsMetrics}},
		ServesListed: true,
	},
	{
		Name:             "llamacpp",
		DisplayName:      "llama.cpp",
		Prefixes:         []string{"llamacpp"},
		Aliases:          []string{"llama.cpp", "llama-cpp", "llama_cpp"},
		OpenAICompatible: true,
		HealthPath:       "/health",
		ModelsPath:       pathModels,
		ModelFormat:      FormatLlamaCpp,
		AnthropicPath:    pathMessages,
		// llama-server routes /v1/messages/count_tokens next to /v1/messages.
		AnthropicCountTokens: true,
		Paths: []string{
			"/health", "/props", "/slots", "/metrics", "/models",
			pathModels, pathChatCompletions, pathCompletions, pathEmbeddings,
			pathMessages, "/v1/messages/count_tokens",
			"/completion", "/embedding", "/tokenize", "/detokenize", "/infill",
		},
		DefaultPort: 8080,
		// /slots is on by default; /metrics needs --metrics.
		LoadSurfaces: []LoadSurface{{Path: "/slots", Format: SignalsSlots}, {Path: "/metrics", Format: SignalsMetrics}},
		ServesListed: true,
	},
	{
		Name:             "lemonade",
		DisplayName:      "Lemonade",
		Prefixes:         []string{"lemonade"},
		OpenAICompatible: true,
		HealthPath:       "/api/v1/health",
		ModelsPath:       "/api/v1/models",
		ModelFormat:      FormatLemonade,
		Paths: []string{
			"/api/v1/health", "/api/v1/stats", "/api/v1/system-info",
			"/api/v1/models", "/api/v1/models/{model...}",
			"/api/v1/chat/completions", "/api/v1/completions", "/api/v1/embeddings",
			"/api/v1/pull", "/api/v1/load", "/api/v1/unload", "/api/v1/delete",
			// Newer Lemonade servers also answer the OpenAI API under /v1.
			"/v1/health", pathModels, "/v1/models/{model...}",
			pathChatCompletions, pathCompletions, pathEmbeddings,
		},
		DefaultPort: 8000,
	},
	{
		Name:             "lmdeploy",
		DisplayName:      "LMDeploy",
		Prefixes:         []string{"lmdeploy"},
		OpenAICompatible: true,
		HealthPath:       "/health",
		ModelsPath:       pathModels,
		ModelFormat:      FormatLMDeploy,
		Paths: []string{
			"/health", pathModels, pathChatCompletions, pathCompletions,
			"/v1/encode", "/generate", "/pooling", "/is_sleeping",
		},
		DefaultPort: 23333,
	},
	{
		Name:             "litellm",
		DisplayName:      "LiteLLM",
		Prefixes:         []string{"litellm"},
		OpenAICompatible: true,
		// LiteLLM's /health calls every configured upstream model and needs the
		// master key; /health/liveliness is its cheap, unauthenticated probe.
		HealthPath:  "/health/liveliness",
		ModelsPath:  pathModels,
		ModelFormat: FormatOpenAI,
		Paths: []string{
			"/", "/health", "/health/liveliness", "/health/liveness", "/health/readiness",
			pathModels, pathChatCompletions, pathCompletions, pathEmbeddings,
			"/models", "/chat/completions", "/completions", "/embeddings",
		},
		DefaultPort: 4000,
	},
	{
		Name:             "openai-compatible",
		DisplayName:      "OpenAI-compatible",
		Prefixes:         []string{"openai-compatible"},
		Aliases:          []string{"openai", "openai_compatible", "openaicompatible"},
		OpenAICompatible: true,
		HealthPath:       pathModels,
		ModelsPath:       pathModels,
		ModelFormat:      FormatOpenAI,
		Paths: []string{
			pathModels, "/v1/models/{model...}",
			pathChatCompletions, pathCompletions, pathEmbeddings,
		},
		DefaultPort: 0,
	},
}
