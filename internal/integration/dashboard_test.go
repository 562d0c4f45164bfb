package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// TestDashboardRoutes checks the page's files, its data route and their
// security headers; the page itself is driven in a real browser by the e2e
// suite (e2e/test/80-dashboard.test.mjs).
func TestDashboardRoutes(t *testing.T) {
	evil := `<script>alert(1)</script>:x`
	s := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m", evil}, Tokens: 3})
	load(t, site(endpointBlock("a", s.URL, "ollama")))
	waitRoutable(t, "a")

	for _, tc := range []struct{ path, ctype string }{
		{"/internal/ui", "text/html"},
		{"/internal/ui/", "text/html"},
		{"/internal/ui/app.js", "text/javascript"},
		{"/internal/ui/app.css", "text/css"},
		{"/internal/ui/data", "application/json"},
	} {
		res, err := client.Get(base + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, res)
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), tc.ctype) {
			t.Errorf("%s: %d %q, want 200 %s", tc.path, res.StatusCode, res.Header.Get("Content-Type"), tc.ctype)
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
			t.Errorf("%s: Content-Security-Policy %q", tc.path, csp)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", tc.path)
		}
	}
	for _, p := range []string{"/internal/ui/nope.js", "/internal/ui/ui.go", "/internal/ui/assets/app.js"} {
		res, _ := client.Get(base + p)
		if readAll(t, res); res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, res.StatusCode)
		}
	}

	res := post(t, "/olla/ollama/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`)
	readAll(t, res)
	res, _ = client.Get(base + "/internal/ui/data")
	raw := readAll(t, res)
	if strings.Contains(raw, "<script>") {
		t.Errorf("the data route carries raw markup; JSON should escape it: %s", raw)
	}
	var d struct {
		Endpoints []struct {
			Name   string   `json:"name"`
			Models []string `json:"models"`
		} `json:"endpoints"`
		Catalogue []struct {
			ID        string   `json:"id"`
			Endpoints []string `json:"endpoints"`
		} `json:"catalogue"`
		Recent []struct {
			Model, Endpoint, Reason string
			Status                  int
		} `json:"recent"`
		Timeline []struct {
			RPS float64 `json:"rps"`
		} `json:"timeline"`
	}
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatalf("data: %v", err)
	}
	if len(d.Endpoints) != 1 || d.Endpoints[0].Name != "a" || len(d.Endpoints[0].Models) != 2 {
		t.Errorf("endpoints: %+v", d.Endpoints)
	}
	found := false
	for _, m := range d.Catalogue {
		found = found || m.ID == evil
	}
	if !found {
		t.Errorf("catalogue lacks %q: %+v", evil, d.Catalogue)
	}
	if len(d.Recent) == 0 || d.Recent[0].Endpoint != "a" || d.Recent[0].Status != 200 || d.Recent[0].Reason == "" {
		t.Errorf("recent: %+v", d.Recent)
	}
	if len(d.Timeline) != 120 {
		t.Errorf("timeline has %d points, want 120 (ten minutes of 5 s)", len(d.Timeline))
	}

	// unchanged data revalidates with a 304
	res, _ = client.Get(base + "/internal/ui/data")
	readAll(t, res)
	req, _ := http.NewRequest(http.MethodGet, base+"/internal/ui/data", nil)
	req.Header.Set("If-None-Match", res.Header.Get("ETag"))
	res2, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res2)
	if res2.StatusCode != http.StatusNotModified && res2.Header.Get("ETag") == res.Header.Get("ETag") {
		t.Errorf("same ETag %s but %d", res.Header.Get("ETag"), res2.StatusCode)
	}
}

// TestDashboardLatestTagOnce: Ollama lists "phi-4-mini:latest" for a
// model another endpoint lists as "phi-4-mini"; routing takes either name
// for the other, so the dashboard's catalogue (and the page's model count,
// its length) holds it once, with both endpoints, under the first
// endpoint's spelling. Other tags stay models of their own.
func TestDashboardLatestTagOnce(t *testing.T) {
	o := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"phi-4-mini", "phi-4-mini:q8"}})
	l := startSim(t, sim.Config{Kind: sim.LMStudio, Models: []string{"phi-4-mini", "qwen2.5-7b-instruct"}})
	load(t, site(endpointBlock("o", o.URL, "ollama")+endpointBlock("l", l.URL, "lm-studio")))
	waitRoutable(t, "o", "l")
	var d struct {
		Catalogue []struct {
			ID        string   `json:"id"`
			Endpoints []string `json:"endpoints"`
		} `json:"catalogue"`
	}
	res, err := client.Get(base + "/internal/ui/data")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(readAll(t, res)), &d); err != nil {
		t.Fatalf("data: %v", err)
	}
	got := map[string]string{}
	for _, m := range d.Catalogue {
		got[m.ID] = strings.Join(m.Endpoints, ",")
	}
	want := map[string]string{"phi-4-mini:latest": "o,l", "phi-4-mini:q8": "o", "qwen2.5-7b-instruct": "l"}
	if len(got) != len(want) {
		t.Fatalf("catalogue %v, want %v", got, want)
	}
	for id, eps := range want {
		if got[id] != eps {
			t.Errorf("catalogue %q: endpoints %q, want %q (all: %v)", id, got[id], eps, got)
		}
	}
}

// TestDashboardETagStable: while nothing happens the page's data keeps its
// ETag across the clock's seconds (and the probes that run meanwhile), so
// the page's conditional polls get 304; a request or a drain changes it.
func TestDashboardETagStable(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, Tokens: 3})
	load(t, site(endpointBlock("a", s.URL, "ollama")))
	waitRoutable(t, "a")

	etag := func() string {
		t.Helper()
		res, err := client.Get(base + "/internal/ui/data")
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, res)
		if res.StatusCode != 200 || res.Header.Get("ETag") == "" {
			t.Fatalf("/internal/ui/data: %d, ETag %q", res.StatusCode, res.Header.Get("ETag"))
		}
		return res.Header.Get("ETag")
	}
	conditional := func(tag string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/internal/ui/data", nil)
		req.Header.Set("If-None-Match", tag)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, res); res.StatusCode == http.StatusNotModified && body != "" {
			t.Errorf("304 with a body: %q", body)
		}
		return res.StatusCode
	}
	tag := idleETag(t, etag)
	if code := conditional(tag); code != http.StatusNotModified {
		t.Fatalf("If-None-Match with the current tag: %d, want 304", code)
	}

	readAll(t, post(t, "/olla/ollama/api/chat", adminChat))
	if code := conditional(tag); code != http.StatusOK {
		t.Errorf("after a request: %d, want 200 with the new data", code)
	}
	tag = etag()
	if code, _ := adminCall(t, http.MethodPost, "/olla/endpoints/a/drain"); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	if code := conditional(tag); code != http.StatusOK {
		t.Errorf("after a drain: %d, want 200 with the new data", code)
	}
}

// idleETag is the tag two polls of an idle proxy more than a second apart
// (the payload's time differs) agree on. Something may still change
// between two (a first load poll, traffic of an earlier test moving along
// the timeline every 5 s), so a few tries are allowed; a tag that covers
// the clock never holds.
func idleETag(t *testing.T, etag func() string) string {
	t.Helper()
	for try := 0; ; try++ {
		first := etag()
		time.Sleep(1100 * time.Millisecond)
		if tag := etag(); tag == first {
			return tag
		} else if try == 10 {
			t.Fatalf("the ETag changed on every pair of idle polls (last %s then %s)", first, tag)
		}
	}
}
