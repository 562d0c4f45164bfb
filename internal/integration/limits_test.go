package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
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
	// Requests until the first 429: the burst of 3 passes, and then only
	// the tokens refilled meanwhile (2 a second), however slowly a busy
	// machine sends them.
	var codes []int
	var refused *http.Response
	var refusedBody string
	began := time.Now()
	for refused == nil && len(codes) < 100 {
		res := post(t, "/olla/ollama/api/chat", chatBodyM)
		b := readAll(t, res)
		codes = append(codes, res.StatusCode)
		if res.StatusCode == 429 {
			refused, refusedBody = res, b
		}
	}
	refilled := int(time.Since(began) / (500 * time.Millisecond))
	if passed := len(codes) - 1; refused == nil || passed < 3 || passed > 3+refilled || slices.ContainsFunc(codes[:passed], func(c int) bool { return c != 200 }) {
		t.Fatalf("burst_size 3, %d tokens refilled: %v", refilled, codes)
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
		res, err := adminClient.Get(url)
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
	// the Anthropic and Responses translators, in the standalone's shape
	list, _ := tr["translators"].([]any)
	summary, _ := tr["summary"].(map[string]any)
	if len(list) != 2 || summary == nil || summary["total_translators"] != float64(2) {
		t.Fatalf("/internal/stats/translators: %v", tr)
	}
	for i, name := range []string{"anthropic", "responses"} {
		entry, _ := list[i].(map[string]any)
		for _, k := range []string{"total_requests", "passthrough_requests", "translation_requests", "fallback_cannot_passthrough"} {
			if _, ok := entry[k].(float64); !ok || entry["translator_name"] != name {
				t.Errorf("/internal/stats/translators entry %d lacks %s or is not %s: %v", i, k, name, entry)
			}
		}
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
//
// Nothing in it depends on the machine's speed: the backends hold every
// stream at one token a minute until the reloads are done and then let
// them finish, so every stream is open through every reload however long
// the reloads take. When it fails it says which streams ended how, and
// after which reload.
func TestReloadUnderLoad(t *testing.T) {
	const streams, reloads, tokens = 200, 20, 40
	const held = 1.0 / 60 // tokens per second while the reloads run
	a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}, Tokens: tokens})
	b := startSim(t, sim.Config{Kind: sim.Ollama, Name: "b", Models: []string{"m"}, Tokens: tokens})
	// Probes get a timeout a busy machine does not miss: what is checked is
	// that a reload keeps the health state, not how fast a probe comes back
	// while 200 streams start on two shared cores.
	ep := func(name, url string) string {
		return fmt.Sprintf("endpoint %s {\n url %s\n type ollama\n check_interval 1s\n check_timeout 900ms\n}\n", name, url)
	}
	configs := []string{
		site("load_balancer round-robin\n" + ep("a", a.URL) + ep("b", b.URL)),
		site("load_balancer least-connections\n" + ep("a", a.URL) + ep("b", b.URL)),
	}
	load(t, configs[0])
	waitRoutable(t, "a", "b")
	// Status reads between reloads open a fresh connection each: a kept-alive
	// one may belong to the server the last reload is closing.
	statusTr := &http.Transport{DisableKeepAlives: true}
	defer statusTr.CloseIdleConnections()
	status := func() map[string]endpointInfo {
		return endpointsStatusVia(t, &http.Client{Transport: statusTr, Timeout: patientTimeout})
	}
	before := status()
	for _, s := range []*sim.Server{a, b} {
		s.SetTiming(0, held, tokens)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a backstop, not a measurement
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	began := time.Now()
	var reloadsDone atomic.Int64 // reloads finished so far, to place each stream's end
	ends := make([]streamEnd, streams)
	var ended atomic.Int64
	var wg sync.WaitGroup
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ended.Add(1)
			time.Sleep(time.Duration(i) * 4 * time.Millisecond) // spread the starts over 0.8 s, as clients arrive
			e := &ends[i]
			e.read(ctx, c, base+"/olla/ollama/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
			e.after, e.at = reloadsDone.Load(), time.Since(began)
		}()
	}
	release := func() {
		for _, s := range []*sim.Server{a, b} {
			s.SetTiming(0, 0, tokens)
		}
	}
	report := func(what string) {
		t.Helper()
		var bad []string
		for i, e := range ends {
			if e.fault() != "" {
				bad = append(bad, fmt.Sprintf("stream %d: %s", i, e.describe()))
			}
		}
		t.Errorf("%s; %d of %d streams failed or were cut:\n\t%s", what, len(bad), streams, strings.Join(bad, "\n\t"))
	}

	// Every stream is running before the first reload: what a reload may
	// do to connections still being accepted is Caddy's listener handover,
	// not ours (see the README's note on reloads). A stream that ends
	// before then has failed (it cannot have finished), so stop waiting.
	var inFlight int64
	inFlightBy := time.Now().Add(2 * time.Minute)
	for {
		st := status()
		if inFlight = st["a"].ActiveConnections + st["b"].ActiveConnections; inFlight == streams || ended.Load() > 0 ||
			time.Now().After(inFlightBy) {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if inFlight != streams {
		release()
		wg.Wait()
		report(fmt.Sprintf("before the reloads only %d of %d streams were in flight", inFlight, streams))
		return
	}

	var healthLog []string // health changes seen after each reload
	for i := range reloads {
		reload(t, configs[(i+1)%2])
		reloadsDone.Add(1)
		st := status()
		for _, n := range []string{"a", "b"} {
			if st[n].Status != before[n].Status || st[n].ModelCount != before[n].ModelCount {
				healthLog = append(healthLog, fmt.Sprintf("after reload %d: %s %s/%d (%s)", i+1, n, st[n].Status, st[n].ModelCount, st[n].Reason))
			}
		}
		time.Sleep(100 * time.Millisecond) // spacing between reloads, not a wait for anything
	}
	early := ended.Load()
	release()
	wg.Wait()

	var completed int
	for _, e := range ends {
		if e.fault() == "" {
			completed++
		}
	}
	if completed != streams {
		report(fmt.Sprintf("under %d reloads %d of %d streams completed (%d ended while the reloads ran)", reloads, completed, streams, early))
	}
	after := status()
	for _, n := range []string{"a", "b"} {
		if after[n].Status != before[n].Status || after[n].ModelCount != before[n].ModelCount {
			t.Errorf("%s changed: %+v -> %+v; changes seen along the way: %q", n, before[n], after[n], healthLog)
		}
	}
}

// streamEnd is how one stream of TestReloadUnderLoad ended.
type streamEnd struct {
	endpoint string // X-Olla-Endpoint
	status   int
	err      error // transport or read error
	bytes    int
	done     bool   // the final "done":true line arrived
	head     string // the start of a non-200 body
	after    int64  // reloads finished when it ended
	at       time.Duration
}

// read sends one streamed chat request and reads the answer to its end.
func (e *streamEnd) read(ctx context.Context, c *http.Client, url, body string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		e.err = err
		return
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		e.err = err
		return
	}
	defer res.Body.Close()
	e.status, e.endpoint = res.StatusCode, res.Header.Get("X-Olla-Endpoint")
	b, err := io.ReadAll(res.Body)
	e.bytes, e.err, e.done = len(b), err, strings.Contains(string(b), `"done":true`)
	if res.StatusCode != http.StatusOK {
		e.head = strings.TrimSpace(string(b[:min(len(b), 200)]))
	}
}

// fault says what went wrong with the stream, "" when nothing did.
func (e *streamEnd) fault() string {
	switch {
	case e.status == 0:
		return fmt.Sprintf("no answer: %v", e.err)
	case e.status != http.StatusOK:
		return fmt.Sprintf("status %d: %s", e.status, e.head)
	case e.err != nil:
		return fmt.Sprintf("cut after %d bytes: %v", e.bytes, e.err)
	case !e.done:
		return fmt.Sprintf("truncated: %d bytes without \"done\":true", e.bytes)
	}
	return ""
}

// describe is fault with where and when.
func (e *streamEnd) describe() string {
	return fmt.Sprintf("%s (endpoint %q, ended %.1fs in, after %d reloads)", e.fault(), e.endpoint, e.at.Seconds(), e.after)
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
	waitFor(t, "the access log entry", 30*time.Second, func() bool {
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
