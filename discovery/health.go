// Package discovery finds out, continuously and cheaply, which endpoints are
// up and which models they serve: health probes and their classification,
// backoff, the per-endpoint circuit breaker, model-list fetching and the
// unified catalogue. It holds no Caddy types and starts no goroutines; the
// olla app owns the loops.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/caddy-olla/olla/engines"
)

// Status is an endpoint's health.
type Status string

// Endpoint statuses, as the standalone proxy names them.
const (
	StatusUnknown     Status = "unknown"      // not probed yet
	StatusHealthy     Status = "healthy"      // answered 2xx in time
	StatusBusy        Status = "busy"         // answered, but slowly
	StatusOffline     Status = "offline"      // no answer: refused, reset, timed out
	StatusUnhealthy   Status = "unhealthy"    // answered with an error status or garbage
	StatusRateLimited Status = "rate_limited" // answered 429
	StatusConfigError Status = "config_error" // answered 401/403: our credentials are wrong
)

// Routable reports whether requests may be sent to an endpoint in status s.
func (s Status) Routable() bool { return s == StatusHealthy || s == StatusBusy }

// BusyLatency is the probe latency above which a healthy answer counts as busy.
const BusyLatency = 10 * time.Second

// ProbeResult is the outcome of one health probe.
type ProbeResult struct {
	Status     Status
	Reason     string // one line, for status pages and logs
	Latency    time.Duration
	RetryAfter time.Duration // from a 429, capped (engines.MaxRetryAfter)
	// Transient marks a failure a busy server also shows: no answer in
	// time, a connection reset or cut off, a 5xx other than 503. One is
	// not proof the endpoint is down (see Judge). Every other failure is
	// definite and counts at once: a refused connection (nothing
	// listening), an unknown host, a 503 (the server says it is not
	// ready: llama.cpp answers it while loading a model), 401/403, 429
	// and other 4xx answers.
	Transient bool
}

// probeRetryAfter is how long a 429 probe waits when the answer gives no
// usable Retry-After, as the standalone proxy does.
const probeRetryAfter = 30 * time.Second

// Probe sends one health check: GET url with the endpoint's headers through
// rt, bounded by timeout (a Fetch). It never returns an error: every failure
// is a status and a reason.
func Probe(ctx context.Context, rt http.RoundTripper, url string, header http.Header, timeout time.Duration) ProbeResult {
	// the body is read, a little, so the connection can be reused, and so
	// a truncated or hanging body shows up as a failure rather than a pass
	res := Fetch{URL: url, Header: header, UserAgent: "olla-caddy-health", Accept: "application/json, text/plain, */*",
		Timeout: timeout, Limit: 64 << 10, Discard: true}.Do(ctx, rt)
	if res.Status == 0 {
		if res.Unsent {
			return ProbeResult{Status: StatusUnhealthy, Reason: "bad health URL: " + res.Err.Error()}
		}
		return ProbeResult{Status: StatusOffline, Reason: TransportReason(res.Err, timeout), Latency: res.Latency,
			Transient: TransientError(res.Err)}
	}
	latency, rerr := res.Latency, res.ReadErr
	r := Classify(res.Status, latency)
	if r.Status == StatusRateLimited {
		if r.RetryAfter = engines.ParseRetryAfter(res.Header.Get("Retry-After"), time.Now()); r.RetryAfter <= 0 {
			r.RetryAfter = probeRetryAfter
		}
	}
	if rerr != nil && r.Status.Routable() {
		return ProbeResult{Status: StatusUnhealthy, Reason: "health answer cut off: " + shortErr(rerr), Latency: latency,
			Transient: TransientError(rerr)}
	}
	return r
}

// Classify turns a probe's status code and latency into a status.
func Classify(code int, latency time.Duration) ProbeResult {
	r := ProbeResult{Latency: latency}
	switch {
	case code >= 200 && code < 300:
		r.Status, r.Reason = StatusHealthy, fmt.Sprintf("answered %d in %s", code, latency.Round(time.Millisecond))
		if latency > BusyLatency {
			r.Status, r.Reason = StatusBusy, fmt.Sprintf("answered %d but took %s", code, latency.Round(time.Millisecond))
		}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		r.Status, r.Reason = StatusConfigError, fmt.Sprintf("health check answered %d: check the endpoint's auth", code)
	case code == http.StatusTooManyRequests:
		r.Status, r.Reason = StatusRateLimited, "health check answered 429: the endpoint is rate limiting us"
	default:
		r.Status, r.Reason = StatusUnhealthy, fmt.Sprintf("health check answered %d", code)
		// a gateway in front of a busy server answers 502/504, and a
		// server short of memory or threads 500; 503 is a deliberate
		// "not ready" and counts at once
		r.Transient = code >= 500 && code != http.StatusServiceUnavailable
	}
	return r
}

// TransientError reports whether a failed request may only mean the server
// is busy: it timed out, or the connection was reset or closed early. A
// refused connection, an unknown host, a TLS failure or a bad URL are not.
func TransientError(err error) bool {
	var ne net.Error
	switch {
	case err == nil:
		return false
	case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused"):
		return false
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return true
	case errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "connection reset"):
		return true
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return false
}

// DefaultUnhealthyAfter is how many transient probe failures in a row take
// an endpoint out unless configured otherwise.
const DefaultUnhealthyAfter = 3

// Verdict is an endpoint's health as its probes so far have judged it.
type Verdict struct {
	Status Status
	Reason string
	// Failures counts failed probes in a row, of any kind (for backoff).
	Failures int
	// Misses counts transient failures in a row that were not forgiven.
	Misses int
	// Transient reports that the endpoint is not routable only because of
	// transient failures: it may still serve requests, so panic routing
	// may try it when nothing else is left.
	Transient bool
}

// Judge folds one probe's result into an endpoint's verdict. A definite
// failure takes the endpoint out at once. A transient one takes it out
// when unhealthyAfter of them come in a row (0 means
// DefaultUnhealthyAfter); until then the endpoint keeps its status. A
// transient failure while the endpoint is serving proxied requests well
// (serving) is forgiven: a loaded backend whose health route is slow must
// not be taken out from under its own traffic. A passing probe clears
// every count.
func Judge(prev Verdict, r ProbeResult, unhealthyAfter int, serving bool) Verdict {
	if unhealthyAfter <= 0 {
		unhealthyAfter = DefaultUnhealthyAfter
	}
	switch {
	case r.Status.Routable():
		return Verdict{Status: r.Status, Reason: r.Reason}
	case !r.Transient:
		return Verdict{Status: r.Status, Reason: r.Reason, Failures: prev.Failures + 1}
	case serving:
		// the streak is broken by the requests it answered
		v := prev
		v.Misses = 0
		v.Reason = r.Reason + "; not counted: it is answering proxied requests"
		if prev.Status.Routable() || prev.Status == StatusUnknown {
			v.Failures = 0
		} else {
			v.Failures = prev.Failures + 1
		}
		return v
	}
	v := Verdict{Failures: prev.Failures + 1, Misses: prev.Misses + 1, Transient: true}
	if v.Misses >= unhealthyAfter {
		v.Status, v.Reason = r.Status, fmt.Sprintf("%s (%d in a row)", r.Reason, v.Misses)
		return v
	}
	// not yet: the endpoint keeps its status
	v.Status = prev.Status
	v.Reason = fmt.Sprintf("%s (%d of %d before it is taken out)", r.Reason, v.Misses, unhealthyAfter)
	v.Transient = !prev.Status.Routable()
	if !prev.Status.Routable() && prev.Status != StatusUnknown {
		// already out for another reason; the newest reason is this one
		v.Status = r.Status
	}
	return v
}

// TransportReason explains a failed request in one line, without URLs that
// might carry credentials.
func TransportReason(err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return fmt.Sprintf("no answer within %s", timeout)
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused: is the server running?"
	case strings.Contains(err.Error(), "connection reset"):
		return "connection reset by the server"
	case strings.Contains(err.Error(), "no such host"):
		return "host not found"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "server closed the connection without answering"
	}
	return shortErr(err)
}

// shortErr drops the "Get "url":" prefix net/http puts on errors.
func shortErr(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			if _, isURLErr := err.(interface{ Timeout() bool }); isURLErr {
				return inner.Error()
			}
		}
	}
	s := err.Error()
	if i := strings.Index(s, "\": "); i >= 0 && strings.HasPrefix(s, "Get \"") {
		return s[i+3:]
	}
	return s
}

// Backoff is the delay before the next probe after `failures` consecutive
// failed probes: the interval doubling from the second failure, capped at
// 4 × interval and at 60 s, with ±10 % jitter so hundreds of endpoints do not
// probe in lock-step.
func Backoff(interval time.Duration, failures int) time.Duration {
	d := interval
	for i := 1; i < failures && d < 4*interval; i++ {
		d *= 2
	}
	if d > 4*interval {
		d = 4 * interval
	}
	if d > 60*time.Second {
		d = 60 * time.Second
	}
	return Jitter(d)
}

// Jitter spreads d by ±10 %.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	spread := int64(d) / 10
	if spread == 0 {
		return d
	}
	return d + time.Duration(rand.Int64N(2*spread+1)-spread)
}
