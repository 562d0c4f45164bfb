package olla

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/engines"
	ollaengine "github.com/caddy-olla/olla/engines/olla"
	"github.com/caddy-olla/olla/engines/sherpa"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/genai"
	"github.com/caddy-olla/olla/profiles"
	"github.com/caddy-olla/olla/translate/anthropic"
	"github.com/caddy-olla/olla/usage"
)

// Handler defaults.
const (
	defaultMaxBodySize = 100 << 20
	defaultMaxAttempts = 3
	// defaultMaxHeaderSize matches net/http's own limit.
	defaultMaxHeaderSize = 1 << 20
	// defaultMaxResponseHeaderSize bounds a backend's response headers, near
	// Envoy's 60 KiB: no LLM server sends more than a few KiB.
	defaultMaxResponseHeaderSize = 64 << 10
	// defaultStreamIdleTimeout is generous: a model may think for a while
	// between tokens, but not for five minutes.
	defaultStreamIdleTimeout = 5 * time.Minute
)

// Handler is `http.handlers.olla`: it answers everything under /olla/ and
// /internal/ (and /version) and passes any other path to the next handler.
//
// A request on /olla/<provider>/<api path> is routed to an endpoint of that
// provider's type that serves the requested model, chosen by the load
// balancer, and proxied by the engine; /olla/openai/ spans every
// OpenAI-compatible type and /olla/proxy/ every type that serves the API
// path. Errors are answered in the format of the API the path speaks.
type Handler struct {
	// Engine is sherpa (Caddy's reverse_proxy inside) or olla (our own
	// streaming loop). Default olla.
	Engine string `json:"engine,omitempty"`
	// Profile is auto (default: stream SSE/NDJSON, buffer small JSON),
	// streaming (flush every write) or standard (buffer).
	Profile string `json:"profile,omitempty"`
	// LoadBalancer is priority (default), round-robin, least-connections or
	// adaptive (scores backend signals: model residency, queue, TTFT).
	LoadBalancer string `json:"load_balancer,omitempty"`
	// LoadBalancerWeights sets the adaptive balancer's scorer weights by
	// name (warm, load, affinity, ttft, priority, inflight), 0 to 1000; a
	// weight of 0 turns a scorer off. Only with adaptive.
	LoadBalancerWeights map[string]float64 `json:"load_balancer_weights,omitempty"`
	// StickySessions keeps a session on the endpoint that served it (off
	// unless given).
	StickySessions *StickySessions `json:"sticky_sessions,omitempty"`
	// PrefixAffinity tunes prefix affinity, on with the adaptive balancer:
	// a conversation without a session id goes to the endpoint holding its
	// prompt (see prefixroute.go).
	PrefixAffinity *PrefixAffinity `json:"prefix_affinity,omitempty"`
	// Endpoints are the backends, in order.
	Endpoints []*Endpoint `json:"endpoints,omitempty"`
	// Preload keeps models loaded on every endpoint that lists them and
	// bounds every endpoint's preloading (concurrency, timeout, retries).
	Preload *Preload `json:"preload,omitempty"`
	// Aliases maps a model name clients use to the names endpoints know, in
	// order of preference.
	Aliases map[string][]string `json:"aliases,omitempty"`
	// Fallbacks are aliases that name models in order: a request for one
	// goes to the first model that can take it and moves to the next,
	// before the first byte, on 429 or 503 from every endpoint of a
	// model, no endpoint with room, or no endpoint serving it. Not on the
	// routes that translate (/olla/anthropic/, /v1/responses), where a
	// chain's models are taken as one alias.
	Fallbacks map[string][]string `json:"fallbacks,omitempty"`
	// Retry bounds failover before the first byte.
	Retry *Retry `json:"retry,omitempty"`
	// RateLimits are token buckets in front of the routes (off unless given).
	RateLimits *RateLimits `json:"rate_limits,omitempty"`
	// KeyLimits gives every request a key and limits each key's tokens,
	// requests and spend (off unless given).
	KeyLimits *KeyLimits `json:"key_limits,omitempty"`
	// CORS answers browsers' cross-origin checks (off unless given).
	CORS *CORS `json:"cors,omitempty"`
	// CircuitBreaker tunes the endpoints' circuit breakers.
	CircuitBreaker *CircuitBreaker `json:"circuit_breaker,omitempty"`
	// RequestLimits bounds request bodies and headers.
	RequestLimits *RequestLimits `json:"request_limits,omitempty"`
	// ModelRegistry sets the model routing strategy.
	ModelRegistry *ModelRegistry `json:"model_registry,omitempty"`
	// ModelDiscovery sets how often model lists are refreshed.
	ModelDiscovery *ModelDiscovery `json:"model_discovery,omitempty"`
	// Internal turns the /internal/ routes and /version off when "off".
	Internal string `json:"internal,omitempty"`
	// Dashboard turns the dashboard (/internal/ui and its data) off when
	// "off"; the status JSON stays. The standalone's dashboard.enabled.
	Dashboard string `json:"dashboard,omitempty"`
	// InternalClients are the clients the /internal/ routes, the dashboard
	// and /version answer: addresses or CIDRs, or "any". Default
	// 127.0.0.0/8 and ::1, so only a client on this host sees the status
	// pages; others get 403 (/internal/health answers everyone).
	InternalClients []string `json:"internal_clients,omitempty"`
	// StreamIdleTimeout ends a response whose backend sends nothing for this
	// long, so a backend that stalls mid-stream cannot hold a client
	// forever. Default 5m; it counts per read, not for the whole stream.
	StreamIdleTimeout caddy.Duration `json:"stream_idle_timeout,omitempty"`
	// Queue holds requests that find every candidate endpoint at its
	// max_concurrency, instead of failing them (off unless given).
	Queue *Queue `json:"queue,omitempty"`
	// ClientIPv6Prefix is the prefix length IPv6 clients are grouped by for
	// per-IP rate limits, queue lanes, the sticky ip key and the pin
	// store's per-client share: 1 to 128, default 64 (128 counts every
	// address apart).
	ClientIPv6Prefix int `json:"client_ipv6_prefix,omitempty"`
	// ResponseHeaderTimeout bounds the wait for a backend's headers; past it
	// the request fails over to the next endpoint. Default none: loading a
	// model can take minutes.
	ResponseHeaderTimeout caddy.Duration `json:"response_header_timeout,omitempty"`

	app         *App
	logger      *zap.Logger
	states      []*fleet.Endpoint // config order
	settings    []*fleet.Settings
	balancer    *balancer.Pipeline
	sticky      *stickyPolicy
	prefix      *prefixRouting // nil unless prefix affinity is on
	engine      engines.Engine
	sherpa      *sherpa.Engine
	flush       engines.FlushPolicy
	maxAttempts int
	maxBody     int64
	maxHeader   int64
	maxBuffered int64 // process-wide budget this handler enforces
	// a body gets bodyReadTimeout, and a second per minBodyRate bytes in
	bodyReadTimeout time.Duration
	minBodyRate     int64
	// anthropicLimits bound a Messages request before it is decoded
	anthropicLimits anthropic.Limits
	idle            time.Duration
	ipv6Prefix      int
	internalOff     bool
	internal        *internalPolicy
	strategy        routingStrategy
	limits          *rateLimiter
	keys            *keyPolicy // key_limits, if given
	cors            *corsPolicy
	queue           *queuePolicy
	catalogue       catalogueCache // catalogue views, built once per model list change
}

// CaddyModule returns the Caddy module information.
func (*Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.olla", New: func() caddy.Module { return new(Handler) }}
}

// Provision builds the handler from its config: it resolves the endpoints'
// placeholders, registers them with the olla app (which takes a reference
// on each one's pooled state) and builds the engine. The rules live in
// Validate; Caddy runs it after Provision, so Provision runs it first and
// never builds from a config that will be refused.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := h.Validate(); err != nil {
		return err
	}
	appMod, err := ctx.App("olla")
	if err != nil {
		return fmt.Errorf("loading olla app: %w", err)
	}
	h.app = appMod.(*App)

	if h.LoadBalancer == "" {
		h.LoadBalancer = balancer.Priority
	}
	if h.balancer, err = balancer.NewPipeline(h.balancerConfig()); err != nil {
		return err
	}
	h.sticky = newStickyPolicy(h.StickySessions, h.PrefixAffinity.on(h.LoadBalancer))
	if err := h.sticky.share(h.StickySessions); err != nil {
		return err
	}
	switch h.Profile {
	case "streaming":
		h.flush = engines.FlushAlways
	case "standard":
		h.flush = engines.FlushNever
	default:
		h.flush = engines.FlushAuto
	}
	h.internalOff = h.Internal == "off"
	if h.internal, err = parseInternalClients(h.InternalClients); err != nil {
		return err
	}
	h.maxAttempts = defaultMaxAttempts
	if h.Retry != nil && h.Retry.MaxAttempts != 0 {
		h.maxAttempts = h.Retry.MaxAttempts
	}
	h.maxBody = defaultMaxBodySize
	h.maxHeader = defaultMaxHeaderSize
	if rl := h.RequestLimits; rl != nil {
		if rl.MaxBodySize != 0 {
			h.maxBody = rl.MaxBodySize
		}
		if rl.MaxHeaderSize != 0 {
			h.maxHeader = rl.MaxHeaderSize
		}
	}
	h.maxBuffered = defaultMaxBufferedBytes
	if rl := h.RequestLimits; rl != nil && rl.MaxBufferedBytes != 0 {
		h.maxBuffered = rl.MaxBufferedBytes
	}
	h.bodyReadTimeout, h.minBodyRate = defaultBodyReadTimeout, defaultMinBodyRate
	if rl := h.RequestLimits; rl != nil {
		if rl.BodyReadTimeout > 0 {
			h.bodyReadTimeout = time.Duration(rl.BodyReadTimeout)
		}
		if rl.MinBodyRate > 0 {
			h.minBodyRate = rl.MinBodyRate
		}
	}
	h.anthropicLimits = anthropic.DefaultLimits
	if rl := h.RequestLimits; rl != nil {
		for _, l := range []struct {
			set int
			dst *int
		}{{rl.MaxMessages, &h.anthropicLimits.Messages},
			{rl.MaxContentBlocks, &h.anthropicLimits.Blocks}, {rl.MaxTools, &h.anthropicLimits.Tools}, {rl.MaxNesting, &h.anthropicLimits.Depth}} {
			if l.set > 0 {
				*l.dst = l.set
			}
		}
	}
	h.ipv6Prefix = defaultIPv6ClientPrefix
	if h.ClientIPv6Prefix != 0 {
		h.ipv6Prefix = h.ClientIPv6Prefix
	}
	h.idle = defaultStreamIdleTimeout
	if h.StreamIdleTimeout != 0 {
		h.idle = time.Duration(h.StreamIdleTimeout)
	}
	if h.strategy, err = newRoutingStrategy(h.ModelRegistry); err != nil {
		return err
	}
	discoveryInterval, discoveryTimeout := fleet.DefaultDiscoveryInterval, fleet.DefaultDiscoveryTimeout
	if md := h.ModelDiscovery; md != nil {
		if md.Interval != 0 {
			discoveryInterval = time.Duration(md.Interval)
		}
		if md.Timeout != 0 {
			discoveryTimeout = time.Duration(md.Timeout)
		}
	}
	h.limits = newRateLimiter(h.RateLimits)
	if h.keys, err = newKeyPolicy(h.KeyLimits); err != nil {
		return err
	}
	h.cors = newCORSPolicy(h.CORS)
	h.queue = newQueuePolicy(h.Queue)

	preloadOpts, preloadConcurrency := h.preloadOptions()
	h.app.preloads.SetLimit(preloadConcurrency)
	repl := caddy.NewReplacer()
	for _, ep := range h.Endpoints {
		s, err := ep.resolve(repl, h.logger)
		if err != nil {
			return err
		}
		s.DiscoveryInterval, s.DiscoveryTimeout = discoveryInterval, discoveryTimeout
		s.MaxResponseHeader = defaultMaxResponseHeaderSize
		if rl := h.RequestLimits; rl != nil && rl.MaxResponseHeaderSize != 0 {
			s.MaxResponseHeader = rl.MaxResponseHeaderSize
		}
		s.TransportKey += fmt.Sprintf(" max_response_header=%d", s.MaxResponseHeader)
		s.SlotCap = h.LoadBalancer == balancer.Adaptive
		if cb := h.CircuitBreaker; cb != nil {
			s.Breaker = discovery.BreakerConfig{Threshold: cb.Failures, OpenFor: time.Duration(cb.OpenFor)}
		}
		s.Preload, s.PreloadOptions, s.PreloadGate = mergePreload(ep.Preload, h.sitePreload(ep)), preloadOpts, h.app.preloads
		st, err := h.app.register(s)
		if err != nil {
			return err
		}
		h.settings = append(h.settings, s)
		h.states = append(h.states, st)
	}

	if h.PrefixAffinity.on(h.LoadBalancer) {
		h.prefix = newPrefixRouting(h.states, h.PrefixAffinity, h.app.metrics)
		h.app.addPrefix(h.prefix)
	}
	if h.Engine == "sherpa" {
		if h.sherpa, err = sherpa.New(ctx, h.maxAttempts); err != nil {
			return err
		}
		h.engine = h.sherpa
	} else {
		h.Engine = "olla"
		h.engine = ollaengine.New(0)
	}
	return nil
}

// balancerConfig is the balancer the config asks for.
func (h *Handler) balancerConfig() balancer.Config {
	cfg := balancer.Config{Strategy: h.LoadBalancer, Weights: h.LoadBalancerWeights}
	if cfg.Strategy == "" {
		cfg.Strategy = balancer.Priority
	}
	if h.PrefixAffinity.on(cfg.Strategy) {
		cfg.PrefixAffinity = true
		if h.PrefixAffinity != nil {
			cfg.ReleasePenalty = h.PrefixAffinity.ReleasePenalty
		}
	}
	return cfg
}

// Cleanup releases this handler's references on endpoint state. Requests
// still in flight keep working: nothing they use is closed here.
func (h *Handler) Cleanup() error {
	for _, s := range h.settings {
		fleet.Release(s)
	}
	h.settings = nil
	if h.prefix != nil {
		h.app.dropPrefix(h.prefix)
	}
	h.keys.release()
	h.sticky.release()
	if h.sherpa != nil {
		return h.sherpa.Cleanup()
	}
	return nil
}

// ServeHTTP routes the request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/olla/"):
	case strings.HasPrefix(path, "/internal/") || path == "/version":
		if h.internalOff {
			return next.ServeHTTP(w, r)
		}
	default:
		return next.ServeHTTP(w, r)
	}

	start := time.Now()
	requestID := requestIDFor(r)
	w.Header().Set("X-Olla-Request-Id", requestID)
	rq := &request{h: h, w: w, r: r, start: start, id: requestID}
	olla := strings.HasPrefix(path, "/olla/")
	var badPath error
	if olla {
		// known before any refusal, so even a 429 speaks the path's API;
		// normalised once, here, to the path the engines will forward, so
		// every rule checks what the backend would see
		rest := path[len("/olla/"):]
		prefix, _, found := strings.Cut(rest, "/")
		rq.prefix, rq.apiPath = prefix, "/"
		if found {
			rq.apiPath = rest[len(prefix):] // "/" and the rest, without a copy
		}
		if prefix == anthropicPrefix {
			w.Header().Set(modeHeader, modeTranslation) // even on a refusal before routing
		}
		if clean, err := engines.NormalizeAPIPath(rq.apiPath, r.URL.EscapedPath()); err != nil {
			badPath = err // answered in the format of the path as written
		} else {
			rq.apiPath = profiles.CanonicalAPIPath(clean) // /engines/v1/x is /v1/x
		}
	} else {
		rq.prefix, rq.apiPath = "internal", path
	}
	caddyhttp.SetVar(r.Context(), clientKeyVar, clientKeyFor(r, h.ipv6Prefix))
	if h.cors != nil && h.cors.apply(w, r) {
		return nil // a preflight, answered
	}
	if h.limits != nil {
		var v verdict
		if olla {
			v = h.limits.allowProxy(clientIP(r))
		} else {
			v = h.limits.allowHealth(clientIP(r))
		}
		v.setHeaders(w.Header())
		if !v.allowed {
			return rq.refuse(v)
		}
	}
	if badPath != nil {
		return rq.fail(apiError{status: http.StatusBadRequest, code: "invalid_path",
			message: fmt.Sprintf("path %q is refused: %v; send the path without them", r.URL.EscapedPath(), badPath)})
	}
	if size := headerSize(r); size > h.maxHeader {
		return rq.fail(apiError{status: http.StatusRequestHeaderFieldsTooLarge, code: "request_headers_too_large",
			message: fmt.Sprintf("request headers are %d bytes, more than the %d-byte limit (request_limits max_header_size)", size, h.maxHeader)})
	}
	if olla {
		defer rq.observe()
		if h.keys != nil {
			if refused := rq.identify(); refused != nil {
				return rq.fail(*refused)
			}
		}
		return rq.serveOlla()
	}
	if path != "/internal/health" && !h.internal.allows(r) {
		return rq.refuseInternal()
	}
	err := rq.serveInternal(path)
	if rq.rec.status < http.StatusBadRequest {
		// a status poll answered (the dashboard polls every few seconds)
		// stays out of Caddy's access log; refusals are logged
		caddyhttp.SetVar(r.Context(), caddyhttp.LogSkipVar, true)
	}
	return err
}

// headerSize estimates the request's header block as sent: the request line
// and every field with its separators.
func headerSize(r *http.Request) int64 {
	n := int64(len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4)
	for k, vv := range r.Header {
		for _, v := range vv {
			n += int64(len(k) + len(v) + 4)
		}
	}
	return n
}

// request is one request's working state inside the handler.
type request struct {
	h     *Handler
	w     http.ResponseWriter
	r     *http.Request
	start time.Time
	id    string

	prefix  string // route prefix after /olla/
	apiPath string
	rec     requestRecord
	rw      rewriter     // the body per model name, for the route's hooks
	pk      picker       // the proxied request's candidates (proxy)
	plan    engines.Plan // what the engine is handed (proxy)

	decision decision // where the request may go (proxy)

	reserved int64 // bytes of the process-wide body budget this request holds

	// key_limits
	keyID       string        // the key, hashed (or "anonymous")
	keyAdmitted bool          // counted at admission: its usage is owed
	bodyLen     int64         // the request body's size, for usage bounds
	lines       *lineCounter  // the response as the client got it
	counted     countedWriter // where lines points, with key_limits: no allocation of its own
	keyCounts   usage.Counts  // what the request came to, once recorded
	keyCounted  bool
	keyCost     float64

	// a fallback chain's models that can take the request, in order
	tiers        []chainTier
	chainSkipped []string

	// with Caddy's tracing on (genaitrace.go): the request's GenAI spans,
	// and the model and finish reasons read from the response's end
	trace        *genai.Trace
	traceModel   string
	traceReasons []string
}

func (rq *request) fail(e apiError) error {
	rq.rec.status = e.status
	writeError(rq.w, formatFor(rq.prefix, rq.apiPath), e, rq.id)
	return nil
}

// serveOlla handles /olla/<prefix>/<api path>.
func (rq *request) serveOlla() error {
	prefix := rq.prefix
	if prefix == "models" {
		return rq.serveCatalogue(strings.TrimPrefix(rq.apiPath, "/"))
	}
	if prefix == anthropicPrefix {
		return rq.serveAnthropic()
	}
	route, ok := resolveRoute(prefix, rq.apiPath)
	if !ok {
		return rq.fail(apiError{status: http.StatusNotFound, code: "unknown_provider",
			message: fmt.Sprintf("unknown provider %q in /olla/%s/: use one of %s, openai, proxy, or /olla/models",
				prefix, prefix, strings.Join(profiles.Prefixes(), ", "))})
	}
	if postOnly(rq.apiPath) && rq.r.Method != http.MethodPost {
		return rq.notAllowed(http.MethodPost)
	}
	if prefix == "proxy" && rq.apiPath == profiles.PathResponses {
		route, _ = resolveRoute("openai", rq.apiPath) // native or translated: every OpenAI-compatible type
	}
	if isResponsesPath(rq.apiPath) {
		if refused := responsesRoute(route, rq.apiPath); refused != nil {
			return rq.fail(*refused)
		}
	}
	if handled, err := rq.serveListing(route); handled {
		return err
	}
	if rq.apiPath == profiles.PathResponses {
		return rq.serveResponses(route)
	}
	return rq.proxy(route, plainHooks{})
}

// proxy reads the body, routes by model and hands the request to the
// engine; hooks are the route's own checks and transforms (routeHooks).
func (rq *request) proxy(route route, hooks routeHooks) error {
	h, r := rq.h, rq.r
	defer rq.releaseBody()
	body, aerr := rq.readBody()
	if aerr != nil {
		return rq.fail(*aerr)
	}
	if aerr := hooks.check(body); aerr != nil {
		return rq.fail(*aerr)
	}
	var model string
	var span bodySpan
	if body != nil || modelFieldPaths[rq.apiPath] && r.Method == http.MethodPost {
		m, sp, err := extractModel(body)
		switch {
		case err == nil:
			model, span = m, sp
		case modelFieldPaths[rq.apiPath]:
			return rq.fail(apiError{status: http.StatusBadRequest, code: "invalid_request", message: err.Error()})
		}
	}
	rq.rec.model = model

	rq.bodyLen = int64(len(body))
	rq.startTrace(model)
	if h.keys != nil {
		if refused := rq.admitKey(model); refused != nil {
			return rq.fail(*refused)
		}
		rq.lines = rq.countLines()
		rq.w = rq.lines
	}

	var chain *fallbackChain
	if _, plain := hooks.(plainHooks); plain { // a translating route sets its own Upstream
		chain = h.fallbackChainFor(model)
	}
	decision := &rq.decision // in the request: the hooks' interface would move a local to the heap
	if chain != nil {
		*decision = rq.routeChain(route, chain)
	} else {
		*decision = h.route(r.Context(), route, model, time.Now())
	}
	hdr := rq.w.Header()
	pickModel := model // the model the first attempts ask for
	if len(rq.tiers) > 0 {
		pickModel = rq.tiers[0].model
	}
	if model != "" {
		caddyhttp.SetVar(r.Context(), "olla.model", model)
		// as Header.Set, the keys being canonical, with one allocation
		// for the four values
		v := [...]string{pickModel, decision.strategy, decision.action, decision.reason}
		vals := v[:]
		hdr["X-Olla-Model"] = vals[0:1:1]
		hdr["X-Olla-Routing-Strategy"] = vals[1:2:2]
		hdr["X-Olla-Routing-Decision"] = vals[2:3:3]
		hdr["X-Olla-Routing-Reason"] = vals[3:4:4]
	} else if decision.panic {
		hdr.Set("X-Olla-Routing-Reason", decision.reason)
	}
	rq.rec.reason = decision.reason
	rq.trace.Routed(h.LoadBalancer, decision.strategy, decision.action, decision.reason)
	if answered, err := hooks.routed(decision, model); answered {
		return err
	}
	if decision.err != nil {
		return rq.fail(*decision.err)
	}

	// the picker, the plan and the rewriter live in the request: no
	// allocation of their own
	pk := &rq.pk
	rq.initPicker(pk, *decision, pickModel)
	if h.sticky != nil {
		pk.sticky = h.sticky.keyFor(r, body, pickModel)
		pk.sticky.setHeaders(r, hdr)
		pk.sched.Key, pk.sched.Pinned = pk.sticky.key, pk.sticky.pinned
		if pk.panic && h.LoadBalancer != balancer.Adaptive {
			// a pin holds only to an endpoint in rotation; panic
			// candidates are not (adaptive weighs its pin regardless)
			pk.sched.Pinned = ""
		}
	}
	if h.prefix != nil && pk.sched.Key == 0 && pk.sched.Pinned == "" {
		// no session id: the prompt says which conversation this is
		if pq := h.prefix.start(body, pickModel); pq != nil {
			pk.prefix, pk.sched.Prefix = pq, pq.info()
		}
	}
	plan := &rq.plan
	*plan = engines.Plan{
		Path:        rq.apiPath,
		RawQuery:    r.URL.RawQuery,
		Body:        body,
		Picker:      pk,
		MaxAttempts: h.maxAttempts,
		Start:       rq.start,
		RequestID:   rq.id,
		Flush:       h.flush,

		StreamIdleTimeout: h.idle,
		HeaderTimeout:     time.Duration(h.ResponseHeaderTimeout),
		OnStreamEnd: func(t engines.Target, s engines.Stream, err error) {
			rq.streamEnded(s, err)
			rq.pk.streamEnded(t, s, rq.rec.outputTokens())
		},
	}
	rq.rw = rewriter{rq: rq, body: body, span: span, model: model}
	hooks.shape(plan, decision, &rq.rw)
	refusal := func() *apiError { return pk.refusal }
	if chain != nil {
		refusal = rq.chainPlan(plan, chain, pk, &rq.rw)
	}
	mountPaths(plan, decision.candidates, chain != nil)
	err := h.engine.Serve(rq.w, r, plan)
	if err != nil && refusal() != nil {
		// busy, not broken: every candidate was at its max_concurrency
		return rq.fail(*refusal())
	}
	if err != nil && r.Context().Err() != nil {
		rq.rec.status = statusClientClosed // left while queued: nobody to answer
		return nil
	}
	if err != nil {
		h.logger.Warn("no endpoint answered", zap.String("request_id", rq.id), zap.String("model", model), zap.Error(err))
		return rq.fail(apiError{status: http.StatusBadGateway, code: "upstream_error",
			message: "no endpoint could answer: " + err.Error()})
	}
	return nil
}

// newPicker is the picker over decision's candidates for model.
func (rq *request) newPicker(d decision, model string) *picker {
	pk := new(picker)
	rq.initPicker(pk, d, model)
	return pk
}

// initPicker sets pk up as newPicker's.
func (rq *request) initPicker(pk *picker, d decision, model string) {
	h := rq.h
	*pk = picker{remaining: d.candidates, balancer: h.balancer, strategy: h.LoadBalancer, maxAttempts: h.maxAttempts,
		rec: &rq.rec, limits: h.limits, room: h.app.room, queue: h.queue, req: rq.r, header: rq.w.Header(), metrics: h.app.metrics, panic: d.panic,
		sched: balancer.Request{Model: model}, model: model, rewrite: d.rewrite, trace: rq.trace}
	if h.LoadBalancer == balancer.Adaptive {
		pk.reasonPrefix = d.reason + "; "
	}
}

// streamEnded records what the response body came to.
func (rq *request) streamEnded(s engines.Stream, err error) {
	rec := &rq.rec
	rec.bytes, rec.streamErr = s.Bytes, err
	if !s.FirstByte.IsZero() {
		rec.ttft = s.FirstByte.Sub(rq.start)
	}
	if s.Tail != nil {
		rec.usage, rec.hasUsage = usage.Parse(s.Tail.Bytes())
	}
	rq.traceTail(s.Tail)
}

// mountPaths sends each attempt to the path its backend serves the API at
// (profiles.Profile.UpstreamPath: Docker Model Runner's /engines/v1/...),
// when a candidate mounts its API below the root (or may: a fallback chain
// brings candidates of its own).
func mountPaths(plan *engines.Plan, cands candidates, chained bool) {
	need := chained
	for _, st := range cands {
		need = need || st.Profile().MapsPaths()
	}
	if !need {
		return
	}
	prev, apiPath, body := plan.Upstream, plan.Path, plan.Body
	plan.Upstream = func(t engines.Target) (string, []byte) {
		path, b := apiPath, body
		if prev != nil {
			path, b = prev(t)
		}
		return t.(*fleet.Endpoint).Profile().UpstreamPath(path), b
	}
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
