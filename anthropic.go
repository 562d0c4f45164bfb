package olla

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/profiles"
	"github.com/caddy-olla/olla/translate/anthropic"
)

// The Anthropic Messages API under /olla/anthropic/. Each attempt of a
// request is either passed through (the endpoint's own server speaks
// Messages: the body goes unchanged to its AnthropicPath and the answer
// comes back verbatim) or translated (to OpenAI chat completions and back,
// by translate/anthropic). Endpoints that pass through are tried first; the
// others are the failover. Every answer names the mode in X-Olla-Mode.
const (
	anthropicPrefix = "anthropic"

	modeHeader      = "X-Olla-Mode"
	modePassthrough = "passthrough"
	modeTranslation = "translation"
	// droppedHeader names what a translation left out of the request
	// (fields chat completions has no place for).
	droppedHeader = "X-Olla-Translation-Dropped"

	// tokenCountHeader says where a count_tokens answer came from:
	// "backend" (the endpoint's own tokenizer) or "estimate".
	tokenCountHeader = "X-Olla-Token-Count"

	// maxTranslatedAnswer bounds a non-stream answer held for translation;
	// maxBackendError an error body held for its message.
	maxTranslatedAnswer = 16 << 20
	maxBackendError     = 64 << 10
)

// anthropicRoute is every type that can answer a Messages request: the
// OpenAI-compatible ones by translation, the native ones directly.
var anthropicRoute = sync.OnceValue(func() route {
	types := map[string]bool{}
	for _, p := range profiles.All() {
		if p.OpenAICompatible || p.AnthropicPath != "" {
			types[p.Name] = true
		}
	}
	return route{prefix: anthropicPrefix, types: types, label: "OpenAI-compatible or Anthropic-native"}
})

// serveAnthropic answers /olla/anthropic/<api path>.
func (rq *request) serveAnthropic() error {
	hw := &heldWriter{ResponseWriter: rq.w}
	rq.w = hw
	defer hw.commit()
	// our own answers (errors, lists, estimates) are composed, not passed
	// through; a proxied attempt sets its own mode
	rq.w.Header().Set(modeHeader, modeTranslation)
	p, method := rq.apiPath, rq.r.Method
	switch {
	case p == "/v1/messages" || p == "/v1/messages/count_tokens":
		if method != http.MethodPost {
			return rq.notAllowed(http.MethodPost)
		}
		c := &anthropicCall{rq: rq, hw: hw, countTokens: p == "/v1/messages/count_tokens",
			translatorOutcome: translatorOutcome{start: rq.start}}
		err := rq.proxy(anthropicRoute(), c)
		if hw.changed != 0 {
			rq.rec.status = hw.changed // the engine recorded the backend's
		}
		if !c.countTokens {
			rq.h.app.translators.anthropic.record(&c.translatorOutcome, c.req != nil && c.req.Stream, rq.rec.streamErr)
		}
		return err
	case p == "/v1/models" || strings.HasPrefix(p, "/v1/models/"):
		if method != http.MethodGet && method != http.MethodHead {
			return rq.notAllowed(http.MethodGet, http.MethodHead)
		}
		return rq.serveAnthropicModels(strings.TrimPrefix(strings.TrimPrefix(p, "/v1/models"), "/"))
	}
	return rq.fail(apiError{status: http.StatusNotFound, code: "not_found",
		message: fmt.Sprintf("no such route %s: /olla/anthropic/ serves POST /v1/messages, POST /v1/messages/count_tokens and GET /v1/models", rq.r.URL.Path)})
}

// serveAnthropicModels answers GET /v1/models (id == "") and
// /v1/models/<id> in Anthropic's shape, from the catalogue: the models a
// routable endpoint of the route serves.
func (rq *request) serveAnthropicModels(id string) error {
	h := rq.h
	in := h.catalogueInput(time.Now())
	rt := anthropicRoute()
	v, err := h.view(rq.r.Context(), in, "anthropic/models", "", func() (any, int64) {
		var ids []string
		for _, e := range discovery.Unify(in.sourcesFor(rt)) {
			if e.Routable() {
				ids = append(ids, e.ID)
			}
		}
		body := append(anthropic.ModelsBody(ids, processStart), '\n')
		return anthropicModels{ids: ids, body: body}, int64(len(body) + 32*len(ids))
	})
	if err != nil {
		return rq.viewFailed(err)
	}
	list := v.(anthropicModels)
	if id == "" {
		if rq.notModified(h.etag(in, "anthropic/models")) {
			return nil
		}
		body := list.body
		return rq.writeTagged(len(body), func(w io.Writer) error { _, err := w.Write(body); return err },
			func() []byte { return gzipBytes(body) })
	}
	for _, m := range list.ids {
		if m == id {
			entry := map[string]string{"type": "model", "id": id, "display_name": id,
				"created_at": processStart.UTC().Format(time.RFC3339)}
			return rq.writeJSON(http.StatusOK, entry)
		}
	}
	return rq.fail(apiError{status: http.StatusNotFound, code: "model_not_found",
		message: fmt.Sprintf("model '%s' not found; GET /olla/anthropic/v1/models lists the models available", id)})
}

type anthropicModels struct {
	ids  []string
	body []byte
}

// anthropicCall is one Messages (or count_tokens) request on its way
// through proxy: it validates the body, chooses each attempt's mode and
// shapes the answer.
type anthropicCall struct {
	rq          *request
	hw          *heldWriter
	countTokens bool

	req        *anthropic.Request // nil on count_tokens: its scan is enough
	scanned    *anthropic.Shape   // the body's counts and token estimate
	translated bodies             // OpenAI body per model name; nil when untranslatable
	tier       int                // candidates that pass through, first in the decision
	translatorOutcome
}

// check validates the body: a 400 naming the field or the limit, or nil.
// One scan counts the body's messages, blocks, tools and nesting against
// request_limits before anything is decoded; count_tokens stops there (its
// estimate comes from the scan), /v1/messages charges the decoded tree's
// size to the body budget and then decodes it.
func (c *anthropicCall) check(body []byte) *apiError {
	rq := c.rq
	sh, err := anthropic.Scan(body, rq.h.anthropicLimits)
	var limit *anthropic.LimitError
	if errors.As(err, &limit) {
		return &apiError{status: limit.Status(), code: "invalid_request_error",
			message: fmt.Sprintf("%s (request_limits %s)", limit.Error(), limitOption[limit.Limit])}
	}
	if c.countTokens {
		if err != nil {
			return &apiError{status: http.StatusBadRequest, code: "invalid_request_error", message: err.Error()}
		}
		c.scanned = sh
		return nil
	}
	if err == nil {
		// the tree is held until the request ends: it counts like a body
		if !rq.reserve(sh.DecodedSize(len(body))) {
			return rq.busy()
		}
		c.scanned = sh
	}
	req, err := anthropic.ParseRequest(body)
	if err != nil {
		var bad *anthropic.RequestError
		if errors.As(err, &bad) {
			return &apiError{status: bad.Status(), code: "invalid_request_error", message: bad.Message}
		}
		return &apiError{status: http.StatusBadRequest, code: "invalid_request_error", message: err.Error()}
	}
	c.req = req
	return nil
}

// limitOption names the request_limits option behind each Scan limit.
var limitOption = map[string]string{"messages": "max_messages", "content blocks": "max_content_blocks",
	"tools": "max_tools", "nesting depth": "max_nesting"}

// estimate is the request's input tokens as estimated.
func (c *anthropicCall) estimate() int {
	if c.scanned != nil {
		return c.scanned.EstimateTokens()
	}
	return anthropic.EstimateTokens(c.req)
}

// native reports whether an endpoint's own server answers Messages (and,
// for count_tokens, counts tokens).
func (c *anthropicCall) native(st *fleet.Endpoint) bool {
	p := st.Profile()
	if p == nil || p.AnthropicPath == "" {
		return false
	}
	return !c.countTokens || p.AnthropicCountTokens
}

// routed narrows a routing decision for the call. done reports that the
// request was answered here (err is then what to return).
func (c *anthropicCall) routed(d *decision, _ string) (done bool, err error) {
	rq := c.rq
	if c.countTokens {
		if d.err != nil && d.err.status == http.StatusNotFound {
			return false, nil // an unknown model is an error like on /v1/messages
		}
		var counters candidates
		for _, st := range d.candidates {
			if c.native(st) {
				counters = append(counters, st)
			}
		}
		if d.err != nil || len(counters) == 0 {
			return true, c.writeEstimate()
		}
		d.candidates = counters
		return false, nil
	}
	if d.err != nil {
		return false, nil
	}
	ordered, nNative := tiers(d.candidates, c.native)
	native, other := ordered[:nNative], ordered[nNative:]
	c.anyNative = len(native) > 0
	if len(other) > 0 {
		if !c.req.Features().Translatable() || c.translation(c.req.Model) == nil {
			// only a native server can carry it (an unknown block type, a
			// server tool, a PDF)
			if len(native) == 0 {
				_, terr := anthropic.ToOpenAI(c.req)
				msg := "the request cannot be translated for the endpoints that serve this model"
				var bad *anthropic.RequestError
				if errors.As(terr, &bad) {
					msg = bad.Message + " (no endpoint serving this model speaks the Messages API natively)"
				}
				return true, rq.fail(apiError{status: http.StatusBadRequest, code: "invalid_request_error", message: msg})
			}
			other = nil
		}
	}
	// passthrough first, translation as the failover
	d.candidates = append(native[:len(native):len(native)], other...)
	c.tier = nNative
	return false, nil
}

// translation returns the OpenAI body for model, built once per name; nil
// when the request cannot be translated.
func (c *anthropicCall) translation(model string) []byte {
	return c.translated.get(c.rq, model, func() []byte {
		r := *c.req
		r.Model = model
		b, err := anthropic.ToOpenAI(&r)
		if err != nil {
			return nil
		}
		return b
	})
}

// shape sets the plan's per-attempt upstream and response transform.
func (c *anthropicCall) shape(plan *engines.Plan, d *decision, rw *rewriter) {
	split(plan, c.tier)
	plan.Upstream = func(t engines.Target) (string, []byte) {
		st := t.(*fleet.Endpoint)
		name := rw.nameFor(d, t)
		if c.native(st) {
			path := st.Profile().AnthropicPath
			if c.countTokens {
				path += "/count_tokens"
			}
			return path, rw.bodyFor(name, rw.model)
		}
		return anthropic.OpenAIPath, c.translation(name)
	}
	plan.Response = func(t engines.Target, status int, h http.Header) engines.ResponseTransform {
		st := t.(*fleet.Endpoint)
		c.answered = true
		ch := c.hw.Header()
		h.Del(modeHeader)
		h.Del(droppedHeader)
		h.Del("Request-Id")
		if status >= 400 {
			ch.Set("Request-Id", c.rq.id)
		}
		if c.native(st) {
			c.mode = modePassthrough
			ch.Set(modeHeader, modePassthrough)
			c.ok = status >= 200 && status < 300
			if c.countTokens {
				if c.ok {
					ch.Set(tokenCountHeader, "backend")
					return nil
				}
				// the backend could not count: the estimate stands in
				c.hw.hold()
				return &estimateTransform{c: c}
			}
			return nil
		}
		r := c.req
		return c.rq.translatedAnswer(translatedShape{hw: c.hw, outcome: &c.translatorOutcome,
			stream: r.Stream, dropped: r.Dropped(), errorBody: c.apiErrorBody,
			openStream: func(w io.Writer) streamTranslator {
				return anthropic.NewStreamTranslator(w, anthropic.StreamOptions{Model: r.Model,
					InputTokens: c.estimate(), StopSequences: r.StopSequences})
			},
			translate: func(body []byte) ([]byte, error) { return anthropic.FromOpenAI(body, r) },
			fail:      c.failAnswer}, status, h)
	}
}

// writeEstimate answers count_tokens with the local estimate.
func (c *anthropicCall) writeEstimate() error {
	h := c.rq.w.Header()
	h.Set(tokenCountHeader, "estimate")
	body := append(anthropic.CountTokensBody(c.estimate()), '\n')
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	c.rq.rec.status = http.StatusOK
	c.rq.w.WriteHeader(http.StatusOK)
	_, _ = c.rq.w.Write(body)
	return nil
}

// apiErrorBody is an Anthropic envelope naming this request.
func (c *anthropicCall) apiErrorBody(status int, message string) []byte {
	return anthropic.ErrorBodyWithRequestID(status, message, c.rq.id)
}

// failAnswer turns the held answer into a 502 api_error.
func (c *anthropicCall) failAnswer(message string) []byte {
	c.ok = false
	c.hw.override(http.StatusBadGateway)
	c.hw.Header().Set("Request-Id", c.rq.id)
	return c.apiErrorBody(http.StatusBadGateway, message)
}

// estimateTransform replaces a native count_tokens failure with the
// estimate.
type estimateTransform struct{ c *anthropicCall }

func (e *estimateTransform) Write(io.Writer, []byte) error { return nil }

func (e *estimateTransform) End(w io.Writer, _ error) error {
	c := e.c
	c.hw.override(http.StatusOK)
	h := c.hw.Header()
	h.Del("Request-Id")
	h.Set(tokenCountHeader, "estimate")
	h.Set("Content-Type", "application/json")
	_, err := w.Write(append(anthropic.CountTokensBody(c.estimate()), '\n'))
	return err
}
