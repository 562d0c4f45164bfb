package discovery

import (
	"context"
	"io"
	"net/http"
	"time"
)

// Fetch is one bounded GET to a backend: what health probes, model
// discovery, load polls and the Ollama /api/ps listing all send. It carries
// the endpoint's own headers and credentials, never follows a redirect (a
// backend's redirect is its answer, and credentials must not travel to
// another host), gives up after Timeout and keeps at most Limit bytes of
// the body.
type Fetch struct {
	URL       string
	Header    http.Header // the endpoint's configured headers and credentials
	UserAgent string      // "" leaves Go's
	Accept    string      // "" sends none
	// Timeout bounds the whole exchange, body included (0: ctx alone).
	Timeout time.Duration
	// Limit is how many body bytes are read; a longer body sets TooLarge.
	Limit int64
	// Discard reads the body (so the connection can be reused, and a cut
	// off body is seen) but keeps none of it.
	Discard bool
	// OnlyOK reads the body of a 200 answer only: the others are judged by
	// their status alone.
	OnlyOK bool
}

// Fetched is a Fetch's outcome.
type Fetched struct {
	Status   int // 0 when there was no answer (Err says why)
	Header   http.Header
	Body     []byte // at most Limit bytes; nil with Discard
	TooLarge bool   // the body went on past Limit
	// Err is why no answer came (a transport error); ReadErr why the body
	// was cut off.
	Err, ReadErr error
	// Unsent: the request could not be made (a bad URL); Err says why
	Unsent bool
	// TimedOut: the exchange ran out of time (or its context ended)
	TimedOut bool
	Latency  time.Duration // from sending to the end of the body read
}

// Do sends f through rt.
func (f Fetch) Do(ctx context.Context, rt http.RoundTripper) Fetched {
	if f.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.Timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.URL, nil)
	if err != nil {
		return Fetched{Err: err, Unsent: true}
	}
	for k, v := range f.Header {
		req.Header[k] = v
	}
	if f.UserAgent != "" {
		req.Header.Set("User-Agent", f.UserAgent)
	}
	if f.Accept != "" {
		req.Header.Set("Accept", f.Accept)
	}
	client := &http.Client{Transport: rt, CheckRedirect: noRedirects}
	start := time.Now()
	res, err := client.Do(req)
	if err != nil {
		return Fetched{Err: err, TimedOut: ctx.Err() != nil, Latency: time.Since(start)}
	}
	defer res.Body.Close()
	out := Fetched{Status: res.StatusCode, Header: res.Header}
	if f.OnlyOK && res.StatusCode != http.StatusOK {
		out.Latency = time.Since(start)
		return out
	}
	body := io.LimitReader(res.Body, f.Limit+1)
	var n int64
	if f.Discard {
		n, out.ReadErr = io.Copy(io.Discard, body)
	} else {
		out.Body, out.ReadErr = io.ReadAll(body)
		n = int64(len(out.Body))
	}
	if n > f.Limit {
		out.TooLarge = true
		if out.Body != nil {
			out.Body = out.Body[:f.Limit]
		}
	}
	out.TimedOut = ctx.Err() != nil
	out.Latency = time.Since(start)
	return out
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
