package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// TestHealthFailover checks an endpoint whose health check fails leaves
// the rotation with no failed client request, and comes back, with its
// models rediscovered, after it recovers. How long each step took is
// logged, not asserted: a busy machine stretches it.
func TestHealthFailover(t *testing.T) {
	a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}})
	b := startSim(t, sim.Config{Kind: sim.Ollama, Name: "b", Models: []string{"m"}})
	load(t, site("load_balancer round-robin\n"+endpointBlock("a", a.URL, "ollama")+endpointBlock("b", b.URL, "ollama")))
	waitRoutable(t, "a", "b")

	var mu sync.Mutex
	var failed []string
	served := map[string]int{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			res := post(t, "/olla/ollama/api/chat", `{"model":"m","stream":false,"messages":[]}`)
			readAll(t, res)
			mu.Lock()
			if res.StatusCode != 200 {
				failed = append(failed, res.Status)
			} else {
				served[res.Header.Get("X-Olla-Endpoint")]++
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()

	a.SetFault(sim.Fault{Mode: "fail_health"})
	failedAt := time.Now()
	waitFor(t, "a unroutable", 30*time.Second, func() bool { return !endpointsStatus(t)["a"].Routable })
	t.Logf("a left the rotation %s after its health started failing", time.Since(failedAt).Round(time.Millisecond))
	// requests sent to a before it left may still be finishing
	waitFor(t, "a's last requests to end", 30*time.Second, func() bool { return endpointsStatus(t)["a"].ActiveConnections == 0 })
	mu.Lock()
	clear(served)
	mu.Unlock()
	waitFor(t, "10 requests served while a is down", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return served["b"] >= 10
	})
	mu.Lock()
	if served["a"] != 0 {
		t.Errorf("while a is down: served %v", served)
	}
	mu.Unlock()

	// while down, a's models change; recovery must rediscover them at once
	a.SetModels([]string{"m", "fresh-model"})
	a.SetFault(sim.Fault{})
	recoveredAt := time.Now()
	// failed probes back off to at most 4 × the interval (+10 % jitter), so
	// a quiet machine sees the recovery within about 2.2 s
	waitFor(t, "a routable again", 30*time.Second, func() bool {
		return endpointsStatus(t)["a"].Routable
	})
	seenAt := time.Now()
	t.Logf("a was routable again %s after it recovered", seenAt.Sub(recoveredAt).Round(time.Millisecond))
	waitFor(t, "a's new model rediscovered", 30*time.Second, func() bool {
		return endpointsStatus(t)["a"].ModelCount == 2
	})
	t.Logf("and its new model %s after that", time.Since(seenAt).Round(time.Millisecond))
	close(stop)
	<-done
	if len(failed) > 0 {
		t.Errorf("%d client requests failed during the transition: %v", len(failed), failed)
	}
	res := post(t, "/olla/ollama/api/chat", `{"model":"fresh-model","stream":false}`)
	readAll(t, res)
	if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "a" {
		t.Errorf("fresh-model: status %d from %q", res.StatusCode, res.Header.Get("X-Olla-Endpoint"))
	}
}

// adminClient opens a fresh connection per request: a load may replace
// the admin server, closing a kept-alive connection under the next POST
// (which, not being idempotent, would not be retried).
var adminClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: patientTimeout}

// reload posts a Caddyfile to the admin API, forcing a reload even when
// nothing changed.
func reload(t testing.TB, caddyfile string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://localhost:2999/load", strings.NewReader(caddyfile))
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	res, err := adminClient.Do(req)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	if b := readAll(t, res); res.StatusCode != 200 {
		t.Fatalf("reload: %d %s", res.StatusCode, b)
	}
}

// TestReloadKeepsState reloads through the admin API, adding an endpoint,
// while a stream is in flight, and checks nothing kept was reset.
func TestReloadKeepsState(t *testing.T) {
	const interval = 300 * time.Millisecond
	a := startSim(t, sim.Config{Kind: sim.Ollama, Name: "a", Models: []string{"m"}, TokensPerSecond: 20, Tokens: 30})
	sick := startSim(t, sim.Config{Kind: sim.Ollama, Name: "sick", Models: []string{"m"}})
	added := startSim(t, sim.Config{Kind: sim.Ollama, Name: "added", Models: []string{"m2"}})
	ep := func(name, url string) string {
		return fmt.Sprintf("endpoint %s {\n url %s\n type ollama\n check_interval %s\n check_timeout 150ms\n}\n", name, url, interval)
	}
	before := site(ep("a", a.URL) + ep("sick", sick.URL))
	after := site(ep("a", a.URL) + ep("sick", sick.URL) + ep("added", added.URL))
	load(t, before)
	waitRoutable(t, "a", "sick")
	sick.SetFault(sim.Fault{Mode: "fail_health"})
	waitFor(t, "sick unhealthy", 30*time.Second, func() bool { return endpointsStatus(t)["sick"].Status == "unhealthy" })
	for range 3 {
		readAll(t, post(t, "/olla/ollama/api/chat", `{"model":"m","stream":false}`))
	}
	pre := endpointsStatus(t)

	// a stream in flight across the reload
	streamDone := make(chan string, 1)
	go func() {
		res := post(t, "/olla/ollama/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
		got, _ := lines(t, res)
		streamDone <- strings.Join(got, "\n")
	}()
	waitFor(t, "the stream to start", 30*time.Second, func() bool { return a.Stats().Streams > 0 })

	a.ResetStats()
	sick.ResetStats()
	reloadAt := time.Now()
	reload(t, after)
	post1 := endpointsStatus(t)
	for _, name := range []string{"a", "sick"} {
		if post1[name].Status != pre[name].Status || post1[name].ModelCount != pre[name].ModelCount ||
			post1[name].RequestCount < pre[name].RequestCount {
			t.Errorf("%s changed across the reload: before %+v after %+v", name, pre[name], post1[name])
		}
	}
	waitFor(t, "the added endpoint probed and routable", 30*time.Second, func() bool {
		return endpointsStatus(t)["added"].Routable
	})
	t.Logf("added endpoint routable %s after the reload", time.Since(reloadAt).Round(time.Millisecond))

	if got := <-streamDone; !strings.Contains(got, `"done":true`) {
		t.Errorf("stream in flight was cut by the reload: %q", got)
	}

	// count probes at the simulator over a window: never more than one per
	// interval (plus the window's edges)
	time.Sleep(2 * time.Second)
	window := time.Since(reloadAt)
	limit := int64(window/interval) + 2
	if n := a.Requests("/"); n > limit {
		t.Errorf("a probed %d times in %s (interval %s): probed twice per interval", n, window.Round(time.Millisecond), interval)
	}
	// old loops are gone: the new config runs one loop per endpoint (three,
	// fleet.Endpoint.Run) and one queue kicker, and the old config's have
	// stopped. Counted by what the goroutines run, not by their number,
	// which idle connections and probes in flight move up and down.
	waitFor(t, "the old config's loops stopped", 30*time.Second, func() bool {
		return goroutinesIn("fleet.(*Endpoint).Run(") == 3 && goroutinesIn("olla.(*App).kickQueue(") == 1
	})
}

// TestCatalogue checks the unified catalogue and the native listings.
func TestCatalogue(t *testing.T) {
	o1 := startSim(t, sim.Config{Kind: sim.Ollama, Name: "o1", Models: []string{"llama3.2:latest", "only-o1"}})
	o2 := startSim(t, sim.Config{Kind: sim.Ollama, Name: "o2", Models: []string{"llama3.2:latest"}})
	lms := startSim(t, sim.Config{Kind: sim.LMStudio, Name: "lms", Models: []string{"llama3.2:latest", "qwen2.5-7b-instruct"}})
	load(t, site(endpointBlock("o1", o1.URL, "ollama")+endpointBlock("o2", o2.URL, "ollama")+endpointBlock("lms", lms.URL, "lm-studio")))
	waitRoutable(t, "o1", "o2", "lms")

	var unified struct {
		Object string `json:"object"`
		Data   []struct {
			ID   string `json:"id"`
			Olla struct {
				Availability []struct {
					Endpoint string `json:"endpoint"`
					Type     string `json:"type"`
				} `json:"availability"`
			} `json:"olla"`
		} `json:"data"`
	}
	getJSON(t, "/olla/models", &unified)
	ids := map[string][]string{}
	for _, m := range unified.Data {
		for _, a := range m.Olla.Availability {
			ids[m.ID] = append(ids[m.ID], a.Endpoint)
		}
	}
	if got := ids["llama3.2:latest"]; len(got) != 3 {
		t.Errorf("llama3.2:latest should be one entry listing o1, o2 and lms, got %v", got)
	}
	if len(unified.Data) != 3 {
		t.Errorf("want 3 unified entries, got %d: %v", len(unified.Data), ids)
	}

	var tags struct {
		Models []struct {
			Name   string `json:"name"`
			Model  string `json:"model"`
			Digest string `json:"digest"`
		} `json:"models"`
	}
	getJSON(t, "/olla/ollama/api/tags", &tags)
	if len(tags.Models) != 2 {
		t.Errorf("/olla/ollama/api/tags: want llama3.2:latest and only-o1, got %+v", tags.Models)
	}
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID     string `json:"id"`
			Object string `json:"object"`
		} `json:"data"`
	}
	getJSON(t, "/olla/lmstudio/v1/models", &list)
	if list.Object != "list" || len(list.Data) != 2 {
		t.Errorf("/olla/lmstudio/v1/models: %+v", list)
	}
	getJSON(t, "/olla/openai/v1/models", &list)
	if len(list.Data) != 3 {
		t.Errorf("/olla/openai/v1/models: want 3 models once each, got %+v", list.Data)
	}
	// /api/ps asks each Ollama for its loaded models and merges them
	readAll(t, post(t, "/olla/ollama/api/chat", `{"model":"only-o1","stream":false,"messages":[]}`))
	var ps struct {
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}
	getJSON(t, "/olla/ollama/api/ps", &ps)
	loaded := false
	for _, m := range ps.Models {
		loaded = loaded || strings.HasPrefix(m.Name, "only-o1")
	}
	if !loaded {
		t.Errorf("/olla/ollama/api/ps lacks the model just used on o1: %+v", ps.Models)
	}
	var one map[string]any
	getJSON(t, "/olla/models/llama3.2:latest", &one)
	if eps, _ := one["endpoints"].([]any); len(eps) != 3 {
		t.Errorf("/olla/models/llama3.2:latest endpoints: %v", one["endpoints"])
	}
	res, err := client.Get(base + "/olla/models/does-not-exist")
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, res); res.StatusCode != 404 {
		t.Errorf("unknown model detail: %d", res.StatusCode)
	}
	// every listing route answers for every provider, none with a 500
	for _, p := range []string{"ollama", "lmstudio", "lm-studio", "lm_studio", "vllm", "sglang", "llamacpp", "lemonade",
		"lmdeploy", "litellm", "openai-compatible", "openai", "proxy"} {
		res, err := client.Get(base + "/olla/" + p + "/v1/models")
		if err != nil {
			t.Fatal(err)
		}
		if b := readAll(t, res); res.StatusCode != 200 || !json.Valid([]byte(b)) {
			t.Errorf("/olla/%s/v1/models: %d %s", p, res.StatusCode, b)
		}
	}
}

func getJSON(t testing.TB, path string, v any) {
	t.Helper()
	res, err := client.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	b := readAll(t, res)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, res.StatusCode, b)
	}
	if err := json.Unmarshal([]byte(b), v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

// goroutinesIn counts the goroutines whose stack holds fn.
func goroutinesIn(fn string) int {
	count := 0
	for _, g := range strings.Split(allStacks(), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}
