package sharedpins

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-olla/olla/internal/redistest"
)

func newStore(t *testing.T, addr string) *Store {
	t.Helper()
	s, err := New(addr, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestSharedPins on a real redis-server: a pin one store writes is read
// by another once flushed; a fresh read is served from the cache (no
// round trip) and a stale one reads again, so another instance's repin is
// followed; a value that is no pin of ours is ignored; a Redis that is
// gone is an error, never a hang, and reading resumes when it is back.
func TestSharedPins(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a, b := newStore(t, srv.Socket), newStore(t, srv.Socket)
	now := time.Now()
	if got, err := b.Get(ctx, 42, now); got != "" || err != nil {
		t.Fatalf("an unknown session: %q %v", got, err)
	}
	a.Put(42, "e2", now)
	deadline := time.Now().Add(30 * time.Second)
	for srv.Count("olla:pin:*") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pin was never written")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// b read "none" a moment ago: still fresh, it keeps that answer
	if got, _ := b.Get(ctx, 42, now.Add(Fresh/2)); got != "" {
		t.Errorf("a fresh cached answer was not used: %q", got)
	}
	srv.ResetStats()
	later := now.Add(Fresh + time.Millisecond)
	if got, err := b.Get(ctx, 42, later); got != "e2" || err != nil {
		t.Errorf("another store's pin: %q %v", got, err)
	}
	if got, _ := b.Get(ctx, 42, later.Add(time.Millisecond)); got != "e2" {
		t.Errorf("cached: %q", got)
	}
	if _, stats := srv.RoundTrips(); stats["get"] != 1 {
		t.Errorf("two reads within Fresh sent %d GETs (%v), want 1", stats["get"], stats)
	}
	// a repin elsewhere is followed once the read is stale
	a.Put(42, "e1", later)
	a.flush()
	if got, _ := b.Get(ctx, 42, later.Add(Fresh+time.Millisecond)); got != "e1" {
		t.Errorf("a repin: %q", got)
	}

	raw := redis.NewClient(&redis.Options{Network: "unix", Addr: srv.Socket})
	defer raw.Close()
	raw.Set(ctx, redisKey(7), strings.Repeat("x", 10_000), time.Minute)
	if got, err := b.Get(ctx, 7, now); got != "" || err != nil {
		t.Errorf("garbage read as a pin: %d bytes, %v", len(got), err)
	}

	srv.Kill()
	if _, err := b.Get(ctx, 99, now); err == nil {
		t.Error("no error with redis gone")
	}
	srv.Restart()
	deadline = time.Now().Add(20 * time.Second)
	for {
		if _, err := b.Get(ctx, 99, now); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no recovery")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPendingBound: however many sessions a burst places, the writes
// waiting for a flush stay bounded.
func TestPendingBound(t *testing.T) {
	s := newStore(t, "/nonexistent/redis.sock")
	now := time.Now()
	for i := range maxPending * 3 {
		s.Put(uint64(i), "e", now)
	}
	s.mu.Lock()
	n, c := len(s.pending), len(s.cache)
	s.mu.Unlock()
	if n > maxPending || c > maxCached {
		t.Errorf("%d pending, %d cached", n, c)
	}
}
