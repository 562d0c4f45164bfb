package olla

import (
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// clock is an injectable time source for the limiter.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newTestLimiter(t *testing.T, cfg RateLimits) (*rateLimiter, *clock) {
	t.Helper()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	rl := newRateLimiter(&cfg)
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	rl.now = c.now
	return rl, c
}

func TestRateLimitBurstAndRecovery(t *testing.T) {
	rl, c := newTestLimiter(t, RateLimits{PerIPRequestsPerMinute: 60, BurstSize: 5})
	for i := range 5 {
		if v := rl.allowProxy("10.0.0.1"); !v.allowed || v.remaining != 4-i {
			t.Fatalf("request %d of the burst: %+v", i, v)
		}
	}
	v := rl.allowProxy("10.0.0.1")
	if v.allowed || v.retryAfter != time.Second || v.bucket != "client" || v.limit != 60 {
		t.Fatalf("over the burst: %+v, want refused with Retry-After 1s", v)
	}
	rec := httptest.NewRecorder()
	v.setHeaders(rec.Header())
	if rec.Header().Get("X-Ratelimit-Limit") != "60" || rec.Header().Get("X-Ratelimit-Remaining") != "0" ||
		rec.Header().Get("X-Ratelimit-Reset") != strconv.FormatInt(c.t.Add(5*time.Second).Unix(), 10) {
		t.Fatalf("headers %v", rec.Header())
	}
	c.advance(time.Second)
	if v := rl.allowProxy("10.0.0.1"); !v.allowed {
		t.Fatalf("one token back after 1s: %+v", v)
	}
}

func TestRateLimitNoisyClientDoesNotStarveAnother(t *testing.T) {
	rl, c := newTestLimiter(t, RateLimits{PerIPRequestsPerMinute: 60, BurstSize: 3, GlobalRequestsPerMinute: 6000})
	// the noisy client hammers for ten seconds; its refused requests spend
	// nobody's tokens but its own
	for range 1000 {
		rl.allowProxy("10.0.0.66")
		c.advance(10 * time.Millisecond)
	}
	for i := range 3 {
		if v := rl.allowProxy("10.0.0.2"); !v.allowed {
			t.Fatalf("quiet client refused on request %d: %+v", i, v)
		}
		c.advance(10 * time.Millisecond)
	}
}

func TestRateLimitHealthHasItsOwnBucket(t *testing.T) {
	rl, _ := newTestLimiter(t, RateLimits{PerIPRequestsPerMinute: 60, BurstSize: 1, HealthRequestsPerMinute: 600, HealthBurstSize: 20})
	rl.allowProxy("10.0.0.1")
	if v := rl.allowProxy("10.0.0.1"); v.allowed {
		t.Fatal("proxy bucket should be empty")
	}
	for i := range 20 {
		if v := rl.allowHealth("10.0.0.1"); !v.allowed {
			t.Fatalf("health request %d refused while only the proxy bucket is empty", i)
		}
	}
	// no health limit configured: never refused
	rl2, _ := newTestLimiter(t, RateLimits{PerIPRequestsPerMinute: 1, BurstSize: 1})
	for range 50 {
		if !rl2.allowHealth("10.0.0.1").allowed {
			t.Fatal("health refused without a health limit")
		}
	}
}

func TestRateLimitGlobal(t *testing.T) {
	rl, _ := newTestLimiter(t, RateLimits{GlobalRequestsPerMinute: 60, BurstSize: 2})
	rl.allowProxy("a")
	rl.allowProxy("b")
	if v := rl.allowProxy("c"); v.allowed || v.bucket != "global" {
		t.Fatalf("global bucket: %+v", v)
	}
}

// TestRateLimitMemoryBound fills buckets for 100,000 client IPs, checks the
// memory they hold, and that idle ones are evicted.
func TestRateLimitMemoryBound(t *testing.T) {
	rl, c := newTestLimiter(t, RateLimits{PerIPRequestsPerMinute: 60, BurstSize: 10, IdleTimeout: caddy.Duration(time.Minute)})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 100_000 {
		rl.allowProxy("10." + strconv.Itoa(i>>16) + "." + strconv.Itoa((i>>8)&255) + "." + strconv.Itoa(i&255))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	perIP := held / 100_000
	t.Logf("100,000 client buckets hold %.1f MiB (%d bytes each)", float64(held)/(1<<20), perIP)
	const bound = 32 << 20 // the bound the README states
	if held > bound {
		t.Fatalf("100,000 buckets hold %d bytes, over the %d-byte bound", held, bound)
	}
	c.advance(2 * time.Minute)
	rl.allowProxy("10.255.255.255") // triggers the sweep
	if n := rl.clients.Size(); n != 1 {
		t.Fatalf("%d buckets left after the idle timeout, want 1", n)
	}
}
