package olla

import (
	"errors"
	"fmt"
	"io"
	"net/http"
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

// bufferedBodies counts the request body bytes every olla handler in the
// process holds buffered right now, across sites and across the old and new
// config of a reload, so the memory a crowd of large bodies can pin is one
// bounded number, not max_body_size times the number of clients. Each
// handler refuses a body once the total would pass its own
// request_limits max_buffered_bytes.
var bufferedBodies bodyBudget

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
	if !bufferedBodies.reserve(n, rq.h.maxBuffered) {
		return false
	}
	rq.reserved += n
	return true
}

// holdBuffered counts n more bytes against the budget whatever its state:
// a copy already made (an alias rewritten into the body) is memory held
// all the same, and others must see it.
func (rq *request) holdBuffered(n int64) {
	bufferedBodies.used.Add(n)
	rq.reserved += n
}

// releaseBody gives the request's share of the budget back, once the body
// is no longer needed (the response has ended).
func (rq *request) releaseBody() {
	bufferedBodies.release(rq.reserved)
	rq.reserved = 0
}

// chunkedStart is the first buffer for a body of unknown length.
const chunkedStart = 16 << 10

// readBody reads the whole request body so it can be inspected and replayed
// on failover. It returns nil for no body. A declared length over the limit
// is refused before a byte is read, and the declared length is reserved from
// the process-wide budget and allocated once; a body of unknown length
// reserves as it grows and is read no further than the limit.
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
	tooLarge := &apiError{status: http.StatusRequestEntityTooLarge, code: "request_too_large",
		message: fmt.Sprintf("request body is larger than the %d-byte limit (request_limits %s)", limit, limitName)}
	busy := &apiError{status: http.StatusServiceUnavailable, code: "proxy_busy", retryAfter: busyRetryAfter,
		message: fmt.Sprintf("the proxy is busy: the request bodies it holds have reached the %d-byte budget shared by all requests (request_limits max_buffered_bytes); retry shortly", h.maxBuffered)}
	// refused with the body (or its rest) unread: the connection cannot
	// carry another request, and closing it spares net/http reading up to
	// 256 KiB of a body nobody wants (and sending 100 Continue for it)
	unread := func(e *apiError) *apiError {
		if r.ProtoMajor == 1 {
			rq.w.Header().Set("Connection", "close")
		}
		return e
	}
	readErr := func(err error) *apiError {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return tooLarge
		}
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", message: "reading request body: " + err.Error()}
	}

	if declared := r.ContentLength; declared >= 0 {
		switch {
		case declared > limit:
			return nil, unread(tooLarge)
		case declared == 0:
			return nil, nil
		case !rq.reserve(declared):
			return nil, unread(busy)
		}
		buf := make([]byte, declared)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("the body ended before its Content-Length of %d bytes", declared)
			}
			return nil, readErr(err)
		}
		return buf, nil
	}

	var buf []byte
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) == limit {
				// full: one more byte means too large
				var one [1]byte
				n, err := io.ReadFull(r.Body, one[:])
				if n > 0 {
					return nil, unread(tooLarge)
				}
				if err == io.EOF {
					break
				}
				return nil, readErr(err)
			}
			grown := min(max(2*int64(cap(buf)), chunkedStart), limit)
			if !rq.reserve(grown - int64(cap(buf))) {
				return nil, unread(busy)
			}
			next := make([]byte, len(buf), grown)
			copy(next, buf)
			buf = next
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, readErr(err)
		}
	}
	if len(buf) == 0 {
		return nil, nil
	}
	return buf, nil
}
