package olla

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// BenchmarkServeChat is a plain streamed chat (an instant 5-chunk Ollama
// NDJSON stream, as the load harness's scenario b) through the whole olla
// handler in-process, round-robin over two simulated Ollama servers on
// loopback, next to Caddy's own reverse_proxy handler on the same servers
// in the same run: no queue, no sticky sessions, no adaptive signals, no
// rate limits. Both get a request prepared as Caddy's server prepares it
// and a response writer that flushes into nothing, so the difference
// between the two is the handlers' own work; -cpuprofile and -memprofile
// show where it goes.
//
//	go test -run '^$' -bench ServeChat -benchmem -cpuprofile cpu.out -memprofile mem.out .
func BenchmarkServeChat(b *testing.B) {
	addrs := benchSims(b)
	body := []byte(`{"model":"llama3.2:latest","messages":[{"role":"user","content":"Say hello in five words."}],"stream":true}`)

	b.Run("olla", func(b *testing.B) {
		h := benchHandler(b, `{"engine":"olla","load_balancer":"round-robin","endpoints":[
			{"name":"sim-a","url":"http://`+addrs[0]+`","type":"ollama"},
			{"name":"sim-b","url":"http://`+addrs[1]+`","type":"ollama"}]}`)
		serveChat(b, "/olla/ollama/api/chat", body, h)
	})

	b.Run("reverse_proxy", func(b *testing.B) {
		rp := new(reverseproxy.Handler)
		cfg := `{"upstreams":[{"dial":"` + addrs[0] + `"},{"dial":"` + addrs[1] + `"}],
			"load_balancing":{"selection_policy":{"policy":"round_robin"}},"flush_interval":-1}`
		if err := json.Unmarshal([]byte(cfg), rp); err != nil {
			b.Fatal(err)
		}
		if err := rp.Provision(benchContext(b)); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = rp.Cleanup() })
		// handle_path has already stripped /olla/ollama
		serveChat(b, "/api/chat", body, rp)
	})
}

// serveChat drives h with one chat request per iteration and checks the
// stream arrived whole.
func serveChat(b *testing.B, path string, body []byte, h caddyhttp.MiddlewareHandler) {
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		b.Fatal("the handler passed the request on")
		return nil
	})
	// a server with no access log and no trusted proxies, as both
	// handlers look it up
	srv := new(caddyhttp.Server)
	serve := func() *benchWriter {
		r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("User-Agent", "bench")
		r.Header.Set("Accept", "*/*")
		w := &benchWriter{h: make(http.Header)}
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, srv)
		if err := h.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
		return w
	}
	w := serve()
	if w.status != http.StatusOK || !bytes.Contains(w.last, []byte(`"done":true`)) {
		b.Fatalf("status %d, last write %q", w.status, w.last)
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		if w := serve(); w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
	// wall time per request swings with whatever else the machine runs;
	// the process's CPU time per request (handler, client, simulators)
	// much less
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchWriter is a flushing ResponseWriter that keeps only the status and
// the last write.
type benchWriter struct {
	h      http.Header
	status int
	last   []byte
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.last = append(w.last[:0], p...)
	return len(p), nil
}
func (w *benchWriter) Flush() {}
