package olla

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// defaultMaxBufferedBytes is the default process-wide budget for buffered
// request bodies.
const defaultMaxBufferedBytes = 256 << 20

// busyRetryAfter is what a request refused for want of buffer space is told
// to wait: bodies are buffered for one request's life, so space comes back
// soon.
const busyRetryAfter = 2 * time.Second

// bodyBudget counts the request body bytes every olla handler in the
// process holds buffered right now (App.bodies), across sites and across the
// old and new config of a reload, so the memory a crowd of large bodies can
// pin is one bounded number, not max_body_size times the number of clients.
// Each handler refuses a body once the total would pass its own
// request_limits max_buffered_bytes.
type bodyBudget struct{ used atomic.Int64 }

// reserve takes n bytes if the total stays within limit.
func (b *bodyBudget) reserve(n, limit int64) bool {
	for {
		used := b.used.Load()
		if used+n > limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *bodyBudget) release(n int64) { b.used.Add(-n) }

// reserve takes n bytes of the budget for this request.
func (rq *request) reserve(n int64) bool {
	if !rq.h.app.bodies.reserve(n, rq.h.maxBuffered) {
		return false
	}
	rq.reserved += n
	return true
}

// holdBuffered counts n more bytes against the budget whatever its state:
// a copy already made (an alias rewritten into the body) is memory held
// all the same, and others must see it.
func (rq *request) holdBuffered(n int64) {
	rq.h.app.bodies.used.Add(n)
	rq.reserved += n
}

// releaseBody gives the request's share of the budget back, once the body
// is no longer needed (the response has ended).
func (rq *request) releaseBody() {
	rq.h.app.bodies.release(rq.reserved)
	rq.reserved = 0
}

// busy is the answer to a request the body budget cannot hold now.
func (rq *request) busy() *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: "proxy_busy", retryAfter: busyRetryAfter,
		message: fmt.Sprintf("the proxy is busy: the request bodies it holds have reached the %d-byte budget shared by all requests (request_limits max_buffered_bytes); retry shortly", rq.h.maxBuffered)}
}

// bodyStart is the first buffer for a body; it doubles as bytes arrive,
// so a body holds about what has arrived, whatever length it declares.
const bodyStart = 4 << 10

// Body read timing defaults: a body must keep arriving. It gets
// body_read_timeout, plus one second per min_body_rate bytes that arrived,
// from the moment its headers were read.
const (
	defaultBodyReadTimeout = 10 * time.Second
	defaultMinBodyRate     = 64 << 10
)

// readBody reads the whole request body so it can be inspected and replayed
// on failover. It returns nil for no body. A declared length over the limit
// is refused before a byte is read, and so is one that cannot fit in the
// process-wide budget now; otherwise the body reserves from the budget only
// as its bytes arrive (the buffer doubles from bodyStart, never past the
// declared length or the limit), so a client that declares 100 MiB and
// sends nine bytes holds 4 KiB. A body that stops arriving (less than
// body_read_timeout plus a second per min_body_rate bytes received) ends
// with 408 in the client's format.
func (rq *request) readBody() ([]byte, *apiError) {
	r, h := rq.r, rq.h
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	// a body larger than the whole budget could never be buffered
	limit, limitName := h.maxBody, "max_body_size"
	if r.ContentLength <= limit && h.maxBuffered < limit {
		limit, limitName = h.maxBuffered, "max_buffered_bytes"
	}
	// the refusals are built only when given: most requests get none
	tooLarge := func() *apiError {
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "request_too_large",
			message: fmt.Sprintf("request body is larger than the %d-byte limit (request_limits %s)", limit, limitName)}
	}
	// refused with the body (or its rest) unread: the connection cannot
	// carry another request, and closing it spares net/http reading up to
	// 256 KiB of a body nobody wants (and sending 100 Continue for it)
	unread := func(e *apiError) *apiError {
		if r.ProtoMajor == 1 {
			rq.w.Header().Set("Connection", "close")
		}
		return e
	}
	declared := r.ContentLength
	switch {
	case declared > limit:
		return nil, unread(tooLarge())
	case declared == 0:
		return nil, nil
	case declared > 0 && rq.h.app.bodies.used.Load()+declared > h.maxBuffered:
		// it could not be held whole now: refused before a byte is read
		return nil, unread(rq.busy())
	}
	maxCap := limit
	if declared > 0 {
		maxCap = declared
	}

	pace := newBodyPace(rq.w, rq.start, h.bodyReadTimeout, h.minBodyRate)
	defer pace.done()
	readErr := func(err error, got int) *apiError {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return tooLarge()
		case isTimeout(err):
			return unread(&apiError{status: http.StatusRequestTimeout, code: "request_timeout",
				message: fmt.Sprintf("the request body stopped arriving: %d bytes in %s (request_limits body_read_timeout %s, then min_body_rate %d bytes/s)",
					got, time.Since(rq.start).Round(time.Millisecond), h.bodyReadTimeout, h.minBodyRate)})
		case errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF && declared > 0:
			err = fmt.Errorf("the body ended before its Content-Length of %d bytes", declared)
		}
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", message: "reading request body: " + err.Error()}
	}

	var buf []byte
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) == maxCap {
				if declared > 0 {
					break // all of it
				}
				// full: one more byte means too large
				var one [1]byte
				pace.before(int64(len(buf)))
				n, err := io.ReadFull(r.Body, one[:])
				if n > 0 {
					return nil, unread(tooLarge())
				}
				if err == io.EOF {
					break
				}
				return nil, readErr(err, len(buf))
			}
			grown := min(max(2*int64(cap(buf)), bodyStart), maxCap)
			if !rq.reserve(grown - int64(cap(buf))) {
				return nil, unread(rq.busy())
			}
			next := make([]byte, len(buf), grown)
			copy(next, buf)
			buf = next
		}
		pace.before(int64(len(buf)))
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if declared > 0 && int64(len(buf)) < declared {
				return nil, readErr(io.ErrUnexpectedEOF, len(buf))
			}
			break
		}
		if err != nil {
			return nil, readErr(err, len(buf))
		}
	}
	if len(buf) == 0 {
		return nil, nil
	}
	return buf, nil
}

// bodyPace keeps a read deadline on the client's connection while its body
// is read: the time allowed grows with what has arrived. A server that
// cannot set one (HTTP/3) reads without it.
type bodyPace struct {
	rc      *http.ResponseController
	start   time.Time
	grace   time.Duration
	rate    int64
	set     time.Time // the deadline in force
	unsupp  bool
	touched bool
}

func newBodyPace(w http.ResponseWriter, start time.Time, grace time.Duration, rate int64) *bodyPace {
	return &bodyPace{rc: http.NewResponseController(w), start: start, grace: grace, rate: rate, unsupp: grace <= 0 || rate <= 0}
}

// before sets the deadline for the next read, got bytes in.
func (p *bodyPace) before(got int64) {
	if p.unsupp {
		return
	}
	d := p.start.Add(p.grace + time.Duration(float64(got)/float64(p.rate)*float64(time.Second)))
	if d.Sub(p.set) < 100*time.Millisecond && d.Sub(p.set) > -100*time.Millisecond {
		return // close enough: spare a syscall per read
	}
	if err := p.rc.SetReadDeadline(d); err != nil {
		p.unsupp = true
		return
	}
	p.set, p.touched = d, true
}

// done lifts the deadline: the rest of the request (a stream that may run
// for minutes) must not be cut by it, and net/http's watch for the
// client's hang-up would take its expiry for one.
func (p *bodyPace) done() {
	if p.touched {
		_ = p.rc.SetReadDeadline(time.Time{})
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
