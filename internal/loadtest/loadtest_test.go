package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// TestTerminatorScan feeds bodies in every split to check the terminator is
// found across piece boundaries and not invented.
func TestTerminatorScan(t *testing.T) {
	bodies := []struct {
		body string
		pat  string
		want bool
	}{
		{`{"message":{"content":"hi"},"done":false}` + "\n" + `{"done":true,"eval_count":5}` + "\n", ndjsonDone, true},
		{`{"message":{"content":"hi"},"done":false}` + "\n", ndjsonDone, false},
		{"data: {\"choices\":[]}\n\ndata: [DONE]\n\n", sseDone, true},
		{"data: {\"choices\":[]}\n\ndata: [DON", sseDone, false},
		{`"done":tru`, ndjsonDone, false},
	}
	for _, b := range bodies {
		for size := 1; size <= len(b.body); size++ {
			var ts terminatorScan
			ts.reset(b.pat)
			for i := 0; i < len(b.body); i += size {
				ts.feed([]byte(b.body[i:min(i+size, len(b.body))]))
			}
			if ts.found != b.want {
				t.Fatalf("body %q in pieces of %d: found=%v, want %v", b.body, size, ts.found, b.want)
			}
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	if got := percentile(d, 0.5); got != 50 {
		t.Errorf("p50 = %d, want 50", got)
	}
	if got := percentile(d, 0.99); got != 99 {
		t.Errorf("p99 = %d, want 99", got)
	}
	if got := percentile(d[:1], 0.99); got != 1 {
		t.Errorf("p99 of one = %d, want 1", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("p50 of none = %d, want 0", got)
	}
}

func TestSpreadOf(t *testing.T) {
	runs := []runStats{{rps: 30}, {rps: 10}, {rps: 20}}
	s := spreadOf(runs, metricRPS)
	if s.median != 20 || s.min != 10 || s.max != 30 || s.n != 3 {
		t.Errorf("spread = %+v", s)
	}
}

// TestCaddyfiles checks the generated configurations route the same path
// space for every contender.
func TestCaddyfiles(t *testing.T) {
	cs := newContenders(42100, 2100)
	backends := []string{"127.0.0.1:1", "127.0.0.1:2"}
	for _, c := range cs {
		cf := c.caddyfile(backends)
		for _, want := range []string{"admin 127.0.0.1:", "auto_https off", "bind 127.0.0.1"} {
			if !strings.Contains(cf, want) {
				t.Errorf("%s: no %q in\n%s", c.name, want, cf)
			}
		}
		if !strings.HasSuffix(c.chatURL(), "/olla/ollama/api/chat") {
			t.Errorf("%s: chat URL %s", c.name, c.chatURL())
		}
	}
	if cf := cs[reverseProxy].caddyfile(backends); !strings.Contains(cf, "flush_interval -1") ||
		!strings.Contains(cf, "handle_path /olla/ollama/*") || !strings.Contains(cf, "lb_policy round_robin") {
		t.Errorf("reverse_proxy config:\n%s", cf)
	}
	if cf := cs[sherpa].caddyfile(backends); !strings.Contains(cf, "engine sherpa") || !strings.Contains(cf, "load_balancer round-robin") {
		t.Errorf("sherpa config:\n%s", cf)
	}
}

func TestPickScenarios(t *testing.T) {
	sc, err := pickScenarios("c, a")
	if err != nil || len(sc) != 2 || sc[0].key != "c" || sc[1].key != "a" {
		t.Fatalf("pickScenarios = %v, %v", sc, err)
	}
	if _, err := pickScenarios("a,x"); err == nil {
		t.Fatal("unknown scenario accepted")
	}
}

// TestDriveClassifies runs the load client against an in-process simulator
// and checks complete, cut and failed answers land in the right counters.
func TestDriveClassifies(t *testing.T) {
	s, err := sim.Start(sim.Config{Kind: sim.Ollama, Models: []string{testModel}, NoRecord: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	spec := loadSpec{url: s.URL + chatPath, body: requestBody(true), clients: 2}
	run := func() loadOutcome {
		return drive(context.Background(), spec, newWindow(time.Now(), 600*time.Millisecond, 300*time.Millisecond))
	}

	if out := run(); out.ok == 0 || out.errors != 0 || out.truncated != 0 || len(out.ttfb) != int(out.ok) {
		t.Errorf("clean run: ok=%d errors=%d truncated=%d samples=%v", out.ok, out.errors, out.truncated, out.samples)
	}
	s.SetFault(sim.Fault{Mode: sim.FaultDropMidStream, AfterChunks: 2})
	if out := run(); out.ok != 0 || out.errors != 0 || out.truncated == 0 {
		t.Errorf("dropped streams: ok=%d errors=%d truncated=%d samples=%v", out.ok, out.errors, out.truncated, out.samples)
	}
	s.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: 503})
	if out := run(); out.ok != 0 || out.errors == 0 || out.truncated != 0 {
		t.Errorf("503s: ok=%d errors=%d truncated=%d samples=%v", out.ok, out.errors, out.truncated, out.samples)
	}
}

func TestPickScenariosReload(t *testing.T) {
	sc, err := pickScenarios("a,b,c,h,r")
	if err != nil || len(sc) != 5 || sc[4].key != "r" || !sc[4].reload || sc[0].reload || !sc[3].hostile || sc[3].reload {
		t.Fatalf("pickScenarios = %+v, %v", sc, err)
	}
	o, err := parseFlags(nil, io.Discard)
	if err != nil || len(o.scenarios) != 5 || o.scenarios[3].key != "h" || o.scenarios[4].key != "r" {
		t.Fatalf("default scenarios %+v, %v", o.scenarios, err)
	}
	if _, err := pickScenarios("q"); err == nil || !strings.Contains(err.Error(), "a, b, c, h, r") {
		t.Errorf("unknown scenario error %v", err)
	}
}

// TestAltCaddyfiles checks the two configurations scenario (r) alternates
// differ in the load balancer and nothing else.
func TestAltCaddyfiles(t *testing.T) {
	backends := []string{"127.0.0.1:1", "127.0.0.1:2"}
	want := map[int][2]string{
		olla:         {"load_balancer round-robin", "load_balancer least-connections"},
		sherpa:       {"load_balancer round-robin", "load_balancer least-connections"},
		reverseProxy: {"lb_policy round_robin", "lb_policy least_conn"},
	}
	for i, c := range newContenders(42100, 2100) {
		base, alt := c.caddyfile(backends), c.altCaddyfile(backends)
		w := want[i]
		if !strings.Contains(base, w[0]) || !strings.Contains(alt, w[1]) {
			t.Errorf("%s: want %q / %q in\n%s\n%s", c.name, w[0], w[1], base, alt)
		}
		if strings.ReplaceAll(alt, w[1], w[0]) != base {
			t.Errorf("%s: the configurations differ beyond the load balancer:\n%s\n%s", c.name, base, alt)
		}
	}
}

func TestCompareHealth(t *testing.T) {
	before := []endpointHealth{{Name: "a", Status: "healthy", ModelCount: 1, ActiveConnections: 100},
		{Name: "b", Status: "healthy", ModelCount: 1, ActiveConnections: 100}}
	same := []endpointHealth{{Name: "b", Status: "healthy", ModelCount: 1}, {Name: "a", Status: "healthy", ModelCount: 1}}
	if ok, d := compareHealth(before, same); !ok || d != "" {
		t.Errorf("same state (active connections aside, reordered): %v %q", ok, d)
	}
	if activeSum(before) != 200 {
		t.Errorf("activeSum = %d", activeSum(before))
	}
	changed := []endpointHealth{{Name: "a", Status: "unknown", ModelCount: 0}, {Name: "c", Status: "healthy", ModelCount: 2}}
	ok, d := compareHealth(before, changed)
	if ok || d != "a healthy/1 → unknown/0, b healthy/1 → gone, c new → healthy/2" {
		t.Errorf("changed state: %v %q", ok, d)
	}
}

// TestPostLoad checks the reload request and that a refusal is an error.
func TestPostLoad(t *testing.T) {
	status := http.StatusOK
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type")+" "+r.Header.Get("Cache-Control")+" "+string(b))
		w.WriteHeader(status)
		io.WriteString(w, `{"error":"bad config"}`)
	}))
	defer srv.Close()
	hc := srv.Client()
	if err := postLoad(context.Background(), hc, srv.URL, []byte(":1 {}")); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "POST /load text/caddyfile must-revalidate :1 {}" {
		t.Errorf("request %q", got)
	}
	status = http.StatusBadRequest
	if err := postLoad(context.Background(), hc, srv.URL, []byte("x")); err == nil || !strings.Contains(err.Error(), "bad config") {
		t.Errorf("refused reload: %v", err)
	}
}

// TestBurst runs one request per client against an in-process simulator:
// paced streams complete, dropped ones are truncated, 503s fail.
func TestBurst(t *testing.T) {
	s, err := sim.Start(sim.Config{Kind: sim.Ollama, Models: []string{testModel}, NoRecord: true,
		TTFT: 20 * time.Millisecond, TokensPerSecond: 50, Tokens: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	spec := loadSpec{url: s.URL + chatPath, body: requestBody(true), clients: 20}
	count := func(ends []streamEnd) (ok, failed, truncated int) {
		for _, e := range ends {
			switch e.kind {
			case resultOK:
				ok++
			case resultError:
				failed++
			case resultTruncated:
				truncated++
			}
		}
		return
	}
	// The limit is a backstop a busy machine does not reach; a stream
	// cannot end sooner than its first token and pacing allow (about
	// 100 ms), however fast the machine.
	start := time.Now()
	ends := burst(context.Background(), spec, start, 100*time.Millisecond, start.Add(time.Minute))
	if ok, f, tr := count(ends); ok != 20 || f != 0 || tr != 0 {
		t.Errorf("clean burst: ok=%d failed=%d truncated=%d %+v", ok, f, tr, ends)
	}
	for _, e := range ends {
		if d := e.at.Sub(start); d < 100*time.Millisecond {
			t.Errorf("a stream ended %s after the start; it takes at least 100 ms", d)
		}
	}

	s.SetFault(sim.Fault{Mode: sim.FaultDropMidStream, AfterChunks: 2})
	start = time.Now()
	if ok, f, tr := count(burst(context.Background(), spec, start, 50*time.Millisecond, start.Add(time.Minute))); ok != 0 || f != 0 || tr != 20 {
		t.Errorf("dropped streams: ok=%d failed=%d truncated=%d", ok, f, tr)
	}
	s.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: 503})
	start = time.Now()
	ends = burst(context.Background(), spec, start, 50*time.Millisecond, start.Add(time.Minute))
	if ok, f, tr := count(ends); ok != 0 || f != 20 || tr != 0 || !strings.Contains(ends[0].detail, "status 503") {
		t.Errorf("503s: ok=%d failed=%d truncated=%d %q", ok, f, tr, ends[0].detail)
	}

	// Streams cut by the limit fail.
	s.SetFault(sim.Fault{})
	s.SetTiming(0, 5, 50)
	start = time.Now()
	if ok, f, tr := count(burst(context.Background(), spec, start, 10*time.Millisecond, start.Add(300*time.Millisecond))); ok != 0 || f+tr != 20 {
		t.Errorf("streams past the limit: ok=%d failed=%d truncated=%d", ok, f, tr)
	}
}

// TestReloadVerdicts checks the PASS/MISS logic and the report of scenario
// (r), including the targets line.
func TestReloadVerdicts(t *testing.T) {
	good := &reloadStats{streams: 200, completed: 200, reloads: reloadCount, inFlight: 200, health: true, healthSame: true}
	rp := &reloadStats{streams: 200, completed: 200, reloads: reloadCount, inFlight: -1}
	bad := *good
	bad.healthSame, bad.healthDetail, bad.healthBefore = false, "sim-a healthy/1 → unknown/0", "sim-a healthy/1"
	if !good.passed() || !rp.passed() || bad.passed() {
		t.Fatalf("passed: good %v rp %v bad %v", good.passed(), rp.passed(), bad.passed())
	}
	cut := *good
	cut.completed, cut.truncated = 199, 1
	if cut.passed() {
		t.Error("a truncated stream passed")
	}
	refused := *good
	refused.reloadErrors = 1
	if refused.passed() {
		t.Error("a refused reload passed")
	}

	sc, _ := pickScenarios("r")
	res := scenarioResult{sc: sc[0]}
	res.reload[olla], res.reload[sherpa], res.reload[reverseProxy] = good, &bad, rp
	var out strings.Builder
	printTable(&out, res, options{})
	for _, want := range []string{"health state unchanged", "yes", "no", "n/a", "200/200",
		"olla PASS; sherpa MISS; reverse_proxy (reference) PASS", "changed: sim-a healthy/1 → unknown/0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
	line := targetsLine([]scenarioResult{res})
	if !strings.Contains(line, "(r) olla reload under load: PASS") || !strings.Contains(line, "(r) sherpa reload under load: MISS") {
		t.Errorf("targets line %s", line)
	}
	if line := targetsLine(nil); !strings.Contains(line, "(r) olla reload under load: n/a") {
		t.Errorf("targets line without (r): %s", line)
	}
}
