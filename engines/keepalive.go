package engines

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"syscall"
)

// ConnTrace follows one attempt's connection, so that RoundTrip can tell
// the keep-alive race from a backend's failure: a backend may close an
// idle connection just as the transport takes it for the next request.
// The request is written, and the read of the answer meets EOF (or a
// reset) before any byte. Go's transport replays only idempotent requests
// then, and ours are POSTs.
type ConnTrace struct {
	trace httptrace.ClientTrace
	// written from the transport's goroutines: the read loop may still
	// run when a cancelled RoundTrip has returned
	reused  atomic.Bool // the connection came from the idle pool
	gotByte atomic.Bool // a byte of an answer (1xx included) arrived
}

// TraceConn returns ctx carrying a new ConnTrace (composed with any trace
// ctx already has); build the attempt's request on that context and send
// it with the ConnTrace's RoundTrip.
func TraceConn(ctx context.Context) (context.Context, *ConnTrace) {
	c := new(ConnTrace)
	c.trace.GotConn = func(info httptrace.GotConnInfo) { c.reused.Store(info.Reused) }
	c.trace.GotFirstResponseByte = func() { c.gotByte.Store(true) }
	return httptrace.WithClientTrace(ctx, &c.trace), c
}

// RoundTrip sends out over rt (out's context must come from TraceConn).
// When the attempt failed on a reused connection the backend had closed,
// before any byte of an answer, it sends out once more on a fresh
// connection: the backend never saw a request it could answer. Never
// after a byte arrived (the backend may have acted on the request), never
// twice, never once out's context ended (the client left, or the header
// timeout fired), and never without a way to replay the body (GetBody).
func (c *ConnTrace) RoundTrip(rt http.RoundTripper, out *http.Request) (*http.Response, error) {
	res, err := rt.RoundTrip(out)
	if err == nil || !c.reused.Load() || c.gotByte.Load() || out.Context().Err() != nil || !closedUnderUs(err) {
		return res, err
	}
	again := out.Clone(out.Context()) // a sent request is the transport's; a retry is a new one
	if out.Body != nil && out.Body != http.NoBody {
		if out.GetBody == nil {
			return nil, err
		}
		body, gerr := out.GetBody()
		if gerr != nil {
			return nil, err
		}
		again.Body = body
	}
	// The backend that closed this connection has likely closed (or will
	// close) others of its age, restarting or timing idle ones out, so
	// the pool is emptied and the retry dials anew. The others pay one
	// dial each; a request in flight keeps its connection.
	if p, ok := rt.(interface{ CloseIdleConnections() }); ok {
		p.CloseIdleConnections()
	}
	return rt.RoundTrip(again)
}

// closedUnderUs reports whether err says the backend closed the
// connection: EOF where an answer was due, a reset, a broken pipe, or the
// transport's own "server closed idle connection".
func closedUnderUs(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "server closed idle connection")
}
