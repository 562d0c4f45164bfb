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
	pathCountTokens     = "/v1/messages/count_tokens"
	pathRerank          = "/v1/rerank"
	// PathResponses is OpenAI's Responses API, served (stateless) by Ollama
	// 0.13.3+, LM Studio 0.3.29+ and vLLM; the others answer it with 501
	// from the load balancer.
	PathResponses = "/v1/responses"
)

// mlxAPIPaths are the API paths vllm-mlx and oMLX both serve: OpenAI's
// (with rerank and Responses) and Anthropic's Messages with count_tokens.
var mlxAPIPaths = []string{
	pathModels, pathChatCompletions, pathCompletions, pathEmbeddings, pathRerank,
	pathMessages, pathCountTokens, PathResponses,
}

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
		// /slots is on by default; /metrics needs --metrics, and is read
		// beside /slots too for its decode totals (the slow box, see
		// balancer.Signals.TPOT). /models says, in router mode, which
		// models are loaded now.
		LoadSurfaces: []LoadSurface{{Path: "/slots", Format: SignalsSlots}, {Path: "/metrics", Format: SignalsMetrics},
			{Path: "/models", Format: SignalsLlamaModels, Also: true}, {Path: "/metrics", Format: SignalsMetrics, Also: true}},
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
		// /api/v1/health names the loaded model(s).
		LoadSurfaces: []LoadSurface{{Path: "/api/v1/health", Format: SignalsLemonadeHealth}},
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
		// vllm-mlx serves one MLX model on Apple silicon with vLLM's OpenAI
		// surface, the Anthropic Messages API (count_tokens included) and a
		// /v1/status of its own (running and waiting requests).
		Name:             "vllm-mlx",
		DisplayName:      "vLLM-MLX",
		Prefixes:         []string{"vllm-mlx"},
		Aliases:          []string{"vllm_mlx", "vllmmlx"},
		OpenAICompatible: true,
		HealthPath:       "/health",
		ModelsPath:       pathModels,
		ModelFormat:      FormatOpenAI,
		AnthropicPath:    pathMessages,
		// vllm-mlx counts tokens with the model's tokenizer.
		AnthropicCountTokens: true,
		Paths:                append([]string{"/health", "/metrics", "/v1/status"}, mlxAPIPaths...),
		DefaultPort:          8000,
		LoadSurfaces:         []LoadSurface{{Path: "/v1/status", Format: SignalsVLLMMLXStatus}},
		ServesListed:         true,
	},
	{
		// Docker Model Runner (Docker Desktop, Docker Engine) serves the
		// OpenAI API under /engines/v1/ (and /engines/{backend}/v1/), the
		// Anthropic API under /anthropic/v1/, and loads models on demand:
		// /engines/ps lists the running ones. Clients use the plain OpenAI
		// paths (/olla/dmr/v1/chat/completions); UpstreamPath maps them.
		Name:             "docker-model-runner",
		DisplayName:      "Docker Model Runner",
		Prefixes:         []string{"dmr", "docker-model-runner"},
		Aliases:          []string{"docker_model_runner", "dockermodelrunner", "docker"},
		OpenAICompatible: true,
		HealthPath:       "/", // 200 "Docker Model Runner is running"
		ModelsPath:       "/engines/v1/models",
		ModelFormat:      FormatOpenAI,
		AnthropicPath:    "/anthropic/v1/messages",
		// its Anthropic surface answers count_tokens too (the reference's
		// profile says token_count true)
		AnthropicCountTokens: true,
		Paths: []string{
			"/", "/models", "/models/{model...}", "/engines/ps", "/metrics",
			pathModels, "/v1/models/{model...}", pathChatCompletions, pathCompletions, pathEmbeddings,
			pathMessages, pathCountTokens,
		},
		DefaultPort:    12434,
		LoadSurfaces:   []LoadSurface{{Path: "/engines/ps", Format: SignalsDMRPS}},
		upstreamPrefix: "/engines",
	},
	{
		// oMLX serves many MLX models on Apple silicon, loading them on
		// demand and evicting the least recently used under memory
		// pressure; /v1/models/status says which are loaded.
		Name:                 "omlx",
		DisplayName:          "oMLX",
		Prefixes:             []string{"omlx"},
		OpenAICompatible:     true,
		HealthPath:           "/health",
		ModelsPath:           pathModels,
		ModelFormat:          FormatOpenAI,
		AnthropicPath:        pathMessages,
		AnthropicCountTokens: true,
		Paths:                append([]string{"/health", "/v1/models/status"}, mlxAPIPaths...),
		DefaultPort:          8000,
		LoadSurfaces:         []LoadSurface{{Path: "/v1/models/status", Format: SignalsOMLXStatus}},
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
