package main

import (
	"context"
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
