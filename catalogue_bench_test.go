package olla

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/profiles"
)

// testEndpoint is an endpoint state with a healthy verdict and the given
// models discovered, for handler tests that need no Caddy.
func testEndpoint(tb testing.TB, name, typ string, models []profiles.Model) *endpointState {
	tb.Helper()
	u, _ := url.Parse("http://127.0.0.1:1")
	st := newEndpointState(&endpointSettings{name: name, typ: typ, url: u, displayURL: u.String(), checkInterval: time.Second})
	tb.Cleanup(func() { _ = st.Destruct() })
	st.health.Store(&healthSnapshot{status: discovery.StatusHealthy, checkedAt: time.Now()})
	if models != nil {
		st.models.Store(newModelSnapshot(models, time.Now()))
	}
	return st
}

// manyModels makes n OpenAI-style models named model-000000...
func manyModels(n int) []profiles.Model {
	out := make([]profiles.Model, n)
	for i := range out {
		out[i] = profiles.Model{Name: fmt.Sprintf("org/model-%06d", i), Publisher: "org", MaxContextLength: 8192}
	}
	return out
}

// serveGet runs one GET through the handler's /olla/ routing, without Caddy.
func serveGet(h *Handler, target string, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	rq := &request{h: h, w: w, r: r, start: time.Now(), id: "test"}
	prefix, apiPath, _ := strings.Cut(r.URL.Path[len("/olla/"):], "/")
	rq.prefix, rq.apiPath = prefix, "/"+apiPath
	_ = rq.serveOlla()
	return w
}

// discardWriter is a ResponseWriter that keeps the status and counts the
// body, so a benchmark measures the handler and not a recorder's buffer.
type discardWriter struct {
	header http.Header
	code   int
	n      int
}

func (d *discardWriter) Header() http.Header         { return d.header }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
func (d *discardWriter) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }

// BenchmarkCatalogue100k is one endpoint listing 100,000 models, asked for
// its catalogue again and again with nothing changing: each request should
// cost the bytes it sends, not a rebuild.
func BenchmarkCatalogue100k(b *testing.B) {
	st := testEndpoint(b, "big", "openai-compatible", manyModels(100_000))
	h := &Handler{states: []*endpointState{st}}
	for name, path := range map[string]string{"models": "/olla/models", "openai": "/olla/openai/v1/models",
		"models-ollama": "/olla/models?format=ollama"} {
		b.Run(name, func(b *testing.B) {
			benchGet(b, h, path, nil)
		})
		// the first request after a model list change pays for the rebuild
		b.Run(name+"-after-change", func(b *testing.B) {
			models := st.models.Load().models
			benchGet(b, h, path, func() { st.models.Store(newModelSnapshot(models, time.Now())) })
		})
	}
}

func benchGet(b *testing.B, h *Handler, path string, before func()) {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	prefix, apiPath, _ := strings.Cut(r.URL.Path[len("/olla/"):], "/")
	get := func() {
		w := &discardWriter{header: http.Header{}}
		rq := &request{h: h, w: w, r: r, start: time.Now(), id: "bench", prefix: prefix, apiPath: "/" + apiPath}
		if _ = rq.serveOlla(); w.code != http.StatusOK || w.n == 0 {
			b.Fatalf("%s: %d", path, w.code)
		}
	}
	get() // warm: the steady state is what is measured
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if before != nil {
			b.StopTimer()
			before()
			b.StartTimer()
		}
		get()
	}
}
