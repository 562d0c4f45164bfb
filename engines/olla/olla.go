// Package olla is the fast engine: a proxy loop of our own on net/http, with
// each endpoint's pooled transport, pooled read buffers, a flush per read for
// token streams, failover before the first byte, and a per-read idle timeout.
package olla

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/caddy-olla/olla/engines"
)

// DefaultBufferSize is the read buffer per response in flight. Token
// streams arrive in reads of a few hundred bytes and net/http's server
// writes through a 4 KiB buffer anyway, so a larger one only pins memory:
// the load harness's 1,000 streams peaked at 206 MiB with 16 KiB buffers
// and 199 MiB with 4 KiB, at the same CPU per request.
const DefaultBufferSize = 4 << 10

// ErrNoCandidate is returned when the Plan offered no endpoint at all.
var ErrNoCandidate = errors.New("no endpoint to try")

// Engine is the Olla engine. It holds no per-endpoint state: transports live
// in the endpoints' pooled state, so they survive config reloads.
type Engine struct {
	buffers sync.Pool
	tails   sync.Pool
	watches sync.Pool // *watch, with their timers
}

// New returns an engine whose read buffers are bufferSize bytes (0 = default).
func New(bufferSize int) *Engine {
	if bufferSize <= 0 {
		bufferSize = DefaultBufferSize
	}
	e := &Engine{}
	e.buffers.New = func() any {
		b := make([]byte, bufferSize)
		return &b
	}
	e.tails.New = func() any { return new(engines.Tail) }
	return e
}

// Serve implements engines.Engine.
func (e *Engine) Serve(w http.ResponseWriter, r *http.Request, plan *engines.Plan) error {
	var lastErr error = ErrNoCandidate
	for attempt := 0; attempt < plan.MaxAttempts; attempt++ {
		t, ok := plan.Picker.Next()
		if !ok {
			break
		}
		res, latency, cancel, err := e.roundTrip(r, plan, t)
		if err != nil {
			cancel()
			if r.Context().Err() != nil {
				// the client left while we waited: nothing to answer,
				// and nothing the backend is to blame for
				plan.Picker.Done(t, engines.Outcome{Err: engines.ClientGoneError(err)})
				return nil
			}
			plan.Picker.Done(t, engines.Outcome{Err: err})
			lastErr = fmt.Errorf("endpoint %s: %w", t.Name(), err)
			continue
		}
		busy := engines.PeekBusy(res)
		if (busy || engines.RetryableStatus(res.StatusCode)) && attempt+1 < plan.MaxAttempts && engines.MayRetry(plan.Picker, busy) {
			retryAfter := retryAfter(res.Header)
			drainAndClose(res.Body)
			cancel()
			plan.Picker.Done(t, engines.Outcome{Status: res.StatusCode, RetryAfter: retryAfter, HeaderLatency: latency, Busy: busy})
			lastErr = fmt.Errorf("endpoint %s answered %d", t.Name(), res.StatusCode)
			continue
		}
		defer cancel()
		e.respond(w, r, plan, t, res, latency, busy)
		return nil
	}
	return lastErr
}

// roundTrip sends one attempt to t. cancel ends the attempt's context; call
// it once the response body is done.
func (e *Engine) roundTrip(r *http.Request, plan *engines.Plan, t engines.Target) (res *http.Response, latency time.Duration, cancel context.CancelFunc, err error) {
	ctx, stop, cancel := engines.WithHeaderTimeout(r.Context(), plan.HeaderTimeout)
	apiPath, payload := plan.UpstreamFor(t)
	u := engines.UpstreamURL(t.BaseURL(), apiPath, plan.RawQuery)
	// built by hand: NewRequest would print the URL only to parse it again
	out := (&http.Request{Method: r.Method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: engines.OutboundHeader(r.Header, t, plan.RequestID), Host: u.Host}).WithContext(ctx)
	if payload != nil {
		out.Body = newBody(payload)
		out.ContentLength = int64(len(payload))
		// replays the body on a keep-alive connection the backend closed
		// just as we used it (the transport's retry, and conn.RoundTrip's)
		out.GetBody = func() (io.ReadCloser, error) { return newBody(payload), nil }
	}
	engines.SetForwarded(out.Header, r)
	engines.Replayable(out.Header)
	engines.AddVia(out.Header, r.Proto, r.ProtoMajor, r.ProtoMinor)
	sent := time.Now()
	res, err = t.Transport().RoundTrip(out)
	if stop() {
		if err == nil {
			res.Body.Close()
		}
		return nil, 0, cancel, engines.ErrHeaderTimeout
	}
	return res, time.Since(sent), cancel, err
}

// body is a request body over a buffer: a reader and closer in one
// allocation.
type body struct{ bytes.Reader }

func newBody(p []byte) *body {
	b := new(body)
	b.Reset(p)
	return b
}

func (*body) Close() error { return nil }

// totalTimeValue is shared: net/http never writes into a value slice,
// and Header.Add on a full slice copies it.
var totalTimeValue = []string{engines.TotalTimeTrailer}

// respond writes the backend's answer to the client. Past this point a
// failure can only end the response, never replay it.
func (e *Engine) respond(w http.ResponseWriter, r *http.Request, plan *engines.Plan, t engines.Target, res *http.Response, latency time.Duration, busy bool) {
	out := engines.Outcome{Status: res.StatusCode, HeaderLatency: latency, Busy: busy, RetryAfter: retryAfter(res.Header)}
	engines.StripHopByHop(res.Header)
	engines.DecorateResponse(res.Header, t, plan.Start)
	if plan.OnResponse != nil {
		plan.OnResponse(t, res.Header)
	}
	// decided on the backend's answer: a transform keeps its nature
	stream := engines.IsStream(res.Header, res.ContentLength)
	flush := plan.Flush == engines.FlushAlways || plan.Flush == engines.FlushAuto && stream // engines.ShouldFlush
	var tr engines.ResponseTransform
	if plan.Response != nil {
		if tr = plan.Response(t, res.StatusCode, res.Header); tr != nil {
			res.Header.Del("Content-Length")
		}
	}

	hdr := w.Header()
	// as reverse_proxy: the backend's Server, if any, replaces ours, and
	// Via names this hop
	engines.ReplaceServerHeader(hdr)
	engines.AddVia(hdr, res.Proto, res.ProtoMajor, res.ProtoMinor)
	for k, vv := range res.Header {
		if prev, ok := hdr[k]; ok {
			hdr[k] = append(prev[:len(prev):len(prev)], vv...)
		} else {
			hdr[k] = vv // the response is ours alone: no copy needed
		}
	}
	backendTrailers := len(res.Trailer)
	if stream || backendTrailers > 0 {
		for k := range res.Trailer {
			hdr.Add("Trailer", k)
		}
		if stream {
			if _, ok := hdr["Trailer"]; ok {
				hdr.Add("Trailer", engines.TotalTimeTrailer)
			} else {
				hdr["Trailer"] = totalTimeValue
			}
		}
	}
	w.WriteHeader(res.StatusCode)
	rc := http.NewResponseController(w)
	// with flush, the headers go out with the first bytes, or on their own
	// once those are slow to come (copyBody's watch): clients see the
	// stream open at once either way, and an answer that is ready costs
	// no write of its own

	var tail *engines.Tail
	if plan.OnStreamEnd != nil {
		tail = e.tails.Get().(*engines.Tail)
		defer e.tails.Put(tail)
		tail.Reset()
	}
	c := copier{w: w, rc: rc, flush: flush, idle: plan.StreamIdleTimeout, t: t}
	c.watcher, _ = plan.Picker.(engines.StreamWatcher)
	c.meter.Start(res.Header, tail)
	if tr != nil {
		c.tw = &clientWriter{w: w}
	}
	err := e.copyBody(&c, res.Body, tr, r.Context())
	res.Body.Close()
	s := c.meter.Stream()
	out.Bytes, out.Err = s.Bytes, err
	if plan.OnStreamEnd != nil {
		plan.OnStreamEnd(t, s, err)
	}
	plan.Picker.Done(t, out)

	if err != nil && !c.toldInBand {
		if out.ClientGone() {
			return // the client went away; nothing more to say
		}
		// The backend (or the transform) broke mid-stream. Ending the
		// handler normally would write a clean terminating chunk and make
		// a truncated stream look complete, so abort the connection, as
		// net/http's and Caddy's proxies do.
		_ = rc.Flush()
		panic(http.ErrAbortHandler)
	}
	for k, vv := range res.Trailer {
		if _, announced := hdr["Trailer"]; announced {
			hdr[k] = vv
		} else {
			hdr[http.TrailerPrefix+k] = vv
		}
	}
	if stream {
		hdr[engines.TotalTimeTrailer] = []string{engines.Millis(time.Since(plan.Start))}
	}
}

// copier is one response body's copy state.
type copier struct {
	w     io.Writer
	rc    *http.ResponseController
	flush bool
	idle  time.Duration
	// meter times the copy and keeps the body's tail (engines.Stream)
	meter   engines.Meter
	t       engines.Target
	watcher engines.StreamWatcher // the Picker, if it watches
	// tw is the client writer handed to a response transform; nil without one
	tw *clientWriter
	// toldInBand: the transform reported the backend's failure to the
	// client inside the body, so the response may end normally
	toldInBand bool
}

// clientWriter remembers a failed write to the client, so a transform's
// error can be told apart from the client's.
type clientWriter struct {
	w   io.Writer
	err error
}

func (c *clientWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// copyBody moves the body through a pooled buffer (and the transform, if
// any), flushing each read when asked. It returns the error that ended the
// copy, classified: a read error is the backend's (ErrStreamIdle when the
// backend went quiet), a failed write or a cancelled client context is
// ErrClientGone, a transform's own error is ErrTransform.
//
// The idle timer runs only while a read waits on the backend, never while
// a write waits on the client: a slow reader is not a stalled backend.
// When it fires it closes the body, which ends the blocked read.
func (e *Engine) copyBody(c *copier, body io.ReadCloser, tr engines.ResponseTransform, clientCtx context.Context) error {
	bp := e.buffers.Get().(*[]byte)
	defer e.buffers.Put(bp)
	buf := *bp

	var pending *http.ResponseController // headers not flushed yet
	if c.flush {
		pending = c.rc
	}
	wt := e.watch(c.idle, body, pending)
	if wt != nil {
		defer e.release(wt)
	}

	for {
		if c.meter.BeforeRead() && c.watcher != nil {
			c.watcher.ClientStall(c.t)
		}
		n, rerr := body.Read(buf)
		if wt != nil && wt.stop() {
			rerr = engines.ErrStreamIdle // the timer closed the body under the read
		}
		if c.meter.Read(buf[:n]) && c.watcher != nil {
			c.watcher.FirstByte(c.t)
		}
		if n > 0 {
			if err := c.write(buf[:n], tr, clientCtx); err != nil {
				return err
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				rerr = nil
			} else if clientCtx.Err() != nil {
				// the read failed because the client's context ended
				rerr = engines.ClientGoneError(rerr)
			}
			if tr != nil && !errors.Is(rerr, engines.ErrClientGone) {
				rerr = c.end(tr, rerr, clientCtx)
			}
			return rerr
		}
		if n == 0 && c.meter.Stream().Bytes == 0 && c.flush {
			_ = c.rc.Flush() // a read of nothing: the headers wait no longer
		}
		if wt != nil && c.idle > 0 {
			wt.arm(c.idle)
		}
	}
}

// headerFlushDelay is how long a flushed response's headers wait for the
// backend's first bytes before they are flushed on their own.
const headerFlushDelay = 5 * time.Millisecond

// watch is the one timer of a response body's copy. While the first read
// waits on the backend, it flushes the headers once headerFlushDelay has
// passed (a backend that sends its headers first: the client sees the
// stream open); while any read waits on the backend for the idle timeout,
// it closes the body, which ends the read. It never runs while a write
// waits on the client: a slow reader is not a stalled backend. Watches are
// pooled with their timer, and one whose timer ever fired is not reused.
type watch struct {
	mu    sync.Mutex
	timer *time.Timer
	live  bool // armed for the read in progress; a firing that finds it unset is stale
	// due is when the timer as last set fires: a firing before it is a
	// stale one that lost the lock to the arming of the next read (a
	// stopped timer's callback may already be waiting on mu)
	due   time.Time
	rc    *http.ResponseController // headers to flush; nil when none are pending
	body  io.Closer
	idle  time.Duration
	idled bool
	fired bool

	// the copy's goroutine only
	armed bool // the timer may be running
	clean bool // every stop caught the timer before it fired
}

// watch starts the watch of one body (nil when there is nothing to watch):
// its first read is timed.
func (e *Engine) watch(idle time.Duration, body io.Closer, headers *http.ResponseController) *watch {
	if headers != nil && idle > 0 && idle <= headerFlushDelay {
		_ = headers.Flush() // an idle timeout this short leaves the headers no time to wait
		headers = nil
	}
	if idle <= 0 && headers == nil {
		return nil
	}
	d := idle
	if headers != nil {
		d = headerFlushDelay
	}
	w, _ := e.watches.Get().(*watch)
	if w == nil {
		w = new(watch)
	}
	w.mu.Lock()
	w.live, w.rc, w.body, w.idle, w.idled, w.fired = true, headers, body, idle, false, false
	w.due = time.Now().Add(d)
	if w.timer == nil {
		w.timer = time.AfterFunc(d, w.fire)
	} else {
		w.timer.Reset(d)
	}
	w.mu.Unlock()
	w.armed, w.clean = true, true
	return w
}

// fire runs on the timer's goroutine.
func (w *watch) fire() {
	w.mu.Lock()
	w.fired = true
	now := time.Now()
	if !w.live || now.Before(w.due) {
		w.mu.Unlock()
		return
	}
	if w.rc != nil {
		_ = w.rc.Flush() // the first bytes are slow to come: the headers go alone
		w.rc = nil
		if w.idle > 0 {
			w.due = now.Add(w.idle - headerFlushDelay)
			w.timer.Reset(w.idle - headerFlushDelay)
		} else {
			w.live = false
		}
		w.mu.Unlock()
		return
	}
	w.idled, w.live = true, false
	body := w.body
	w.mu.Unlock()
	body.Close()
}

// stop ends the timing of a read that returned, and reports whether the
// watch closed the body under it. Pending headers are left to the first
// write, which flushes them with the first bytes.
func (w *watch) stop() (idled bool) {
	w.mu.Lock()
	w.live, w.rc = false, nil
	idled, fired := w.idled, w.fired
	w.mu.Unlock()
	if !w.timer.Stop() || fired {
		w.clean = false
	}
	w.armed = false
	return idled
}

// arm times the next read.
func (w *watch) arm(d time.Duration) {
	w.mu.Lock()
	w.live = true
	w.due = time.Now().Add(d)
	w.timer.Reset(d)
	w.mu.Unlock()
	w.armed = true
}

// release ends the watch and pools it if no firing can still be running.
func (e *Engine) release(w *watch) {
	if w.armed {
		w.stop()
	}
	if !w.clean {
		return // a firing may still run: the watch is left to the collector
	}
	w.body, w.rc = nil, nil
	e.watches.Put(w)
}

// write passes one read to the client, through the transform if any.
func (c *copier) write(p []byte, tr engines.ResponseTransform, clientCtx context.Context) error {
	if tr == nil {
		if _, err := c.w.Write(p); err != nil {
			return engines.ClientGoneError(err)
		}
	} else if err := tr.Write(c.tw, p); err != nil {
		if c.tw.err != nil || clientCtx.Err() != nil {
			return engines.ClientGoneError(err)
		}
		return engines.TransformError(err)
	}
	if c.flush {
		if err := c.rc.Flush(); err != nil {
			return engines.ClientGoneError(err)
		}
	}
	return nil
}

// end tells the transform how the backend's body ended and returns the
// attempt's error: the backend's, if any (a transform that told the
// client in-band lets the response end normally), else the transform's.
func (c *copier) end(tr engines.ResponseTransform, backendErr error, clientCtx context.Context) error {
	terr := tr.End(c.tw, backendErr)
	if c.tw.err != nil || clientCtx.Err() != nil {
		return engines.ClientGoneError(c.tw.err)
	}
	if c.flush {
		if err := c.rc.Flush(); err != nil {
			return engines.ClientGoneError(err)
		}
	}
	switch {
	case backendErr != nil:
		c.toldInBand = terr == nil
		return backendErr
	case terr != nil:
		return engines.TransformError(terr)
	}
	return nil
}

// retryAfter is the response's Retry-After, capped; the clock is read only
// when there is one.
func retryAfter(h http.Header) time.Duration {
	if v := h.Get("Retry-After"); v != "" {
		return engines.ParseRetryAfter(v, time.Now())
	}
	return 0
}

func drainAndClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10))
	body.Close()
}

var _ engines.Engine = (*Engine)(nil)
