package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// TestRateLimits checks a burst over the limit gets 429s with the right
// headers and recovers, and the health routes keep their own bucket.
func TestRateLimits(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}, Tokens: 2})
	load(t, site(endpointBlock("a", s.URL, "ollama")+`
		rate_limits {
			per_ip_requests_per_minute 120
			burst_size 3
			health_requests_per_minute 6000
			health_burst_size 50
		}
		request_limits {
			max_header_size 4KiB
		}`))
	waitRoutable(t, "a")
	time.Sleep(1600 * time.Millisecond) // the health polling above spent nothing of the proxy bucket; let it fill
	var codes []int
	var refused *http.Response
	var refusedBody string
	for range 5 {
		res := post(t, "/olla/ollama/api/chat", chatBodyM)
		b := readAll(t, res)
		codes = append(codes, res.StatusCode)
		if res.StatusCode == 429 && refused == nil {
			refused, refusedBody = res, b
		}
	}
	if fmt.Sprint(codes) != "[200 200 200 429 429]" {
		t.Fatalf("burst of 5 with burst_size 3: %v", codes)
	}
	var ollamaErr struct {
		Error string `json:"error"`
	}
	if json.Unmarshal([]byte(refusedBody), &ollamaErr) != nil || !strings.Contains(ollamaErr.Error, "rate limit") {
		t.Errorf("a 429 on Ollama's API is not in Ollama's error format: %s", refusedBody)
	}
	h := refused.Header
	if h.Get("Retry-After") != "1" || h.Get("X-Ratelimit-Limit") != "120" || h.Get("X-Ratelimit-Remaining") != "0" {
		t.Errorf("429 headers: %v", h)
	}
	if reset, err := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64); err != nil || reset < time.Now().Unix() {
		t.Errorf("X-RateLimit-Reset %q", h.Get("X-Ratelimit-Reset"))
	}
	// health and status are in their own bucket
	for range 20 {
		res, err := client.Get(base + "/internal/health")
		if err != nil {
			t.Fatal(err)
		}
		if readAll(t, res); res.StatusCode != 200 {
			t.Fatalf("health refused while the proxy bucket is empty: %d", res.StatusCode)
		}
	}
	// and it recovers
	time.Sleep(1100 * time.Millisecond)
	res := post(t, "/olla/ollama/api/chat", chatBodyM)
	if readAll(t, res); res.StatusCode != 200 {
		t.Errorf("not recovered after a token's time: %d", res.StatusCode)
	}
	// a header block over max_header_size
	time.Sleep(600 * time.Millisecond)
	res = post(t, "/olla/ollama/api/chat", chatBodyM, "X-Big", strings.Repeat("x", 5000))
	if b := readAll(t, res); res.StatusCode != 431 || !strings.Contains(b, "max_header_size") {
		t.Errorf("big headers: %d %s", res.StatusCode, b)
	}
}

// TestMetrics sends a known sequence of requests and reads the counts at
// Caddy's metrics endpoint and at /internal/metrics.
func TestMetrics(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "metrics-ep", Models: []string{"metrics-model:latest"}, Tokens: 4})
	load(t, site(endpointBlock("metrics-ep", s.URL, "ollama")))
	waitRoutable(t, "metrics-ep")
	for range 3 {
		readAll(t, post(t, "/olla/ollama/api/chat", `{"model":"metrics-model:latest","messages":[{"role":"user","content":"hi"}]}`))
	}
	readAll(t, post(t, "/olla/ollama/v1/chat/completions", `{"model":"metrics-model:latest","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`))
	readAll(t, post(t, "/olla/ollama/api/chat", `{"model":"never-heard-of-it-`+strconv.FormatInt(time.Now().UnixNano(), 10)+`"}`))

	want := []string{
		`olla_requests_total{endpoint="metrics-ep",model="metrics-model:latest",provider="ollama",status="200"} 4`,
		`olla_tokens_total{direction="out",endpoint="metrics-ep",model="metrics-model:latest"} 16`,
		`olla_time_to_first_token_seconds_count{endpoint="metrics-ep",model="metrics-model:latest"} 4`,
		`olla_endpoint_up{endpoint="metrics-ep",status="healthy",type="ollama"} 1`,
		`olla_endpoint_models{endpoint="metrics-ep"} 1`,
	}
	for _, url := range []string{"http://localhost:2999/metrics", base + "/internal/metrics"} {
		res, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, res)
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %s", url, w)
			}
		}
		if strings.Contains(body, "never-heard-of-it") {
			t.Errorf("%s: an unknown model became a label", url)
		}
		if !strings.Contains(body, `model="unknown",provider="ollama",status="404"`) {
			t.Errorf("%s: the unknown-model 404 is not counted under model=\"unknown\"", url)
		}
	}
	var stats struct {
		Models []struct {
			Name          string `json:"name"`
			TotalRequests int64  `json:"total_requests"`
			TokensOut     int64  `json:"tokens_out"`
		} `json:"models"`
	}
	getJSON(t, "/internal/stats/models", &stats)
	found := false
	for _, m := range stats.Models {
		if m.Name == "metrics-model:latest" {
			found = true
			if m.TotalRequests != 4 || m.TokensOut != 16 {
				t.Errorf("stats for metrics-model: %+v", m)
			}
		}
	}
	if !found {
		t.Errorf("/internal/stats/models lacks metrics-model: %+v", stats.Models)
	}
	var tr map[string]any
	getJSON(t, "/internal/stats/translators", &tr)
	if list, ok := tr["translators"].([]any); !ok || len(list) != 0 {
		t.Errorf("/internal/stats/translators: %v", tr)
	}
}

// TestCORS checks preflights are answered by us and real requests carry
// the allow and expose headers.
func TestCORS(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}, Tokens: 2})
	load(t, site(endpointBlock("a", s.URL, "ollama")+"\ncors {\n allowed_origins https://chat.example.com\n}\n"))
	waitRoutable(t, "a")
	req, _ := http.NewRequest(http.MethodOptions, base+"/olla/ollama/api/chat", nil)
	req.Header.Set("Origin", "https://chat.example.com")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type, authorization")
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != "https://chat.example.com" ||
		res.Header.Get("Access-Control-Allow-Headers") != "content-type, authorization" {
		t.Errorf("preflight: %d %v", res.StatusCode, res.Header)
	}
	res = post(t, "/olla/ollama/api/chat", chatBodyM, "Origin", "https://chat.example.com")
	readAll(t, res)
	if res.Header.Get("Access-Control-Allow-Origin") != "https://chat.example.com" ||
		!strings.Contains(res.Header.Get("Access-Control-Expose-Headers"), "X-Olla-Endpoint") {
		t.Errorf("CORS on a request: %v", res.Header)
	}
	res = post(t, "/olla/ollama/api/chat", chatBodyM, "Origin", "https://evil.example.com")
	readAll(t, res)
	if res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("an origin not listed was allowed")
	}
}

// TestReloadUnderLoad reloads the config 20 times, forced, alternating two
// configs, while 200 streams run: no request fails, no stream is cut, and
// health state is unchanged.
func TestReloadUnderLoad(t *testing.T) {
	a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}, TokensPerSecond: 10, Tokens: 60})
	b := startSim(t, sim.Config{Kind: sim.Ollama, Name: "b", Models: []string{"m"}, TokensPerSecond: 10, Tokens: 60})
	configs := []string{
		site("load_balancer round-robin\n" + endpointBlock("a", a.URL, "ollama") + endpointBlock("b", b.URL, "ollama")),
		site("load_balancer least-connections\n" + endpointBlock("a", a.URL, "ollama") + endpointBlock("b", b.URL, "ollama")),
	}
	load(t, configs[0])
	waitRoutable(t, "a", "b")
	before := endpointsStatus(t)

	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	c := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	defer tr.CloseIdleConnections()
	var failed, truncated, completed atomic.Int64
	var mu sync.Mutex
	var failures []string
	fail := func(why string) {
		failed.Add(1)
		mu.Lock()
		failures = append(failures, why)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 4 * time.Millisecond) // spread the starts over 0.8 s
			res, err := c.Post(base+"/olla/ollama/api/chat", "application/json",
				strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
			if err != nil {
				fail(err.Error())
				return
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			switch {
			case err != nil || res.StatusCode != 200:
				fail(fmt.Sprintf("%d %v %s", res.StatusCode, err, body))
			case !strings.Contains(string(body), `"done":true`):
				truncated.Add(1)
			default:
				completed.Add(1)
			}
		}()
	}
	// every stream is running before the first reload: what a reload may
	// do to connections still being accepted is Caddy's listener handover,
	// not ours (see the README's note on reloads)
	waitFor(t, "200 streams in flight", 10*time.Second, func() bool {
		st := endpointsStatus(t)
		return st["a"].ActiveConnections+st["b"].ActiveConnections == 200
	})
	for i := range 20 {
		reload(t, configs[(i+1)%2])
		time.Sleep(100 * time.Millisecond)
	}
	if n := completed.Load(); n > 0 {
		t.Errorf("%d streams finished before the reloads did: the streams are too short to test anything", n)
	}
	wg.Wait()
	if failed.Load() != 0 || truncated.Load() != 0 || completed.Load() != 200 {
		t.Errorf("under 20 reloads: %d failed, %d truncated, %d completed of 200; failures: %q", failed.Load(), truncated.Load(), completed.Load(), failures)
	}
	after := endpointsStatus(t)
	for _, n := range []string{"a", "b"} {
		if after[n].Status != before[n].Status || after[n].ModelCount != before[n].ModelCount {
			t.Errorf("%s changed: %+v -> %+v", n, before[n], after[n])
		}
	}
}

// TestAccessLogFields checks the olla fields land in Caddy's access log
// entry, and no credential does.
func TestAccessLogFields(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Name: "logged", Models: []string{"m"}, Tokens: 3})
	logFile := t.TempDir() + "/access.log"
	load(t, fmt.Sprintf(`{
	admin localhost:2999
	http_port %d
	auto_https off
}
http://localhost:%d {
	log {
		output file %s
	}
	olla {
%s
	}
}
`, httpPort, httpPort, logFile, endpointBlock("logged", s.URL, "ollama", "auth bearer sk-do-not-log-me")))
	waitRoutable(t, "logged")
	res := post(t, "/olla/ollama/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		"Authorization", "Bearer client-secret-token", "X-Request-ID", "log-test-1")
	readAll(t, res)
	var line string
	waitFor(t, "the access log entry", 5*time.Second, func() bool {
		b, _ := os.ReadFile(logFile)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "log-test-1") {
				line = l
				return true
			}
		}
		return false
	})
	for _, want := range []string{`"olla_request_id":"log-test-1"`, `"olla_endpoint":"logged"`, `"olla_model":"m"`,
		`"olla_status":200`, `"olla_tokens_out":3`, `"olla_ttft"`} {
		if !strings.Contains(line, want) {
			t.Errorf("access log lacks %s: %s", want, line)
		}
	}
	for _, secret := range []string{"sk-do-not-log-me", "client-secret-token"} {
		if strings.Contains(line, secret) {
			t.Errorf("access log carries a credential: %s", line)
		}
	}
}
