package limits

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-olla/olla/internal/redistest"
)

func newRedisStore(t *testing.T, addr string) *Redis {
	t.Helper()
	s, err := NewRedis(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRedisStore runs the limiter's cases against a real redis-server:
// the same admission as the memory store, atomic across clients, garbage
// reported as an error, negative values read as zero, and a killed server
// an error until it is back, then counting resumes without a new client.
func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	c := newClock()
	ctx := context.Background()
	s := newRedisStore(t, srv.Socket)
	l := New(Policy{Key: Rule{RequestsPerMinute: 3, TokensPerMinute: 100}}, s)
	l.Now = c.now
	var got []bool
	for range 5 {
		d, err := l.Admit(ctx, "k", "")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Allowed)
		if !d.Allowed && (d.Limit != "requests_per_minute" || d.Used != 3 || d.RetryAfter != 50*time.Second) {
			t.Errorf("refusal: %+v", d)
		}
	}
	if want := []bool{true, true, true, false, false}; !slices.Equal(got, want) {
		t.Fatalf("admitted %v", got)
	}
	if _, err := l.Record(ctx, "k2", "", tokens(60, 50)); err != nil {
		t.Fatal(err)
	}
	if d, _ := l.Admit(ctx, "k2", ""); d.Allowed || d.Limit != "tokens_per_minute" || d.Used != 110 {
		t.Errorf("tokens: %+v", d)
	}
	ws, err := l.Windows(ctx, "k2")
	if err != nil || ws[1].Used != 110 {
		t.Errorf("windows: %+v %v", ws, err)
	}

	// many clients at once, one limit: exactly the limit is admitted
	shared := New(Policy{Key: Rule{RequestsPerMinute: 50}}, s)
	shared.Now = c.now
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		other := newRedisStore(t, srv.Socket)
		lim := New(Policy{Key: Rule{RequestsPerMinute: 50}}, other)
		lim.Now = c.now
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				if d, err := lim.Admit(ctx, "race", ""); err == nil && d.Allowed {
					admitted.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if admitted.Load() != 50 {
		t.Errorf("4 clients x 40 requests under a limit of 50 admitted %d", admitted.Load())
	}

	// garbage and negative values
	raw := redis.NewClient(&redis.Options{Network: "unix", Addr: srv.Socket})
	defer raw.Close()
	key, _ := redisKey(c.now(), Counter{Key: "g", Kind: "requests_per_minute", Window: Minute})
	raw.Set(ctx, key, "not a number", time.Minute)
	if _, err := l.Admit(ctx, "g", ""); err == nil {
		t.Error("a counter holding garbage was read as a count")
	}
	raw.Set(ctx, key, "-40", time.Minute)
	if d, err := l.Admit(ctx, "g", ""); err != nil || !d.Allowed {
		t.Errorf("a negative counter: %+v %v", d, err)
	}
	if v, _ := raw.Get(ctx, key).Int64(); v != 1 {
		t.Errorf("a negative counter restarted at %d, want 1", v)
	}

	// slow: a server that does not answer within the store's timeout is
	// an error after about that long, never a hang
	if err := raw.Do(ctx, "CLIENT", "PAUSE", "3000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Admit(ctx, "slow", ""); err == nil {
		t.Error("no error from a paused redis")
	}
	raw.Do(ctx, "CLIENT", "UNPAUSE")

	// killed: an error (the caller fails open or closed), then recovery
	srv.Kill()
	if _, err := l.Admit(ctx, "k3", ""); err == nil {
		t.Fatal("no error with redis down")
	}
	srv.Restart()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := l.Admit(ctx, "k3", "")
		if err == nil && d.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisUnreachable: an address nothing listens on fails fast with an
// error, never a hang.
func TestRedisUnreachable(t *testing.T) {
	s := newRedisStore(t, "/nonexistent/dir/redis.sock")
	_, err := s.Take(context.Background(), time.Now(), []Counter{{Key: "x", Kind: "requests_per_minute", Limit: 1, N: 1}}, false)
	if err == nil {
		t.Fatal("no error")
	}
	if _, err := NewRedis("redis://user:hunter2@[::1"); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a bad URL's error: %v", err)
	}
}
