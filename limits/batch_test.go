package limits

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/redistest"
)

// TestRedisOneRoundTripPerRequest counts, on a real redis-server, the
// commands a run of requests sends (admission, then the response's
// tokens and cost): one per request, plus the script's first load. The
// tokens of each request reach Redis with the next admission, so a
// window shows every request but the last until the buffer is sent.
func TestRedisOneRoundTripPerRequest(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	s := newRedisStore(t, srv.Socket)
	s.batch.delay = time.Hour // no timer flush inside the count
	c := newClock()
	l := New(Policy{Key: Rule{TokensPerMinute: 1 << 30, RequestsPerMinute: 1 << 30, BudgetDay: 1e6, BudgetMonth: 1e6},
		Models: map[string]Rule{"m": {TokensPerMinute: 1 << 30}}}, s)
	l.Now = c.now
	srv.ResetStats()
	const n = 200
	for i := range n {
		key := fmt.Sprintf("key-%d", i%7)
		if d, err := l.Admit(ctx, key, "m"); err != nil || !d.Allowed {
			t.Fatalf("request %d: %+v %v", i, d, err)
		}
		if _, err := l.Record(ctx, key, "m", tokens(10, 5)); err != nil {
			t.Fatal(err)
		}
	}
	got, stats := srv.RoundTrips()
	t.Logf("%d requests: %d round trips (%.3f per request); server counts %v", n, got, float64(got)/n, stats)
	if got > n+1 { // +1: EVALSHA's first NOSCRIPT answer, then EVAL
		t.Errorf("%d requests took %d round trips, want at most %d", n, got, n+1)
	}
	if stats["incrby"] == 0 {
		t.Fatal("the scripts counted nothing")
	}

	// every request's tokens but the last one's are in Redis; the flush
	// sends that one too
	used := func(key string) float64 {
		ws, err := l.Windows(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return ws[1].Used // tokens_per_minute
	}
	last := fmt.Sprintf("key-%d", (n-1)%7)
	perKey := float64(n/7+1) * 15 // key-(n-1)%7 = key-4 served 29 requests
	if got := used(last); got != perKey-15 {
		t.Errorf("before the flush the last key shows %v tokens, want %v", got, perKey-15)
	}
	if err := s.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := used(last); got != perKey {
		t.Errorf("after the flush the last key shows %v tokens, want %v", got, perKey)
	}
}

// TestRedisBufferedSent: a buffered count with no admission to carry it
// is sent by the store's timer, and one still buffered when the store
// closes is sent by Close.
func TestRedisBufferedSent(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	s := newRedisStore(t, srv.Socket)
	c := newClock()
	l := New(Policy{Key: Rule{TokensPerMinute: 1000}}, s)
	l.Now = c.now
	if _, err := l.Record(ctx, "quiet", "", tokens(30, 12)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ws, err := l.Windows(ctx, "quiet")
		if err == nil && ws[0].Used == 42 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the timer never sent the buffered count: %+v %v", ws, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	closing, err := NewRedis(srv.Socket)
	if err != nil {
		t.Fatal(err)
	}
	closing.batch.delay = time.Hour
	lc := New(Policy{Key: Rule{TokensPerMinute: 1000}}, closing)
	lc.Now = c.now
	if _, err := lc.Record(ctx, "closing", "", tokens(7, 0)); err != nil {
		t.Fatal(err)
	}
	closing.Close()
	if ws, err := l.Windows(ctx, "closing"); err != nil || ws[0].Used != 7 {
		t.Errorf("Close did not send the buffered count: %+v %v", ws, err)
	}
}

// TestRedisBufferOutage: counts buffered while Redis is down are sent
// once it is back (counting resumes where it stopped), and the buffer
// stays bounded however many keys an outage sees.
func TestRedisBufferOutage(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	s := newRedisStore(t, srv.Socket)
	s.batch.delay = time.Hour
	c := newClock()
	l := New(Policy{Key: Rule{TokensPerMinute: 100}}, s)
	l.Now = c.now
	if _, err := l.Record(ctx, "k", "", tokens(40, 20)); err != nil {
		t.Fatal(err)
	}
	srv.Kill()
	if _, err := l.Admit(ctx, "k", ""); err == nil {
		t.Fatal("no error with redis down")
	}
	for i := range maxBuffered + 10 {
		_, _ = l.Record(ctx, fmt.Sprintf("many-%d", i), "", tokens(1, 1))
	}
	if s.Dropped() == 0 {
		t.Error("a full buffer dropped nothing")
	}
	s.batch.mu.Lock()
	held := len(s.batch.pending)
	s.batch.mu.Unlock()
	if held > maxBuffered {
		t.Errorf("the buffer holds %d counters, more than %d", held, maxBuffered)
	}
	srv.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := l.Admit(ctx, "k", "")
		if err == nil {
			// the 60 tokens from before the outage count: 60 + 1 > 100 is
			// false, so admitted, and the window shows them
			ws, _ := l.Windows(ctx, "k")
			if !d.Allowed || len(ws) == 0 || ws[0].Used != 60 {
				t.Errorf("after the outage: %+v %+v", d, ws)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
