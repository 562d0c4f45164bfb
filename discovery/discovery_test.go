package discovery

import (
	"net/http"
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
		code    int
		latency time.Duration
		want    Status
	}{
		{200, time.Millisecond, StatusHealthy},
		{204, time.Millisecond, StatusHealthy},
		{200, 11 * time.Second, StatusBusy},
		{401, time.Millisecond, StatusConfigError},
		{403, time.Millisecond, StatusConfigError},
		{429, time.Millisecond, StatusRateLimited},
		{500, time.Millisecond, StatusUnhealthy},
		{404, time.Millisecond, StatusUnhealthy},
	} {
		r := Classify(tc.code, tc.latency)
		if r.Status != tc.want || r.Reason == "" {
			t.Errorf("Classify(%d, %s) = %s %q, want %s with a reason", tc.code, tc.latency, r.Status, r.Reason, tc.want)
		}
	}
	if parseRetryAfter("") != 30*time.Second || parseRetryAfter("7") != 7*time.Second ||
		parseRetryAfter(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)) < 59*time.Minute {
		t.Error("Retry-After parsing")
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
