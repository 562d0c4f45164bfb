package engines_test

// The keep-alive race: a backend closes an idle connection just as the
// transport reuses it for the next request. The request is written, and
// the read of the answer meets EOF before any byte. Go's transport replays
// only idempotent requests then; the engines mark theirs so
// (engines.Replayable), and the attempt is answered instead of failing. These backends close a
// connection deterministically on its second request, after reading it
// whole, which is that race with the timing taken out.

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-olla/olla/engines"
)

type connSeqKey struct{}

// keepAliveBackend counts the requests of every connection it accepts and
// lets act decide, per request, how to answer: act gets the request's
// number on its connection (1 = first) and overall.
type keepAliveBackend struct {
	srv      *httptest.Server
	requests atomic.Int32 // overall
	conns    atomic.Int32 // connections accepted
}

// closeConn ends the request's connection without a byte of answer, after
// reading the request whole (so the close is a FIN, never a reset).
func closeConn(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

func answerOK(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok":true}`)
}

func startKeepAliveBackend(t *testing.T, act func(w http.ResponseWriter, r *http.Request, onConn, overall int32)) *keepAliveBackend {
	b := &keepAliveBackend{}
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := r.Context().Value(connSeqKey{}).(*atomic.Int32).Add(1)
		act(w, r, n, b.requests.Add(1))
	}))
	b.srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		b.conns.Add(1)
		return context.WithValue(ctx, connSeqKey{}, new(atomic.Int32))
	}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	return b
}

// keepAliveFront serves every request through e to the one backend, over
// one transport kept across requests, and records the attempts.
type keepAliveFront struct {
	url      string
	mu       sync.Mutex
	attempts []attempt
	errs     []error
	open     atomic.Int32 // requests inside Serve
}

func startKeepAliveFront(t *testing.T, e engines.Engine, backendURL string) *keepAliveFront {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	u, _ := url.Parse(backendURL)
	tg := &target{name: "a", u: u, rt: tr}
	f := &keepAliveFront{}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f.open.Add(1)
		defer f.open.Add(-1)
		req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), w, &caddyhttp.Server{})
		body, _ := io.ReadAll(req.Body)
		picker := &listPicker{targets: []engines.Target{tg}}
		plan := &engines.Plan{Path: req.URL.Path, Body: body, Picker: picker, MaxAttempts: 1,
			Start: time.Now(), RequestID: "req-1", Flush: engines.FlushAuto}
		err := e.Serve(w, req, plan)
		picker.mu.Lock()
		f.mu.Lock()
		f.attempts = append(f.attempts, picker.attempts...)
		f.errs = append(f.errs, err)
		f.mu.Unlock()
		picker.mu.Unlock()
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "no endpoint answered: "+err.Error())
		}
	}))
	t.Cleanup(front.Close)
	f.url = front.URL
	return f
}

// post sends one chat request through the front and returns its status
// and body.
func (f *keepAliveFront) post(t *testing.T, ctx context.Context) (int, string, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.url+"/v1/chat/completions", strings.NewReader(chatBody))
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: deadline, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

func (f *keepAliveFront) mustPost(t *testing.T) (int, string) {
	t.Helper()
	code, body, err := f.post(t, context.Background())
	if err != nil {
		t.Fatalf("client request: %v", err)
	}
	return code, body
}

func (f *keepAliveFront) outcomes() ([]attempt, []error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]attempt(nil), f.attempts...), append([]error(nil), f.errs...)
}

// TestKeepAliveRace: the second request finds its reused connection
// closed under it before any byte; it is sent again on a fresh connection
// and answered, and the endpoint is not blamed.
func TestKeepAliveRace(t *testing.T) {
	for _, eng := range enginesUnderTest(t) {
		t.Run(eng.name, func(t *testing.T) {
			b := startKeepAliveBackend(t, func(w http.ResponseWriter, r *http.Request, onConn, _ int32) {
				if onConn == 2 {
					closeConn(w, r)
					return
				}
				answerOK(w, r)
			})
			f := startKeepAliveFront(t, eng.e, b.srv.URL)
			for i := 1; i <= 2; i++ {
				if code, body := f.mustPost(t); code != http.StatusOK || body != `{"ok":true}` {
					t.Fatalf("request %d: %d %q, want 200 from the backend", i, code, body)
				}
			}
			if got := b.requests.Load(); got != 3 {
				t.Errorf("the backend saw %d requests, want 3 (one, then one on the reused connection, then its retry)", got)
			}
			if got := b.conns.Load(); got != 2 {
				t.Errorf("the backend accepted %d connections, want 2: the retry goes on a fresh one", got)
			}
			attempts, _ := f.outcomes()
			if len(attempts) != 2 {
				t.Fatalf("attempts %+v, want one per request: the retry is part of its attempt", attempts)
			}
			for i, a := range attempts {
				if a.out.Err != nil || a.out.Status != http.StatusOK {
					t.Errorf("attempt %d: status %d, err %v; want a clean 200", i+1, a.out.Status, a.out.Err)
				}
			}
		})
	}
}

// TestKeepAliveRetryOnFreshConn: with two idle connections in the pool,
// both closed by the backend, the request meets each (neither answered a
// byte) and is answered on a fresh one: the retries are bounded by the
// stale connections in the pool.
func TestKeepAliveRetryOnFreshConn(t *testing.T) {
	for _, eng := range enginesUnderTest(t) {
		t.Run(eng.name, func(t *testing.T) {
			var arrived atomic.Int32
			both := make(chan struct{})
			b := startKeepAliveBackend(t, func(w http.ResponseWriter, r *http.Request, onConn, overall int32) {
				if onConn > 1 {
					closeConn(w, r)
					return
				}
				if overall <= 2 { // the first two wait for each other: two connections
					if arrived.Add(1) == 2 {
						close(both)
					}
					select {
					case <-both:
					case <-time.After(deadline):
					}
				}
				answerOK(w, r)
			})
			f := startKeepAliveFront(t, eng.e, b.srv.URL)
			var wg sync.WaitGroup
			codes := make([]int, 2)
			for i := range codes {
				wg.Go(func() { codes[i], _, _ = f.post(t, context.Background()) })
			}
			wg.Wait()
			if codes[0] != http.StatusOK || codes[1] != http.StatusOK || b.conns.Load() != 2 {
				t.Fatalf("setup: statuses %v over %d connections, want two 200s over 2", codes, b.conns.Load())
			}
			if code, body := f.mustPost(t); code != http.StatusOK {
				t.Fatalf("third request: %d %q, want 200 from a fresh connection", code, body)
			}
			if got := b.conns.Load(); got != 3 {
				t.Errorf("the backend accepted %d connections, want 3", got)
			}
			if got := b.requests.Load(); got != 5 {
				t.Errorf("the backend saw %d requests, want 5 (two, the third on each pooled connection, then on a fresh one)", got)
			}
		})
	}
}

// TestKeepAliveRetryOnce: when the retry fails too, the attempt fails;
// there is no second retry.
func TestKeepAliveRetryOnce(t *testing.T) {
	for _, eng := range enginesUnderTest(t) {
		t.Run(eng.name, func(t *testing.T) {
			b := startKeepAliveBackend(t, func(w http.ResponseWriter, r *http.Request, _, overall int32) {
				if overall > 1 {
					closeConn(w, r)
					return
				}
				answerOK(w, r)
			})
			f := startKeepAliveFront(t, eng.e, b.srv.URL)
			if code, _ := f.mustPost(t); code != http.StatusOK {
				t.Fatalf("first request: %d", code)
			}
			if code, body := f.mustPost(t); code != http.StatusBadGateway {
				t.Fatalf("second request: %d %q, want the front's 502", code, body)
			}
			if got := b.requests.Load(); got != 3 {
				t.Errorf("the backend saw %d requests, want 3: one retry, no more", got)
			}
			attempts, errs := f.outcomes()
			if len(attempts) != 2 || attempts[1].out.Err == nil || attempts[1].out.ClientGone() {
				t.Fatalf("attempts %+v: the second must fail against the backend", attempts)
			}
			if errs[1] == nil || !strings.Contains(errs[1].Error(), "EOF") {
				t.Errorf("Serve's error %v, want the backend's EOF", errs[1])
			}
		})
	}
}

// TestKeepAliveNoRetryAfterAByte: a connection that breaks after the first
// byte of an answer is not retried: the backend may have acted on it.
func TestKeepAliveNoRetryAfterAByte(t *testing.T) {
	for _, eng := range enginesUnderTest(t) {
		t.Run(eng.name, func(t *testing.T) {
			b := startKeepAliveBackend(t, func(w http.ResponseWriter, r *http.Request, onConn, _ int32) {
				if onConn == 2 {
					_, _ = io.Copy(io.Discard, r.Body)
					conn, bw, err := http.NewResponseController(w).Hijack()
					if err != nil {
						panic(err)
					}
					bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: appl")
					bw.Flush()
					conn.Close()
					return
				}
				answerOK(w, r)
			})
			f := startKeepAliveFront(t, eng.e, b.srv.URL)
			f.mustPost(t)
			if code, body := f.mustPost(t); code != http.StatusBadGateway {
				t.Fatalf("second request: %d %q, want the front's 502", code, body)
			}
			if got := b.requests.Load(); got != 2 {
				t.Errorf("the backend saw %d requests, want 2: no retry after a byte of answer", got)
			}
		})
	}
}

// TestKeepAliveNoRetryOnFreshConn: a fresh connection closed before any
// byte is the backend's failure, not the keep-alive race: no retry.
func TestKeepAliveNoRetryOnFreshConn(t *testing.T) {
	for _, eng := range enginesUnderTest(t) {
		t.Run(eng.name, func(t *testing.T) {
			b := startKeepAliveBackend(t, closeConn2)
			f := startKeepAliveFront(t, eng.e, b.srv.URL)
			if code, body := f.mustPost(t); code != http.StatusBadGateway {
				t.Fatalf("request: %d %q, want the front's 502", code, body)
			}
			if got := b.requests.Load(); got != 1 {
				t.Errorf("the backend saw %d requests, want 1", got)
			}
			attempts, _ := f.outcomes()
			if len(attempts) != 1 || attempts[0].out.Err == nil {
				t.Fatalf("attempts %+v: the one attempt must fail", attempts)
			}
		})
	}
}

func closeConn2(w http.ResponseWriter, r *http.Request, _, _ int32) { closeConn(w, r) }

// TestKeepAliveNoRetryWhenClientLeft: a client that hangs up while its
// request waits on a reused connection gets no retry, and the backend is
// not blamed.
func TestKeepAliveNoRetryWhenClientLeft(t *testing.T) {
	for _, eng := range enginesUnderTest(t) {
		t.Run(eng.name, func(t *testing.T) {
			arrived := make(chan struct{})
			b := startKeepAliveBackend(t, func(w http.ResponseWriter, r *http.Request, onConn, _ int32) {
				if onConn == 2 {
					// read whole, so the server watches the connection and
					// ends the context when the proxy gives it up
					_, _ = io.Copy(io.Discard, r.Body)
					close(arrived)
					<-r.Context().Done()
					return
				}
				answerOK(w, r)
			})
			f := startKeepAliveFront(t, eng.e, b.srv.URL)
			f.mustPost(t)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-arrived
				cancel()
			}()
			if _, _, err := f.post(t, ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("client request: %v, want it cancelled", err)
			}
			waitFor(t, "both requests to leave the engine", func() bool {
				attempts, _ := f.outcomes()
				return len(attempts) == 2 && f.open.Load() == 0
			})
			if got := b.requests.Load(); got != 2 {
				t.Errorf("the backend saw %d requests, want 2: a client's hang-up is not retried", got)
			}
			attempts, _ := f.outcomes()
			if !attempts[1].out.ClientGone() {
				t.Errorf("second attempt: %+v, want it put down to the client", attempts[1].out)
			}
		})
	}
}
