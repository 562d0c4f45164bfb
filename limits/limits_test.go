package limits

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/caddy-olla/olla/usage"
)

// clock is a test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{time.Date(2026, 3, 31, 23, 58, 10, 0, time.UTC)} }
func tokens(in, out int64) usage.Counts {
	c, _ := usage.Parse([]byte(fmt.Sprintf(`{"usage":{"prompt_tokens":%d,"completion_tokens":%d}}`, in, out)))
	return c
}

func newLimiter(p Policy, c *clock) *Limiter {
	l := New(p, NewMemory(0))
	l.Now = c.now
	return l
}

func TestRequestsPerMinute(t *testing.T) {
	c := newClock()
	l := newLimiter(Policy{Key: Rule{RequestsPerMinute: 3}}, c)
	ctx := context.Background()
	var got []bool
	for range 5 {
		d, err := l.Admit(ctx, "k", "m")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d.Allowed)
		if !d.Allowed && (d.Limit != "requests_per_minute" || d.RetryAfter != 50*time.Second || d.Used != 3 || d.Max != 3) {
			t.Errorf("refusal: %+v", d)
		}
	}
	if fmt.Sprint(got) != "[true true true false false]" {
		t.Fatalf("admitted %v", got)
	}
	// another key has its own count; the next minute starts again
	if d, _ := l.Admit(ctx, "other", "m"); !d.Allowed {
		t.Error("another key refused")
	}
	c.advance(50 * time.Second)
	if d, _ := l.Admit(ctx, "k", "m"); !d.Allowed {
		t.Error("refused in a new minute")
	}
}

// TestTokensCrossing: a response that crosses the limit is counted whole
// (it was never cut); the next request is refused until the window ends.
func TestTokensCrossing(t *testing.T) {
	c := newClock()
	l := newLimiter(Policy{Key: Rule{TokensPerMinute: 100}}, c)
	ctx := context.Background()
	for i, want := range []bool{true, true, false} {
		d, _ := l.Admit(ctx, "k", "m")
		if d.Allowed != want {
			t.Fatalf("request %d: %+v", i, d)
		}
		if d.Allowed {
			if _, err := l.Record(ctx, "k", "m", tokens(30, 40)); err != nil {
				t.Fatal(err)
			}
		} else if d.Limit != "tokens_per_minute" || d.Used != 140 {
			t.Errorf("refusal: %+v", d)
		}
	}
}

// TestBudgetEndsAtTheRightRequest: with prices, the day's budget ends at
// the request whose cost reaches it, and a new day (here also a new month)
// starts again.
func TestBudgetEndsAtTheRightRequest(t *testing.T) {
	c := newClock()
	l := newLimiter(Policy{Key: Rule{BudgetDay: 1}, Costs: Costs{Input: 0.001, Output: 0.002, Cached: 0.0005}}, c)
	ctx := context.Background()
	// each request costs 100*0.001 + 100*0.002 = 0.3: the fourth reaches 1.2
	n := 0
	for ; n < 10; n++ {
		d, _ := l.Admit(ctx, "k", "m")
		if !d.Allowed {
			if d.Limit != "budget_day" || d.Max != 1 || d.Used < 1.19 || d.Used > 1.21 {
				t.Errorf("refusal: %+v", d)
			}
			break
		}
		l.Record(ctx, "k", "m", tokens(100, 100))
	}
	if n != 4 {
		t.Fatalf("budget ended after %d requests, want 4", n)
	}
	c.advance(2 * time.Minute) // past midnight
	if d, _ := l.Admit(ctx, "k", "m"); !d.Allowed {
		t.Errorf("refused on a new day: %+v", d)
	}
	// cached tokens cost their own price
	cached, _ := usage.Parse([]byte(`{"usage":{"prompt_tokens":100,"completion_tokens":0,"prompt_tokens_details":{"cached_tokens":60}}}`))
	if got := l.Costs().Of(cached); got < 0.0699 || got > 0.0701 {
		t.Errorf("cost of 40 fresh and 60 cached: %v", got)
	}
}

func TestModelLimitsAndShadow(t *testing.T) {
	c := newClock()
	l := newLimiter(Policy{Key: Rule{RequestsPerMinute: 10}, Models: map[string]Rule{"Big": {RequestsPerMinute: 1}}, Shadow: true}, c)
	ctx := context.Background()
	d1, _ := l.Admit(ctx, "k", "big")
	d2, _ := l.Admit(ctx, "k", "BIG")
	d3, _ := l.Admit(ctx, "k", "small")
	if !d1.Allowed || d1.Shadowed || !d2.Allowed || !d2.Shadowed || d2.Model != "Big" || !d3.Allowed || d3.Shadowed {
		t.Fatalf("shadow: %+v %+v %+v", d1, d2, d3)
	}
	// shadow mode counts what it let through
	ws, err := l.Windows(ctx, "k")
	if err != nil || len(ws) != 2 || ws[0].Used != 3 || ws[1].Used != 2 || ws[1].Model != "Big" {
		t.Errorf("windows: %+v %v", ws, err)
	}
}

// TestManyKeysBounded: 10,000 distinct keys fit; past the store's bound a
// new key gets ErrFull (the caller fails open or closed), and counters of
// ended windows are swept to make room.
func TestManyKeysBounded(t *testing.T) {
	c := newClock()
	store := NewMemory(10_000)
	l := New(Policy{Key: Rule{RequestsPerMinute: 5}}, store)
	l.Now = c.now
	ctx := context.Background()
	for i := range 10_000 {
		if _, err := l.Admit(ctx, KeyID(fmt.Sprint(i)), ""); err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
	}
	if _, err := l.Admit(ctx, KeyID("one more"), ""); !errors.Is(err, ErrFull) {
		t.Fatalf("past the bound: %v", err)
	}
	if store.Len() != 10_000 {
		t.Fatalf("store holds %d", store.Len())
	}
	c.advance(time.Minute)
	if _, err := l.Admit(ctx, KeyID("one more"), ""); err != nil {
		t.Fatalf("after the window ended: %v", err)
	}
	if store.Len() != 1 {
		t.Errorf("ended windows not swept: %d", store.Len())
	}
}

// TestCountsNeverNegative: what Record is handed is clamped at zero, and
// counters saturate instead of wrapping.
func TestCountsNeverNegative(t *testing.T) {
	c := newClock()
	l := newLimiter(Policy{Key: Rule{TokensPerMinute: 10, BudgetMonth: MaxBudget}}, c)
	ctx := context.Background()
	l.Record(ctx, "k", "", usage.Counts{Input: -50, Output: -50})
	ws, _ := l.Windows(ctx, "k")
	if ws[0].Used != 0 || ws[1].Used != 0 {
		t.Errorf("negative counts counted: %+v", ws)
	}
	for range 3 {
		l.Record(ctx, "k", "", usage.Counts{Input: 1 << 40, Output: 1 << 40})
	}
	ws, _ = l.Windows(ctx, "k")
	if ws[0].Used <= 0 || ws[1].Used <= 0 {
		t.Errorf("counters wrapped: %+v", ws)
	}
	if d, _ := l.Admit(ctx, "k", ""); d.Allowed {
		t.Errorf("admitted past the limit: %+v", d)
	}
}

func TestKeyIDHidesTheKey(t *testing.T) {
	id := KeyID("sk-secret-123")
	if len(id) != 18 || id == KeyID("sk-secret-124") || id != KeyID("sk-secret-123") {
		t.Errorf("KeyID: %q", id)
	}
	big := make([]byte, 1<<20)
	if len(KeyID(string(big))) != 18 {
		t.Error("a 1 MB key is not bounded")
	}
}

// TestMemoryConcurrent: many goroutines on one key admit exactly its limit
// (one shard, one lock), and on many keys each key its own limit, under
// the race detector.
func TestMemoryConcurrent(t *testing.T) {
	c := newClock()
	l := newLimiter(Policy{Key: Rule{RequestsPerMinute: 50}}, c)
	ctx := context.Background()
	var mu sync.Mutex
	admitted := map[string]int{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 800 { // each key asked at least 200 times
				key := "hot"
				if i%2 == 1 {
					key = fmt.Sprintf("k%d", (g+i)%16)
				}
				d, err := l.Admit(ctx, key, "")
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					mu.Lock()
					admitted[key]++
					mu.Unlock()
				}
				if _, err := l.Record(ctx, key, "", tokens(1, 1)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for key, n := range admitted {
		if n != 50 {
			t.Errorf("%s: %d admitted, want 50", key, n)
		}
	}
	if len(admitted) != 17 {
		t.Errorf("%d keys admitted anything, want 17", len(admitted))
	}
}
