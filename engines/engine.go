// Package engines holds what both proxy engines share: the Engine interface,
// the per-request Plan the handler hands them, and the rules every attempt
// follows (upstream URL, header hygiene, failover classification, flushing).
// The engines themselves live in sherpa/ and olla/.
package engines

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Engine forwards one client request to the endpoints a Plan offers, trying
// the next candidate on a failure that happens before the first response byte
// reached the client.
//
// Serve returns nil once a response (the backend's, possibly a failed one)
// was written to w. It returns an error, and has written nothing, when no
// attempt produced a response; the handler then answers in the client's API
// format. Failures after the first byte end the stream and are never replayed.
type Engine interface {
	Serve(w http.ResponseWriter, r *http.Request, plan *Plan) error
}

// Target is one endpoint as an engine sees it. Implementations are shared by
// concurrent requests and must be safe for concurrent use.
type Target interface {
	// Name is the configured endpoint name, sent as X-Olla-Endpoint.
	Name() string
	// Type is the backend type (ollama, lm-studio, ...), sent as X-Olla-Backend-Type.
	Type() string
	// BaseURL is the endpoint URL: scheme, host and optional base path.
	BaseURL() *url.URL
	// Transport is the endpoint's own pooled round tripper.
	Transport() http.RoundTripper
	// ApplyHeaders sets the endpoint's configured headers and credentials on
	// an outbound request's header.
	ApplyHeaders(h http.Header)
	// ForwardsClientCredentials reports whether the client's credential
	// headers (IsClientCredential) may reach this endpoint.
	ForwardsClientCredentials() bool
}

// Picker hands out the candidates of one request in the balancer's order.
// It is used by one request's goroutine only.
type Picker interface {
	// Next returns the next endpoint to try, one not tried yet in this
	// request, and counts one in-flight attempt on it. ok is false when no
	// candidate is left.
	Next() (t Target, ok bool)
	// Done ends the in-flight attempt on t that Next started. It must be
	// called exactly once per Next, when that attempt's response has ended.
	Done(t Target, out Outcome)
	// Remaining reports whether Next could still return a candidate.
	Remaining() bool
}

// A StreamWatcher is a Picker that is told, as they happen, how an
// attempt's body copy goes. Engines call it from the request's goroutine.
type StreamWatcher interface {
	// FirstByte is called once per attempt whose response body brought
	// bytes, as the first of them arrive: the backend runs the request.
	FirstByte(t Target)
	// ClientStall is called at most once per attempt, when a write to the
	// client held the copy back for a while (a client that reads slowly
	// or not at all): the backend's answer may be over while the copy
	// goes on.
	ClientStall(t Target)
}

// A Requeuer is a Picker that can put a request back in line after a busy
// answer from its last candidate (a queue that waits for that endpoint to
// have room again). Engines ask it only when Remaining is false.
type Requeuer interface {
	CanRequeue() bool
}

// MayRetry reports whether an answer that asks for another try (a
// retryable status, or busy) can get one: another candidate remains, or,
// for a busy answer, the picker can put the request back in line.
func MayRetry(p Picker, busy bool) bool {
	if p.Remaining() {
		return true
	}
	rq, ok := p.(Requeuer)
	return busy && ok && rq.CanRequeue()
}

// Outcome is what one attempt came to, for passive health and parking.
type Outcome struct {
	// Status is the backend's status code, or 0 when it gave no response.
	Status int
	// Err is why the attempt did not end cleanly, if it did not: a
	// transport or body read error from the backend (ErrStreamIdle
	// included), or an error wrapping ErrClientGone (the client's doing)
	// or ErrTransform (a response transform's doing).
	Err error
	// RetryAfter is how long the backend asked us to stay away (429/503).
	RetryAfter time.Duration
	// HeaderLatency is the time from sending the request to its headers.
	HeaderLatency time.Duration
	// Bytes is how many response body bytes were read from the backend.
	Bytes int64
	// Busy says the backend's answer was a busy answer (see PeekBusy): the
	// request moves on and the backend is not blamed.
	Busy bool
}

// ClientGone reports whether the attempt ended because the client went
// away: it hung up, a write to it failed, or its request context was
// cancelled. That is never the backend's failure.
func (o Outcome) ClientGone() bool { return o.Err != nil && errors.Is(o.Err, ErrClientGone) }

// TransformFailed reports whether the attempt ended because the Plan's
// response transform failed on a backend answer that read cleanly. The
// backend is not blamed for our own translation.
func (o Outcome) TransformFailed() bool { return o.Err != nil && errors.Is(o.Err, ErrTransform) }

// ErrClientGone is wrapped by every error that ends an attempt because
// the client went away (see ClientGone).
var ErrClientGone = errors.New("client went away")

// ErrTransform is wrapped by every error a response transform returned.
var ErrTransform = errors.New("response transform failed")

// ErrStreamIdle ends a response whose backend sent nothing for the
// Plan's StreamIdleTimeout. It counts against the backend.
var ErrStreamIdle = errors.New("backend sent nothing within stream_idle_timeout")

// ClientGoneError marks cause (a write error, context.Canceled...) as the
// client's doing. errors.Is finds both ErrClientGone and cause in it.
func ClientGoneError(cause error) error {
	if cause == nil {
		cause = context.Canceled
	}
	return clientGone{cause}
}

type clientGone struct{ cause error }

func (e clientGone) Error() string        { return "client went away: " + e.cause.Error() }
func (e clientGone) Unwrap() error        { return e.cause }
func (e clientGone) Is(target error) bool { return target == ErrClientGone }

// TransformError marks err as a response transform's failure.
func TransformError(err error) error {
	return transformFailed{err}
}

type transformFailed struct{ cause error }

func (e transformFailed) Error() string        { return "response transform: " + e.cause.Error() }
func (e transformFailed) Unwrap() error        { return e.cause }
func (e transformFailed) Is(target error) bool { return target == ErrTransform }

// FlushPolicy is the handler's `profile` setting.
type FlushPolicy uint8

// The `profile` values.
const (
	// FlushAuto streams SSE, NDJSON and unknown-length bodies and buffers
	// small JSON answers that carry a Content-Length.
	FlushAuto FlushPolicy = iota
	// FlushAlways flushes after every write.
	FlushAlways
	// FlushNever lets the server buffer the whole response.
	FlushNever
)

// Plan is everything an engine needs for one request. The handler builds it
// after routing; engines never look back into the handler.
type Plan struct {
	// Path is the upstream API path, the route prefix stripped (starts with "/").
	Path string
	// RawQuery is the client's query string, passed on unchanged.
	RawQuery string
	// Body is the buffered request body, replayed on every attempt; nil
	// when the request had none.
	Body []byte
	// Upstream, if set, gives the API path and body for one endpoint
	// instead of Path and Body: an alias rewritten to the model name that
	// endpoint knows, or a request translated to the API that endpoint
	// speaks. It is called once per attempt.
	Upstream func(t Target) (path string, body []byte)
	// Response, if set, is called once per attempt whose response will be
	// written to the client, after OnResponse and before the headers are
	// written. h is the response header and may be changed (Content-Type,
	// say). A non-nil transform rewrites the body on its way to the
	// client; the backend's Content-Length is then dropped. nil passes
	// the body through unchanged.
	Response func(t Target, status int, h http.Header) ResponseTransform
	// Picker yields candidates in order.
	Picker Picker
	// MaxAttempts bounds how many candidates one request may try (>= 1).
	MaxAttempts int
	// Start is when the handler began the request.
	Start time.Time
	// RequestID is sent upstream as X-Request-ID.
	RequestID string
	// Flush is the response flushing policy.
	Flush FlushPolicy
	// StreamIdleTimeout cuts a response whose body sends nothing for this
	// long (0 = no limit).
	StreamIdleTimeout time.Duration
	// HeaderTimeout bounds the wait for a backend's response headers; past
	// it the attempt fails over (0 = no limit: model loads take minutes).
	HeaderTimeout time.Duration
	// OnResponse, if set, is called once per attempt that produced headers,
	// before they are written, so the handler can add its own headers.
	OnResponse func(t Target, h http.Header)
	// OnStreamEnd, if set, is called when a response body finished
	// (completely or not), before Picker.Done, with what its copy came to
	// (see Stream; its Tail is only valid during the call).
	OnStreamEnd func(t Target, s Stream, err error)
}

// UpstreamFor returns the API path and request body to send to t.
func (p *Plan) UpstreamFor(t Target) (path string, body []byte) {
	if p.Upstream != nil {
		return p.Upstream(t)
	}
	return p.Path, p.Body
}

// ResponseTransform rewrites one response body on its way to the client
// (a translation between API formats). Both engines drive it the same way:
// Write for each read of the backend's body, then End exactly once. The
// bytes the transform writes to w reach the client, flushed per the Plan's
// policy. The Tail passed to OnStreamEnd holds the backend's bytes, not the
// transform's.
type ResponseTransform interface {
	// Write gets the next bytes of the backend's body (valid only during
	// the call) and writes their translation to w. An error ends the
	// response; unless it came from w it is the transform's failure.
	Write(w io.Writer, p []byte) error
	// End says how the backend's body ended: nil when it was complete,
	// else the backend's error (ErrStreamIdle, a reset). End may write
	// closing bytes, such as a final error event, to w. When err is not
	// nil and End returns nil, the client was told in-band and the
	// response ends normally; when End returns an error the engine aborts
	// the response, as it does for a broken stream without a transform.
	// Who is blamed does not change: a backend error still counts.
	End(w io.Writer, err error) error
}

// ErrHeaderTimeout is an attempt whose backend sent no headers in time.
var ErrHeaderTimeout = errors.New("no response headers within response_header_timeout")

// WithHeaderTimeout derives the context of one attempt: it is cancelled if
// headers do not arrive within d. Call stop as soon as headers arrived; it
// reports whether the timeout had already fired. cancel ends the attempt's
// context once its body is done.
func WithHeaderTimeout(parent context.Context, d time.Duration) (ctx context.Context, stop func() (fired bool), cancel context.CancelFunc) {
	if d <= 0 {
		return parent, noTimeout, noCancel
	}
	ctx, cancel = context.WithCancel(parent)
	timer := time.AfterFunc(d, cancel)
	return ctx, func() bool { return !timer.Stop() }, cancel
}

func noTimeout() bool { return false }
func noCancel()       {}
