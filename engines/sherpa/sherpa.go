// Package sherpa is the simple engine: Caddy's own reverse_proxy handler,
// embedded and driven through its public seams, so it inherits Caddy's
// hardened proxy core (header hygiene, 1xx, trailers, flushing, 499s).
//
// The seams, and the traps each one avoids (all checked against v2.11.9):
//   - upstreams: a dynamic source returns, per attempt, one fresh Upstream for
//     the candidate the Plan's Picker chose; reverse_proxy writes into the
//     Upstreams it is given, so they are never shared between requests.
//   - dial address: each endpoint gets a synthetic dial address; the
//     RoundTripper maps it back to the endpoint's real scheme, host, base path,
//     headers and auth, so two endpoints on one host stay apart.
//   - retries: failover-worthy failures (no response, or 429/502/503 while
//     another candidate is left) are returned as reverseproxy.DialError, which
//     reverse_proxy retries for any method; the body is replayed from the
//     Plan's buffer on every attempt, so request_buffers is not needed.
//   - in-flight counts are released per attempt, when that attempt's
//     response body is closed.
//   - Cleanup of the embedded handler is ours to call.
package sherpa

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-olla/olla/engines"
)

// Engine proxies through an embedded reverse_proxy handler.
type Engine struct {
	rp    *reverseproxy.Handler
	tails sync.Pool // *engines.Tail, one per response being read
	dials sync.Map  // engines.Target -> dial address (string)
	addrs sync.Map  // dial address -> engines.Target
	next  atomic.Int64
}

// New provisions the embedded reverse_proxy. maxAttempts bounds the tries per
// request (at least 1).
func New(ctx caddy.Context, maxAttempts int) (*Engine, error) {
	if maxAttempts < 1 {
		maxAttempts = 1
	}
	e := &Engine{}
	e.tails.New = func() any { return new(engines.Tail) }
	e.rp = &reverseproxy.Handler{
		DynamicUpstreams: upstreamSource{e},
		Transport:        roundTripper{e},
		LoadBalancing: &reverseproxy.LoadBalancing{
			SelectionPolicy: firstSelector{},
			Retries:         maxAttempts - 1,
		},
		// Flushing follows reverse_proxy's own rules (SSE and unknown
		// length flush at once); the profile is applied by flushWriter.
		FlushInterval: 0,
	}
	if err := e.rp.Provision(ctx); err != nil {
		return nil, fmt.Errorf("provisioning embedded reverse_proxy: %w", err)
	}
	return e, nil
}

// Cleanup releases the embedded handler's resources. Requests in flight keep
// working: it only closes upgraded connections, which we never make.
func (e *Engine) Cleanup() error {
	if e == nil || e.rp == nil {
		return nil
	}
	return e.rp.Cleanup()
}

type ctxKey struct{}

// request is one client request's state, shared by the seams through the
// request context. reverse_proxy runs attempts one after another, so only
// one attempt is open at a time.
type request struct {
	plan    *engines.Plan
	current engines.Target
	open    bool // an attempt was started and not yet Done
	wrote   bool // a response was handed to reverse_proxy for writing
	lastErr error

	clientCtx context.Context // the client's request context

	// the first failed write or flush to the client; reverse_proxy's
	// delayed flushes run on a timer goroutine, hence the lock
	mu       sync.Mutex
	writeErr error
}

// clientGone returns why the client is gone, or nil while it is there: a
// write to it failed, or its context ended.
func (q *request) clientGone() error {
	q.mu.Lock()
	err := q.writeErr
	q.mu.Unlock()
	if err != nil {
		return err
	}
	return q.clientCtx.Err()
}

func (q *request) writeFailed(err error) {
	q.mu.Lock()
	if q.writeErr == nil {
		q.writeErr = err
	}
	q.mu.Unlock()
}

func (q *request) done(t engines.Target, out engines.Outcome) {
	if !q.open {
		return
	}
	q.open = false
	q.plan.Picker.Done(t, out)
}

// Serve implements engines.Engine.
func (e *Engine) Serve(w http.ResponseWriter, r *http.Request, plan *engines.Plan) error {
	q := &request{plan: plan, clientCtx: r.Context()}
	defer func() {
		// an attempt the proxy loop never completed (it panicked, or a
		// dial-info step failed) still ends its in-flight count
		if q.open {
			err := errors.New("attempt abandoned")
			if gone := q.clientGone(); gone != nil {
				err = engines.ClientGoneError(gone) // it stopped because the client left
			}
			q.done(q.current, engines.Outcome{Err: err})
		}
	}()
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, q))
	inner := &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}
	fw := &flushWriter{ResponseWriterWrapper: inner, policy: plan.Flush, rc: http.NewResponseController(inner), q: q}
	err := e.rp.ServeHTTP(fw, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	if err == nil || fw.wroteHeader {
		return nil
	}
	if q.lastErr != nil {
		return q.lastErr
	}
	return err
}

func (e *Engine) dialFor(t engines.Target) string {
	if d, ok := e.dials.Load(t); ok {
		return d.(string)
	}
	// port 1, not 80: reverse_proxy drops a port that matches the scheme
	// from the request URL, and the RoundTripper looks the endpoint up by
	// exactly this string
	d := "olla-endpoint-" + strconv.FormatInt(e.next.Add(1), 10) + ".invalid:1"
	actual, loaded := e.dials.LoadOrStore(t, d)
	if !loaded {
		e.addrs.Store(d, t)
	}
	return actual.(string)
}

// upstreamSource asks the Picker for the next candidate on every attempt.
type upstreamSource struct{ e *Engine }

func (s upstreamSource) GetUpstreams(r *http.Request) ([]*reverseproxy.Upstream, error) {
	q, _ := r.Context().Value(ctxKey{}).(*request)
	if q == nil {
		return nil, nil
	}
	t, ok := q.plan.Picker.Next()
	if !ok {
		return nil, nil
	}
	q.current, q.open = t, true
	// a fresh Upstream per call: reverse_proxy writes into it
	return []*reverseproxy.Upstream{{Dial: s.e.dialFor(t)}}, nil
}

// firstSelector takes the one upstream the source offered.
type firstSelector struct{}

func (firstSelector) Select(pool reverseproxy.UpstreamPool, _ *http.Request, _ http.ResponseWriter) *reverseproxy.Upstream {
	if len(pool) == 0 {
		return nil
	}
	return pool[0]
}

// roundTripper resolves the synthetic dial address to the endpoint and sends
// the attempt over the endpoint's own transport.
type roundTripper struct{ e *Engine }

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	q, _ := req.Context().Value(ctxKey{}).(*request)
	if q == nil {
		return nil, errors.New("olla sherpa: request without a plan")
	}
	v, ok := rt.e.addrs.Load(req.URL.Host)
	if !ok {
		return nil, fmt.Errorf("olla sherpa: unknown upstream %q", req.URL.Host)
	}
	t := v.(engines.Target)
	plan := q.plan

	ctx, stop, cancel := engines.WithHeaderTimeout(req.Context(), plan.HeaderTimeout)
	out := req.Clone(ctx)
	apiPath, payload := plan.UpstreamFor(t)
	out.URL = engines.UpstreamURL(t.BaseURL(), apiPath, plan.RawQuery)
	out.Host = out.URL.Host
	engines.PrepareOutboundHeader(out.Header, t, plan.RequestID)
	if payload != nil {
		out.Body = io.NopCloser(bytes.NewReader(payload))
		out.ContentLength = int64(len(payload))
		// replays the body on a keep-alive connection the backend closed
		// just as we used it (the transport's retry, and conn.RoundTrip's)
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(payload)), nil }
		out.Header.Del("Transfer-Encoding")
	} else {
		out.Body, out.GetBody = nil, nil
		out.ContentLength = 0
	}

	engines.Replayable(out.Header)
	sent := time.Now()
	res, err := t.Transport().RoundTrip(out)
	if stop() {
		if err == nil {
			res.Body.Close()
		}
		err = engines.ErrHeaderTimeout
	}
	if err != nil {
		cancel()
		if q.clientCtx.Err() != nil {
			// the client left: no failover, no blame
			err = engines.ClientGoneError(err)
			q.done(t, engines.Outcome{Err: err})
			return nil, err
		}
		q.done(t, engines.Outcome{Err: err})
		q.lastErr = fmt.Errorf("endpoint %s: %w", t.Name(), err)
		return nil, reverseproxy.NewDialError(q.lastErr)
	}
	latency := time.Since(sent)
	busy := engines.PeekBusy(res)
	if (busy || engines.RetryableStatus(res.StatusCode)) && engines.MayRetry(q.plan.Picker, busy) {
		retryAfter := engines.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4<<10))
		res.Body.Close()
		cancel()
		q.done(t, engines.Outcome{Status: res.StatusCode, RetryAfter: retryAfter, HeaderLatency: latency, Busy: busy})
		q.lastErr = fmt.Errorf("endpoint %s answered %d", t.Name(), res.StatusCode)
		return nil, reverseproxy.NewDialError(q.lastErr)
	}

	engines.DecorateResponse(res.Header, t, plan.Start)
	if plan.OnResponse != nil {
		plan.OnResponse(t, res.Header)
	}
	// decided on the backend's answer: a transform keeps its nature
	stream := engines.IsStream(res.Header, res.ContentLength)
	if stream {
		if res.Trailer == nil {
			res.Trailer = make(http.Header, 1)
		}
		res.Trailer[engines.TotalTimeTrailer] = nil
	}
	tb := &trackedBody{
		ReadCloser: res.Body, q: q, t: t, res: res, stream: stream, cancel: cancel, e: rt.e,
		outcome: engines.Outcome{Status: res.StatusCode, HeaderLatency: latency, Busy: busy,
			RetryAfter: engines.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())},
	}
	if plan.Response != nil {
		if tb.tr = plan.Response(t, res.StatusCode, res.Header); tb.tr != nil {
			res.Header.Del("Content-Length")
		}
	}
	// the idle timer starts with the first read (see readBackend): writing
	// the headers to a slow client must not run it
	tb.idle = plan.StreamIdleTimeout
	tb.meter.Start(res.Header, nil) // the tail comes with the first bytes
	tb.watcher, _ = plan.Picker.(engines.StreamWatcher)
	res.Body = tb
	q.wrote = true
	return res, nil
}

// trackedBody ends the attempt when reverse_proxy closes the body (it always
// does, also before it aborts a broken stream), fills the total-time
// trailer, and runs the Plan's response transform, if any.
type trackedBody struct {
	io.ReadCloser
	q       *request
	t       engines.Target
	res     *http.Response
	stream  bool
	outcome engines.Outcome
	e       *Engine
	// meter times the reads from the backend: the time between two is
	// reverse_proxy writing to the client (engines.Stream)
	meter   engines.Meter
	watcher engines.StreamWatcher // the Picker, if it watches
	tail    *engines.Tail         // from the engine's pool, only when someone reads it
	readErr error                 // the backend's read error; nil at a clean end
	closed  bool
	cancel  context.CancelFunc

	// idle timeout: the timer closes the backend body when it goes quiet,
	// which ends the blocked read. It runs only during reads from the
	// backend, never while reverse_proxy writes to a slow client.
	idle  time.Duration
	timer *time.Timer
	idled atomic.Bool

	// the response transform and its output not yet handed to reverse_proxy
	tr      engines.ResponseTransform
	pending bytes.Buffer
	final   error // returned once pending is drained
	trErr   error // the transform's own failure
}

func (b *trackedBody) Read(p []byte) (int, error) {
	if b.tr == nil {
		return b.readBackend(p)
	}
	for {
		if b.pending.Len() > 0 {
			return b.pending.Read(p)
		}
		if b.final != nil {
			return 0, b.final
		}
		// p is reverse_proxy's buffer: borrow it to read the backend,
		// the transform's output goes to pending
		n, err := b.readBackend(p)
		if n > 0 {
			if terr := b.tr.Write(&b.pending, p[:n]); terr != nil {
				b.trErr = engines.TransformError(terr)
				b.final = b.trErr
				continue
			}
		}
		if err != nil {
			b.final = b.endTransform(err)
		}
	}
}

// endTransform tells the transform how the backend's body ended and
// returns what reverse_proxy reads last: io.EOF to end the response
// normally (complete, or the failure told in-band), else an error that
// makes it abort the response.
func (b *trackedBody) endTransform(err error) error {
	backendErr := err
	if err == io.EOF {
		backendErr = nil
	}
	terr := b.tr.End(&b.pending, backendErr)
	switch {
	case backendErr != nil && terr == nil:
		return io.EOF // told in-band; readErr still blames the backend
	case backendErr != nil:
		return err
	case terr != nil:
		b.trErr = engines.TransformError(terr)
		return b.trErr
	}
	return io.EOF
}

func (b *trackedBody) readBackend(p []byte) (int, error) {
	switch {
	case b.timer != nil:
		b.timer.Reset(b.idle)
	case b.idle > 0:
		b.timer = time.AfterFunc(b.idle, func() {
			b.idled.Store(true)
			b.ReadCloser.Close()
		})
	}
	if b.meter.BeforeRead() && b.watcher != nil {
		b.watcher.ClientStall(b.t)
	}
	n, err := b.ReadCloser.Read(p)
	if b.timer != nil {
		b.timer.Stop()
		if err != nil && b.idled.Load() {
			err = engines.ErrStreamIdle
		}
	}
	if n > 0 {
		b.outcome.Bytes += int64(n)
		if b.q.plan.OnStreamEnd != nil && b.tail == nil {
			b.tail = b.e.tails.Get().(*engines.Tail)
			b.tail.Reset()
			b.meter.KeepTail(b.tail)
		}
	}
	if b.meter.Read(p[:n]) && b.watcher != nil {
		b.watcher.FirstByte(b.t)
	}
	if err != nil && err != io.EOF {
		b.readErr = err
	}
	return n, err
}

func (b *trackedBody) Close() error {
	err := b.ReadCloser.Close()
	if b.closed {
		return err
	}
	b.closed = true
	if b.timer != nil {
		b.timer.Stop()
	}
	b.cancel()
	plan := b.q.plan
	if b.stream {
		b.res.Trailer.Set(engines.TotalTimeTrailer, strconv.FormatInt(time.Since(plan.Start).Milliseconds(), 10)+"ms")
	}
	// the client's doing first: a read that failed because the client's
	// context ended, or a write to it that failed, is not the backend's
	switch gone := b.q.clientGone(); {
	case gone != nil:
		b.outcome.Err = engines.ClientGoneError(gone)
	case b.readErr != nil:
		b.outcome.Err = b.readErr
	case b.trErr != nil:
		b.outcome.Err = b.trErr
	}
	if plan.OnStreamEnd != nil {
		plan.OnStreamEnd(b.t, b.meter.Stream(), b.outcome.Err) // nil tail: no bytes
	}
	if b.tail != nil {
		b.e.tails.Put(b.tail)
		b.tail = nil
	}
	b.q.done(b.t, b.outcome)
	return err
}

// flushWriter records whether a response was started and applies the
// `profile` to reverse_proxy's flushes: http.ResponseController calls
// FlushError before it unwraps, so `standard` can swallow them.
type flushWriter struct {
	*caddyhttp.ResponseWriterWrapper
	policy      engines.FlushPolicy
	wroteHeader bool
	rc          *http.ResponseController // made once, not per flush
	q           *request                 // records a failed write: the client is gone
}

func (w *flushWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.wroteHeader = true
	}
	w.ResponseWriterWrapper.WriteHeader(code)
}

func (w *flushWriter) Write(p []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriterWrapper.Write(p)
	if err == nil && w.policy == engines.FlushAlways {
		err = w.rc.Flush()
	}
	w.failed(err)
	return n, err
}

func (w *flushWriter) FlushError() error {
	if w.policy == engines.FlushNever {
		return nil
	}
	err := w.rc.Flush()
	w.failed(err)
	return err
}

func (w *flushWriter) failed(err error) {
	if err != nil {
		w.q.writeFailed(err)
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *flushWriter) Unwrap() http.ResponseWriter { return w.ResponseWriterWrapper }

var (
	_ engines.Engine              = (*Engine)(nil)
	_ reverseproxy.UpstreamSource = upstreamSource{}
	_ reverseproxy.Selector       = firstSelector{}
	_ http.RoundTripper           = roundTripper{}
)
