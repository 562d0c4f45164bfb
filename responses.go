package olla

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/profiles"
	"github.com/caddy-olla/olla/translate/responses"
)

// isResponsesPath reports whether an API path is OpenAI's Responses API
// (the create route or one of its stored-response routes).
func isResponsesPath(p string) bool {
	return p == profiles.PathResponses || strings.HasPrefix(p, profiles.PathResponses+"/")
}

// servesResponses reports whether a backend type answers POST /v1/responses
// natively; the other OpenAI-compatible types get it by translation to chat
// completions (translate/responses).
func servesResponses(p *profiles.Profile) bool {
	return p != nil && p.ServesPath(profiles.PathResponses)
}

// responsesRoute checks a Responses API request on rt before its body is
// read: 501 in OpenAI's format for a stored response's routes
// (/v1/responses/{id}...: they name no model, so no balancer can find the
// backend that holds one) and for a route none of whose types can answer
// it, natively or translated.
func responsesRoute(rt route, apiPath string) *apiError {
	if apiPath != profiles.PathResponses {
		return &apiError{status: http.StatusNotImplemented, code: "not_supported",
			message: fmt.Sprintf("%s is not supported through the load balancer: a stored response lives on one backend and the request names no model to find it; call that backend directly, or send the whole conversation to POST /v1/responses", apiPath)}
	}
	for _, p := range profiles.All() {
		if rt.allows(p.Name) && (servesResponses(p) || p.OpenAICompatible) {
			return nil
		}
	}
	return &apiError{status: http.StatusNotImplemented, code: "not_supported",
		message: fmt.Sprintf("the Responses API (POST /v1/responses) is not served by %s backends; use a route whose backends serve it or chat completions (%s)",
			rt.label, strings.Join(profiles.TypesForPath(apiPath), ", "))}
}

// responsesCall is one POST /v1/responses on its way through proxy
// (routeHooks): endpoints whose server has the Responses API get it as it
// came (passthrough, the first tier); the other OpenAI-compatible ones get
// it translated to chat completions. Every answer names its mode in
// X-Olla-Mode.
type responsesCall struct {
	rq         *request
	hw         *heldWriter
	req        *responses.Request
	tier       int
	translated bodies // chat-completions body per model name
	translatorOutcome
}

func (rq *request) serveResponses(rt route) error {
	hw := &heldWriter{ResponseWriter: rq.w}
	rq.w = hw
	defer hw.commit()
	c := &responsesCall{rq: rq, hw: hw, translatorOutcome: translatorOutcome{start: rq.start}}
	err := rq.proxy(rt, c)
	if hw.changed != 0 {
		rq.rec.status = hw.changed
	}
	rq.h.app.translators.responses.record(&c.translatorOutcome, c.req != nil && c.req.Stream, rq.rec.streamErr)
	return err
}

func (c *responsesCall) check(body []byte) *apiError {
	req, err := responses.Parse(body)
	if err != nil {
		var bad *responses.Error
		if errors.As(err, &bad) {
			code := "invalid_request_error"
			if bad.Status == http.StatusNotImplemented {
				code = "not_supported"
			}
			return &apiError{status: bad.Status, code: code, message: bad.Message}
		}
		return &apiError{status: http.StatusBadRequest, code: "invalid_request_error", message: err.Error()}
	}
	c.req = req
	return nil
}

func (c *responsesCall) native(st *fleet.Endpoint) bool {
	return servesResponses(st.Profile())
}

// routed puts the native endpoints first and keeps, after them, the
// OpenAI-compatible ones (translated); none left is a 501 naming the types
// that serve the model.
func (c *responsesCall) routed(d *decision, model string) (bool, error) {
	if d.err != nil {
		return false, nil
	}
	ordered, n := tiers(d.candidates, c.native)
	kept := ordered[:n:n]
	var types []string
	for _, st := range ordered[n:] {
		if p := st.Profile(); p != nil && p.OpenAICompatible {
			kept = append(kept, st)
		} else if !slices.Contains(types, st.Type()) {
			types = append(types, st.Type())
		}
	}
	if len(kept) == 0 {
		return true, c.rq.fail(apiError{status: http.StatusNotImplemented, code: "not_supported",
			message: fmt.Sprintf("model '%s' is served here only by %s backends, which neither serve the Responses API (POST /v1/responses) nor chat completions to translate it to",
				model, strings.Join(types, ", "))})
	}
	d.candidates, c.tier, c.anyNative = kept, n, n > 0
	return false, nil
}

// translation is the chat-completions body for model, built once per name.
func (c *responsesCall) translation(model string) []byte {
	return c.translated.get(c.rq, model, func() []byte { return responses.ToChat(c.req, model) })
}

func (c *responsesCall) shape(plan *engines.Plan, d *decision, rw *rewriter) {
	split(plan, c.tier)
	plan.Upstream = func(t engines.Target) (string, []byte) {
		name := rw.nameFor(d, t)
		if c.native(t.(*fleet.Endpoint)) {
			return profiles.PathResponses, rw.bodyFor(name, rw.model)
		}
		return responses.ChatPath, c.translation(name)
	}
	plan.Response = func(t engines.Target, status int, h http.Header) engines.ResponseTransform {
		c.answered = true
		ch := c.hw.Header()
		h.Del(modeHeader)
		h.Del(droppedHeader)
		if c.native(t.(*fleet.Endpoint)) {
			c.mode, c.ok = modePassthrough, status >= 200 && status < 300
			ch.Set(modeHeader, modePassthrough)
			return nil
		}
		return c.rq.translatedAnswer(translatedShape{hw: c.hw, outcome: &c.translatorOutcome,
			stream: c.req.Stream, dropped: c.req.Dropped(), errorBody: responses.ErrorBody,
			openStream: func(w io.Writer) streamTranslator { return responses.NewStreamTranslator(w, c.req) },
			translate:  func(body []byte) ([]byte, error) { return responses.FromChat(body, c.req) },
			fail:       c.failAnswer}, status, h)
	}
}

// failAnswer turns the held answer into a 502 in OpenAI's envelope.
func (c *responsesCall) failAnswer(message string) []byte {
	c.ok = false
	c.hw.override(http.StatusBadGateway)
	return responses.ErrorBody(http.StatusBadGateway, message)
}
