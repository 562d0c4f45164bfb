package olla

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/translate/anthropic"
)

// routeHooks is what a route adds to request.proxy. The proxy loop calls
// every hook on every request: a route whose API goes to the backend as it
// came (plainHooks) adds only the alias rewrite, and the APIs that are
// passed through to some servers and translated for the others (the
// Anthropic Messages API, anthropic.go; the Responses API, responses.go)
// validate, order the candidates and transform both ways here. It keeps
// proxy one path with no per-API branches.
type routeHooks interface {
	// check validates the request body before routing; a non-nil refusal
	// is the answer.
	check(body []byte) *apiError
	// routed narrows or orders the routing decision's candidates (d.err
	// may be set: the hook may answer it its own way). answered reports
	// that the hook answered the request; err is then proxy's result.
	routed(d *decision, model string) (answered bool, err error)
	// shape sets the plan's request transform (Plan.Upstream: the path and
	// body each endpoint gets) and response transform (Plan.Response: the
	// body translated back, and a backend's error in the client's
	// envelope). rw rewrites the model name for endpoints that know an
	// alias by another name.
	shape(plan *engines.Plan, d *decision, rw *rewriter)
}

// plainHooks forwards the body as it came, the model renamed where an
// alias says so.
type plainHooks struct{}

func (plainHooks) check([]byte) *apiError                 { return nil }
func (plainHooks) routed(*decision, string) (bool, error) { return false, nil }

func (plainHooks) shape(plan *engines.Plan, d *decision, rw *rewriter) {
	if len(d.rewrite) == 0 {
		return // the plan's own Path and Body
	}
	plan.Upstream = func(t engines.Target) (string, []byte) {
		return rw.rq.apiPath, rw.bodyFor(d.rewrite[t.(*fleet.Endpoint)], rw.model)
	}
}

// rewriter makes the request body an endpoint gets when it knows the model
// by another name (an alias, a fallback, another case): one copy per name,
// not per attempt, counted against the body budget.
type rewriter struct {
	rq        *request
	body      []byte
	span      bodySpan
	model     string // the client's
	rewritten map[string][]byte
}

// bodyFor is the body naming name ("" or model, the name the body has:
// unchanged).
func (w *rewriter) bodyFor(name, model string) []byte {
	if name == "" || name == model {
		return w.body
	}
	if b, ok := w.rewritten[name]; ok {
		return b
	}
	if w.rewritten == nil {
		w.rewritten = make(map[string][]byte, 1)
	}
	b := rewriteModel(w.body, w.span, name)
	w.rewritten[name] = b
	w.rq.holdBuffered(int64(cap(b)))
	return b
}

// bodies holds a translated body per model name, each built once and
// counted against the body budget until the request ends.
type bodies map[string][]byte

func (m *bodies) get(rq *request, name string, build func() []byte) []byte {
	if b, ok := (*m)[name]; ok {
		return b
	}
	b := build()
	rq.holdBuffered(int64(cap(b)))
	if *m == nil {
		*m = bodies{}
	}
	(*m)[name] = b
	return b
}

// nameFor is the model name endpoint t knows the request's model by.
func (rw *rewriter) nameFor(d *decision, t engines.Target) string {
	if n, ok := d.rewrite[t.(*fleet.Endpoint)]; ok {
		return n
	}
	return rw.model
}

// translatedShape is what a translating route (/olla/anthropic/,
// /v1/responses) gives translatedAnswer about its call.
type translatedShape struct {
	hw      *heldWriter
	outcome *translatorOutcome
	stream  bool     // the client asked for a stream
	dropped []string // request fields the translation could not carry
	// errorBody is the client's error envelope around message
	errorBody func(status int, message string) []byte
	// openStream starts the stream translator of a streamed 2xx answer
	openStream func(w io.Writer) streamTranslator
	// translate turns a whole chat-completions answer into the client's
	translate func(body []byte) ([]byte, error)
	// fail turns a held answer into a 502 in the client's envelope
	fail func(message string) []byte
}

// translatedAnswer shapes the answer of an endpoint that got the request
// translated to chat completions: the mode and dropped-fields headers, then
// by the answer's kind a backend error in the client's envelope with its
// status, a translated event stream, or a held answer translated once
// whole.
func (rq *request) translatedAnswer(s translatedShape, status int, h http.Header) engines.ResponseTransform {
	s.outcome.mode = modeTranslation
	ch := s.hw.Header()
	ch.Set(modeHeader, modeTranslation)
	if len(s.dropped) > 0 {
		ch.Set(droppedHeader, strings.Join(s.dropped, ", "))
	}
	if status < 200 || status >= 300 {
		h.Set("Content-Type", "application/json")
		s.outcome.ok = false
		return &errorAnswer{status: status, envelope: func(status int, body []byte) []byte {
			return s.errorBody(status, anthropic.BackendErrorMessage(status, body))
		}}
	}
	if s.stream {
		h.Set("Content-Type", "text/event-stream; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		return &streamAnswer{ok: &s.outcome.ok, open: s.openStream}
	}
	h.Set("Content-Type", "application/json")
	s.hw.hold() // the status waits for the whole answer: it may not translate
	return &heldAnswer{rq: rq, ok: &s.outcome.ok, fail: s.fail, translate: s.translate}
}

// heldAnswer buffers a translated non-stream answer until it is whole and
// translates it then. Its status is held (heldWriter): an answer that does
// not translate becomes a 502 in the client's envelope, not a 200.
type heldAnswer struct {
	rq        *request
	translate func(body []byte) ([]byte, error)
	// fail turns the held answer into a 502 with message, in the client's
	// envelope
	fail     func(message string) []byte
	ok       *bool // set when the answer translated
	buf      bytes.Buffer
	overflow bool
}

func (m *heldAnswer) Write(_ io.Writer, p []byte) error {
	if m.overflow || m.buf.Len()+len(p) > maxTranslatedAnswer {
		m.overflow = true
		return nil
	}
	m.buf.Write(p)
	m.rq.holdBuffered(int64(len(p))) // held like a request body, until the request ends
	return nil
}

func (m *heldAnswer) End(w io.Writer, err error) error {
	var out []byte
	switch {
	case err != nil:
		out = m.fail(fmt.Sprintf("the backend's answer broke off: %v", err))
	case m.overflow:
		out = m.fail(fmt.Sprintf("the backend's answer is larger than %d bytes", maxTranslatedAnswer))
	default:
		msg, terr := m.translate(m.buf.Bytes())
		if terr != nil {
			out = m.fail(terr.Error())
		} else {
			*m.ok = true
			out = msg
		}
	}
	m.buf = bytes.Buffer{}
	_, werr := w.Write(out)
	return werr
}

// streamTranslator turns a chat-completions SSE stream into another API's
// event stream (translate/anthropic, translate/responses): an unfinished
// stream ends with that API's error event, told in-band.
type streamTranslator interface {
	Write(p []byte) (int, error)
	Close(streamErr error) error
	Complete() bool
}

// streamAnswer runs a stream translator over a 2xx answer to a streamed
// request; ok is set when the stream finished.
type streamAnswer struct {
	ok   *bool
	open func(w io.Writer) streamTranslator
	st   streamTranslator
}

func (s *streamAnswer) translator(w io.Writer) streamTranslator {
	if s.st == nil {
		s.st = s.open(w)
	}
	return s.st
}

func (s *streamAnswer) Write(w io.Writer, p []byte) error {
	_, err := s.translator(w).Write(p)
	return err
}

func (s *streamAnswer) End(w io.Writer, err error) error {
	st := s.translator(w)
	cerr := st.Close(err)
	*s.ok = st.Complete()
	return cerr
}

// errorAnswer turns a backend's error answer (any format) into the
// client's envelope with the backend's status.
type errorAnswer struct {
	status int
	// envelope builds the client's error body from the backend's status and
	// (bounded) body
	envelope func(status int, backendBody []byte) []byte
	buf      []byte
}

func (e *errorAnswer) Write(_ io.Writer, p []byte) error {
	if room := maxBackendError - len(e.buf); room > 0 {
		e.buf = append(e.buf, p[:min(room, len(p))]...)
	}
	return nil
}

func (e *errorAnswer) End(w io.Writer, _ error) error {
	_, err := w.Write(e.envelope(e.status, e.buf))
	return err
}

// heldWriter can hold back a response's status line until its body is
// known, so a translated answer that turns out not to translate is a 502,
// not a 200 with an error inside. It holds only once armed, and only the
// final status; writes and flushes commit it.
type heldWriter struct {
	http.ResponseWriter
	armed   bool
	status  int // held status, 0 when none
	sent    bool
	changed int // the status override put in place of the backend's
}

func (w *heldWriter) hold() { w.armed = true }

// override replaces the held status.
func (w *heldWriter) override(status int) {
	if w.status != 0 {
		w.status, w.changed = status, status
	}
}

func (w *heldWriter) WriteHeader(status int) {
	if w.armed && !w.sent && status >= 200 {
		w.status = status
		return
	}
	if status >= 200 {
		w.sent = true
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *heldWriter) Write(p []byte) (int, error) {
	w.commit()
	return w.ResponseWriter.Write(p)
}

// commit sends a held status.
func (w *heldWriter) commit() {
	if w.status != 0 {
		status := w.status
		w.status, w.armed, w.sent = 0, false, true
		w.ResponseWriter.WriteHeader(status)
	}
}

// FlushError implements the flush http.ResponseController looks for: a
// held status is not flushed out early.
func (w *heldWriter) FlushError() error {
	if w.status != 0 {
		return nil
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *heldWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// tieredPicker offers the endpoints that pass through first and the others
// (translated) once those are spent: tried and failed, gone, or full. It
// waits in the queue only when no tier is left, so a full native endpoint
// does not keep a request from a translated one with room.
type tieredPicker struct {
	*picker
	later candidates
}

func (p *tieredPicker) Next() (engines.Target, bool) {
	if len(p.later) == 0 {
		return p.picker.Next()
	}
	if p.queue == nil || p.room.Depth() == 0 {
		q := p.queue
		p.queue = nil // no waiting while the next tier may have room
		t, ok := p.picker.Next()
		p.queue = q
		if ok || p.attempts >= p.maxAttempts {
			return t, ok
		}
		p.refusal = nil
	}
	p.remaining = append(p.remaining, p.later...)
	p.later = nil
	return p.picker.Next()
}

func (p *tieredPicker) Remaining() bool {
	return p.picker.Remaining() || len(p.later) > 0 && p.attempts < p.maxAttempts
}

// split makes the plan's picker offer the first n candidates as a tier of
// their own.
func split(plan *engines.Plan, n int) {
	pk, ok := plan.Picker.(*picker)
	if !ok || n <= 0 || n >= len(pk.remaining) {
		return
	}
	later := pk.remaining[n:]
	pk.remaining = pk.remaining[:n:n]
	plan.Picker = &tieredPicker{picker: pk, later: later}
}

// tiers orders candidates native first and reports how many are native.
func tiers(cs candidates, native func(*fleet.Endpoint) bool) (ordered candidates, nNative int) {
	var nat, other candidates
	for _, st := range cs {
		if native(st) {
			nat = append(nat, st)
		} else {
			other = append(other, st)
		}
	}
	return append(nat[:len(nat):len(nat)], other...), len(nat)
}
