package olla

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-olla/olla/internal/redistest"
	"github.com/caddy-olla/olla/internal/sim"
)

// BenchmarkKeyLimits is a plain non-streamed chat through the whole olla
// handler in-process, over two simulated Ollama servers on loopback, with
// key_limits off, counting in memory, and counting in a real redis-server
// (when one is installed): every request counted against four limits of
// its key. The process's CPU time per request (handler, simulators and
// Redis client; not redis-server) is reported as cpu-ns/op, which a busy
// machine skews less than wall time; -cpuprofile shows where it goes.
//
//	go test -run '^$' -bench KeyLimits -benchmem .
func BenchmarkKeyLimits(b *testing.B) {
	addrs := benchSims(b)
	body := []byte(`{"model":"llama3.2:latest","messages":[{"role":"user","content":"Say hello in five words."}],"stream":false}`)
	limits := `"key":"{http.request.remote}","tokens_per_minute":1000000000000,"requests_per_minute":1000000000000,"budget_day":1000000000,"budget_month":1000000000`
	variants := []struct{ name, keyLimits string }{
		{"off", ""},
		{"memory", `,"key_limits":{` + limits + `}`},
	}
	if _, err := exec.LookPath("redis-server"); err == nil {
		rs := redistest.Start(b)
		variants = append(variants, struct{ name, keyLimits string }{"redis",
			`,"key_limits":{` + limits + `,"storage":"redis","redis_address":"` + rs.Socket + `"}`})
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			h := benchHandler(b, `{"engine":"olla","load_balancer":"round-robin","endpoints":[
				{"name":"sim-a","url":"http://`+addrs[0]+`","type":"ollama"},
				{"name":"sim-b","url":"http://`+addrs[1]+`","type":"ollama"}]`+v.keyLimits+`}`)
			serveBench(b, "/olla/ollama/api/chat", body, h)
		})
	}
}

// benchSims starts the two simulated Ollama servers the handler
// benchmarks use, serving llama3.2:latest.
func benchSims(b *testing.B) []string {
	var addrs []string
	for range 2 {
		s, err := sim.Start(sim.Config{Kind: "ollama", Models: []string{"llama3.2:latest"}, Tokens: 5, NoRecord: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.Close)
		addrs = append(addrs, s.Addr)
	}
	return addrs
}

// benchContext is a config of its own for one handler: the olla app keeps
// its endpoints from Provision to Cleanup.
func benchContext(b *testing.B) caddy.Context {
	ctx, err := caddy.ProvisionContext(&caddy.Config{
		Logging: &caddy.Logging{Logs: map[string]*caddy.CustomLog{"default": {BaseLog: caddy.BaseLog{Level: "ERROR"}}}},
		AppsRaw: caddy.ModuleMap{"olla": json.RawMessage(`{}`)},
	})
	if err != nil {
		b.Fatal(err)
	}
	return ctx
}

// benchHandler provisions and starts a handler from its JSON config, with
// an olla app of its own, and waits until its endpoints serve the model.
func benchHandler(b *testing.B, cfg string) *Handler {
	h := new(Handler)
	if err := json.Unmarshal([]byte(cfg), h); err != nil {
		b.Fatal(err)
	}
	if err := h.Provision(benchContext(b)); err != nil {
		b.Fatal(err)
	}
	app := h.app
	if err := app.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = app.Stop(); _ = h.Cleanup(); _ = app.Cleanup() })
	deadline := time.Now().Add(30 * time.Second)
	for _, st := range h.states {
		for {
			if _, ok := st.LookupModel("llama3.2:latest"); ok && st.Routable(time.Now()) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s never became routable with the model: %+v", st.Name(), st.Health())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return h
}

// serveBench drives h with 8 clients at once (4 per core on the 2-core
// machine the harness targets), each request from one of 8 client ports
// (key_limits' {http.request.remote} key changes per connection, as in
// the load harness), and checks each answer.
func serveBench(b *testing.B, path string, body []byte, h caddyhttp.MiddlewareHandler) {
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		b.Fatal("the handler passed the request on")
		return nil
	})
	srv := new(caddyhttp.Server) // no access log, no trusted proxies
	remotes := []string{"127.0.0.1:40001", "127.0.0.1:40002", "127.0.0.1:40003", "127.0.0.1:40004",
		"127.0.0.1:40005", "127.0.0.1:40006", "127.0.0.1:40007", "127.0.0.1:40008"}
	serve := func(remote string) *benchWriter {
		r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		r.RemoteAddr = remote
		r.Header.Set("Content-Type", "application/json")
		w := &benchWriter{h: make(http.Header)}
		r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, srv)
		if err := h.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
		return w
	}
	if w := serve(remotes[0]); w.status != http.StatusOK || !bytes.Contains(w.last, []byte(`"done":true`)) {
		b.Fatalf("status %d, last write %q", w.status, w.last)
	}
	b.ReportAllocs()
	cpu0 := processCPU()
	// 8 clients at once, as the load harness runs them: what contends
	// for a lock shows
	b.SetParallelism(4)
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := n.Add(1)
			if w := serve(remotes[k%int64(len(remotes))]); w.status != http.StatusOK {
				b.Errorf("status %d", w.status)
				return
			}
		}
	})
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}
