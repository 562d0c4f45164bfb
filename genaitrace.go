package olla

import (
	"time"

	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/genai"
)

// The request path's seam to package genai: with Caddy's tracing directive
// on, a request for an inference gets a GenAI span and one child span per
// attempt; without it rq.trace is nil and each call below is a nil check.

// startTrace begins the request's span, once its model is known.
func (rq *request) startTrace(model string) {
	rq.trace = genai.Start(rq.r.Context(), genai.Operation(rq.apiPath), rq.prefix, model, rq.start)
}

// traceEndpoint is an endpoint as a span names it.
func traceEndpoint(t engines.Target) genai.Endpoint {
	return genai.Endpoint{Name: t.Name(), Type: t.Type(), URL: t.BaseURL()}
}

// traceOutcome says whose doing a failed attempt was.
func traceOutcome(out engines.Outcome) genai.Outcome {
	o := genai.Outcome{Status: out.Status, Err: out.Err}
	switch {
	case out.ClientGone():
		o.Blame = "client_gone"
	case out.TransformFailed():
		o.Blame = "transform"
	case out.Busy:
		o.Blame = "busy"
	}
	return o
}

// traceTail reads the answering model and finish reasons from the
// response's end, for the span (only when traced: tail is valid only
// during the engine's call).
func (rq *request) traceTail(tail *engines.Tail) {
	if rq.trace != nil && tail != nil {
		rq.traceModel, rq.traceReasons = genai.ParseTail(tail.Bytes())
	}
}

// endTrace ends the request's span with what it came to: the usage charged to the key (or reported), the routing
// reason as it stood at the end.
func (rq *request) endTrace() {
	if rq.trace == nil {
		return
	}
	rec := &rq.rec
	res := genai.Result{Status: rec.status, ResponseModel: rq.traceModel, FinishReasons: rq.traceReasons,
		Reason: rq.w.Header().Get("X-Olla-Routing-Reason"), Err: rec.streamErr}
	c, ok := rq.keyCounts, rq.keyCounted
	if !ok {
		c, ok = rec.usage, rec.hasUsage
	}
	if ok {
		res.HasUsage, res.Input, res.Output, res.Cached, res.Estimated = true, c.Input, c.Output, c.Cached, c.Estimated
	}
	rq.trace.Key(rq.keyID)
	rq.trace.End(res, time.Now())
}
