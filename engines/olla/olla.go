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
	"net"
	"net/http"
	"strconv"
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
			plan.Picker.Done(t, engines.Outcome{Err: err})
			if r.Context().Err() != nil {
				return nil // the client left; nothing to answer
			}
			lastErr = fmt.Errorf("endpoint %s: %w", t.Name(), err)
			continue
		}
		if engines.RetryableStatus(res.StatusCode) && attempt+1 < plan.MaxAttempts && plan.Picker.Remaining() {
			retryAfter := engines.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())
			drainAndClose(res.Body)
			cancel()
			plan.Picker.Done(t, engines.Outcome{Status: res.StatusCode, RetryAfter: retryAfter, HeaderLatency: latency})
			lastErr = fmt.Errorf("endpoint %s answered %d", t.Name(), res.StatusCode)
			continue
		}
		defer cancel()
		e.respond(w, r, plan, t, res, latency)
		return nil
	}
	return lastErr
}

// roundTrip sends one attempt to t. cancel ends the attempt's context; call
// it once the response body is done.
func (e *Engine) roundTrip(r *http.Request, plan *engines.Plan, t engines.Target) (res *http.Response, latency time.Duration, cancel context.CancelFunc, err error) {
	ctx, stop, cancel := engines.WithHeaderTimeout(r.Context(), plan.HeaderTimeout)
	u := engines.UpstreamURL(t.BaseURL(), plan.Path, plan.RawQuery)
	payload := plan.BodyOf(t)
	// built by hand: NewRequest would print the URL only to parse it again
	out := (&http.Request{Method: r.Method, URL: u, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: r.Header.Clone(), Host: u.Host}).WithContext(ctx)
	if payload != nil {
		out.Body = newBody(payload)
		out.ContentLength = int64(len(payload))
		// lets the transport resend on a keep-alive connection the backend
		// closed just as we used it
		out.GetBody = func() (io.ReadCloser, error) { return newBody(payload), nil }
	}
	engines.PrepareOutboundHeader(out.Header, t, plan.RequestID)
	setForwarded(out.Header, r)
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

// Constant header values, shared: net/http never writes into a value
// slice, and Header.Add on a full slice copies it.
var (
	protoHTTP      = []string{"http"}
	protoHTTPS     = []string{"https"}
	totalTimeValue = []string{engines.TotalTimeTrailer}
)

// setForwarded adds the X-Forwarded-* headers a backend may log.
func setForwarded(h http.Header, r *http.Request) {
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h.Get("X-Forwarded-For"); prior != "" {
			ip = prior + ", " + ip
		}
		h.Set("X-Forwarded-For", ip)
	}
	if r.TLS != nil {
		h["X-Forwarded-Proto"] = protoHTTPS
	} else {
		h["X-Forwarded-Proto"] = protoHTTP
	}
	h.Set("X-Forwarded-Host", r.Host)
}

// respond writes the backend's answer to the client. Past this point a
// failure can only end the response, never replay it.
func (e *Engine) respond(w http.ResponseWriter, r *http.Request, plan *engines.Plan, t engines.Target, res *http.Response, latency time.Duration) {
	out := engines.Outcome{Status: res.StatusCode, HeaderLatency: latency,
		RetryAfter: engines.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now())}
	engines.StripHopByHop(res.Header)
	engines.DecorateResponse(res.Header, t, plan.Start)
	if plan.OnResponse != nil {
		plan.OnResponse(t, res.Header)
	}
	stream := engines.IsStream(res.Header, res.ContentLength)
	flush := engines.ShouldFlush(plan.Flush, res.Header, res.ContentLength)

	hdr := w.Header()
	for k, vv := range res.Header {
		if prev, ok := hdr[k]; ok {
			hdr[k] = append(prev, vv...)
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
	if flush {
		_ = rc.Flush() // headers now: clients see the stream open at once
	}

	var tail *engines.Tail
	if plan.OnStreamEnd != nil {
		tail = e.tails.Get().(*engines.Tail)
		defer e.tails.Put(tail)
		tail.Reset()
	}
	firstByte, n, err := e.copyBody(w, rc, res.Body, flush, plan.StreamIdleTimeout, tail)
	res.Body.Close()
	out.Bytes, out.Err = n, err
	if plan.OnStreamEnd != nil {
		plan.OnStreamEnd(t, firstByte, n, tail, err)
	}
	plan.Picker.Done(t, out)

	if err != nil {
		if errors.Is(err, errClientWrite) || r.Context().Err() != nil {
			return // the client went away; nothing more to say
		}
		// The backend broke mid-stream. Ending the handler normally would
		// write a clean terminating chunk and make a truncated stream look
		// complete, so abort the connection, as net/http's proxy does.
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
		hdr.Set(engines.TotalTimeTrailer, strconv.FormatInt(time.Since(plan.Start).Milliseconds(), 10)+"ms")
	}
}

var (
	errClientWrite = errors.New("writing to client failed")
	errStreamIdle  = errors.New("backend sent nothing within stream_idle_timeout")
)

// copyBody moves the body through a pooled buffer, flushing each read when
// asked. An idle timer closes the body if the backend goes quiet, which ends
// the blocked read.
func (e *Engine) copyBody(w io.Writer, rc *http.ResponseController, body io.ReadCloser, flush bool, idle time.Duration, tail *engines.Tail) (time.Time, int64, error) {
	bp := e.buffers.Get().(*[]byte)
	defer e.buffers.Put(bp)
	buf := *bp

	var timer *time.Timer
	var idled bool
	var mu sync.Mutex
	if idle > 0 {
		timer = time.AfterFunc(idle, func() {
			mu.Lock()
			idled = true
			mu.Unlock()
			body.Close()
		})
		defer timer.Stop()
	}

	var first time.Time
	var total int64
	for {
		n, rerr := body.Read(buf)
		if timer != nil {
			timer.Reset(idle)
		}
		if n > 0 {
			if total == 0 {
				first = time.Now()
			}
			if tail != nil {
				tail.Write(buf[:n])
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return first, total, errClientWrite
			}
			total += int64(n)
			if flush {
				if ferr := rc.Flush(); ferr != nil {
					return first, total, errClientWrite
				}
			}
		}
		if rerr == io.EOF {
			return first, total, nil
		}
		if rerr != nil {
			mu.Lock()
			wasIdle := idled
			mu.Unlock()
			if wasIdle {
				return first, total, errStreamIdle
			}
			return first, total, rerr
		}
	}
}

func drainAndClose(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 4<<10))
	body.Close()
}

var _ engines.Engine = (*Engine)(nil)
