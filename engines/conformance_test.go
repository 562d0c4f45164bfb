package engines_test

// The engines' conformance suite: one table of cases, run against both
// engines directly (no Caddy config), through real HTTP on both sides: a
// real client, a front server that prepares each request as Caddy's server
// does and hands it to the engine, and httptest backends.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-olla/olla/engines"
	ollaengine "github.com/caddy-olla/olla/engines/olla"
	"github.com/caddy-olla/olla/engines/sherpa"
)

// deadline bounds every wait on a condition; reached only when a case is broken.
const deadline = 30 * time.Second

type engineUnderTest struct {
	name string
	e    engines.Engine
}

func enginesUnderTest(t *testing.T) []engineUnderTest {
	t.Helper()
	// a Context with an (empty) config: reverse_proxy's Provision loads
	// the events app from it. Nothing is started.
	base, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		t.Fatalf("caddy context: %v", err)
	}
	ctx, cancel := caddy.NewContext(base)
	t.Cleanup(cancel)
	sh, err := sherpa.New(ctx, 3)
	if err != nil {
		t.Fatalf("sherpa.New: %v", err)
	}
	t.Cleanup(func() { _ = sh.Cleanup() })
	return []engineUnderTest{{"olla", ollaengine.New(0)}, {"sherpa", sh}}
}

// target is one backend as the engines see it.
type target struct {
	name      string
	u         *url.URL
	rt        *http.Transport
	fwdCreds  bool
	ownHeader http.Header // set on every outbound request, last
}

func (t *target) Name() string                    { return t.name }
func (t *target) Type() string                    { return "openai" }
func (t *target) BaseURL() *url.URL               { return t.u }
func (t *target) Transport() http.RoundTripper    { return t.rt }
func (t *target) ForwardsClientCredentials() bool { return t.fwdCreds }
func (t *target) ApplyHeaders(h http.Header) {
	for k, v := range t.ownHeader {
		h[k] = v
	}
}

// attempt is one Picker.Done call.
type attempt struct {
	target string
	out    engines.Outcome
}

// listPicker offers the targets in order and records every outcome.
type listPicker struct {
	mu       sync.Mutex
	targets  []engines.Target
	next     int
	open     int
	attempts []attempt
}

func (p *listPicker) Next() (engines.Target, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next >= len(p.targets) {
		return nil, false
	}
	p.next++
	p.open++
	return p.targets[p.next-1], true
}

func (p *listPicker) Done(t engines.Target, out engines.Outcome) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open--
	p.attempts = append(p.attempts, attempt{t.Name(), out})
}

func (p *listPicker) Remaining() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next < len(p.targets)
}

// seen is one request a backend received.
type seen struct {
	method, path, query string
	header              http.Header
	body                string
}

// backend is one case's upstream: a handler, or a refused port.
type backend struct {
	handler  http.HandlerFunc
	refused  bool
	fwdCreds bool
	header   http.Header // the endpoint's own configured headers
}

// run is what one case observed.
type run struct {
	res       *http.Response
	body      string
	bodyErr   error     // reading the client's body
	attempts  []attempt // Picker.Done calls, in order
	seen      [][]seen  // per backend
	streamEnd []error   // OnStreamEnd errors
	streams   []engines.Stream
	serveErr  error // Engine.Serve's return
}

func (r *run) attempt(t *testing.T, name string) engines.Outcome {
	t.Helper()
	for _, a := range r.attempts {
		if a.target == name {
			return a.out
		}
	}
	t.Fatalf("no attempt on %s; attempts %+v", name, r.attempts)
	return engines.Outcome{}
}

// conformanceCase is one row: backends, the client's request and what
// must come of it, the same for every engine.
type conformanceCase struct {
	name     string
	backends []backend
	// request builds the client's request to the front server; nil is a
	// POST of a small JSON body to /v1/chat/completions
	request func(front string) *http.Request
	// client, if set, talks to the front server itself (raw connections
	// for hang-ups); res and body are then unset
	client  func(t *testing.T, front string)
	plan    func(p *engines.Plan, targets []*target)
	trusted bool // the peer is a trusted proxy (the server's trusted_proxies)
	check   func(t *testing.T, r *run)
}

const chatBody = `{"model":"m","messages":[{"role":"user","content":"hi"}]}`

func TestConformance(t *testing.T) {
	for _, eng := range enginesUnderTest(t) {
		t.Run(eng.name, func(t *testing.T) {
			for _, tc := range conformanceCases() {
				t.Run(tc.name, func(t *testing.T) { runCase(t, eng.e, tc) })
			}
		})
	}
}

func runCase(t *testing.T, e engines.Engine, tc conformanceCase) {
	r := &run{seen: make([][]seen, len(tc.backends))}
	var mu sync.Mutex
	var targets []*target
	for i, b := range tc.backends {
		name := string(rune('a' + i))
		tr := &http.Transport{DisableCompression: true}
		t.Cleanup(tr.CloseIdleConnections)
		tg := &target{name: name, rt: tr, fwdCreds: b.fwdCreds, ownHeader: b.header}
		if b.refused {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			tg.u, _ = url.Parse("http://" + addr + "/base")
		} else {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				body, _ := io.ReadAll(req.Body)
				mu.Lock()
				r.seen[i] = append(r.seen[i], seen{req.Method, req.URL.Path, req.URL.RawQuery, req.Header.Clone(), string(body)})
				mu.Unlock()
				b.handler(w, req)
			}))
			t.Cleanup(srv.Close)
			tg.u, _ = url.Parse(srv.URL + "/base")
		}
		targets = append(targets, tg)
	}

	picker := &listPicker{}
	for _, tg := range targets {
		picker.targets = append(picker.targets, tg)
	}
	served := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		defer close(served)
		// what Caddy's server does before any handler runs
		req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), w, &caddyhttp.Server{})
		if tc.trusted {
			caddyhttp.SetVar(req.Context(), caddyhttp.TrustedProxyVarKey, true)
		}
		w.Header().Set("Server", "Caddy")
		body, _ := io.ReadAll(req.Body)
		plan := &engines.Plan{Path: strings.TrimPrefix(req.URL.Path, "/proxy"), RawQuery: req.URL.RawQuery,
			Picker: picker, MaxAttempts: len(targets), Start: time.Now(), RequestID: "req-1", Flush: engines.FlushAuto,
			OnStreamEnd: func(_ engines.Target, s engines.Stream, err error) {
				mu.Lock()
				r.streamEnd = append(r.streamEnd, err)
				s.Tail = nil // only valid during the call
				r.streams = append(r.streams, s)
				mu.Unlock()
			}}
		if len(body) > 0 {
			plan.Body = body
		}
		if tc.plan != nil {
			tc.plan(plan, targets)
		}
		err := e.Serve(w, req, plan)
		mu.Lock()
		r.serveErr = err
		mu.Unlock()
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, "no endpoint answered: "+err.Error())
		}
	}))
	t.Cleanup(front.Close)

	if tc.client != nil {
		tc.client(t, front.URL)
	} else {
		var req *http.Request
		if tc.request != nil {
			req = tc.request(front.URL)
		} else {
			req, _ = http.NewRequest(http.MethodPost, front.URL+"/proxy/v1/chat/completions?x=1", strings.NewReader(chatBody))
			req.Header.Set("Content-Type", "application/json")
		}
		client := &http.Client{Timeout: deadline, Transport: &http.Transport{DisableCompression: true}}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("client request: %v", err)
		}
		b, berr := io.ReadAll(res.Body)
		res.Body.Close()
		r.res, r.body, r.bodyErr = res, string(b), berr
	}
	select {
	case <-served:
	case <-time.After(deadline):
		t.Fatal("the engine did not return")
	}
	waitFor(t, "every attempt to end", func() bool {
		picker.mu.Lock()
		defer picker.mu.Unlock()
		return picker.open == 0
	})
	picker.mu.Lock()
	r.attempts = append([]attempt(nil), picker.attempts...)
	picker.mu.Unlock()
	tc.check(t, r)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ok answers a small JSON body.
func ok(name string) backend {
	return backend{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"from":%q}`, name)
	}}
}

func status(code int, header ...string) backend {
	return backend{handler: func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		io.WriteString(w, `{"error":"busy"}`)
	}}
}

// streamThenCut sends two NDJSON lines and then breaks the connection.
func streamThenCut() backend {
	return backend{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		io.WriteString(w, "{\"n\":1}\n{\"n\":2}\n")
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	}}
}

// stalled sends one line and then nothing until the client is gone.
func stalled() backend {
	return backend{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		io.WriteString(w, "{\"n\":1}\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}}
}

// paced streams lines until the client (the proxy) goes away.
func paced() backend {
	return backend{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		rc := http.NewResponseController(w)
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(w, "{\"n\":%d}\n", i); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}}
}

func requireOutcome(t *testing.T, r *run, name string, wantStatus int, counts bool) engines.Outcome {
	t.Helper()
	out := r.attempt(t, name)
	if out.Status != wantStatus {
		t.Errorf("attempt on %s: status %d, want %d (err %v)", name, out.Status, wantStatus, out.Err)
	}
	blameless := out.ClientGone() || out.TransformFailed()
	if failed := (out.Err != nil || out.Status >= 500) && !blameless; failed != counts {
		t.Errorf("attempt on %s counts against the backend: %v, want %v (err %v)", name, failed, counts, out.Err)
	}
	return out
}

func header(pairs ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(pairs); i += 2 {
		h.Add(pairs[i], pairs[i+1])
	}
	return h
}

// upper is a response transform that uppercases the body and reports how
// the backend's body ended in a last line.
type upper struct{}

func (upper) Write(w io.Writer, p []byte) error {
	_, err := w.Write(bytes.ToUpper(p))
	return err
}

func (upper) End(w io.Writer, err error) error {
	if err != nil {
		_, werr := io.WriteString(w, "event: error\n")
		return werr
	}
	_, werr := io.WriteString(w, "[END]")
	return werr
}

// broken fails on the first bytes.
type broken struct{}

func (broken) Write(io.Writer, []byte) error    { return errors.New("cannot translate") }
func (broken) End(w io.Writer, err error) error { return nil }

func conformanceCases() []conformanceCase {
	// the flush cases' clients close these once they saw the first bytes
	gate, gate2, gate3 := make(chan struct{}), make(chan struct{}), make(chan struct{})
	arrived := make(chan struct{}) // the backend got the request the client then abandons
	return []conformanceCase{
		{
			name: "pass-through of status, headers, path, query and body",
			backends: []backend{{handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("X-Custom", "kept")
				w.Header().Set("X-Olla-Endpoint", "forged")
				w.WriteHeader(http.StatusCreated)
				io.WriteString(w, `{"id":"x"}`)
			}}},
			check: func(t *testing.T, r *run) {
				if r.res.StatusCode != http.StatusCreated || r.body != `{"id":"x"}` || r.res.Header.Get("X-Custom") != "kept" {
					t.Errorf("client got %d %q X-Custom=%q", r.res.StatusCode, r.body, r.res.Header.Get("X-Custom"))
				}
				if got := r.res.Header.Values("X-Olla-Endpoint"); len(got) != 1 || got[0] != "a" {
					t.Errorf("X-Olla-Endpoint %q, want [a]", got)
				}
				s := r.seen[0][0]
				if s.method != http.MethodPost || s.path != "/base/v1/chat/completions" || s.query != "x=1" || s.body != chatBody {
					t.Errorf("backend saw %s %s?%s %q", s.method, s.path, s.query, s.body)
				}
				if s.header.Get("X-Request-Id") != "req-1" {
					t.Errorf("X-Request-Id %q", s.header.Get("X-Request-Id"))
				}
				requireOutcome(t, r, "a", http.StatusCreated, false)
			},
		},
		{
			name: "hop-by-hop headers stripped both ways",
			request: func(front string) *http.Request {
				req, _ := http.NewRequest(http.MethodPost, front+"/proxy/v1/chat/completions", strings.NewReader(chatBody))
				req.Header.Set("Connection", "X-Client-Hop")
				req.Header.Set("X-Client-Hop", "1")
				req.Header.Set("Proxy-Authorization", "Basic eA==")
				req.Header.Set("Upgrade", "h2c")
				return req
			},
			backends: []backend{{handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "X-Backend-Hop")
				w.Header().Set("X-Backend-Hop", "1")
				w.Header().Set("Keep-Alive", "timeout=5")
				w.Header().Set("Proxy-Authenticate", "Basic")
				io.WriteString(w, "{}")
			}}},
			check: func(t *testing.T, r *run) {
				for _, h := range []string{"X-Client-Hop", "Proxy-Authorization", "Upgrade"} {
					if v := r.seen[0][0].header.Get(h); v != "" {
						t.Errorf("backend saw %s: %q", h, v)
					}
				}
				for _, h := range []string{"X-Backend-Hop", "Keep-Alive", "Proxy-Authenticate"} {
					if v := r.res.Header.Get(h); v != "" {
						t.Errorf("client saw %s: %q", h, v)
					}
				}
			},
		},
		{
			name: "client credentials stripped, the endpoint's own sent",
			request: func(front string) *http.Request {
				req, _ := http.NewRequest(http.MethodPost, front+"/proxy/v1/chat/completions", strings.NewReader(chatBody))
				req.Header.Set("Authorization", "Bearer client-key")
				req.Header.Set("Cookie", "session=client")
				req.Header.Set("X-Api-Key", "client-key")
				return req
			},
			backends: []backend{{header: header("Authorization", "Bearer endpoint-key"), handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Set-Cookie", "backend=1")
				io.WriteString(w, "{}")
			}}},
			check: func(t *testing.T, r *run) {
				h := r.seen[0][0].header
				if h.Get("Authorization") != "Bearer endpoint-key" || h.Get("Cookie") != "" || h.Get("X-Api-Key") != "" {
					t.Errorf("backend saw Authorization %q Cookie %q X-Api-Key %q", h.Get("Authorization"), h.Get("Cookie"), h.Get("X-Api-Key"))
				}
				if v := r.res.Header.Get("Set-Cookie"); v != "" {
					t.Errorf("client got the backend's Set-Cookie %q", v)
				}
			},
		},
		{
			name: "client credentials forwarded when the endpoint allows",
			request: func(front string) *http.Request {
				req, _ := http.NewRequest(http.MethodPost, front+"/proxy/v1/chat/completions", strings.NewReader(chatBody))
				req.Header.Set("Authorization", "Bearer client-key")
				req.Header.Set("Cookie", "session=client")
				return req
			},
			backends: []backend{{fwdCreds: true, handler: ok("a").handler}},
			check: func(t *testing.T, r *run) {
				h := r.seen[0][0].header
				if h.Get("Authorization") != "Bearer client-key" || h.Get("Cookie") != "session=client" {
					t.Errorf("backend saw Authorization %q Cookie %q", h.Get("Authorization"), h.Get("Cookie"))
				}
			},
		},
		{
			name:     "failover before the first byte: connection refused",
			backends: []backend{{refused: true}, ok("b")},
			check: func(t *testing.T, r *run) {
				if r.res.StatusCode != 200 || r.body != `{"from":"b"}` || r.res.Header.Get("X-Olla-Endpoint") != "b" {
					t.Errorf("client got %d %q from %q", r.res.StatusCode, r.body, r.res.Header.Get("X-Olla-Endpoint"))
				}
				if out := requireOutcome(t, r, "a", 0, true); out.Err == nil {
					t.Error("refused attempt has no error")
				}
				requireOutcome(t, r, "b", 200, false)
			},
		},
		{
			name:     "failover before the first byte: 502",
			backends: []backend{status(http.StatusBadGateway), ok("b")},
			check: func(t *testing.T, r *run) {
				if r.body != `{"from":"b"}` {
					t.Errorf("client got %d %q", r.res.StatusCode, r.body)
				}
				requireOutcome(t, r, "a", 502, true)
			},
		},
		{
			name:     "failover before the first byte: 503 with Retry-After",
			backends: []backend{status(http.StatusServiceUnavailable, "Retry-After", "7"), ok("b")},
			check: func(t *testing.T, r *run) {
				if r.body != `{"from":"b"}` {
					t.Errorf("client got %d %q", r.res.StatusCode, r.body)
				}
				if out := requireOutcome(t, r, "a", 503, true); out.RetryAfter != 7*time.Second {
					t.Errorf("RetryAfter %s, want 7s", out.RetryAfter)
				}
			},
		},
		{
			name:     "failover before the first byte: 429 with Retry-After",
			backends: []backend{status(http.StatusTooManyRequests, "Retry-After", "3"), ok("b")},
			check: func(t *testing.T, r *run) {
				if r.body != `{"from":"b"}` {
					t.Errorf("client got %d %q", r.res.StatusCode, r.body)
				}
				if out := requireOutcome(t, r, "a", 429, false); out.RetryAfter != 3*time.Second {
					t.Errorf("RetryAfter %s, want 3s", out.RetryAfter)
				}
			},
		},
		{
			name:     "the last candidate's busy answer reaches the client",
			backends: []backend{status(http.StatusServiceUnavailable), status(http.StatusTooManyRequests, "Retry-After", "2")},
			check: func(t *testing.T, r *run) {
				if r.res.StatusCode != 429 || r.res.Header.Get("Retry-After") != "2" || r.body != `{"error":"busy"}` {
					t.Errorf("client got %d Retry-After %q %q", r.res.StatusCode, r.res.Header.Get("Retry-After"), r.body)
				}
			},
		},
		{
			name:     "no candidate answers: Serve reports it and wrote nothing",
			backends: []backend{{refused: true}, {refused: true}},
			check: func(t *testing.T, r *run) {
				if r.serveErr == nil || r.res.StatusCode != http.StatusBadGateway || !strings.HasPrefix(r.body, "no endpoint answered") {
					t.Errorf("Serve returned %v; client got %d %q", r.serveErr, r.res.StatusCode, r.body)
				}
				if len(r.attempts) != 2 {
					t.Errorf("attempts %+v, want 2", r.attempts)
				}
			},
		},
		{
			name:     "no failover after the first byte: a cut stream ends, and counts",
			backends: []backend{streamThenCut(), ok("b")},
			check: func(t *testing.T, r *run) {
				if r.res.Header.Get("X-Olla-Endpoint") != "a" || !strings.HasPrefix(r.body, "{\"n\":1}\n") {
					t.Errorf("client got %q from %q", r.body, r.res.Header.Get("X-Olla-Endpoint"))
				}
				if r.bodyErr == nil {
					t.Error("a cut stream reached the client as complete")
				}
				if len(r.seen[1]) != 0 {
					t.Errorf("the stream was replayed on b")
				}
				if out := requireOutcome(t, r, "a", 200, true); out.Err == nil {
					t.Error("cut stream has no error")
				}
			},
		},
		{
			name:     "stream idle timeout cuts a stalled backend with ErrStreamIdle",
			backends: []backend{stalled()},
			// a second, so that a busy machine's delay before the first line
			// is read never looks like the stall
			plan: func(p *engines.Plan, _ []*target) { p.StreamIdleTimeout = time.Second },
			check: func(t *testing.T, r *run) {
				if r.body != "{\"n\":1}\n" || r.bodyErr == nil {
					t.Errorf("client got %q, err %v; want the first line and a cut", r.body, r.bodyErr)
				}
				out := requireOutcome(t, r, "a", 200, true)
				if !errors.Is(out.Err, engines.ErrStreamIdle) {
					t.Errorf("outcome error %v, want ErrStreamIdle", out.Err)
				}
				if len(r.streamEnd) != 1 || !errors.Is(r.streamEnd[0], engines.ErrStreamIdle) {
					t.Errorf("OnStreamEnd errors %v", r.streamEnd)
				}
			},
		},
		{
			name:     "a slow client is not an idle backend",
			backends: []backend{bulk(4 << 20)},
			// long enough that a busy machine's scheduling delays never
			// reach it while data is flowing
			plan: func(p *engines.Plan, _ []*target) { p.StreamIdleTimeout = 2 * time.Second },
			client: func(t *testing.T, front string) {
				res, err := http.Post(front+"/proxy/v1/chat/completions", "application/json", strings.NewReader(chatBody))
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				first := make([]byte, 1024)
				if _, err := io.ReadFull(res.Body, first); err != nil {
					t.Fatal(err)
				}
				// stop reading for twice the idle timeout: the proxy is
				// blocked writing to us, the backend has data ready. A
				// busier machine only stalls longer, which must not
				// matter either.
				time.Sleep(4 * time.Second)
				rest, err := io.ReadAll(res.Body)
				if err != nil || len(first)+len(rest) != 4<<20 {
					t.Errorf("slow client got %d bytes, err %v", len(first)+len(rest), err)
				}
			},
			check: func(t *testing.T, r *run) {
				if out := requireOutcome(t, r, "a", 200, false); out.Err != nil {
					t.Errorf("slow client's attempt ended with %v", out.Err)
				}
			},
		},
		{
			name:     "client reset mid-stream does not count against the backend",
			backends: []backend{paced()},
			client:   func(t *testing.T, front string) { hangUpMidStream(t, front, false) },
			check: func(t *testing.T, r *run) {
				out := r.attempt(t, "a")
				if !out.ClientGone() {
					t.Errorf("outcome error %v: not ErrClientGone", out.Err)
				}
				if len(r.streamEnd) != 1 || !errors.Is(r.streamEnd[0], engines.ErrClientGone) {
					t.Errorf("OnStreamEnd errors %v", r.streamEnd)
				}
			},
		},
		{
			// net/http stops watching a connection with a pipelined
			// request on it: the reset then shows as a failed write, not
			// as a cancelled context
			name:     "client reset mid-stream, seen as a failed write, does not count",
			backends: []backend{paced()},
			client:   func(t *testing.T, front string) { hangUpMidStream(t, front, true) },
			check: func(t *testing.T, r *run) {
				out := r.attempt(t, "a")
				if !out.ClientGone() {
					t.Errorf("outcome error %v: not ErrClientGone", out.Err)
				}
			},
		},
		{
			name:     "client reset while a transform writes does not count",
			backends: []backend{paced()},
			plan: func(p *engines.Plan, _ []*target) {
				p.Response = func(engines.Target, int, http.Header) engines.ResponseTransform { return upper{} }
			},
			client: func(t *testing.T, front string) { hangUpMidStream(t, front, true) },
			check: func(t *testing.T, r *run) {
				if out := r.attempt(t, "a"); !out.ClientGone() || out.TransformFailed() {
					t.Errorf("outcome error %v: want ErrClientGone only", out.Err)
				}
			},
		},
		{
			name: "client gone before the headers does not count either",
			backends: []backend{{handler: func(w http.ResponseWriter, r *http.Request) {
				close(arrived)
				<-r.Context().Done() // headers never come
			}}},
			client: func(t *testing.T, front string) {
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, front+"/proxy/v1/chat/completions", strings.NewReader(chatBody))
				go func() {
					<-arrived // the attempt is under way: leave now
					cancel()
				}()
				if res, err := http.DefaultClient.Do(req); err == nil {
					res.Body.Close()
					t.Error("request without headers answered")
				}
			},
			check: func(t *testing.T, r *run) {
				if out := r.attempt(t, "a"); !out.ClientGone() {
					t.Errorf("outcome error %v: not ErrClientGone", out.Err)
				}
				if r.serveErr != nil {
					t.Errorf("Serve returned %v for a client that left", r.serveErr)
				}
			},
		},
		{
			name: "X-Forwarded-* from an untrusted peer are replaced",
			request: func(front string) *http.Request {
				req, _ := http.NewRequest(http.MethodPost, front+"/proxy/v1/chat/completions", strings.NewReader(chatBody))
				req.Header.Add("X-Forwarded-For", "6.6.6.6")
				req.Header.Add("X-Forwarded-For", "7.7.7.7")
				req.Header.Set("X-Forwarded-Host", "evil.example")
				req.Header.Set("X-Forwarded-Proto", "https")
				return req
			},
			backends: []backend{ok("a")},
			check: func(t *testing.T, r *run) {
				h := r.seen[0][0].header
				if got := h.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
					t.Errorf("X-Forwarded-For %q, want [127.0.0.1]", got)
				}
				if got := h.Get("X-Forwarded-Proto"); got != "http" {
					t.Errorf("X-Forwarded-Proto %q", got)
				}
				if got := h.Get("X-Forwarded-Host"); got == "evil.example" || !strings.HasPrefix(got, "127.0.0.1:") {
					t.Errorf("X-Forwarded-Host %q", got)
				}
				if got := h.Get("Via"); got != "1.1 Caddy" {
					t.Errorf("Via %q", got)
				}
			},
		},
		{
			name:    "X-Forwarded-* from a trusted proxy are kept and appended to",
			trusted: true,
			request: func(front string) *http.Request {
				req, _ := http.NewRequest(http.MethodPost, front+"/proxy/v1/chat/completions", strings.NewReader(chatBody))
				req.Header.Add("X-Forwarded-For", "6.6.6.6")
				req.Header.Add("X-Forwarded-For", "7.7.7.7")
				req.Header.Set("X-Forwarded-Host", "api.example")
				req.Header.Set("X-Forwarded-Proto", "https")
				return req
			},
			backends: []backend{ok("a")},
			check: func(t *testing.T, r *run) {
				h := r.seen[0][0].header
				if got := h.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "6.6.6.6, 7.7.7.7, 127.0.0.1" {
					t.Errorf("X-Forwarded-For %q", got)
				}
				if h.Get("X-Forwarded-Proto") != "https" || h.Get("X-Forwarded-Host") != "api.example" {
					t.Errorf("X-Forwarded-Proto %q Host %q", h.Get("X-Forwarded-Proto"), h.Get("X-Forwarded-Host"))
				}
			},
		},
		{
			name: "one Server header: the backend's replaces ours, Via names the hop",
			backends: []backend{{handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Server", "backend/1.0")
				io.WriteString(w, "{}")
			}}},
			check: func(t *testing.T, r *run) {
				if got := r.res.Header.Values("Server"); len(got) != 1 || got[0] != "backend/1.0" {
					t.Errorf("Server %q, want [backend/1.0]", got)
				}
				if got := r.res.Header.Values("Via"); len(got) != 1 || got[0] != "1.1 Caddy" {
					t.Errorf("Via %q", got)
				}
			},
		},
		{
			name:     "no Server header from the backend: none at all, as reverse_proxy",
			backends: []backend{ok("a")},
			check: func(t *testing.T, r *run) {
				if got := r.res.Header.Values("Server"); len(got) != 0 {
					t.Errorf("Server %q, want none", got)
				}
			},
		},
		{
			name:     "Upstream seam: a path and body per target",
			backends: []backend{status(http.StatusServiceUnavailable), ok("b")},
			plan: func(p *engines.Plan, targets []*target) {
				p.Upstream = func(t engines.Target) (string, []byte) {
					if t.Name() == "a" {
						return "/v1/messages", []byte(`{"anthropic":true}`)
					}
					return "/v1/chat/completions", []byte(`{"openai":true}`)
				}
			},
			check: func(t *testing.T, r *run) {
				if a := r.seen[0][0]; a.path != "/base/v1/messages" || a.body != `{"anthropic":true}` {
					t.Errorf("a saw %s %q", a.path, a.body)
				}
				if b := r.seen[1][0]; b.path != "/base/v1/chat/completions" || b.body != `{"openai":true}` ||
					b.header.Get("Content-Length") != "" && b.header.Get("Content-Length") != "15" {
					t.Errorf("b saw %s %q", b.path, b.body)
				}
				if r.body != `{"from":"b"}` {
					t.Errorf("client got %q", r.body)
				}
			},
		},
		{
			name:     "Response seam: the transform rewrites body and headers",
			backends: []backend{ok("a")},
			plan: func(p *engines.Plan, _ []*target) {
				p.Response = func(t engines.Target, status int, h http.Header) engines.ResponseTransform {
					if status != 200 {
						return nil
					}
					h.Set("Content-Type", "text/plain")
					return upper{}
				}
			},
			check: func(t *testing.T, r *run) {
				if r.body != `{"FROM":"A"}[END]` || r.res.Header.Get("Content-Type") != "text/plain" {
					t.Errorf("client got %q (%s)", r.body, r.res.Header.Get("Content-Type"))
				}
				requireOutcome(t, r, "a", 200, false)
			},
		},
		{
			name:     "Response seam: a cut stream is told in-band, and still counts",
			backends: []backend{streamThenCut()},
			plan: func(p *engines.Plan, _ []*target) {
				p.Response = func(engines.Target, int, http.Header) engines.ResponseTransform { return upper{} }
			},
			check: func(t *testing.T, r *run) {
				if r.body != "{\"N\":1}\n{\"N\":2}\nevent: error\n" || r.bodyErr != nil {
					t.Errorf("client got %q, err %v; want the lines, the error event and a clean end", r.body, r.bodyErr)
				}
				if out := requireOutcome(t, r, "a", 200, true); out.Err == nil {
					t.Error("the cut is not in the outcome")
				}
			},
		},
		{
			name:     "Response seam: a failing transform aborts and does not count",
			backends: []backend{ok("a")},
			plan: func(p *engines.Plan, _ []*target) {
				p.Response = func(engines.Target, int, http.Header) engines.ResponseTransform { return broken{} }
			},
			check: func(t *testing.T, r *run) {
				if r.bodyErr == nil {
					t.Errorf("client got %q as complete", r.body)
				}
				if out := r.attempt(t, "a"); !out.TransformFailed() {
					t.Errorf("outcome error %v: not ErrTransform", out.Err)
				}
			},
		},
		{
			name: "trailers pass, and a stream gets X-Olla-Total-Time",
			backends: []backend{{handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/x-ndjson")
				w.Header().Set("Trailer", "X-Checksum")
				io.WriteString(w, "{\"n\":1}\n")
				w.Header().Set("X-Checksum", "abc")
			}}},
			check: func(t *testing.T, r *run) {
				if r.body != "{\"n\":1}\n" {
					t.Errorf("client got %q", r.body)
				}
				if got := r.res.Trailer.Get("X-Checksum"); got != "abc" {
					t.Errorf("trailer X-Checksum %q (trailers %v)", got, r.res.Trailer)
				}
				if got := r.res.Trailer.Get(engines.TotalTimeTrailer); !strings.HasSuffix(got, "ms") {
					t.Errorf("trailer %s %q", engines.TotalTimeTrailer, got)
				}
			},
		},
		{
			name:     "flush policy auto: a token stream reaches the client before it ends",
			backends: []backend{gated(gate)},
			client: func(t *testing.T, front string) {
				res, err := http.Post(front+"/proxy/v1/chat/completions", "application/json", strings.NewReader(chatBody))
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				br := bufio.NewReader(res.Body)
				line, err := br.ReadString('\n')
				if err != nil || line != "{\"n\":1}\n" {
					t.Fatalf("first line %q, %v", line, err)
				}
				// only now may the backend finish: had the line waited in
				// a buffer, we would not be here
				close(gate)
				rest, _ := io.ReadAll(br)
				if string(rest) != "{\"n\":2}\n" {
					t.Errorf("rest %q", rest)
				}
			},
			check: func(t *testing.T, r *run) {
				if out := requireOutcome(t, r, "a", 200, false); out.Err != nil || out.Bytes != 16 {
					t.Errorf("outcome %+v", out)
				}
			},
		},
		{
			// the olla engine holds the headers back a moment for the
			// first bytes to go with them; they must not wait for them
			name:     "flush policy auto: a stream's headers reach the client before its first bytes",
			backends: []backend{headersFirst(gate3)},
			client: func(t *testing.T, front string) {
				c := &http.Client{Timeout: deadline}
				res, err := c.Post(front+"/proxy/v1/chat/completions", "application/json", strings.NewReader(chatBody))
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				// only now may the backend send its first line: had the
				// headers waited for it, we would not be here
				close(gate3)
				if body, _ := io.ReadAll(res.Body); string(body) != "{\"n\":1}\n" {
					t.Errorf("body %q", body)
				}
				if res.Header.Get("Content-Type") != "text/event-stream" {
					t.Errorf("Content-Type %q", res.Header.Get("Content-Type"))
				}
			},
			check: func(t *testing.T, r *run) { requireOutcome(t, r, "a", 200, false) },
		},
		{
			name:     "flush policy always: even a sized JSON answer is flushed per read",
			backends: []backend{gatedSized(gate2)},
			plan:     func(p *engines.Plan, _ []*target) { p.Flush = engines.FlushAlways },
			client: func(t *testing.T, front string) {
				res, err := http.Post(front+"/proxy/v1/chat/completions", "application/json", strings.NewReader(chatBody))
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				first := make([]byte, 8)
				if _, err := io.ReadFull(res.Body, first); err != nil || string(first) != `{"part":` {
					t.Fatalf("first bytes %q, %v", first, err)
				}
				close(gate2) // only now may the backend finish
				rest, _ := io.ReadAll(res.Body)
				if string(rest) != `"one"}` {
					t.Errorf("rest %q", rest)
				}
			},
			check: func(t *testing.T, r *run) { requireOutcome(t, r, "a", 200, false) },
		},
	}
}

// gatedSized answers a JSON body with a Content-Length in two writes, the
// second only once g is closed.
func gatedSized(g chan struct{}) backend {
	return backend{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "14")
		io.WriteString(w, `{"part":`)
		http.NewResponseController(w).Flush()
		if waitGate(g, r) {
			io.WriteString(w, `"one"}`)
		}
	}}
}

// headersFirst sends a stream's headers, and its one line once the client
// has seen them (g closed), as a server that answers at once and thinks
// before its first token does.
func headersFirst(g chan struct{}) backend {
	return backend{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		if waitGate(g, r) {
			io.WriteString(w, "{\"n\":1}\n")
		}
	}}
}

// waitGate waits for g to close and reports whether it did before the
// client went away.
func waitGate(g chan struct{}, r *http.Request) bool {
	select {
	case <-g:
		return true
	case <-r.Context().Done():
		return false
	}
}

// gated sends one line, waits for the client to have seen it (g closed),
// sends another.
func gated(g chan struct{}) backend {
	return backend{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		io.WriteString(w, "{\"n\":1}\n")
		http.NewResponseController(w).Flush()
		if waitGate(g, r) {
			io.WriteString(w, "{\"n\":2}\n")
		}
	}}
}

// bulk answers n bytes as fast as the proxy takes them.
func bulk(n int) backend {
	return backend{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for sent := 0; sent < n; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}}
}

// hangUpMidStream reads the first streamed line over a raw connection and
// resets it (SO_LINGER 0), as a client killed mid-answer does; pipelined
// sends the first byte of a next request too.
func hangUpMidStream(t *testing.T, front string, pipelined bool) {
	u, _ := url.Parse(front)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /proxy/v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", u.Host, len(chatBody), chatBody)
	conn.SetReadDeadline(time.Now().Add(deadline))
	br := bufio.NewReader(conn)
	lines := 1
	if pipelined {
		lines = 2
	}
	for lines > 0 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		if strings.Contains(strings.ToLower(line), `{"n":`) { // a transform may uppercase it
			lines--
			if pipelined && lines == 1 {
				// the body is long read: the server's watch on the
				// connection takes this byte; one more line gives it time
				fmt.Fprint(conn, "G")
			}
		}
	}
	conn.(*net.TCPConn).SetLinger(0)
}
