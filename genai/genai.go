// Package genai traces a proxied LLM request with the OpenTelemetry GenAI
// semantic conventions (gen_ai.*, status Development in semconv 1.40):
// one span for the request as the proxy saw it, with the routing decision
// and what the response came to, and one child span per attempt on an
// endpoint, so a failover shows as two attempts.
//
// It adds no tracer of its own: spans are made by the TracerProvider of
// the span already in the request's context, which Caddy's `tracing`
// directive puts there (its exporter follows the OTEL_EXPORTER_OTLP_*
// variables). Without a recording span there, Start returns nil and every
// method of a nil *Trace does nothing: an untraced request pays one
// context lookup.
package genai

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope the spans are made under.
const Scope = "github.com/caddy-olla/olla/genai"

// Attributes of ours: the routing decision and the proxy's own view. The
// gen_ai.* and server.* ones come from semconv.
const (
	AttrBalancer    = attribute.Key("olla.load_balancer")
	AttrStrategy    = attribute.Key("olla.routing.strategy")
	AttrDecision    = attribute.Key("olla.routing.decision")
	AttrReason      = attribute.Key("olla.routing.reason")
	AttrEndpoint    = attribute.Key("olla.endpoint")
	AttrBackendType = attribute.Key("olla.backend_type")
	AttrAttempt     = attribute.Key("olla.attempt")
	AttrAttempts    = attribute.Key("olla.attempts")
	AttrKey         = attribute.Key("olla.key") // hashed (limits.KeyID), never the credential
	AttrEstimated   = attribute.Key("olla.usage.estimated")
	AttrRoute       = attribute.Key("olla.route")
	// AttrTTFT is the first token's time after the span's start, in
	// seconds, on the FirstTokenEvent.
	AttrTTFT = attribute.Key("olla.time_to_first_token")
)

// FirstTokenEvent marks when the first response byte reached the proxy,
// on the attempt that produced it and on the request's span.
const FirstTokenEvent = "olla.first_token"

// Operation is the GenAI operation an API path performs ("" for paths
// that are not an inference: model lists, pulls, health).
func Operation(apiPath string) string {
	switch apiPath {
	case "/v1/chat/completions", "/api/chat", "/v1/messages", "/v1/responses":
		return semconv.GenAIOperationNameChat.Value.AsString()
	case "/v1/completions", "/api/generate", "/completion", "/completions":
		return semconv.GenAIOperationNameTextCompletion.Value.AsString()
	case "/v1/embeddings", "/api/embed", "/api/embeddings", "/embedding", "/embeddings":
		return semconv.GenAIOperationNameEmbeddings.Value.AsString()
	}
	return ""
}

// Trace is one request's spans. A nil *Trace is an untraced request.
type Trace struct {
	tracer  trace.Tracer
	ctx     context.Context // carries the request's span, the attempts' parent
	span    trace.Span
	op      string
	start   time.Time
	attempt trace.Span
	tries   int
	last    Endpoint // the latest attempt's
	first   bool     // the first token was marked
}

// Start begins the request's span under the context's recording span, or
// returns nil when there is none (tracing off, or this trace not
// sampled). route is the API as the client spoke it (openai, ollama,
// anthropic ...).
func Start(ctx context.Context, op, route, model string, start time.Time) *Trace {
	parent := trace.SpanFromContext(ctx)
	if op == "" || !parent.IsRecording() {
		return nil
	}
	t := &Trace{tracer: parent.TracerProvider().Tracer(Scope), op: op, start: start}
	model = clip(model)
	name := op
	if model != "" {
		name += " " + model
	}
	attrs := []attribute.KeyValue{semconv.GenAIOperationNameKey.String(op), AttrRoute.String(route)}
	if model != "" {
		attrs = append(attrs, semconv.GenAIRequestModel(model))
	}
	t.ctx, t.span = t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	return t
}

// Routed records the routing decision (X-Olla-Routing-*: the model
// routing strategy, its decision and reason) and the load balancer that
// orders the candidates.
func (t *Trace) Routed(balancer, strategy, decision, reason string) {
	if t == nil {
		return
	}
	t.span.SetAttributes(AttrBalancer.String(balancer), AttrStrategy.String(strategy),
		AttrDecision.String(decision), AttrReason.String(reason))
}

// Key records the request's key, hashed.
func (t *Trace) Key(id string) {
	if t == nil || id == "" {
		return
	}
	t.span.SetAttributes(AttrKey.String(id))
}

// Endpoint is an attempt's target as a span shows it.
type Endpoint struct {
	Name string
	Type string // the backend type, also gen_ai.provider.name
	URL  *url.URL
}

// Attempt starts a child span for one attempt on an endpoint, asking it for
// model (the name that endpoint knows, after aliases and fallbacks). An
// attempt still open is ended first.
func (t *Trace) Attempt(e Endpoint, model string, at time.Time) {
	if t == nil {
		return
	}
	t.endAttempt(at)
	t.tries++
	t.last = e
	model = clip(model)
	name := t.op
	if model != "" {
		name += " " + model
	}
	attrs := []attribute.KeyValue{semconv.GenAIOperationNameKey.String(t.op), AttrAttempt.Int(t.tries),
		AttrEndpoint.String(e.Name), AttrBackendType.String(e.Type), semconv.GenAIProviderNameKey.String(e.Type)}
	if model != "" {
		attrs = append(attrs, semconv.GenAIRequestModel(model))
	}
	attrs = append(attrs, serverAttrs(e.URL)...)
	_, t.attempt = t.tracer.Start(t.ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(at), trace.WithAttributes(attrs...))
}

// maxModel bounds a model name as a span shows it: the client chose it.
const maxModel = 256

func clip(s string) string {
	if len(s) > maxModel {
		return s[:maxModel] + "..."
	}
	return s
}

// serverAttrs are server.address and server.port of an endpoint's URL.
func serverAttrs(u *url.URL) []attribute.KeyValue {
	if u == nil {
		return nil
	}
	out := []attribute.KeyValue{semconv.ServerAddress(u.Hostname())}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if p, err := strconv.Atoi(port); err == nil {
		out = append(out, semconv.ServerPort(p))
	}
	return out
}

// Outcome is how an attempt ended.
type Outcome struct {
	Status int   // the backend's status, 0 for none
	Err    error // a transport or stream error
	// Blame says whose doing a failed attempt was, as error.type:
	// "client_gone", "busy", "transform" or "" (the backend's).
	Blame string
}

// AttemptDone ends the current attempt.
func (t *Trace) AttemptDone(o Outcome, at time.Time) {
	if t == nil || t.attempt == nil {
		return
	}
	if o.Status != 0 {
		t.attempt.SetAttributes(semconv.HTTPResponseStatusCode(o.Status))
	}
	if et := errorType(o); et != "" {
		t.attempt.SetAttributes(semconv.ErrorTypeKey.String(et))
		desc := et
		if o.Err != nil {
			desc = o.Err.Error()
		}
		t.attempt.SetStatus(codes.Error, desc)
	}
	t.endAttempt(at)
}

func errorType(o Outcome) string {
	switch {
	case o.Blame != "":
		return o.Blame
	case o.Err != nil:
		var ne net.Error
		if errors.As(o.Err, &ne) && ne.Timeout() {
			return "timeout"
		}
		return "transport"
	case o.Status >= 400:
		return strconv.Itoa(o.Status)
	}
	return ""
}

func (t *Trace) endAttempt(at time.Time) {
	if t.attempt != nil {
		t.attempt.End(trace.WithTimestamp(at))
		t.attempt = nil
	}
}

// FirstToken marks the first response byte, on the open attempt and on the
// request's span (once).
func (t *Trace) FirstToken(at time.Time) {
	if t == nil || t.first || at.IsZero() {
		return
	}
	t.first = true
	ev := trace.WithAttributes(AttrTTFT.Float64(at.Sub(t.start).Seconds()))
	t.span.AddEvent(FirstTokenEvent, trace.WithTimestamp(at), ev)
	if t.attempt != nil {
		t.attempt.AddEvent(FirstTokenEvent, trace.WithTimestamp(at), ev)
	}
}

// Result is what the request came to.
type Result struct {
	Status int
	// ResponseModel and FinishReasons are read from the response's end
	// (ParseTail).
	ResponseModel string
	FinishReasons []string
	// Usage, when HasUsage: tokens reported by the backend, or estimated
	// where it reported none (Estimated).
	HasUsage              bool
	Input, Output, Cached int64
	Estimated             bool
	Reason                string // the routing reason as it stood at the end
	Err                   error
}

// End ends the request's span (and an attempt still open).
func (t *Trace) End(r Result, at time.Time) {
	if t == nil {
		return
	}
	t.endAttempt(at)
	s := t.span
	attrs := []attribute.KeyValue{AttrAttempts.Int(t.tries)}
	if r.Status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(r.Status))
	}
	if e := t.last; e.Name != "" { // the endpoint that answered last
		attrs = append(attrs, AttrEndpoint.String(e.Name), AttrBackendType.String(e.Type),
			semconv.GenAIProviderNameKey.String(e.Type))
		attrs = append(attrs, serverAttrs(e.URL)...)
	}
	if r.ResponseModel != "" { // at most maxNameBytes (ParseTail)
		attrs = append(attrs, semconv.GenAIResponseModel(r.ResponseModel))
	}
	if len(r.FinishReasons) > 0 {
		attrs = append(attrs, semconv.GenAIResponseFinishReasons(r.FinishReasons...))
	}
	if r.HasUsage {
		attrs = append(attrs, semconv.GenAIUsageInputTokens(int(r.Input)), semconv.GenAIUsageOutputTokens(int(r.Output)))
		if r.Cached > 0 {
			attrs = append(attrs, semconv.GenAIUsageCacheReadInputTokens(int(r.Cached)))
		}
		if r.Estimated {
			attrs = append(attrs, AttrEstimated.Bool(true))
		}
	}
	if r.Reason != "" {
		attrs = append(attrs, AttrReason.String(r.Reason))
	}
	s.SetAttributes(attrs...)
	if r.Status >= 500 || r.Err != nil {
		desc := strconv.Itoa(r.Status)
		if r.Err != nil {
			desc = r.Err.Error()
		}
		s.SetAttributes(semconv.ErrorTypeKey.String(errorType(Outcome{Status: r.Status, Err: r.Err})))
		s.SetStatus(codes.Error, desc)
	}
	s.End(trace.WithTimestamp(at))
}
