package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// catalogueBuilds reads olla_catalogue_builds_total, summed over views.
func catalogueBuilds(t testing.TB) float64 {
	t.Helper()
	res, err := client.Get(base + "/internal/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "olla_catalogue_builds_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		total += v
	}
	return total
}

// getWith GETs path with header pairs, reads the body, and returns both.
func getWith(t testing.TB, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return res, readAll(t, res)
}

// TestCatalogueLargeNoRebuild: one endpoint listing 100,000 models. Asking
// for the catalogue routes again, one by one or 20 at once, builds nothing
// (olla_catalogue_builds_total stays put), and a client holding the ETag
// gets a 304.
func TestCatalogueLargeNoRebuild(t *testing.T) {
	names := make([]string, 100_000)
	for i := range names {
		names[i] = fmt.Sprintf("model-%06d", i)
	}
	big := startSim(t, sim.Config{Kind: sim.OpenAI, Name: "big", Models: names, NoRecord: true})
	// probes far apart and patient, so a busy machine does not flip the
	// endpoint's availability (which rebuilds, rightly) during the test
	load(t, site(fmt.Sprintf(`		endpoint big {
			url %s
			type openai-compatible
			health_check_url /v1/models/model-000000
			check_interval 1m
			check_timeout 30s
		}
`, big.URL)))
	waitFor(t, "100,000 models discovered", 10*time.Minute, func() bool {
		e := endpointsStatus(t)["big"]
		return e.Routable && e.ModelCount == len(names)
	})

	paths := []string{"/olla/models", "/olla/models?format=openai", "/olla/openai/v1/models",
		"/olla/openai-compatible/v1/models", "/olla/models?type=embeddings", "/internal/status/models"}
	// gzip asked for explicitly: the client then hands over the compressed
	// bytes, which keeps a run under the race detector short
	gzGet := func(p string) (*http.Response, int64) {
		req, _ := http.NewRequest(http.MethodGet, base+p, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		res, err := client.Do(req)
		if err != nil {
			t.Errorf("GET %s: %v", p, err)
			return nil, 0
		}
		defer res.Body.Close()
		n, _ := io.Copy(io.Discard, res.Body)
		return res, n
	}
	etags := map[string]string{}
	for _, p := range paths {
		res, n := gzGet(p)
		if res == nil || res.StatusCode != 200 || n == 0 {
			t.Fatalf("GET %s: %v, %d bytes", p, res, n)
		}
		if n > 1<<20 && res.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("GET %s: %d bytes not gzipped", p, n)
		}
		etags[p] = res.Header.Get("ETag")
	}
	if res, body := getWith(t, "/olla/openai/v1/models"); res.StatusCode != 200 || strings.Count(body, `"id":`) != len(names) {
		t.Fatalf("/olla/openai/v1/models: %d, %d models", res.StatusCode, strings.Count(body, `"id":`))
	}
	before := catalogueBuilds(t)
	if before == 0 {
		t.Fatal("olla_catalogue_builds_total is missing or zero after building the views")
	}
	var wg sync.WaitGroup
	for i := range 20 {
		// 20 at once on /olla/models, and every other route in between; the
		// status route's body tells the time, so it may be re-encoded once
		// a second and is left out
		for _, p := range []string{"/olla/models", paths[1+i%(len(paths)-2)]} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if res, _ := gzGet(p); res != nil && (res.StatusCode != 200 || res.Header.Get("ETag") != etags[p]) {
					t.Errorf("GET %s: %d, ETag %q (was %q)", p, res.StatusCode, res.Header.Get("ETag"), etags[p])
				}
			}()
		}
	}
	wg.Wait()
	if after := catalogueBuilds(t); after != before {
		t.Errorf("40 requests with nothing changed built %v catalogue views", after-before)
	}
	for _, p := range paths {
		res, body := getWith(t, p, "If-None-Match", etags[p])
		if res.StatusCode != http.StatusNotModified || body != "" {
			t.Errorf("GET %s with its ETag: %d, %d bytes", p, res.StatusCode, len(body))
		}
	}
}

// TestCatalogueETagAcrossRediscovery: a rediscovered list equal to the
// last keeps the ETag (clients keep their copy, nothing is rebuilt); a
// changed list changes it.
func TestCatalogueETagAcrossRediscovery(t *testing.T) {
	o := startSim(t, sim.Config{Kind: sim.Ollama, Name: "o", Models: []string{"llama3.2:latest", "qwen2.5:0.5b"}})
	load(t, site(endpointBlock("o", o.URL, "ollama")+"\n\t\tmodel_discovery {\n\t\t\tinterval 1s\n\t\t}\n"))
	waitRoutable(t, "o")
	res, _ := getWith(t, "/olla/ollama/api/tags")
	etag := res.Header.Get("ETag")
	if res.StatusCode != 200 || etag == "" {
		t.Fatalf("/olla/ollama/api/tags: %d, ETag %q", res.StatusCode, etag)
	}
	builds := catalogueBuilds(t)
	fetched := o.Requests("/api/tags")
	waitFor(t, "two more discoveries", 30*time.Second, func() bool { return o.Requests("/api/tags") >= fetched+2 })
	if res, body := getWith(t, "/olla/ollama/api/tags", "If-None-Match", etag); res.StatusCode != http.StatusNotModified {
		t.Fatalf("same list rediscovered: %d (ETag %q, was %q) %s", res.StatusCode, res.Header.Get("ETag"), etag, body)
	}
	if n := catalogueBuilds(t); n != builds {
		t.Errorf("rediscovering the same list rebuilt %v views", n-builds)
	}
	o.SetModels([]string{"llama3.2:latest", "qwen2.5:0.5b", "just-pulled:latest"})
	waitFor(t, "the new model listed", 30*time.Second, func() bool {
		res, body := getWith(t, "/olla/ollama/api/tags", "If-None-Match", etag)
		return res.StatusCode == 200 && res.Header.Get("ETag") != etag && strings.Contains(body, "just-pulled:latest")
	})
}

// TestRefreshOnMissSingleFlight: with discovery_refresh_on_miss, 50
// requests naming distinct unknown models make each endpoint fetch its
// model list at most once per 5 s interval, not once per request; a model
// that appears later is still found by a miss once the interval has passed.
func TestRefreshOnMissSingleFlight(t *testing.T) {
	o := startSim(t, sim.Config{Kind: sim.Ollama, Name: "o", Models: []string{"llama3.2:latest"}})
	v := startSim(t, sim.Config{Kind: sim.VLLM, Name: "v", Models: []string{"meta-llama/Llama-3.1-8B-Instruct"}})
	load(t, site(endpointBlock("o", o.URL, "ollama")+endpointBlock("v", v.URL, "vllm")+
		"\n\t\tmodel_registry {\n\t\t\trouting_strategy discovery\n\t\t\tdiscovery_refresh_on_miss\n\t\t}\n\t\tmodel_discovery {\n\t\t\tinterval 1h\n\t\t}\n"))
	waitRoutable(t, "o", "v")
	const interval = 5 * time.Second
	o.ResetStats()
	v.ResetStats()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := post(t, "/olla/openai/v1/chat/completions", fmt.Sprintf(`{"model":"made-up-%d-%d","messages":[]}`, i, start.UnixNano()))
			if body := readAll(t, res); res.StatusCode != http.StatusNotFound {
				t.Errorf("unknown model %d: %d %s", i, res.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	allowed := 1 + int64(elapsed/interval)
	for name, n := range map[string]int64{"o (/api/tags)": o.Requests("/api/tags"), "v (/v1/models)": v.Requests("/v1/models")} {
		if n < 1 || n > allowed {
			t.Errorf("%s: %d model list fetches for 50 misses in %s; want 1 to %d", name, n, elapsed.Round(time.Millisecond), allowed)
		}
	}

	// refreshing resumes once the interval has passed
	o.SetModels([]string{"llama3.2:latest", "late-arrival:latest"})
	waitFor(t, "a model pulled later found by a miss", 30*time.Second, func() bool {
		res := post(t, "/olla/ollama/api/chat", `{"model":"late-arrival","stream":false,"messages":[]}`)
		readAll(t, res)
		return res.StatusCode == 200 && res.Header.Get("X-Olla-Endpoint") == "o"
	})
}
