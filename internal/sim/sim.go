package sim

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind of server simulated.
const (
	Ollama   = "ollama"   // native /api/* plus OpenAI /v1/*
	OpenAI   = "openai"   // generic OpenAI-compatible: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings
	LMStudio = "lmstudio" // OpenAI /v1/* plus /api/v0/models
	VLLM     = "vllm"     // OpenAI /v1/* plus GET /health (200 empty body); /v1/models entries carry max_model_len
	LlamaCpp = "llamacpp" // OpenAI /v1/* + /health {"status":"ok"}, /v1/models in llama.cpp's dual shape, ignores unknown model names
)

// Kinds lists the canonical kind names, in a stable order.
func Kinds() []string {
	return []string{Ollama, OpenAI, LMStudio, VLLM, LlamaCpp, VLLMMLX, DockerModelRunner, OMLX, Lemonade, SGLang, LMDeploy, LiteLLM}
}

// NormalizeKind maps a kind name, or one of the endpoint type spellings used
// in Olla configurations ("lm-studio", "openai-compatible", "llama.cpp", ...),
// to its canonical constant. The match is case-insensitive.
func NormalizeKind(k string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(k)) {
	case "ollama":
		return Ollama, true
	case "openai", "openai-compatible", "openai_compatible", "openaicompatible":
		return OpenAI, true
	case "lmstudio", "lm-studio", "lm_studio":
		return LMStudio, true
	case "vllm":
		return VLLM, true
	case "llamacpp", "llama.cpp", "llama-cpp", "llama_cpp":
		return LlamaCpp, true
	case "vllm-mlx", "vllm_mlx", "vllmmlx":
		return VLLMMLX, true
	case "docker-model-runner", "docker_model_runner", "dockermodelrunner", "dmr":
		return DockerModelRunner, true
	case "omlx":
		return OMLX, true
	case "lemonade":
		return Lemonade, true
	case "sglang":
		return SGLang, true
	case "lmdeploy":
		return LMDeploy, true
	case "litellm":
		return LiteLLM, true
	}
	return "", false
}

// Defaults applied by New when a Config field is zero.
const (
	DefaultModel         = "tiny"
	DefaultTokens        = 5
	DefaultEmbeddingDims = 64
	DefaultContextLength = 4096
	// MaxBodyBytes is the largest request body the simulator reads; larger
	// bodies are answered with 413.
	MaxBodyBytes = 64 << 20
)

// Config describes one simulated server.
type Config struct {
	Kind            string        // one of the Kind constants (aliases accepted, see NormalizeKind)
	Models          []string      // model names served, e.g. "llama3.2:latest"; default one model "tiny"
	TTFT            time.Duration // delay before the first token (stream) or before the answer (non-stream)
	TokensPerSecond float64       // 0 = emit all tokens at once with no delay
	Tokens          int           // tokens per completion (default 5); a smaller max_tokens/num_predict in the request caps it
	Name            string        // optional label; sent as the X-Sim-Name response header and reported in Stats

	// ContextLength is each model's context window in tokens (default 4096),
	// shown in the model lists. A longer prompt (estimated at 4 bytes a
	// token) is silently truncated by Ollama and LM Studio, and rejected
	// with 400 by llama.cpp (exceed_context_size_error), vLLM and OpenAI.
	ContextLength int
	// EmbeddingDims is the length of the vectors returned by the embedding
	// routes when the request does not ask for "dimensions" (default 64).
	EmbeddingDims int
	// Capacity models the server's compute (slots, queue, prefill, prefix
	// cache, model residency); the zero value leaves it off.
	Capacity Capacity
	// Router runs a llamacpp simulator in llama-server's router mode: GET
	// /models gives each model's status (loaded once used or loaded, or by
	// the capacity model's LRU), POST /models/load loads one, and requests
	// are routed by their model (an unknown one is 404).
	Router bool
	// NoRecord turns off the LastRequest/LastRequestTo bookkeeping, which
	// copies the headers and body of every request. Load harnesses set it.
	NoRecord bool
}

// Validate reports whether the configuration can be simulated.
func (c Config) Validate() error {
	if _, ok := NormalizeKind(c.Kind); !ok {
		return fmt.Errorf("sim: unknown kind %q (want one of %s)", c.Kind, strings.Join(Kinds(), ", "))
	}
	if c.TTFT < 0 {
		return fmt.Errorf("sim: negative TTFT %v", c.TTFT)
	}
	if c.Capacity.Slots < 0 || c.Capacity.QueueMax < 0 || c.Capacity.CacheBlocks < 0 || c.Capacity.MaxLoaded < 0 ||
		c.Capacity.PrefillPerToken < 0 || c.Capacity.LoadTime < 0 || c.Capacity.DecodeSlowdown < 0 {
		return fmt.Errorf("sim: negative capacity setting in %+v", c.Capacity)
	}
	if c.TokensPerSecond < 0 || math.IsNaN(c.TokensPerSecond) || math.IsInf(c.TokensPerSecond, 0) {
		return fmt.Errorf("sim: invalid TokensPerSecond %v", c.TokensPerSecond)
	}
	if c.Tokens < 0 {
		return fmt.Errorf("sim: negative Tokens %d", c.Tokens)
	}
	if c.ContextLength < 0 {
		return fmt.Errorf("sim: negative ContextLength %d", c.ContextLength)
	}
	if c.EmbeddingDims < 0 || c.EmbeddingDims > maxEmbeddingDims {
		return fmt.Errorf("sim: EmbeddingDims %d out of range 0..%d", c.EmbeddingDims, maxEmbeddingDims)
	}
	for _, m := range c.Models {
		if strings.TrimSpace(m) == "" {
			return fmt.Errorf("sim: empty model name")
		}
	}
	return nil
}

// Recorded is a copy of a request the simulator received.
type Recorded struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header // a clone; safe to keep
	Body     []byte      // a copy of the body as received
	Time     time.Time
}

// Stats is a snapshot of the simulator's counters.
type Stats struct {
	Name    string           `json:"name,omitempty"`
	Kind    string           `json:"kind"`
	Total   int64            `json:"total"`   // requests received (control routes under /_sim/ excluded)
	Active  int64            `json:"active"`  // requests being served right now
	Streams int64            `json:"streams"` // streamed responses started
	Tokens  int64            `json:"tokens"`  // tokens sent in finished or cut streams and in non-stream answers
	Faults  int64            `json:"faults"`  // requests a fault applied to
	ByPath  map[string]int64 `json:"by_path"` // "GET /api/tags" -> count
	// Capacity is the capacity model's counters, when it is on.
	Capacity *CapacityStats `json:"capacity,omitempty"`
}

// Sim is a simulated LLM server. It implements http.Handler and is safe for
// concurrent use. Create it with New; serve it with Start/StartAt or any
// net/http server. (The drop_mid_stream fault aborts the handler with
// http.ErrAbortHandler, which needs a real net/http server to turn into a
// closed connection.)
type Sim struct {
	kind string // the wire dialect: one of Ollama, OpenAI, LMStudio, VLLM, LlamaCpp
	// flavor is a kind that speaks a base kind's dialect with routes of its
	// own (VLLMMLX, DockerModelRunner, OMLX; see flavors.go), or ""
	flavor  string
	router  bool // llama-server router mode (Config.Router)
	name    string
	nameHdr []string
	created time.Time
	// started is when the server (re)started listening, unix milliseconds:
	// the process start time vLLM and SGLang state on /metrics
	started atomic.Int64
	dims    int
	ctxLen  int
	record  bool

	routes   map[string]*route
	prefixes []*route // routes matched by path prefix (path ends in "/")

	cap *capacity // nil: no capacity model

	models atomic.Pointer[modelSet]
	fault  atomic.Pointer[faultState]

	ttft    atomic.Int64  // time.Duration
	tpsBits atomic.Uint64 // float64 bits
	// retimed is closed, and replaced, by every SetTiming, waking paced
	// streams so a new rate reaches them at once.
	retimed atomic.Pointer[chan struct{}]
	tokens  atomic.Int64

	total     atomic.Int64
	active    atomic.Int64
	streams   atomic.Int64
	tokensOut atomic.Int64
	faults    atomic.Int64
	lastReq   atomic.Pointer[Recorded]

	otherMu sync.Mutex
	other   map[reqKey]*otherEntry // requests to unknown paths, other methods and prefix routes
}

type reqKey struct{ method, path string }

type otherEntry struct {
	count int64
	last  *Recorded
}

// maxOtherKeys caps the number of distinct unknown method/path pairs tracked,
// so random paths cannot grow memory without bound.
const maxOtherKeys = 4096

// New returns a simulator for cfg. It panics if cfg.Kind is unknown or the
// configuration is otherwise invalid (see Config.Validate); Start and StartAt
// return the error instead.
func New(cfg Config) *Sim {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	kind, _ := NormalizeKind(cfg.Kind)
	flavor := ""
	if base, ok := flavorBase[kind]; ok {
		flavor, kind = kind, base
	}
	s := &Sim{
		kind:    kind,
		flavor:  flavor,
		router:  cfg.Router && kind == LlamaCpp,
		name:    cfg.Name,
		created: time.Now().UTC(),
		dims:    cfg.EmbeddingDims,
		ctxLen:  cfg.ContextLength,
		record:  !cfg.NoRecord,
		other:   make(map[reqKey]*otherEntry),
	}
	s.started.Store(s.created.UnixMilli())
	if s.dims == 0 {
		s.dims = DefaultEmbeddingDims
	}
	if s.ctxLen == 0 {
		s.ctxLen = DefaultContextLength
	}
	if s.name != "" {
		s.nameHdr = []string{s.name}
	}
	if cfg.Capacity.enabled() {
		s.cap = newCapacity(cfg.Capacity)
	}
	s.SetTiming(cfg.TTFT, cfg.TokensPerSecond, cfg.Tokens)
	s.buildRoutes()
	s.SetModels(cfg.Models)
	return s
}

// Kind returns the canonical kind of the simulated server.
func (s *Sim) Kind() string {
	if s.flavor != "" {
		return s.flavor
	}
	return s.kind
}

// Name returns Config.Name.
func (s *Sim) Name() string { return s.name }

// SetTiming changes TTFT, TokensPerSecond and Tokens (same meaning and
// defaults as in Config). TTFT and Tokens apply to requests that start
// afterwards; the token rate also to streams under way, from their next
// token, so a test can hold streams open (a low rate) and then let them
// finish at once (rate 0). Negative or non-finite values are treated as
// zero.
func (s *Sim) SetTiming(ttft time.Duration, tokensPerSecond float64, tokens int) {
	if ttft < 0 {
		ttft = 0
	}
	if tokensPerSecond < 0 || math.IsNaN(tokensPerSecond) || math.IsInf(tokensPerSecond, 0) {
		tokensPerSecond = 0
	}
	if tokens <= 0 {
		tokens = DefaultTokens
	}
	s.ttft.Store(int64(ttft))
	s.tpsBits.Store(math.Float64bits(tokensPerSecond))
	s.tokens.Store(int64(tokens))
	wake := make(chan struct{})
	if old := s.retimed.Swap(&wake); old != nil {
		close(*old)
	}
}

// Timing returns the current TTFT, TokensPerSecond and Tokens.
func (s *Sim) Timing() (ttft time.Duration, tokensPerSecond float64, tokens int) {
	return time.Duration(s.ttft.Load()), math.Float64frombits(s.tpsBits.Load()), int(s.tokens.Load())
}

// SetModels replaces the served models. An empty list means the default
// single model "tiny". Safe at any time.
func (s *Sim) SetModels(models []string) {
	if len(models) == 0 {
		models = []string{DefaultModel}
	}
	s.models.Store(newModelSet(s, models, s.models.Load()))
}

// Models returns the served model names as configured.
func (s *Sim) Models() []string {
	ms := s.models.Load()
	out := make([]string, len(ms.list))
	for i, m := range ms.list {
		out[i] = m.name
	}
	return out
}

// Stats returns a snapshot of the counters.
func (s *Sim) Stats() Stats {
	st := Stats{
		Name:    s.name,
		Kind:    s.Kind(),
		Total:   s.total.Load(),
		Active:  s.active.Load(),
		Streams: s.streams.Load(),
		Tokens:  s.tokensOut.Load(),
		Faults:  s.faults.Load(),
		ByPath:  make(map[string]int64),
	}
	for _, rt := range s.routes {
		for i := range rt.count {
			if n := rt.count[i].Load(); n > 0 {
				st.ByPath[methodNames[i]+" "+rt.path] += n
			}
		}
	}
	s.otherMu.Lock()
	for k, e := range s.other {
		if e.count > 0 {
			st.ByPath[k.method+" "+k.path] += e.count
		}
	}
	s.otherMu.Unlock()
	if s.cap != nil {
		cs := s.cap.stats()
		st.Capacity = &cs
	}
	return st
}

// ResetStats zeroes all counters (except Active) and forgets the recorded
// requests.
func (s *Sim) ResetStats() {
	s.total.Store(0)
	s.streams.Store(0)
	s.tokensOut.Store(0)
	s.faults.Store(0)
	s.lastReq.Store(nil)
	if s.cap != nil {
		s.cap.reset()
	}
	for _, rt := range s.routes {
		for i := range rt.count {
			rt.count[i].Store(0)
		}
		rt.last.Store(nil)
	}
	s.otherMu.Lock()
	clear(s.other)
	s.otherMu.Unlock()
}

// Requests returns how many requests (any method) reached path.
func (s *Sim) Requests(path string) int64 {
	var n int64
	if rt := s.routes[path]; rt != nil {
		for i := range rt.count {
			n += rt.count[i].Load()
		}
	}
	s.otherMu.Lock()
	for k, e := range s.other {
		if k.path == path {
			n += e.count
		}
	}
	s.otherMu.Unlock()
	return n
}

// LastRequest returns the last request that was neither a control request
// (/_sim/...) nor a health or model-list probe. The zero Recorded is returned
// when there is none (or when Config.NoRecord is set).
func (s *Sim) LastRequest() Recorded {
	if r := s.lastReq.Load(); r != nil {
		return *r
	}
	return Recorded{}
}

// LastRequestTo returns the last request (any method) to path.
func (s *Sim) LastRequestTo(path string) (Recorded, bool) {
	var best *Recorded
	if rt := s.routes[path]; rt != nil {
		best = rt.last.Load()
	}
	s.otherMu.Lock()
	for k, e := range s.other {
		if k.path == path && e.last != nil && (best == nil || e.last.Time.After(best.Time)) {
			best = e.last
		}
	}
	s.otherMu.Unlock()
	if best == nil {
		return Recorded{}, false
	}
	return *best, true
}

// Route classes (bit flags).
const (
	classHealth    uint8 = 1 << iota // the kind's health-check route
	classModels                      // a model-list route (discovery)
	classInference                   // chat, generate, completions, embeddings
)

// API styles, which decide the error format on kinds that speak two APIs.
const (
	apiNative    uint8 = iota // Ollama /api/* and /
	apiOpenAI                 // /v1/*
	apiAnthropic              // /v1/messages*
)

// HTTP methods counted per route; anything else goes to the slow path.
var methodNames = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}

const numMethods = len(methodNames)

func methodIndex(m string) int {
	switch m {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "PATCH":
		return 5
	case "OPTIONS":
		return 6
	}
	return -1
}

type route struct {
	path    string
	methods uint8    // bit i set: methodNames[i] allowed
	allow   []string // Allow header value
	class   uint8
	api     uint8
	stream  bool // may answer with a stream
	prefix  bool // matches path prefixes; counted per actual path
	h       func(*Sim, *call)

	count [numMethods]atomic.Int64
	last  atomic.Pointer[Recorded]
}

func (rt *route) allows(method string) bool {
	i := methodIndex(method)
	return i >= 0 && rt.methods&(1<<i) != 0
}

// call holds the state of one request. It lives in a pooled scratch.
type call struct {
	w     http.ResponseWriter
	r     *http.Request
	rt    *route
	body  []byte
	cut   *Fault // drop_mid_stream / stall_mid_stream fault to apply while writing
	start time.Time
	sc    *scratch
	keep  keepAfter // the request's keep_alive (Ollama), applied once answered; zero when none
}

// scratch is the per-request reusable memory.
type scratch struct {
	c    call
	g    gen
	body bytes.Buffer
	lr   io.LimitedReader
	buf  []byte // response building
	tmp  []byte // quoted model name, ids
	req  reqFields
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{buf: make([]byte, 0, 4096), tmp: make([]byte, 0, 256)}
}}

const maxPooledBuf = 1 << 20

func putScratch(sc *scratch) {
	if sc.body.Cap() > maxPooledBuf || cap(sc.buf) > maxPooledBuf {
		return
	}
	sc.c = call{}
	sc.g = gen{}
	sc.req = reqFields{}
	sc.lr = io.LimitedReader{}
	sc.body.Reset()
	sc.buf = sc.buf[:0]
	sc.tmp = sc.tmp[:0]
	scratchPool.Put(sc)
}

// ServeHTTP answers r the way the simulated server would.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if path == "/_sim" || strings.HasPrefix(path, "/_sim/") {
		if s.name != "" {
			w.Header()["X-Sim-Name"] = s.nameHdr
		}
		s.serveControl(w, r)
		return
	}
	s.total.Add(1)
	s.active.Add(1)
	defer s.active.Add(-1)
	switch s.flavor {
	case DockerModelRunner:
		r = dmrRequest(r)
		path = r.URL.Path
	case Lemonade:
		r = lemonadeRequest(r)
		path = r.URL.Path
	case LiteLLM:
		r = litellmRequest(r)
		path = r.URL.Path
	}

	rt := s.routes[path]
	if rt == nil {
		rt = s.matchPrefix(path)
	}
	mi := methodIndex(r.Method)
	if rt != nil && !rt.prefix && mi >= 0 {
		rt.count[mi].Add(1)
	} else {
		s.countOther(r.Method, path)
	}

	sc := scratchPool.Get().(*scratch)
	defer putScratch(sc)
	c := &sc.c
	*c = call{w: w, r: r, rt: rt, start: time.Now(), sc: sc}

	if s.name != "" {
		w.Header()["X-Sim-Name"] = s.nameHdr
	}

	tooBig := false
	if r.Body != nil && r.Body != http.NoBody {
		sc.lr = io.LimitedReader{R: r.Body, N: MaxBodyBytes + 1}
		_, err := sc.body.ReadFrom(&sc.lr)
		if sc.body.Len() > MaxBodyBytes {
			tooBig = true
		} else if err != nil {
			// The client went away or sent a broken body.
			return
		}
		c.body = sc.body.Bytes()
	}
	if s.record {
		s.recordRequest(rt, r, c.body, c.start)
	}
	if tooBig {
		s.writeError(c, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}

	if fs := s.fault.Load(); fs != nil && fs.matches(rt, path) && fs.take() {
		s.faults.Add(1)
		if !s.applyFault(c, &fs.f) {
			return
		}
	}
	if rt == nil {
		s.notFound(c)
		return
	}
	if !rt.allows(r.Method) {
		s.methodNotAllowed(c)
		return
	}
	rt.h(s, c)
	if c.keep.e != nil {
		c.keep.apply(s, time.Now())
	}
}

func (s *Sim) matchPrefix(path string) *route {
	for _, rt := range s.prefixes {
		if len(path) > len(rt.path) && strings.HasPrefix(path, rt.path) {
			return rt
		}
	}
	return nil
}

func (s *Sim) countOther(method, path string) {
	s.otherMu.Lock()
	e := s.other[reqKey{method, path}]
	if e == nil && len(s.other) < maxOtherKeys {
		e = &otherEntry{}
		s.other[reqKey{method, path}] = e
	}
	if e != nil {
		e.count++
	}
	s.otherMu.Unlock()
}

func (s *Sim) recordRequest(rt *route, r *http.Request, body []byte, now time.Time) {
	rec := &Recorded{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		Body:     bytes.Clone(body),
		Time:     now,
	}
	if rt != nil && !rt.prefix && methodIndex(r.Method) >= 0 {
		rt.last.Store(rec)
	} else {
		s.otherMu.Lock()
		if e := s.other[reqKey{r.Method, r.URL.Path}]; e != nil {
			e.last = rec
		}
		s.otherMu.Unlock()
	}
	if rt == nil || rt.class&(classHealth|classModels) == 0 {
		s.lastReq.Store(rec)
	}
}

// timing returns the current TTFT, the interval between tokens (0 = none)
// and the configured token count.
func (s *Sim) timing() (ttft, interval time.Duration, tokens int) {
	return time.Duration(s.ttft.Load()), s.tokenInterval(), int(s.tokens.Load())
}

// tokenInterval is the current time between tokens (0 = no pacing).
func (s *Sim) tokenInterval() time.Duration {
	if tps := math.Float64frombits(s.tpsBits.Load()); tps > 0 {
		return time.Duration(float64(time.Second) / tps)
	}
	return 0
}

// Precomputed header values (never modified; shared between responses).
var (
	ctJSON        = []string{"application/json"}
	ctJSONUTF8    = []string{"application/json; charset=utf-8"}
	ctNDJSON      = []string{"application/x-ndjson"}
	ctSSE         = []string{"text/event-stream"}
	ctSSEUTF8     = []string{"text/event-stream; charset=utf-8"}
	ctTextPlain   = []string{"text/plain"}
	ctTextUTF8    = []string{"text/plain; charset=utf-8"}
	ctHTML        = []string{"text/html; charset=utf-8"}
	hdrLlamaSrv   = []string{"llama.cpp"}
	hdrEmpty      = []string{""}
	hdrKeepAlive  = []string{"timeout=5, max=100"}
	hdrClose      = []string{"close"}
	hdrNo         = []string{"no"}
	hdrNoCache    = []string{"no-cache"}
	allowHeadGet  = []string{"HEAD, GET"}
	allowGet      = []string{"GET"}
	allowPost     = []string{"POST"}
	retryAfterStr [121][]string // 0..120 seconds, precomputed
)

func init() {
	for i := range retryAfterStr {
		retryAfterStr[i] = []string{strconv.Itoa(i)}
	}
}

func retryAfterValue(sec int) []string {
	if sec >= 0 && sec < len(retryAfterStr) {
		return retryAfterStr[sec]
	}
	return []string{strconv.Itoa(sec)}
}

// llamaHeaders sets the headers llama-server sends on every response.
func llamaHeaders(h http.Header, ok bool) {
	h["Server"] = hdrLlamaSrv
	h["Access-Control-Allow-Origin"] = hdrEmpty
	if ok {
		h["Keep-Alive"] = hdrKeepAlive
	} else {
		h["Connection"] = hdrClose
	}
}

// writeBody writes a complete JSON (or other) body with the given status and
// content type. When setLength is false net/http decides between
// Content-Length and chunked encoding, as Go servers (Ollama) do. A pending
// drop/stall fault cuts the body in half.
func (c *call) writeBody(status int, ct []string, body []byte, setLength bool) {
	h := c.w.Header()
	h["Content-Type"] = ct
	if c.cut != nil {
		c.cutBody(status, body)
		return
	}
	if setLength {
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	c.w.WriteHeader(status)
	_, _ = c.w.Write(body) // discarded by net/http for HEAD, which still counts it for Content-Length
}

// cutBody applies drop_mid_stream / stall_mid_stream to a non-stream answer:
// with AfterChunks 0 nothing at all is sent; otherwise the headers (with the
// full Content-Length) and the first half of the body are sent.
func (c *call) cutBody(status int, body []byte) {
	f := c.cut
	if f.AfterChunks > 0 {
		c.w.Header()["Content-Length"] = []string{strconv.Itoa(len(body))}
		c.w.WriteHeader(status)
		_, _ = c.w.Write(body[:len(body)/2])
		_ = http.NewResponseController(c.w).Flush()
	}
	c.cutNow()
}

// cutNow ends the request the way the pending cut fault says: drop the
// connection, or hold it open until the client leaves.
func (c *call) cutNow() {
	if c.cut.Mode == FaultStallMidStream {
		<-c.r.Context().Done()
		return
	}
	panic(http.ErrAbortHandler)
}
