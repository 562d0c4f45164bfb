package engines

import (
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-olla/olla/profiles"
)

// UpstreamURL joins an endpoint's base URL with the request's API path:
// https://host/api + /v1/chat/completions = https://host/api/v1/chat/completions.
// Dot segments are cleaned so a client cannot climb above the base path.
func UpstreamURL(base *url.URL, apiPath, rawQuery string) *url.URL {
	u := &url.URL{Scheme: base.Scheme, Host: base.Host, RawQuery: rawQuery}
	cleaned := cleanPath(apiPath)
	basePath := strings.TrimSuffix(base.Path, "/")
	u.Path = basePath + cleaned
	return u
}

// cleanPath removes dot segments (also percent-encoded ones, which url.Parse
// already decoded into Path) and keeps a trailing slash the client sent.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if !strings.Contains(p, "/.") && !strings.Contains(p, "//") {
		if p[0] != '/' {
			return "/" + p
		}
		return p
	}
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1, never forwarded.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// IsClientCredential reports whether a header carries a credential: any
// header whose name contains "auth" (Authorization, Authentication,
// Proxy-Authorization, X-Auth-Token), "key", "token", "secret", "password"
// or "passwd", "session" or "cookie", in any case. Rate-limit headers
// (x-ratelimit-remaining-tokens, anthropic-ratelimit-tokens-limit) count
// tokens, not credentials, so "token" alone does not make them one. It is
// the one list: client headers it matches are stripped unless the endpoint
// forwards client auth, backend response headers it matches never reach
// the client, and configured headers it matches are kept out of sight.
// Idempotency-Key (the IETF HTTP API draft's header) names a request, not
// a client: it goes through, so a backend that dedupes on it still can.
func IsClientCredential(name string) bool {
	if strings.EqualFold(name, "Idempotency-Key") {
		return false
	}
	for _, w := range credentialWords {
		if containsFold(name, w) {
			return true
		}
	}
	return containsFold(name, "token") && !containsFold(name, "ratelimit") && !containsFold(name, "rate-limit")
}

// credentialWords are the lower-case words that make a header name a
// credential wherever they appear in it ("token" is checked on its own).
var credentialWords = []string{"auth", "key", "secret", "password", "passwd", "session", "cookie"}

// containsFold reports whether s contains the lower-case ASCII word sub in
// any case, without allocating.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for j < len(sub) && s[i+j]|0x20 == sub[j] {
			j++
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

// StripHopByHop removes hop-by-hop headers, including any named in Connection.
func StripHopByHop(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopHeaders {
		h.Del(name)
	}
}

// PrepareOutboundHeader turns the client's headers into the upstream's, in
// place: hop-by-hop and (unless allowed) credential headers go, X-Olla-*
// headers the client sent are dropped, the request ID goes up as
// X-Request-ID, and the endpoint's own headers and auth are set last so they
// win.
func PrepareOutboundHeader(h http.Header, t Target, requestID string) {
	var buf [4]string
	f := outboundFilter{creds: t.ForwardsClientCredentials(), named: connectionNamed(h, buf[:0])}
	for name := range h {
		if f.drop(name) {
			delete(h, name)
		}
	}
	if requestID != "" {
		h.Set("X-Request-Id", requestID)
	}
	t.ApplyHeaders(h)
}

// OutboundHeader is PrepareOutboundHeader on a copy of the client's header,
// which it leaves alone. What PrepareOutboundHeader would delete is never
// copied, and the copy is sized for the headers the engine adds after it
// (X-Forwarded-*, Via, the endpoint's own), so it costs one map and one
// array of values.
func OutboundHeader(client http.Header, t Target, requestID string) http.Header {
	var buf [4]string
	f := outboundFilter{creds: t.ForwardsClientCredentials(), named: connectionNamed(client, buf[:0])}
	nv := 1 // and X-Request-Id
	for _, vv := range client {
		nv += len(vv)
	}
	sv := make([]string, nv)
	h := make(http.Header, len(client)+outboundAdded)
	for k, vv := range client {
		if f.drop(k) {
			continue
		}
		if vv == nil {
			h[k] = nil // as Header.Clone: nil and empty differ to a proxy
			continue
		}
		n := copy(sv, vv)
		h[k] = sv[:n:n]
		sv = sv[n:]
	}
	if requestID != "" {
		sv[0] = requestID
		h["X-Request-Id"] = sv[:1:1]
	}
	t.ApplyHeaders(h)
	return h
}

// outboundAdded is room for the headers an attempt adds to the client's:
// X-Request-Id, the three X-Forwarded-*, Via, and a few of the endpoint's.
const outboundAdded = 8

// outboundFilter decides which of the client's headers stay behind:
// hop-by-hop ones (also those its Connection header names), Expect (the body
// is buffered already: a backend's 100 Continue would only cost a round
// trip), X-Olla-* and, unless the endpoint forwards them, credentials.
type outboundFilter struct {
	creds bool     // the endpoint forwards the client's credentials
	named []string // canonical names the client's Connection header lists
}

// connectionNamed appends to named the header names the Connection header
// of h lists, canonical.
func connectionNamed(h http.Header, named []string) []string {
	for _, v := range h["Connection"] {
		for v != "" {
			var name string
			name, v, _ = strings.Cut(v, ",")
			if name = strings.TrimSpace(name); name != "" {
				named = append(named, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	return named
}

func (f *outboundFilter) drop(name string) bool {
	if name == "Expect" || slices.Contains(hopHeaders, name) || slices.Contains(f.named, name) {
		return true
	}
	return isOllaHeader(name) || !f.creds && IsClientCredential(name)
}

// isOllaHeader reports whether name is an X-Olla-* header, in any case.
func isOllaHeader(name string) bool {
	return len(name) > 7 && strings.EqualFold(name[:7], "X-Olla-")
}

// StripOllaHeaders removes every X-Olla-* header: they are ours to set,
// never a client's or a backend's.
func StripOllaHeaders(h http.Header) {
	for name := range h {
		if isOllaHeader(name) {
			delete(h, name)
		}
	}
}

// DecorateResponse puts the endpoint's headers on a response about to be
// written: X-Olla-Endpoint, X-Olla-Backend-Type and X-Olla-Response-Time (time
// from the handler's start to the backend's headers). Backend-sent X-Olla-*
// headers and credentials are removed first, and a Retry-After is capped.
func DecorateResponse(h http.Header, t Target, start time.Time) {
	StripOllaHeaders(h)
	for name := range h {
		if IsClientCredential(name) {
			delete(h, name)
		}
	}
	capRetryAfter(h)
	// as Header.Set (the keys are canonical), with one allocation for
	// the three values and one for the time
	v := [...]string{t.Name(), t.Type(), Millis(time.Since(start))}
	vals := v[:]
	h["X-Olla-Endpoint"] = vals[0:1:1]
	h["X-Olla-Backend-Type"] = vals[1:2:2]
	h["X-Olla-Response-Time"] = vals[2:3:3]
}

// Millis formats d as whole milliseconds with the unit, "12ms", in one
// allocation.
func Millis(d time.Duration) string {
	var b [24]byte
	return string(append(strconv.AppendInt(b[:0], d.Milliseconds(), 10), "ms"...))
}

// TotalTimeTrailer is announced on streamed responses and set when the
// stream ends.
const TotalTimeTrailer = "X-Olla-Total-Time"

// IsStream reports whether a response is a token stream: SSE, NDJSON or a
// body of unknown length.
func IsStream(h http.Header, contentLength int64) bool {
	ct := h.Get("Content-Type")
	if strings.HasPrefix(ct, "text/event-stream") || strings.HasPrefix(ct, "application/x-ndjson") ||
		strings.HasPrefix(ct, "application/stream+json") || strings.HasPrefix(ct, "application/json-seq") {
		return true
	}
	return contentLength < 0
}

// ShouldFlush decides whether each body read is flushed to the client at once.
func ShouldFlush(p FlushPolicy, h http.Header, contentLength int64) bool {
	switch p {
	case FlushAlways:
		return true
	case FlushNever:
		return false
	default:
		return IsStream(h, contentLength)
	}
}

// RetryableStatus reports whether a backend answer means "try another
// endpoint": it is busy (429, 503) or a gateway in front of it failed (502).
func RetryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code == http.StatusBadGateway || code == http.StatusServiceUnavailable
}

// PeekBusy reports whether res is a backend's busy answer
// (profiles.IsBusyAnswer: Lemonade's 409 slots_pinned_error, Ollama's and
// llama-server's busy 503s). For the statuses that may be one it reads the
// first bytes of the body and puts them back, so a response that is
// written to the client after all loses nothing. Only a body whose length
// is stated and short is read (busy answers are short JSON errors): a
// stream or a long body is passed on untouched, never waited for here.
func PeekBusy(res *http.Response) bool {
	if !profiles.MayBeBusy(res.StatusCode) || res.Body == nil || res.Body == http.NoBody ||
		res.ContentLength <= 0 || res.ContentLength > profiles.MaxBusyPeek {
		return false
	}
	peek := make([]byte, res.ContentLength)
	n, err := io.ReadFull(res.Body, peek)
	peek = peek[:n]
	switch {
	case err == nil:
		res.Body = &peekedBody{Reader: io.MultiReader(bytes.NewReader(peek), res.Body), Closer: res.Body}
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		res.Body = &peekedBody{Reader: bytes.NewReader(peek), Closer: res.Body}
	default:
		// the read failed: what was read goes on, followed by the error
		res.Body = &peekedBody{Reader: io.MultiReader(bytes.NewReader(peek), errReader{err}), Closer: res.Body}
	}
	return profiles.IsBusyAnswer(res.StatusCode, peek)
}

type peekedBody struct {
	io.Reader
	io.Closer
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// MaxRetryAfter caps how long a backend's Retry-After may keep us away from
// it: its advice, not its command. A day-long (or overflowing) value must not
// park an endpoint for longer than an operator would notice.
const MaxRetryAfter = 5 * time.Minute

// ParseRetryAfter reads a Retry-After header, delta-seconds or an HTTP
// date, capped at MaxRetryAfter. Absent, negative, malformed or past values
// give 0. Seconds are read digit by digit, so no value overflows: a number
// of any length above the cap is the cap.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if isDigits(v) {
		var secs int64
		for i := 0; i < len(v); i++ {
			secs = secs*10 + int64(v[i]-'0')
			if secs > int64(MaxRetryAfter/time.Second) {
				return MaxRetryAfter
			}
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now) // saturates rather than overflows for far dates
	if d <= 0 {
		return 0
	}
	return min(d, MaxRetryAfter)
}

// capRetryAfter rewrites a backend's Retry-After for the client as we read
// it ourselves: delta-seconds no longer than MaxRetryAfter, an HTTP date
// turned into the seconds left; a value we cannot read is dropped, so a
// client is never told to stay away longer than we would.
func capRetryAfter(h http.Header) {
	v, ok := h["Retry-After"]
	if !ok {
		return
	}
	if len(v) == 1 && strings.TrimSpace(v[0]) == "0" {
		return
	}
	d := ParseRetryAfter(strings.Join(v, ","), time.Now())
	if d <= 0 {
		delete(h, "Retry-After")
		return
	}
	h["Retry-After"] = []string{strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)}
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}
