// Package engines holds what both proxy engines share: the Engine interface,
// the per-request Plan the handler hands them, and the rules every attempt
// follows (upstream URL, header hygiene, failover classification, flushing).
// The engines themselves live in sherpa/ and olla/.
package engines

import (
	"context"
	"errors"
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
	// ForwardsClientCredentials reports whether the client's Authorization,
	// Cookie and X-Api-Key headers may reach this endpoint.
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

// Outcome is what one attempt came to, for passive health and parking.
type Outcome struct {
	// Status is the backend's status code, or 0 when it gave no response.
	Status int
	// Err is the transport error, if any (including mid-stream failures).
	Err error
	// RetryAfter is how long the backend asked us to stay away (429/503).
	RetryAfter time.Duration
	// HeaderLatency is the time from sending the request to its headers.
	HeaderLatency time.Duration
	// Bytes is how many response body bytes reached the client.
	Bytes int64
}

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
	// BodyFor, if set, gives the body for one endpoint instead of Body (an
	// alias rewritten to the model name that endpoint knows).
	BodyFor func(t Target) []byte
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
	// (completely or not) with the bytes passed, the time of the first one,
	// and the body's last bytes (for token counts; nil when there were
	// none). tail is only valid during the call.
	OnStreamEnd func(t Target, firstByte time.Time, bytes int64, tail *Tail, err error)
}

// BodyOf returns the request body to send to t.
func (p *Plan) BodyOf(t Target) []byte {
	if p.BodyFor != nil {
		return p.BodyFor(t)
	}
	return p.Body
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
