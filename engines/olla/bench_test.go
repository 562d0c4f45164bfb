package olla

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/engines"
)

// target is an in-process endpoint for the engine's benchmarks and tests.
type target struct {
	u  *url.URL
	rt http.RoundTripper
}

func (t *target) Name() string                    { return "bench" }
func (t *target) Type() string                    { return "ollama" }
func (t *target) BaseURL() *url.URL               { return t.u }
func (t *target) Transport() http.RoundTripper    { return t.rt }
func (t *target) ApplyHeaders(h http.Header)      {}
func (t *target) ForwardsClientCredentials() bool { return false }

// onePicker offers a single target.
type onePicker struct {
	t    engines.Target
	used bool
}

func (p *onePicker) Next() (engines.Target, bool) {
	if p.used {
		return nil, false
	}
	p.used = true
	return p.t, true
}
func (p *onePicker) Done(engines.Target, engines.Outcome) {}
func (p *onePicker) Remaining() bool                      { return !p.used }

// discard is a ResponseWriter that flushes into nothing.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Flush()                      {}

// BenchmarkProxy measures one proxied request through the engine to an
// in-process upstream: a small JSON answer and a 5-chunk NDJSON stream.
// allocs/op counts the whole path, net/http's client included; the
// engine's own share is what -memprofile attributes to this package and
// engines/.
func BenchmarkProxy(b *testing.B) {
	body := []byte(`{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`)
	chunk := `{"model":"m","message":{"role":"assistant","content":"tok"},"done":false}` + "\n"
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"json", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			io.WriteString(w, `{"model":"m","message":{"role":"assistant","content":"hello"},"done":true,"eval_count":1}`)
		}},
		{"stream", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/x-ndjson")
			rc := http.NewResponseController(w)
			for range 5 {
				io.WriteString(w, chunk)
				rc.Flush()
			}
			io.WriteString(w, `{"model":"m","done":true,"eval_count":5,"prompt_eval_count":3}`+"\n")
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			up := httptest.NewServer(tc.handler)
			defer up.Close()
			u, _ := url.Parse(up.URL)
			tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
			defer tr.CloseIdleConnections()
			tgt := &target{u: u, rt: tr}
			e := New(0)
			req := httptest.NewRequest(http.MethodPost, "/olla/ollama/api/chat", strings.NewReader(""))
			req.RemoteAddr = "127.0.0.1:5555"
			b.ReportAllocs()
			for b.Loop() {
				w := &discard{h: make(http.Header, 8)}
				plan := engines.Plan{Path: "/api/chat", Body: body, Picker: &onePicker{t: tgt}, MaxAttempts: 1,
					Start: time.Now(), RequestID: "bench", OnStreamEnd: func(engines.Target, engines.Stream, error) {}}
				if err := e.Serve(w, req, &plan); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// cannedTransport answers without a network, so every allocation left in
// BenchmarkEngineOnly is the engine's own (plus the canned response).
type cannedTransport struct {
	header http.Header
	body   string
}

func (c *cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
	}
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: c.header.Clone(), ContentLength: -1,
		Body: io.NopCloser(strings.NewReader(c.body))}, nil
}

// BenchmarkEngineOnly is the engine's hot path alone: build the upstream
// request, send it, decorate and copy a streamed answer, account tokens.
func BenchmarkEngineOnly(b *testing.B) {
	u, _ := url.Parse("http://127.0.0.1:11434")
	tgt := &target{u: u, rt: &cannedTransport{
		header: http.Header{"Content-Type": {"application/x-ndjson"}, "Date": {"Tue, 24 Nov 2026 20:00:00 GMT"}},
		body:   strings.Repeat(`{"model":"m","message":{"content":"tok"},"done":false}`+"\n", 5) + `{"done":true,"eval_count":5}` + "\n",
	}}
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	e := New(0)
	req := httptest.NewRequest(http.MethodPost, "/olla/ollama/api/chat", strings.NewReader(""))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "bench")
	end := func(engines.Target, engines.Stream, error) {}
	b.ReportAllocs()
	for b.Loop() {
		w := &discard{h: make(http.Header, 8)}
		plan := engines.Plan{Path: "/api/chat", Body: body, Picker: &onePicker{t: tgt}, MaxAttempts: 1,
			Start: time.Now(), RequestID: "bench", OnStreamEnd: end}
		if err := e.Serve(w, req, &plan); err != nil {
			b.Fatal(err)
		}
	}
}
