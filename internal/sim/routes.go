package sim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/fnv"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// OllamaVersion is what the simulated Ollama reports on /api/version.
const OllamaVersion = "0.17.4"

// VLLMVersion is what the simulated vLLM reports on /version.
const VLLMVersion = "0.11.0"

func (s *Sim) buildRoutes() {
	s.routes = make(map[string]*route)
	add := func(path string, methods []string, class, api uint8, h func(*Sim, *call)) *route {
		rt := &route{path: path, class: class, api: api, h: h}
		for _, m := range methods {
			rt.methods |= 1 << methodIndex(m)
		}
		switch {
		case rt.methods == 1<<0|1<<1:
			rt.allow = allowHeadGet
		case rt.methods == 1<<2:
			rt.allow = allowPost
		default:
			rt.allow = allowGet
		}
		if strings.HasSuffix(path, "/") && path != "/" {
			rt.prefix = true
			s.prefixes = append(s.prefixes, rt)
		} else {
			s.routes[path] = rt
		}
		return rt
	}
	get := []string{"GET"}
	headGet := []string{"HEAD", "GET"}
	post := []string{"POST"}

	modelsClass := classModels
	if (s.kind == OpenAI || s.kind == LMStudio) && s.flavor == "" {
		modelsClass |= classHealth // their health check is the model list
	}
	add("/v1/models", get, modelsClass, apiOpenAI, (*Sim).handleV1Models)
	add("/v1/chat/completions", post, classInference, apiOpenAI, (*Sim).handleChat)
	add("/v1/completions", post, classInference, apiOpenAI, (*Sim).handleCompletion)
	add("/v1/embeddings", post, classInference, apiOpenAI, (*Sim).handleEmbeddings)
	if s.kind != LlamaCpp && s.flavor != OMLX { // oMLX adds its own, with its load route
		add("/v1/models/", get, 0, apiOpenAI, (*Sim).handleV1Model)
	}
	if s.kind != OpenAI {
		add("/v1/messages", post, classInference, apiAnthropic, (*Sim).handleMessages)
	}
	if s.kind == LlamaCpp {
		add("/v1/messages/count_tokens", post, 0, apiAnthropic, (*Sim).handleCountTokens)
	}
	if s.kind == Ollama || s.kind == VLLM || s.kind == LMStudio {
		add("/v1/responses", post, classInference, apiOpenAI, (*Sim).handleResponses)
	}

	switch s.kind {
	case Ollama:
		add("/", headGet, classHealth, apiNative, (*Sim).handleOllamaRoot)
		add("/api/tags", headGet, classModels, apiNative, (*Sim).handleOllamaTags)
		add("/api/ps", get, 0, apiNative, (*Sim).handleOllamaPs)
		add("/api/version", headGet, 0, apiNative, (*Sim).handleOllamaVersion)
		add("/api/show", post, 0, apiNative, (*Sim).handleOllamaShow)
		add("/api/chat", post, classInference, apiNative, (*Sim).handleOllamaChat)
		add("/api/generate", post, classInference, apiNative, (*Sim).handleOllamaGenerate)
		add("/api/embed", post, classInference, apiNative, (*Sim).handleOllamaEmbed)
		add("/api/embeddings", post, classInference, apiNative, (*Sim).handleOllamaEmbeddings)
	case LMStudio:
		add("/api/v0/models", get, classModels, apiOpenAI, (*Sim).handleLMStudioModels)
		add("/api/v0/models/", get, 0, apiOpenAI, (*Sim).handleLMStudioModel)
		add("/api/v1/models/load", post, 0, apiOpenAI, (*Sim).handleLoadModel)
	case VLLM:
		if s.flavor != "" {
			break
		}
		add("/health", get, classHealth, apiOpenAI, (*Sim).handleVLLMHealth)
		add("/metrics", get, 0, apiOpenAI, (*Sim).handleVLLMMetrics)
		add("/version", get, 0, apiOpenAI, (*Sim).handleVLLMVersion)
	case LlamaCpp:
		if s.flavor != "" {
			break
		}
		add("/health", get, classHealth, apiOpenAI, (*Sim).handleLlamaHealth)
		add("/v1/health", get, classHealth, apiOpenAI, (*Sim).handleLlamaHealth)
		if s.router {
			add("/models", get, classModels, apiOpenAI, (*Sim).handleRouterModels)
			add("/models/load", post, 0, apiOpenAI, (*Sim).handleLoadModel)
		} else {
			add("/models", get, classModels, apiOpenAI, (*Sim).handleV1Models)
		}
		add("/slots", get, 0, apiOpenAI, (*Sim).handleLlamaSlots)
		add("/props", get, 0, apiOpenAI, (*Sim).handleLlamaProps)
		add("/metrics", get, 0, apiOpenAI, (*Sim).handleLlamaMetrics)
	}
	if s.flavor != "" {
		s.flavorRoutes(add)
	}
}

// ---- Ollama native ----

func (s *Sim) handleOllamaRoot(c *call) {
	c.writeBody(http.StatusOK, ctTextUTF8, append(c.sc.buf[:0], "Ollama is running"...), false)
}

func (s *Sim) handleOllamaTags(c *call) {
	c.writeBody(http.StatusOK, ctJSONUTF8, s.models.Load().tags, false)
}

func (s *Sim) handleOllamaPs(c *call) {
	c.writeBody(http.StatusOK, ctJSONUTF8, ollamaPsBody(s.models.Load(), time.Now(), s.cap.residency()), false)
}

func (s *Sim) handleOllamaVersion(c *call) {
	c.writeBody(http.StatusOK, ctJSONUTF8, append(c.sc.buf[:0], `{"version":"`+OllamaVersion+`"}`...), false)
}

func (s *Sim) handleOllamaShow(c *call) {
	req, err := c.parse()
	if err != nil {
		s.invalidJSON(c, err)
		return
	}
	name := req.Model
	if name == "" {
		name = req.Name
	}
	if name == "" {
		s.writeError(c, http.StatusBadRequest, "model is required")
		return
	}
	e := s.models.Load().lookup(s.kind, name)
	if e == nil {
		s.modelNotFound(c, name)
		return
	}
	c.writeBody(http.StatusOK, ctJSONUTF8, ollamaShowBody(e, s.created), false)
}

// ollamaModelRequest reads an Ollama request body that names a model the
// simulator serves, and marks the model used. It answers the error itself
// (bad JSON, no model, unknown model) and reports false then.
func (s *Sim) ollamaModelRequest(c *call) (*reqFields, *modelEntry, bool) {
	req, err := c.parse()
	if err != nil {
		s.invalidJSON(c, err)
		return nil, nil, false
	}
	if req.Model == "" {
		s.writeError(c, http.StatusBadRequest, "model is required")
		return nil, nil, false
	}
	ms := s.models.Load()
	e := ms.lookup(s.kind, req.Model)
	if e == nil {
		s.modelNotFound(c, req.Model)
		return nil, nil, false
	}
	d, forever, set, err := parseKeepAlive(req.KeepAlive)
	if err != nil {
		s.writeError(c, http.StatusBadRequest, err.Error())
		return nil, nil, false
	}
	ms.markUsed(e, c.start)
	if set {
		c.keep = keepAfter{e: e, d: d, forever: forever}
	}
	return req, e, true
}

// keepAfter is a request's keep_alive, applied once it is answered.
type keepAfter struct {
	e       *modelEntry
	d       time.Duration
	forever bool
}

// apply sets when the model unloads: d after now, never, or (d <= 0) at
// once, out of the capacity model's residents too.
func (k *keepAfter) apply(s *Sim, now time.Time) {
	switch {
	case k.forever:
		k.e.expires.Store(math.MaxInt64)
	case k.d <= 0:
		k.e.expires.Store(now.UnixNano())
		s.cap.unload(k.e.id)
	default:
		k.e.expires.Store(now.Add(k.d).UnixNano())
	}
}

func (s *Sim) handleOllamaChat(c *call)     { s.ollamaGenerate(c, dOllamaChat) }
func (s *Sim) handleOllamaGenerate(c *call) { s.ollamaGenerate(c, dOllamaGenerate) }

func (s *Sim) ollamaGenerate(c *call, d dialect) {
	req, e, ok := s.ollamaModelRequest(c)
	if !ok {
		return
	}
	if (d == dOllamaChat && req.Messages.empty()) || (d == dOllamaGenerate && req.Prompt.empty()) {
		// Nothing to generate: Ollama loads the model and says so, or
		// with keep_alive 0 unloads it
		reason := `"load"`
		if k := c.keep; k.e != nil && !k.forever && k.d <= 0 {
			reason = `"unload"`
		} else if !s.warm(c, s.models.Load(), e) {
			return
		}
		b := append(c.sc.buf[:0], `{"model":`...)
		b = appendString(b, req.Model)
		b = append(b, `,"created_at":`...)
		b = appendNow(b)
		if d == dOllamaChat {
			b = append(b, `,"message":{"role":"assistant","content":""},"done_reason":`...)
			b = append(append(b, reason...), `,"done":true}`...)
		} else {
			b = append(b, `,"response":"","done":true,"done_reason":`...)
			b = append(append(b, reason...), '}')
		}
		c.sc.buf = b
		c.writeBody(http.StatusOK, ctJSONUTF8, b, false)
		return
	}
	g := s.newGen(c, d, req, req.Model, e.ctx)
	release, ok := s.admit(c, g, e.id, promptBytes(req))
	if !ok {
		return
	}
	defer release()
	if req.Stream == boolFalse {
		s.complete(c, g)
	} else {
		s.stream(c, g) // streaming is Ollama's default
	}
}

func (s *Sim) handleOllamaEmbed(c *call) {
	req, _, ok := s.ollamaModelRequest(c)
	if !ok {
		return
	}
	inputs, err := embedInputs(req.Input)
	if err != nil {
		s.writeError(c, http.StatusBadRequest, err.Error())
		return
	}
	if !s.waitTTFT(c) {
		return
	}
	dims := s.embedDims(req.Dimensions)
	b := append(c.sc.buf[:0], `{"model":`...)
	b = appendString(b, req.Model)
	b = append(b, `,"embeddings":[`...)
	prompt := 0
	for i, in := range inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendVector(b, in, dims, true, false)
		prompt += 1 + len(in)/4
	}
	total := time.Since(c.start)
	b = append(b, `],"total_duration":`...)
	b = appendInt(b, int64(total))
	b = append(b, `,"load_duration":`...)
	b = appendInt(b, int64(total/10))
	b = append(b, `,"prompt_eval_count":`...)
	b = appendInt(b, int64(prompt))
	b = append(b, '}')
	c.sc.buf = b
	c.writeBody(http.StatusOK, ctJSONUTF8, b, false)
}

func (s *Sim) handleOllamaEmbeddings(c *call) {
	req, _, ok := s.ollamaModelRequest(c)
	if !ok {
		return
	}
	if !s.waitTTFT(c) {
		return
	}
	b := append(c.sc.buf[:0], `{"embedding":`...)
	if req.Prompt.empty() {
		b = append(b, "[]"...)
	} else {
		b = appendVector(b, req.Prompt, s.dims, false, false)
	}
	b = append(b, '}')
	c.sc.buf = b
	c.writeBody(http.StatusOK, ctJSONUTF8, b, false)
}

// ---- OpenAI family ----

func (s *Sim) handleV1Models(c *call) {
	s.writeOK(c, s.models.Load().v1, false)
}

func (s *Sim) handleV1Model(c *call) {
	id := strings.TrimPrefix(c.r.URL.Path, "/v1/models/")
	e := s.models.Load().lookup(s.kind, id)
	if e == nil {
		s.modelNotFound(c, id)
		return
	}
	s.writeOK(c, v1ModelBody(s, e), false)
}

func (s *Sim) handleLMStudioModels(c *call) {
	s.writeOK(c, lmStudioV0Body(s.models.Load(), s.cap.residency()), false)
}

func (s *Sim) handleLMStudioModel(c *call) {
	id := strings.TrimPrefix(c.r.URL.Path, "/api/v0/models/")
	ms := s.models.Load()
	e := ms.lookup(s.kind, id)
	if e == nil {
		s.modelNotFound(c, id)
		return
	}
	s.writeOK(c, mustJSON(lmStudioModel(e, e == ms.list[0], s.cap.residency())), false)
}

func (s *Sim) handleVLLMHealth(c *call) { c.w.WriteHeader(http.StatusOK) }

func (s *Sim) handleVLLMVersion(c *call) {
	s.writeOK(c, append(c.sc.buf[:0], `{"version":"`+VLLMVersion+`"}`...), false)
}

func (s *Sim) handleLlamaHealth(c *call) {
	s.writeOK(c, append(c.sc.buf[:0], `{"status":"ok"}`...), false)
}

func (s *Sim) handleChat(c *call)       { s.openAIGenerate(c, true) }
func (s *Sim) handleCompletion(c *call) { s.openAIGenerate(c, false) }

// resolveModel finds the model an OpenAI-style request asks for, answering
// the error itself when there is none. It returns the model name to echo.
func (s *Sim) resolveModel(c *call, ms *modelSet, model string) (*modelEntry, string, bool) {
	switch s.kind {
	case LlamaCpp:
		if s.router {
			break // a router routes by the model, as the others do
		}
		// llama-server answers with its model whatever the request says.
		if e := ms.lookup(s.kind, model); e != nil && len(ms.list) > 1 {
			return e, model, true
		}
		return ms.list[0], ms.list[0].id, true
	case VLLM, LMStudio:
		if model == "" {
			return ms.list[0], ms.list[0].id, true
		}
	case Ollama:
		if model == "" {
			s.writeError(c, http.StatusBadRequest, "model is required")
			return nil, "", false
		}
	default:
		if model == "" {
			s.writeErr(c, errSpec{status: http.StatusBadRequest, msg: "You must provide a model parameter.", param: "model"})
			return nil, "", false
		}
	}
	e := ms.lookup(s.kind, model)
	if e == nil {
		s.modelNotFound(c, model)
		return nil, "", false
	}
	return e, model, true
}

func missingMessages(kind string, chat bool) string {
	field := "prompt"
	if chat {
		field = "messages"
	}
	switch kind {
	case LlamaCpp:
		return "'" + field + "' is required"
	case Ollama:
		if chat {
			return "[] is too short - 'messages'"
		}
		return "prompt is required"
	case VLLM:
		return "Field required: " + field
	}
	return "Missing required parameter: '" + field + "'."
}

func (s *Sim) openAIGenerate(c *call, chat bool) {
	if s.preloadOnly(c) {
		return
	}
	req, err := c.parse()
	if err != nil {
		s.invalidJSON(c, err)
		return
	}
	if (chat && (req.Messages == nil || string(req.Messages) == "[]")) || (!chat && req.Prompt == nil) {
		s.writeErr(c, errSpec{status: http.StatusBadRequest, msg: missingMessages(s.kind, chat)})
		return
	}
	ms := s.models.Load()
	e, model, ok := s.resolveModel(c, ms, req.Model)
	if !ok {
		return
	}
	if n := req.promptTokens(); n > e.ctx && s.contextExceeded(c, n, e.ctx) {
		return
	}
	ms.markUsed(e, c.start)
	g := s.newGen(c, dialectFor(s.kind, chat), req, model, e.ctx)
	release, ok := s.admit(c, g, e.id, promptBytes(req))
	if !ok {
		return
	}
	defer release()
	if req.Stream == boolTrue {
		s.stream(c, g)
	} else {
		if chat {
			g.tool = forcedFunction(c.body)
		}
		s.complete(c, g)
	}
}

// contextExceeded answers a prompt longer than the context window on the
// servers that reject one (llama.cpp, vLLM, OpenAI) and reports whether it
// did; Ollama and LM Studio truncate instead.
func (s *Sim) contextExceeded(c *call, n, ctx int) bool {
	switch s.kind {
	case LlamaCpp:
		b := append(c.sc.buf[:0], `{"error":{"code":400,"message":"request (`...)
		b = appendInt(b, int64(n))
		b = append(b, ` tokens) exceeds the available context size (`...)
		b = appendInt(b, int64(ctx))
		b = append(b, ` tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":`...)
		b = appendInt(b, int64(n))
		b = append(b, `,"n_ctx":`...)
		b = appendInt(b, int64(ctx))
		b = append(b, `}}`...)
		c.sc.buf = b
		llamaHeaders(c.w.Header(), false)
		c.writeBody(http.StatusBadRequest, ctJSONUTF8, b, true)
	case VLLM:
		s.writeError(c, http.StatusBadRequest, "This model's maximum context length is "+strconv.Itoa(ctx)+
			" tokens. However, your request has "+strconv.Itoa(n)+" input tokens. Please reduce the length of the input messages.")
	case OpenAI:
		s.writeErr(c, errSpec{status: http.StatusBadRequest, param: "messages", code: "context_length_exceeded",
			msg: "This model's maximum context length is " + strconv.Itoa(ctx) + " tokens. However, your messages resulted in " +
				strconv.Itoa(n) + " tokens. Please reduce the length of the messages."})
	default:
		return false
	}
	return true
}

func dialectFor(kind string, chat bool) dialect {
	var d dialect
	switch kind {
	case Ollama:
		d = dOllamaV1Chat
	case LlamaCpp:
		d = dLlamaChat
	case VLLM:
		d = dVLLMChat
	case LMStudio:
		d = dLMSChat
	default:
		d = dOpenAIChat
	}
	if !chat {
		d++ // each completion dialect follows its chat dialect
	}
	return d
}

func (s *Sim) handleEmbeddings(c *call) {
	req, err := c.parse()
	if err != nil {
		s.invalidJSON(c, err)
		return
	}
	if req.Input == nil {
		s.writeErr(c, errSpec{status: http.StatusBadRequest, msg: missingInput(s.kind)})
		return
	}
	inputs, err := embedInputs(req.Input)
	if err != nil {
		s.writeError(c, http.StatusBadRequest, err.Error())
		return
	}
	ms := s.models.Load()
	e, model, ok := s.resolveModel(c, ms, req.Model)
	if !ok {
		return
	}
	ms.markUsed(e, c.start)
	if !s.waitTTFT(c) {
		return
	}
	dims := s.embedDims(req.Dimensions)
	b64 := req.EncodingFormat == "base64"
	prompt := 0
	for _, in := range inputs {
		prompt += 1 + len(in)/4
	}
	b := c.sc.buf[:0]
	appendData := func(b []byte) []byte {
		b = append(b, `"data":[`...)
		for i, in := range inputs {
			if i > 0 {
				b = append(b, ',')
			}
			switch s.kind {
			case Ollama:
				b = append(b, `{"object":"embedding","embedding":`...)
				b = appendVector(b, in, dims, true, b64)
				b = append(b, `,"index":`...)
				b = appendInt(b, int64(i))
			case LlamaCpp:
				b = append(b, `{"embedding":`...)
				b = appendVector(b, in, dims, true, b64)
				b = append(b, `,"index":`...)
				b = appendInt(b, int64(i))
				b = append(b, `,"object":"embedding"`...)
			default:
				b = append(b, `{"object":"embedding","index":`...)
				b = appendInt(b, int64(i))
				b = append(b, `,"embedding":`...)
				b = appendVector(b, in, dims, true, b64)
			}
			b = append(b, '}')
		}
		return append(b, ']')
	}
	usage := func(b []byte) []byte {
		b = append(b, `"usage":{"prompt_tokens":`...)
		b = appendInt(b, int64(prompt))
		b = append(b, `,"total_tokens":`...)
		b = appendInt(b, int64(prompt))
		if s.kind == VLLM {
			b = append(b, `,"completion_tokens":0,"prompt_tokens_details":null`...)
		}
		return append(b, '}')
	}
	switch s.kind {
	case LlamaCpp:
		b = append(b, `{"model":`...)
		b = appendString(b, model)
		b = append(b, `,"object":"list",`...)
		b = usage(b)
		b = append(b, ',')
		b = appendData(b)
		b = append(b, '}')
	case VLLM:
		b = append(b, `{"id":"embd-`...)
		b = append(b, ms.list[0].digest[:32]...)
		b = append(b, `","object":"list","created":`...)
		b = appendInt(b, c.start.Unix())
		b = append(b, `,"model":`...)
		b = appendString(b, model)
		b = append(b, ',')
		b = appendData(b)
		b = append(b, ',')
		b = usage(b)
		b = append(b, '}')
	default:
		b = append(b, `{"object":"list",`...)
		b = appendData(b)
		b = append(b, `,"model":`...)
		b = appendString(b, model)
		b = append(b, ',')
		b = usage(b)
		b = append(b, '}')
		if s.kind == Ollama {
			b = append(b, '\n')
		}
	}
	c.sc.buf = b
	s.writeOK(c, b, false)
}

func missingInput(kind string) string {
	switch kind {
	case LlamaCpp:
		return "'input' or 'content' is required"
	case Ollama:
		return "invalid input type"
	}
	return "Missing required parameter: 'input'."
}

// waitTTFT holds a non-generating answer (embeddings) for TTFT.
func (s *Sim) waitTTFT(c *call) bool {
	ttft := time.Duration(s.ttft.Load())
	p := pacer{ctx: c.r.Context()}
	defer p.stop()
	return p.until(c.start.Add(ttft))
}

func (s *Sim) embedDims(asked int) int {
	if asked > 0 && asked <= maxEmbeddingDims {
		return asked
	}
	return s.dims
}

// embedInputs splits an embedding "input" into its items: a string, an
// array of strings, a token array, or an array of token arrays. Each item
// is returned as raw JSON; vectors are derived from those bytes.
func embedInputs(raw rawVal) ([][]byte, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	if raw[0] != '[' {
		return [][]byte{raw}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, err
	}
	if len(items) > 0 && len(items[0]) > 0 && (items[0][0] == '-' || items[0][0] >= '0' && items[0][0] <= '9') {
		return [][]byte{raw}, nil // one tokenised input
	}
	out := make([][]byte, len(items))
	for i, it := range items {
		out[i] = it
	}
	return out, nil
}

// appendVector appends a deterministic pseudo-embedding of in: a JSON array
// of float32 (normalised to unit length) or float64 values, or, with b64, a
// base64 string of little-endian float32 values (OpenAI encoding_format).
func appendVector(b []byte, in []byte, dims int, normalise, b64 bool) []byte {
	h := fnv.New64a()
	_, _ = h.Write(in)
	x := h.Sum64()
	next := func() float64 {
		x += 0x9E3779B97F4A7C15
		z := x
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
		z = (z ^ (z >> 27)) * 0x94D049BB133111EB
		z ^= z >> 31
		return float64(z>>11)/float64(1<<53)*2 - 1
	}
	start := x
	norm := 1.0
	if normalise {
		var sum float64
		for i := 0; i < dims; i++ {
			v := next()
			sum += v * v
		}
		norm = math.Sqrt(sum)
		if norm == 0 {
			norm = 1
		}
		x = start
	}
	if b64 {
		raw := make([]byte, 4*dims)
		for i := 0; i < dims; i++ {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(float32(next()/norm)))
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, raw)
		return append(b, '"')
	}
	b = append(b, '[')
	for i := 0; i < dims; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		if normalise {
			b = appendFloat(b, next()/norm, 32)
		} else {
			b = appendFloat(b, next()*2.5, 64)
		}
	}
	return append(b, ']')
}

// appendFloat formats like encoding/json does for float32/float64.
func appendFloat(b []byte, f float64, bits int) []byte {
	if bits == 32 {
		f = float64(float32(f))
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
