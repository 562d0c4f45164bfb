package sim

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Kinds that speak a base kind's wire dialect (chat, stream and error
// formats) with routes of their own, written from each project's
// documentation:
//
//   - vllm-mlx (base vllm): GET /health {"status":"healthy","model_loaded":true,...},
//     GET /v1/status (running and waiting counts), /v1/models owned_by
//     "vllm-mlx", /v1/messages and /v1/messages/count_tokens, /v1/responses.
//     No /version.
//   - omlx (base vllm): GET /health {"status":"healthy"}, /v1/models owned_by
//     "omlx", GET /v1/models/status ({"models":[{"id","loaded",...}]}: loaded
//     once used, or by the capacity model's LRU when maxloaded is set),
//     GET /v1/models/{id}, POST /v1/models/{id}/load (blocks until loaded;
//     404 for an unknown model), /v1/messages and count_tokens, /v1/responses.
//   - docker-model-runner (base openai): the OpenAI API only under
//     /engines/v1/ and /engines/{backend}/v1/ (a bare /v1/ path is 404), the
//     Anthropic API under /anthropic/v1/messages, GET / "Docker Model Runner
//     is running", native GET /models, Ollama-style GET /api/tags, GET
//     /engines/ps (the models loaded: used, or resident by the capacity
//     model), owned_by "docker". An inference request with the header
//     X-Preload-Only: true loads its model and answers 200 with no body.
//   - sglang (base openai): GET /health and /health_generate (200, empty),
//     GET /get_model_info {"model_path","is_generation",...}, GET
//     /get_server_info, GET /metrics with sglang: gauges (running, queued,
//     token usage), /v1/models owned_by "sglang" with max_model_len.
//   - lmdeploy (base openai): GET /health (200, empty), /v1/models owned_by
//     "lmdeploy" with root and parent.
//   - litellm (base openai): GET /health/liveliness and /health/liveness
//     ("I'm alive!"), GET /health/readiness {"status":"healthy",...}, the
//     model list at /v1/models and /models (owned_by "openai"), and the
//     OpenAI routes without /v1 too (/chat/completions...).
//   - lemonade (base openai): the OpenAI API under /api/v1/ (and /v1/),
//     GET /api/v1/health {"status":"ok","model_loaded","all_models_loaded":[...]}
//     naming the loaded models, /api/v1/models with checkpoint and recipe,
//     POST /api/v1/load; busy, it answers 409 slots_pinned_error.
const (
	VLLMMLX           = "vllm-mlx"
	DockerModelRunner = "docker-model-runner"
	OMLX              = "omlx"
	Lemonade          = "lemonade"
	SGLang            = "sglang"
	LMDeploy          = "lmdeploy"
	LiteLLM           = "litellm"
)

// flavorBase is each flavor's base kind.
var flavorBase = map[string]string{VLLMMLX: VLLM, OMLX: VLLM, DockerModelRunner: OpenAI, Lemonade: OpenAI,
	SGLang: OpenAI, LMDeploy: OpenAI, LiteLLM: OpenAI}

// litellmRequest maps LiteLLM's OpenAI routes without /v1 (/chat/completions,
// /models...) onto the /v1/ routes.
func litellmRequest(r *http.Request) *http.Request {
	switch p := r.URL.Path; p {
	case "/models", "/chat/completions", "/completions", "/embeddings":
		return withPath(r, "/v1"+p)
	}
	return r
}

// lemonadeRequest maps Lemonade's /api/v1/ mount onto the /v1/ routes, but
// for its own /api/v1/health and /api/v1/load.
func lemonadeRequest(r *http.Request) *http.Request {
	p := r.URL.Path
	rest, ok := strings.CutPrefix(p, "/api")
	if !ok || !strings.HasPrefix(rest, "/v1/") || p == "/api/v1/health" || p == "/api/v1/load" {
		return r
	}
	return withPath(r, rest)
}

// withPath is a shallow copy of r with another URL path.
func withPath(r *http.Request, path string) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = path, ""
	r2.URL = &u
	return r2
}

// dmrRequest maps Docker Model Runner's mounts onto the routes the
// simulator keys by: /engines/v1/x and /engines/{backend}/v1/x to /v1/x,
// /anthropic/v1/messages to /v1/messages. A bare /v1/ path, which Docker
// Model Runner does not serve, goes to an unrouted path (404).
func dmrRequest(r *http.Request) *http.Request {
	p := r.URL.Path
	var mapped string
	switch {
	case strings.HasPrefix(p, "/engines/"):
		rest := p[len("/engines/"):]
		if strings.HasPrefix(rest, "v1/") {
			mapped = "/" + rest
		} else if i := strings.IndexByte(rest, '/'); i > 0 && strings.HasPrefix(rest[i+1:], "v1/") {
			mapped = rest[i:]
		} else {
			return r
		}
	case strings.HasPrefix(p, "/anthropic/v1/messages"):
		mapped = p[len("/anthropic"):]
	case strings.HasPrefix(p, "/v1/"):
		mapped = "/_unserved" + p
	default:
		return r
	}
	return withPath(r, mapped)
}

// flavorRoutes adds a flavor's own routes.
func (s *Sim) flavorRoutes(add func(string, []string, uint8, uint8, func(*Sim, *call)) *route) {
	get := []string{"GET"}
	headGet := []string{"HEAD", "GET"}
	post := []string{"POST"}
	switch s.flavor {
	case VLLMMLX:
		add("/health", get, classHealth, apiOpenAI, (*Sim).handleVLLMMLXHealth)
		add("/v1/status", get, 0, apiOpenAI, (*Sim).handleVLLMMLXStatus)
		add("/v1/messages/count_tokens", post, 0, apiAnthropic, (*Sim).handleCountTokens)
	case OMLX:
		add("/health", get, classHealth, apiOpenAI, (*Sim).handleOMLXHealth)
		add("/v1/models/status", get, 0, apiOpenAI, (*Sim).handleOMLXStatus)
		add("/v1/models/", []string{"GET", "POST"}, 0, apiOpenAI, (*Sim).handleOMLXModel)
		add("/v1/messages/count_tokens", post, 0, apiAnthropic, (*Sim).handleCountTokens)
	case DockerModelRunner:
		add("/", headGet, classHealth, apiNative, (*Sim).handleDMRRoot)
		add("/models", get, 0, apiOpenAI, (*Sim).handleDMRModels)
		add("/api/tags", get, 0, apiNative, (*Sim).handleOllamaTags)
		add("/engines/ps", get, 0, apiOpenAI, (*Sim).handleDMRPS)
		add("/v1/messages", post, classInference, apiAnthropic, (*Sim).handleMessages)
		add("/v1/messages/count_tokens", post, 0, apiAnthropic, (*Sim).handleCountTokens)
	case Lemonade:
		add("/api/v1/health", get, classHealth, apiOpenAI, (*Sim).handleLemonadeHealth)
		add("/api/v1/load", post, 0, apiOpenAI, (*Sim).handleLemonadeLoad)
	case SGLang:
		add("/health", get, classHealth, apiOpenAI, (*Sim).handleVLLMHealth)
		add("/health_generate", get, 0, apiOpenAI, (*Sim).handleVLLMHealth)
		add("/get_model_info", get, 0, apiOpenAI, (*Sim).handleSGLangModelInfo)
		add("/get_server_info", get, 0, apiOpenAI, (*Sim).handleSGLangServerInfo)
		add("/metrics", get, 0, apiOpenAI, (*Sim).handleSGLangMetrics)
	case LMDeploy:
		add("/health", get, classHealth, apiOpenAI, (*Sim).handleVLLMHealth)
	case LiteLLM:
		add("/health/liveliness", get, classHealth, apiOpenAI, (*Sim).handleLiteLLMAlive)
		add("/health/liveness", get, 0, apiOpenAI, (*Sim).handleLiteLLMAlive)
		add("/health/readiness", get, 0, apiOpenAI, (*Sim).handleLiteLLMReadiness)
	}
}

func (s *Sim) handleSGLangModelInfo(c *call) {
	ms := s.models.Load()
	s.writeOK(c, mustJSON(map[string]any{"model_path": ms.list[0].id, "tokenizer_path": ms.list[0].id,
		"is_generation": true, "preferred_sampling_params": nil, "weight_version": "default"}), false)
}

func (s *Sim) handleSGLangServerInfo(c *call) {
	ms := s.models.Load()
	s.writeOK(c, mustJSON(map[string]any{"model_path": ms.list[0].id, "context_length": s.ctxLen,
		"max_total_num_tokens": 65536, "version": "0.5.0"}), false)
}

// handleSGLangMetrics is SGLang's /metrics: its gauges, by the capacity
// model.
func (s *Sim) handleSGLangMetrics(c *call) {
	st := s.capacityStats()
	lbl := `{model_name="` + s.models.Load().list[0].id + `"}`
	b := appendLoadGauges(c.sc.buf[:0], &sglangGauges, lbl, st)
	b = s.appendProcessStart(b)
	b = appendDecodeHistogram(b, "sglang:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", lbl, st)
	c.sc.buf = b
	c.writeBody(http.StatusOK, ctPromText, b, true)
}

func (s *Sim) handleLiteLLMAlive(c *call) {
	s.writeOK(c, append(c.sc.buf[:0], `"I'm alive!"`...), false)
}

func (s *Sim) handleLiteLLMReadiness(c *call) {
	s.writeOK(c, append(c.sc.buf[:0], `{"status":"healthy","db":"Not connected","cache":null,"litellm_version":"1.75.0"}`...), false)
}

func (s *Sim) handleLemonadeHealth(c *call) {
	type loaded struct {
		ModelName  string `json:"model_name"`
		Checkpoint string `json:"checkpoint"`
		Type       string `json:"type"`
		Recipe     string `json:"recipe"`
	}
	all := []loaded{}
	var last string
	for _, e := range s.loadedModels(time.Now()) {
		all = append(all, loaded{ModelName: e.id, Checkpoint: "sim/" + e.id, Type: "llm", Recipe: "llamacpp"})
		last = e.id
	}
	s.writeOK(c, mustJSON(map[string]any{"status": "ok", "model_loaded": last, "all_models_loaded": all}), false)
}

// handleLemonadeLoad is POST /api/v1/load {"model_name":"x"}.
func (s *Sim) handleLemonadeLoad(c *call) {
	var req struct {
		ModelName string `json:"model_name"`
	}
	_ = json.Unmarshal(c.body, &req)
	ms := s.models.Load()
	e := ms.lookup(s.kind, req.ModelName)
	if e == nil {
		s.modelNotFound(c, req.ModelName)
		return
	}
	s.loadModel(c, ms, e)
}

// flavorModelsBody is a flavor's GET /v1/models: OpenAI's shape, its own
// owned_by.
func flavorModelsBody(flavor string, ms *modelSet, created int64) []byte {
	type model struct {
		ID          string `json:"id"`
		Object      string `json:"object"`
		Created     int64  `json:"created"`
		OwnedBy     string `json:"owned_by"`
		Root        string `json:"root,omitempty"`          // sglang, lmdeploy
		MaxModelLen int    `json:"max_model_len,omitempty"` // sglang
	}
	owner := map[string]string{VLLMMLX: "vllm-mlx", OMLX: "omlx", DockerModelRunner: "docker", Lemonade: "lemonade",
		SGLang: "sglang", LMDeploy: "lmdeploy", LiteLLM: "openai"}[flavor]
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, e := range ms.list {
		m := model{ID: e.id, Object: "model", Created: created, OwnedBy: owner}
		switch flavor {
		case SGLang:
			m.Root, m.MaxModelLen = e.id, e.ctx
		case LMDeploy:
			m.Root = e.id
		}
		out.Data = append(out.Data, m)
	}
	return mustJSON(out)
}

func (s *Sim) handleVLLMMLXHealth(c *call) {
	ms := s.models.Load()
	s.writeOK(c, mustJSON(map[string]any{"status": "healthy", "model_loaded": true, "model_name": ms.list[0].id,
		"model_type": "llm", "engine_type": "simple"}), false)
}

func (s *Sim) handleVLLMMLXStatus(c *call) {
	st := s.capacityStats()
	running := s.active.Load() - 1 // this request is not one
	if s.cap != nil {
		running = st.Running
	}
	s.writeOK(c, mustJSON(map[string]any{"status": "running", "model": s.models.Load().list[0].id,
		"uptime_s": time.Since(s.created).Seconds(), "num_running": max(running, 0), "num_waiting": st.Waiting,
		"requests": []any{}}), false)
}

func (s *Sim) handleOMLXHealth(c *call) {
	s.writeOK(c, append(c.sc.buf[:0], `{"status":"healthy"}`...), false)
}

// loadedModels are the models a load-on-demand server holds now: the
// capacity model's residents when memory is limited, else every model used
// in the last keep-alive period (or loaded by a load route).
func (s *Sim) loadedModels(now time.Time) []*modelEntry {
	ms := s.models.Load()
	resident := s.cap.residency()
	var out []*modelEntry
	for _, e := range ms.list {
		if resident != nil {
			if resident(e.id) {
				out = append(out, e)
			}
			continue
		}
		if e.lastUsed.Load() != 0 && e.expiry().After(now) {
			out = append(out, e)
		}
	}
	return out
}

func (s *Sim) handleOMLXStatus(c *call) {
	type status struct {
		ID            string `json:"id"`
		Loaded        bool   `json:"loaded"`
		ModelType     string `json:"model_type"`
		EngineType    string `json:"engine_type"`
		EstimatedSize int64  `json:"estimated_size"`
	}
	loaded := map[*modelEntry]bool{}
	for _, e := range s.loadedModels(time.Now()) {
		loaded[e] = true
	}
	out := struct {
		Models []status `json:"models"`
	}{Models: []status{}}
	for _, e := range s.models.Load().list {
		typ := "llm"
		if e.embed {
			typ = "embedding"
		}
		out.Models = append(out.Models, status{ID: e.id, Loaded: loaded[e], ModelType: typ, EngineType: "batched", EstimatedSize: e.size})
	}
	s.writeOK(c, mustJSON(out), false)
}

// handleOMLXModel is oMLX's GET /v1/models/{id} and POST
// /v1/models/{id}/load.
func (s *Sim) handleOMLXModel(c *call) {
	if c.r.Method == http.MethodGet {
		s.handleV1Model(c)
		return
	}
	id, ok := strings.CutSuffix(strings.TrimPrefix(c.r.URL.Path, "/v1/models/"), "/load")
	if !ok || id == "" {
		s.notFound(c)
		return
	}
	ms := s.models.Load()
	e := ms.lookup(s.kind, id)
	if e == nil {
		s.writeErr(c, errSpec{status: http.StatusNotFound, msg: "Model not found: " + id})
		return
	}
	s.loadModel(c, ms, e)
}

// preloadOnly answers Docker Model Runner's X-Preload-Only inference
// request: the model is loaded and nothing is generated. It reports
// whether it answered.
func (s *Sim) preloadOnly(c *call) bool {
	if s.flavor != DockerModelRunner || c.r.Header.Get("X-Preload-Only") != "true" {
		return false
	}
	req, err := c.parse()
	if err != nil {
		s.invalidJSON(c, err)
		return true
	}
	ms := s.models.Load()
	e := ms.lookup(s.kind, req.Model)
	if req.Model == "" || e == nil {
		s.modelNotFound(c, req.Model)
		return true
	}
	if s.warm(c, ms, e) {
		c.w.WriteHeader(http.StatusOK) // as Docker Model Runner: no body
	}
	return true
}

// handleLoadModel loads a model: {"model":"name"} (llama.cpp router POST
// /models/load, LM Studio POST /api/v1/models/load). It marks the
// model used and, under the capacity model, resident (evicting the least
// recently used one when memory is full).
func (s *Sim) handleLoadModel(c *call) {
	req, err := c.parse()
	if err != nil {
		s.invalidJSON(c, err)
		return
	}
	name := req.Model
	ms := s.models.Load()
	e := ms.lookup(s.kind, name)
	if name == "" || e == nil {
		s.modelNotFound(c, name)
		return
	}
	s.loadModel(c, ms, e)
}

// loadModel makes e resident as a load route does, taking the capacity
// model's load time when it was cold, and answers success.
func (s *Sim) loadModel(c *call, ms *modelSet, e *modelEntry) {
	if s.warm(c, ms, e) {
		s.writeOK(c, append(c.sc.buf[:0], `{"success":true}`...), false)
	}
}

// warm makes e resident (a load route, Ollama's empty generate, Docker
// Model Runner's preload-only request): it marks e used and, under the
// capacity model, waits the load time when e was cold, evicting the least
// recently used model when memory is full. It reports false when the
// client left while it waited.
func (s *Sim) warm(c *call, ms *modelSet, e *modelEntry) bool {
	ms.markUsed(e, c.start)
	if d := s.cap.load(e.id); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.r.Context().Done():
			t.Stop()
			return false
		}
	}
	return true
}

func (s *Sim) handleDMRRoot(c *call) {
	c.writeBody(http.StatusOK, ctTextUTF8, append(c.sc.buf[:0], "Docker Model Runner is running"...), false)
}

// handleDMRModels is Docker Model Runner's native GET /models: an array of
// {id, tags, created, config{format, quantization, parameters, architecture, size}}.
func (s *Sim) handleDMRModels(c *call) {
	type config struct {
		Format       string `json:"format"`
		Quantization string `json:"quantization"`
		Parameters   string `json:"parameters"`
		Architecture string `json:"architecture"`
		Size         string `json:"size"`
	}
	type model struct {
		ID      string   `json:"id"`
		Tags    []string `json:"tags"`
		Created int64    `json:"created"`
		Config  config   `json:"config"`
	}
	out := []model{}
	for _, e := range s.models.Load().list {
		out = append(out, model{ID: "sha256:" + e.digest, Tags: []string{e.id}, Created: s.created.Unix(),
			Config: config{Format: "gguf", Quantization: e.quant, Parameters: e.paramSize, Architecture: e.family,
				Size: formatParams(e.size) + "B"}})
	}
	s.writeOK(c, mustJSON(out), false)
}

// handleDMRPS is GET /engines/ps: the running backends, one per loaded
// model, most recently used first.
func (s *Sim) handleDMRPS(c *call) {
	type runner struct {
		BackendName string `json:"backend_name"`
		ModelName   string `json:"model_name"`
		Mode        string `json:"mode"`
		LastUsed    string `json:"last_used"`
	}
	out := []runner{}
	for _, e := range s.loadedModels(time.Now()) {
		out = append(out, runner{BackendName: "llama.cpp", ModelName: e.id, Mode: "completion",
			LastUsed: time.Unix(0, e.lastUsed.Load()).UTC().Format(time.RFC3339)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastUsed > out[j].LastUsed })
	s.writeOK(c, mustJSON(out), false)
}

// load makes model resident through a load route (not a request): it
// takes the capacity model's LoadTime when the model was cold (what is
// left of it while another load of it is under way), and evicts the least
// recently used one when memory is full. A nil capacity (or one without
// MaxLoaded) has nothing to do.
func (cp *capacity) load(model string) time.Duration {
	if cp == nil || cp.cfg.MaxLoaded == 0 {
		return 0
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.touchModel(model, time.Now())
}

// busyAnswer is the kind's own "busy, try again" answer (the busy fault):
// Ollama's 503 when its queue is full, llama-server's 503 when no slot is
// free, Lemonade's 409 when every slot is pinned; others a plain 503.
func (s *Sim) busyAnswer(c *call, retryAfter int) {
	if retryAfter > 0 {
		c.w.Header()["Retry-After"] = retryAfterValue(retryAfter)
	}
	switch {
	case s.flavor == Lemonade:
		c.writeBody(http.StatusConflict, ctJSON, append(c.sc.buf[:0],
			`{"error":{"message":"All model slots are pinned by requests in progress; try again later","type":"slots_pinned_error"}}`...), true)
	case s.kind == Ollama:
		c.writeBody(http.StatusServiceUnavailable, ctJSONUTF8, append(c.sc.buf[:0],
			`{"error":"server busy, please try again.  maximum pending requests exceeded"}`...), false)
	case s.kind == LlamaCpp:
		s.writeErr(c, errSpec{status: http.StatusServiceUnavailable, msg: "no slot available"})
	default:
		s.writeError(c, http.StatusServiceUnavailable, "server busy")
	}
}

// handleRouterModels is llama-server's GET /models in router mode: each
// model with its status, {"value":"loaded"|"unloaded","args":[...]}.
func (s *Sim) handleRouterModels(c *call) {
	type status struct {
		Value string   `json:"value"`
		Args  []string `json:"args,omitempty"`
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		OwnedBy string `json:"owned_by"`
		Created int64  `json:"created"`
		InCache bool   `json:"in_cache"`
		Path    string `json:"path"`
		Status  status `json:"status"`
	}
	loaded := map[*modelEntry]bool{}
	for _, e := range s.loadedModels(time.Now()) {
		loaded[e] = true
	}
	out := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list", Data: []model{}}
	for _, e := range s.models.Load().list {
		st := status{Value: "unloaded"}
		if loaded[e] {
			st = status{Value: "loaded", Args: []string{"llama-server", "--ctx-size", "4096"}}
		}
		out.Data = append(out.Data, model{ID: e.id, Object: "model", OwnedBy: "llamacpp", Created: s.created.Unix(),
			InCache: true, Path: "/models/" + e.id + ".gguf", Status: st})
	}
	s.writeOK(c, mustJSON(out), false)
}

// handleLlamaProps is llama-server's GET /props, in the captured shape
// (testdata/real/llamacpp/GET_props.txt) cut to the fields clients read.
func (s *Sim) handleLlamaProps(c *call) {
	slots := 1
	if s.cap != nil && s.cap.cfg.Slots > 0 {
		slots = s.cap.cfg.Slots
	}
	llamaHeaders(c.w.Header(), true)
	s.writeOK(c, mustJSON(map[string]any{
		"default_generation_settings": map[string]any{"n_ctx": s.ctxLen, "params": map[string]any{"temperature": 0.8, "top_k": 40}},
		"total_slots":                 slots,
		"model_path":                  "/models/" + s.models.Load().list[0].id + ".gguf",
		"chat_template":               "{{ messages }}",
		"build_info":                  "b11669-sim",
	}), false)
}
