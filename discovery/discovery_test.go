package discovery

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-olla/olla/profiles"
)

func TestBreaker(t *testing.T) {
	b := NewBreaker(BreakerConfig{Threshold: 3, OpenFor: time.Minute, TrialTimeout: 10 * time.Second})
	now := time.Unix(1_800_000_000, 0)
	for i := range 2 {
		b.Failure(now)
		if b.Blocked() {
			t.Fatalf("open after %d failures, threshold 3", i+1)
		}
	}
	b.Success() // a success resets the streak
	for range 2 {
		b.Failure(now)
	}
	if b.Blocked() {
		t.Fatal("a success did not reset the failure streak")
	}
	b.Failure(now)
	if st, _ := b.State(); st != BreakerOpen || !b.Blocked() {
		t.Fatalf("state %s after 3 failures", st)
	}
	if b.TrialDue(now.Add(30 * time.Second)) {
		t.Fatal("trial offered before the cool-down ended")
	}
	if !b.TrialDue(now.Add(61 * time.Second)) {
		t.Fatal("no trial after the cool-down")
	}
	if st, _ := b.State(); st != BreakerHalfOpen || !b.Blocked() {
		t.Fatalf("state %s during the trial; requests must stay away", st)
	}
	if b.TrialDue(now.Add(62 * time.Second)) {
		t.Fatal("a second trial while the first is out")
	}
	if !b.TrialDue(now.Add(72 * time.Second)) {
		t.Fatal("a lost trial wedged the breaker past its timeout")
	}
	b.Failure(now.Add(72 * time.Second)) // the trial failed: open again
	if st, _ := b.State(); st != BreakerOpen {
		t.Fatalf("state %s after a failed trial", st)
	}
	if !b.TrialDue(now.Add(133 * time.Second)) {
		t.Fatal("no trial after the second cool-down")
	}
	b.Success()
	if st, n := b.State(); st != BreakerClosed || n != 0 || b.Blocked() {
		t.Fatalf("state %s failures %d after a passing trial", st, n)
	}
	// opened at 3 failures and again by the failed trial; failures while
	// open and the passing trial do not count
	if n := b.Opens(); n != 2 {
		t.Errorf("Opens() = %d, want 2", n)
	}
}

func TestBackoff(t *testing.T) {
	within := func(d, want time.Duration) bool { return d >= want*9/10 && d <= want*11/10 }
	for i, tc := range []struct {
		interval time.Duration
		failures int
		want     time.Duration
	}{
		{5 * time.Second, 1, 5 * time.Second},
		{5 * time.Second, 2, 10 * time.Second},
		{5 * time.Second, 3, 20 * time.Second},
		{5 * time.Second, 4, 20 * time.Second}, // capped at 4 × interval
		{5 * time.Second, 50, 20 * time.Second},
		{30 * time.Second, 5, 60 * time.Second}, // and at 60 s
	} {
		for range 20 {
			if d := Backoff(tc.interval, tc.failures); !within(d, tc.want) {
				t.Fatalf("%d: Backoff(%s, %d) = %s, want %s ±10%%", i, tc.interval, tc.failures, d, tc.want)
			}
		}
	}
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[Jitter(time.Second)] = true
	}
	if len(seen) < 10 {
		t.Fatalf("jitter gave only %d distinct delays in 50 draws", len(seen))
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		code      int
		latency   time.Duration
		want      Status
		transient bool
	}{
		{200, time.Millisecond, StatusHealthy, false},
		{204, time.Millisecond, StatusHealthy, false},
		{200, 11 * time.Second, StatusBusy, false},
		{401, time.Millisecond, StatusConfigError, false},
		{403, time.Millisecond, StatusConfigError, false},
		{429, time.Millisecond, StatusRateLimited, false},
		{404, time.Millisecond, StatusUnhealthy, false},
		{503, time.Millisecond, StatusUnhealthy, false}, // "not ready": at once
		{500, time.Millisecond, StatusUnhealthy, true},
		{502, time.Millisecond, StatusUnhealthy, true},
		{504, time.Millisecond, StatusUnhealthy, true},
	} {
		r := Classify(tc.code, tc.latency)
		if r.Status != tc.want || r.Reason == "" || r.Transient != tc.transient {
			t.Errorf("Classify(%d, %s) = %s transient=%t %q, want %s transient=%t with a reason",
				tc.code, tc.latency, r.Status, r.Transient, r.Reason, tc.want, tc.transient)
		}
	}
}

// TestProbeOutcomes probes real listeners: what each failure is, and a
// 429's Retry-After, capped.
func TestProbeOutcomes(t *testing.T) {
	answer := func(status int, retryAfter string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(status)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	// a port with nothing listening: bind, note, close
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	reset := badListener(t, func(c net.Conn) {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})

	for _, tc := range []struct {
		name       string
		url        string
		timeout    time.Duration
		status     Status
		transient  bool
		retryAfter time.Duration
	}{
		{"healthy", answer(200, ""), 5 * time.Second, StatusHealthy, false, 0},
		{"refused: nothing listening", refused, 5 * time.Second, StatusOffline, false, 0},
		{"timeout", slow.URL, 50 * time.Millisecond, StatusOffline, true, 0},
		{"reset", reset, 5 * time.Second, StatusOffline, true, 0},
		{"503 not ready", answer(503, ""), 5 * time.Second, StatusUnhealthy, false, 0},
		{"502 from a gateway", answer(502, ""), 5 * time.Second, StatusUnhealthy, true, 0},
		{"429 without Retry-After", answer(429, ""), 5 * time.Second, StatusRateLimited, false, 30 * time.Second},
		{"429 Retry-After 7", answer(429, "7"), 5 * time.Second, StatusRateLimited, false, 7 * time.Second},
		{"429 Retry-After a day", answer(429, "86400"), 5 * time.Second, StatusRateLimited, false, 5 * time.Minute},
		{"429 Retry-After 10^12", answer(429, "1000000000000"), 5 * time.Second, StatusRateLimited, false, 5 * time.Minute},
		{"429 Retry-After past int64", answer(429, "99999999999999999999"), 5 * time.Second, StatusRateLimited, false, 5 * time.Minute},
		{"429 Retry-After a year as a date", answer(429, time.Now().AddDate(1, 0, 0).UTC().Format(http.TimeFormat)), 5 * time.Second, StatusRateLimited, false, 5 * time.Minute},
		{"429 Retry-After negative", answer(429, "-5"), 5 * time.Second, StatusRateLimited, false, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Probe(context.Background(), http.DefaultTransport, tc.url, nil, tc.timeout)
			if r.Status != tc.status || r.Transient != tc.transient || r.RetryAfter != tc.retryAfter {
				t.Errorf("got %s transient=%t retry-after %s (%s), want %s transient=%t retry-after %s",
					r.Status, r.Transient, r.RetryAfter, r.Reason, tc.status, tc.transient, tc.retryAfter)
			}
		})
	}
}

// badListener serves each connection with handle after reading a request.
func badListener(t *testing.T, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				c.Read(buf)
				handle(c)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestJudge: definite failures take an endpoint out at once; transient ones
// after unhealthyAfter in a row, and never while it serves proxied requests.
func TestJudge(t *testing.T) {
	ok := ProbeResult{Status: StatusHealthy, Reason: "answered 200"}
	timeout := ProbeResult{Status: StatusOffline, Reason: "no answer within 2s", Transient: true}
	refused := ProbeResult{Status: StatusOffline, Reason: "connection refused"}
	bad := ProbeResult{Status: StatusUnhealthy, Reason: "health check answered 502", Transient: true}
	notReady := ProbeResult{Status: StatusUnhealthy, Reason: "health check answered 503"}
	limited := ProbeResult{Status: StatusRateLimited, Reason: "429", RetryAfter: time.Minute}
	type step struct {
		r       ProbeResult
		serving bool
		want    Status
		trans   bool // Verdict.Transient
	}
	for _, tc := range []struct {
		name      string
		threshold int
		steps     []step
	}{
		{"refused counts at once", 0, []step{{ok, false, StatusHealthy, false}, {refused, false, StatusOffline, false}}},
		{"refused counts at once even while serving", 0, []step{{ok, false, StatusHealthy, false}, {refused, true, StatusOffline, false}}},
		{"503 counts at once", 0, []step{{ok, false, StatusHealthy, false}, {notReady, false, StatusUnhealthy, false}}},
		{"429 counts at once", 0, []step{{ok, false, StatusHealthy, false}, {limited, false, StatusRateLimited, false}}},
		{"three timeouts by default", 0, []step{{ok, false, StatusHealthy, false},
			{timeout, false, StatusHealthy, false}, {timeout, false, StatusHealthy, false}, {timeout, false, StatusOffline, true}}},
		{"three 5xx (not 503)", 0, []step{{ok, false, StatusHealthy, false},
			{bad, false, StatusHealthy, false}, {bad, false, StatusHealthy, false}, {bad, false, StatusUnhealthy, true}}},
		{"timeouts and 5xx share the streak", 0, []step{{ok, false, StatusHealthy, false},
			{timeout, false, StatusHealthy, false}, {bad, false, StatusHealthy, false}, {timeout, false, StatusOffline, true}}},
		{"a pass breaks the streak", 0, []step{{ok, false, StatusHealthy, false},
			{timeout, false, StatusHealthy, false}, {timeout, false, StatusHealthy, false}, {ok, false, StatusHealthy, false},
			{timeout, false, StatusHealthy, false}, {timeout, false, StatusHealthy, false}, {timeout, false, StatusOffline, true}}},
		{"serving forgives timeouts", 0, []step{{ok, false, StatusHealthy, false},
			{timeout, true, StatusHealthy, false}, {timeout, true, StatusHealthy, false}, {timeout, true, StatusHealthy, false},
			{timeout, true, StatusHealthy, false}, {timeout, true, StatusHealthy, false}}},
		{"serving in between breaks the streak", 0, []step{{ok, false, StatusHealthy, false},
			{timeout, false, StatusHealthy, false}, {timeout, false, StatusHealthy, false}, {timeout, true, StatusHealthy, false},
			{timeout, false, StatusHealthy, false}, {timeout, false, StatusHealthy, false}}},
		{"unhealthy_after 1", 1, []step{{ok, false, StatusHealthy, false}, {timeout, false, StatusOffline, true}}},
		{"unhealthy_after 5", 5, []step{{ok, false, StatusHealthy, false},
			{timeout, false, StatusHealthy, false}, {timeout, false, StatusHealthy, false}, {timeout, false, StatusHealthy, false},
			{timeout, false, StatusHealthy, false}, {timeout, false, StatusOffline, true}}},
		{"first probe times out: unknown, but panic may try it", 0, []step{{timeout, false, StatusUnknown, true}}},
		{"down for a refusal, then timing out", 0, []step{{refused, false, StatusOffline, false}, {timeout, false, StatusOffline, true}}},
		{"down for timeouts, then refused", 0, []step{{timeout, false, StatusUnknown, true}, {timeout, false, StatusUnknown, true},
			{timeout, false, StatusOffline, true}, {refused, false, StatusOffline, false}}},
		{"back after one pass", 0, []step{{refused, false, StatusOffline, false}, {ok, false, StatusHealthy, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Verdict{Status: StatusUnknown}
			for i, s := range tc.steps {
				v = Judge(v, s.r, tc.threshold, s.serving)
				if v.Status != s.want || v.Transient != s.trans || v.Reason == "" {
					t.Fatalf("step %d (%s, serving %t): %s transient=%t %q, want %s transient=%t",
						i+1, s.r.Reason, s.serving, v.Status, v.Transient, v.Reason, s.want, s.trans)
				}
			}
		})
	}
}

func TestUnify(t *testing.T) {
	llama := func(digest string) profiles.Model {
		return profiles.Model{Name: "llama3.2:latest", Digest: digest, Family: "llama", Size: 100}
	}
	entries := Unify([]EndpointModels{
		{Endpoint: "o1", Type: "ollama", Status: StatusHealthy, Routable: true, Models: []profiles.Model{llama("aaa"), {Name: "only-o1"}}},
		{Endpoint: "o2", Type: "ollama", Status: StatusOffline, Models: []profiles.Model{llama("bbb")}},
		{Endpoint: "lms", Type: "lm-studio", Status: StatusHealthy, Routable: true,
			Models: []profiles.Model{{Name: "llama3.2:latest", State: "loaded", MaxContextLength: 8192}}},
	})
	if len(entries) != 2 || entries[0].ID != "llama3.2:latest" || entries[1].ID != "only-o1" {
		t.Fatalf("entries: %+v", entries)
	}
	e := entries[0]
	if len(e.Sources) != 3 || !e.DigestMismatch || !e.Routable() {
		t.Errorf("llama entry: %d sources, mismatch %t, routable %t", len(e.Sources), e.DigestMismatch, e.Routable())
	}
	if e.Model.MaxContextLength != 8192 || e.Model.Family != "llama" {
		t.Errorf("merged details: %+v", e.Model)
	}
	if types := e.Types(); len(types) != 2 {
		t.Errorf("types %v", types)
	}
	if e.Sources[2].State != "loaded" || e.Sources[0].State != "available" {
		t.Errorf("states %+v", e.Sources)
	}
	// one type only: a digest differing across types is not a mismatch
	cross := Unify([]EndpointModels{
		{Endpoint: "o1", Type: "ollama", Models: []profiles.Model{llama("aaa")}},
		{Endpoint: "v", Type: "vllm", Models: []profiles.Model{llama("zzz")}},
	})
	if cross[0].DigestMismatch {
		t.Error("digests of different types flagged as a mismatch")
	}
}
