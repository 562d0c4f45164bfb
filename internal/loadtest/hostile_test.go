package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// TestHangUpOnce checks each way a hostile request can end against an
// in-process simulator.
func TestHangUpOnce(t *testing.T) {
	s, err := sim.Start(sim.Config{Kind: sim.Ollama, Models: []string{testModel}, NoRecord: true, TokensPerSecond: 50, Tokens: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := strings.TrimPrefix(s.URL, "http://")
	spec := hangupSpec{addr: addr, path: chatPath, body: requestBody(true), lines: 3}
	ctx := context.Background()

	if kind, detail := hangUpOnce(ctx, spec); kind != hangupDone || detail != "" {
		t.Errorf("clean hang-up: %d %q", kind, detail)
	}
	s.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: 503})
	if kind, detail := hangUpOnce(ctx, spec); kind != hangupRefused || !strings.Contains(detail, "status 503") {
		t.Errorf("refused: %d %q", kind, detail)
	}
	s.SetFault(sim.Fault{Mode: sim.FaultDropMidStream, AfterChunks: 1})
	if kind, detail := hangUpOnce(ctx, spec); kind != hangupFailed || !strings.Contains(detail, "broke after 1 lines") {
		t.Errorf("dropped: %d %q", kind, detail)
	}
	s.SetFault(sim.Fault{})
	s.SetTiming(0, 0, 1) // one token and the final line: over before the third line
	if kind, detail := hangUpOnce(ctx, spec); kind != hangupFailed || !strings.Contains(detail, "ended after 2 lines") {
		t.Errorf("short stream: %d %q", kind, detail)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	if kind, detail := hangUpOnce(ctx, hangupSpec{addr: closed, path: chatPath, body: requestBody(true), lines: 3}); kind != hangupFailed || !strings.Contains(detail, "dial") {
		t.Errorf("nobody listening: %d %q", kind, detail)
	}
}

// TestHangUpIsReset checks the server side sees a reset, not a polite close:
// a raw server writes the headers and three lines, then reads until the
// client's hang-up arrives.
func TestHangUpIsReset(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan error, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			got <- err
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		req, err := http.ReadRequest(br)
		if err != nil {
			got <- err
			return
		}
		_, _ = req.Body.Read(make([]byte, 4096))
		fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
		for range 3 {
			fmt.Fprintf(conn, "%x\r\n%s\r\n", len(`{"done":false}`+"\n"), `{"done":false}`+"\n")
		}
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err = br.ReadByte()
		got <- err
	}()
	spec := hangupSpec{addr: l.Addr().String(), path: chatPath, body: requestBody(true), lines: 3}
	if kind, detail := hangUpOnce(context.Background(), spec); kind != hangupDone {
		t.Fatalf("hang-up: %d %q", kind, detail)
	}
	if err := <-got; !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the server saw %v, want a connection reset", err)
	}
}

// TestHangUps runs a few hostile clients for a moment: they hang up, and
// stop at the end of the window.
func TestHangUps(t *testing.T) {
	s, err := sim.Start(sim.Config{Kind: sim.Ollama, Models: []string{testModel}, NoRecord: true, TokensPerSecond: 100, Tokens: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	spec := hangupSpec{addr: strings.TrimPrefix(s.URL, "http://"), path: chatPath, body: requestBody(true),
		clients: 3, lines: 3, pause: 20 * time.Millisecond}
	start := time.Now()
	out := hangUps(context.Background(), spec, start, start.Add(1500*time.Millisecond))
	if out.hungUp < 3 || out.refused != 0 || out.failed != 0 {
		t.Errorf("hang-ups %d, refused %d, failed %d, samples %q", out.hungUp, out.refused, out.failed, out.samples)
	}
	waitUntil(t, "the simulator's streams to end", func() bool { return s.Stats().Active == 0 })
}

// waitUntil polls cond for up to a minute.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStatusDeltas(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	first := []endpointHealth{{Name: "a", FailureCount: 3, BreakerOpens: n(1)}, {Name: "b", BreakerOpens: n(0)}}
	last := []endpointHealth{{Name: "b", FailureCount: 7, BreakerOpens: n(2)}, {Name: "a", FailureCount: 5, BreakerOpens: n(1)}}
	if opens, fails := statusDeltas(first, last); opens != 2 || fails != 9 {
		t.Errorf("opens %d, fails %d; want 2, 9", opens, fails)
	}
	old := []endpointHealth{{Name: "a", FailureCount: 5}}
	if opens, fails := statusDeltas(old, old); opens != -1 || fails != 0 {
		t.Errorf("without the counter: opens %d, fails %d; want -1 (unknown), 0", opens, fails)
	}
}

// TestWatchHealth serves a scripted sequence of endpoint states and checks
// the watcher counts one trip out of the routable set.
func TestWatchHealth(t *testing.T) {
	ep := func(status string, routable bool) []endpointHealth {
		return []endpointHealth{{Name: "a", Status: status, Routable: routable}, {Name: "b", Status: "healthy", Routable: true}}
	}
	script := [][]endpointHealth{ep("healthy", true), ep("offline", false), ep("offline", false), ep("healthy", true)}
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := min(int(calls.Add(1))-1, len(script)-1)
		_ = json.NewEncoder(w).Encode(map[string]any{"endpoints": script[i]})
	}))
	defer srv.Close()
	sc := &statusClient{base: srv.URL}
	defer sc.close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan healthWatch, 1)
	go func() { done <- watchHealth(ctx, sc, ep("healthy", true)) }()
	waitUntil(t, "the script to be read through", func() bool { return calls.Load() > int64(len(script))+1 })
	cancel()
	hw := <-done
	if hw.entries != 1 || hw.offlineFor <= 0 || hw.errors != 0 || hw.describe() != "a healthy/offline, b healthy" {
		t.Errorf("entries %d, offline for %s, errors %d, seen %q", hw.entries, hw.offlineFor, hw.errors, hw.describe())
	}
}

// TestHostileReport checks the PASS/MISS logic and the table of scenario (h).
func TestHostileReport(t *testing.T) {
	clean := &hostileStats{health: true, load: runStats{ttfbP99: 200 * time.Millisecond, rssKiB: 100 << 10},
		out: loadOutcome{ok: 1000}, hang: hangupOutcome{hungUp: 500}, probes: 12, statusesSeen: "sim-a healthy"}
	rp := &hostileStats{breakerOpens: -1, backendFails: -1, load: runStats{ttfbP99: 100 * time.Millisecond, rssKiB: 200 << 10},
		out: loadOutcome{ok: 1000}, hang: hangupOutcome{hungUp: 500}}
	broken := *clean
	broken.breakerOpens, broken.offlineEntries, broken.downLogged, broken.offlineFor = 4, 2, 2, 39*time.Second
	broken.load.errors, broken.hang.refused = 100, 20
	unknown := *clean
	unknown.breakerOpens = -1
	if !clean.passed() || !rp.passed() || broken.passed() || unknown.passed() {
		t.Fatalf("passed: clean %v rp %v broken %v unknown-breakers %v", clean.passed(), rp.passed(), broken.passed(), unknown.passed())
	}
	if broken.failedServable() != 120 {
		t.Errorf("failedServable = %d, want 120", broken.failedServable())
	}
	sc, _ := pickScenarios("h")
	res := scenarioResult{sc: sc[0]}
	res.hostile[olla], res.hostile[sherpa], res.hostile[reverseProxy] = clean, &broken, rp
	var out strings.Builder
	printTable(&out, res, options{})
	for _, want := range []string{"olla PASS; sherpa MISS; reverse_proxy (reference) PASS", "2× (log: 2), 39.0 s",
		"2.00×", "0.50×", "breakers opened", "sim-a healthy"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}
	line := targetsLine([]scenarioResult{res})
	if !strings.Contains(line, "(h) olla hostile clients: PASS") || !strings.Contains(line, "(h) sherpa hostile clients: MISS (120 failed") {
		t.Errorf("targets line %s", line)
	}
}
