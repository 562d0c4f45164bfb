package admission

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slots is a Gate with a fixed capacity that records its peak.
type slots struct {
	name  string
	cap   int64
	extra atomic.Int64 // raised while in use (a reload raising the cap)
	n     atomic.Int64
	peak  atomic.Int64
}

func (s *slots) TryEnter() bool {
	for {
		n := s.n.Load()
		if n >= s.cap+s.extra.Load() {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			for {
				p := s.peak.Load()
				if n+1 <= p || s.peak.CompareAndSwap(p, n+1) {
					return true
				}
			}
		}
	}
}

func (s *slots) Leave() { s.n.Add(-1) }

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// queueUp starts one waiter per ticket, in order, each queued before the
// next starts, and returns the channel their results arrive on.
type result struct {
	id  string
	g   Gate
	err error
}

func queueUp(t *testing.T, q *Queue, ctx context.Context, ids []string, mk func(id string) Ticket) <-chan result {
	t.Helper()
	out := make(chan result, len(ids))
	for _, id := range ids {
		before := q.Depth()
		go func() {
			g, err := q.Wait(ctx, mk(id))
			out <- result{id, g, err}
		}()
		waitFor(t, id+" to queue", func() bool { return q.Depth() == before+1 })
	}
	return out
}

func ticket(g Gate, prio int, key string, b *Bound) Ticket {
	return Ticket{Priority: prio, Key: key, Gates: []Gate{g}, MaxWait: time.Minute, Bound: b}
}

// drainOrder releases g once per waiter and records who got it.
func drainOrder(t *testing.T, q *Queue, g Gate, results <-chan result, n int) []string {
	t.Helper()
	var order []string
	for i := 0; i < n; i++ {
		q.Release(g)
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatalf("%s: %v", r.id, r.err)
			}
			order = append(order, r.id)
		case <-time.After(10 * time.Second):
			t.Fatalf("no waiter was served after release %d", i+1)
		}
	}
	return order
}

func TestFIFOWithinOneKey(t *testing.T) {
	q, g, b := New(), &slots{cap: 1}, NewBound(100)
	if !g.TryEnter() {
		t.Fatal("gate should have room")
	}
	ids := []string{"1", "2", "3", "4", "5"}
	res := queueUp(t, q, context.Background(), ids, func(string) Ticket { return ticket(g, 0, "client", b) })
	got := drainOrder(t, q, g, res, len(ids))
	if fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Fatalf("served %v, want arrival order %v", got, ids)
	}
}

func TestHigherPriorityOvertakes(t *testing.T) {
	q, g, b := New(), &slots{cap: 1}, NewBound(100)
	g.TryEnter()
	prio := map[string]int{"low1": 0, "low2": 0, "high": 10, "mid": 5}
	ids := []string{"low1", "low2", "high", "mid"}
	res := queueUp(t, q, context.Background(), ids, func(id string) Ticket { return ticket(g, prio[id], "c", b) })
	got := drainOrder(t, q, g, res, len(ids))
	if want := "[high mid low1 low2]"; fmt.Sprint(got) != want {
		t.Fatalf("served %v, want %s", got, want)
	}
}

func TestFairAcrossKeys(t *testing.T) {
	q, g, b := New(), &slots{cap: 1}, NewBound(100)
	g.TryEnter()
	// a greedy client queues ten before a modest one queues two
	var ids []string
	for i := range 10 {
		ids = append(ids, fmt.Sprintf("greedy%d", i))
	}
	ids = append(ids, "modest0", "modest1")
	key := func(id string) string { return id[:len(id)-1] }
	res := queueUp(t, q, context.Background(), ids, func(id string) Ticket { return ticket(g, 0, key(id), b) })
	got := drainOrder(t, q, g, res, len(ids))
	// the modest client is served within the first four, not after ten
	pos := map[string]int{}
	for i, id := range got {
		pos[id] = i
	}
	if pos["modest0"] > 2 || pos["modest1"] > 4 {
		t.Fatalf("modest client served at %d and %d in %v: not fair", pos["modest0"], pos["modest1"], got)
	}
	// each client's own requests stay in order
	last := map[string]int{}
	for _, id := range got {
		k, n := key(id), int(id[len(id)-1]-'0')
		if p, ok := last[k]; ok && n < p {
			t.Fatalf("%s's requests out of order: %v", k, got)
		}
		last[k] = n
	}
}

func TestFullBoundRefusesAtOnce(t *testing.T) {
	q, g, b := New(), &slots{cap: 1}, NewBound(2)
	g.TryEnter()
	res := queueUp(t, q, context.Background(), []string{"a", "b"}, func(string) Ticket { return ticket(g, 0, "c", b) })
	if _, err := q.Wait(context.Background(), ticket(g, 0, "c", b)); !errors.Is(err, ErrFull) {
		t.Fatalf("third waiter: %v, want ErrFull", err)
	}
	// another site's bound is its own
	other := NewBound(1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := q.Wait(ctx, ticket(g, 0, "c", other)); done <- err }()
	waitFor(t, "the other site's waiter", func() bool { return q.Depth() == 3 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter: %v", err)
	}
	drainOrder(t, q, g, res, 2)
	if b.Waiting() != 0 || other.Waiting() != 0 || q.Depth() != 0 {
		t.Fatalf("left waiting: bound %d, other %d, depth %d", b.Waiting(), other.Waiting(), q.Depth())
	}
}

func TestTimeoutLeavesNothingBehind(t *testing.T) {
	q, g, b := New(), &slots{cap: 1}, NewBound(10)
	g.TryEnter()
	tk := ticket(g, 0, "c", b)
	tk.MaxWait = 20 * time.Millisecond
	if _, err := q.Wait(context.Background(), tk); !errors.Is(err, ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	if q.Depth() != 0 || b.Waiting() != 0 {
		t.Fatalf("after a timeout: depth %d, bound %d", q.Depth(), b.Waiting())
	}
	q.Release(g)
	if g.n.Load() != 0 {
		t.Fatalf("slot held by nobody: %d in use", g.n.Load())
	}
}

func TestClientThatLeavesTakesNoSlot(t *testing.T) {
	q, g, b := New(), &slots{cap: 1}, NewBound(10)
	g.TryEnter()
	ctx, cancel := context.WithCancel(context.Background())
	res := queueUp(t, q, ctx, []string{"leaver"}, func(string) Ticket { return ticket(g, 0, "a", b) })
	stay := queueUp(t, q, context.Background(), []string{"stayer"}, func(string) Ticket { return ticket(g, 0, "b", b) })
	cancel()
	if r := <-res; !errors.Is(r.err, context.Canceled) || r.g != nil {
		t.Fatalf("leaver got %v, %v", r.g, r.err)
	}
	if q.Depth() != 1 {
		t.Fatalf("depth %d after the leaver went, want 1", q.Depth())
	}
	if got := drainOrder(t, q, g, stay, 1); got[0] != "stayer" {
		t.Fatalf("served %v", got)
	}
}

// A waiter may be granted a slot at the moment it gives up; the slot must
// pass on, not leak.
func TestGrantRacingCancelPassesTheSlotOn(t *testing.T) {
	for range 200 {
		q, g, b := New(), &slots{cap: 1}, NewBound(10)
		g.TryEnter()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan result, 1)
		go func() { gg, err := q.Wait(ctx, ticket(g, 0, "c", b)); done <- result{"", gg, err} }()
		waitFor(t, "queued", func() bool { return q.Depth() == 1 })
		go cancel()
		q.Release(g)
		r := <-done
		if r.err == nil {
			q.Release(r.g)
		}
		if n := g.n.Load(); n != 0 {
			t.Fatalf("%d slots held after everyone left", n)
		}
	}
}

func TestServedByWhicheverGateFreesFirst(t *testing.T) {
	q, b := New(), NewBound(10)
	a, c := &slots{name: "a", cap: 1}, &slots{name: "c", cap: 1}
	a.TryEnter()
	c.TryEnter()
	done := make(chan Gate, 1)
	go func() {
		g, _ := q.Wait(context.Background(), Ticket{Key: "k", Gates: []Gate{a, c}, MaxWait: time.Minute, Bound: b})
		done <- g
	}()
	waitFor(t, "queued", func() bool { return q.Depth() == 1 })
	q.Release(c)
	if g := <-done; g != Gate(c) {
		t.Fatalf("served by %v, want c", g.(*slots).name)
	}
}

func TestWaiterSkipsGatesItCannotUse(t *testing.T) {
	q, b := New(), NewBound(10)
	a, c := &slots{name: "a", cap: 1}, &slots{name: "c", cap: 1}
	a.TryEnter()
	c.TryEnter()
	// first in line wants only a; second wants only c
	res := queueUp(t, q, context.Background(), []string{"wants-a", "wants-c"}, func(id string) Ticket {
		g := Gate(a)
		if id == "wants-c" {
			g = c
		}
		return Ticket{Key: id, Gates: []Gate{g}, MaxWait: time.Minute, Bound: b}
	})
	q.Release(c)
	if r := <-res; r.id != "wants-c" {
		t.Fatalf("c went to %s", r.id)
	}
	q.Release(a)
	if r := <-res; r.id != "wants-a" {
		t.Fatalf("a went to %s", r.id)
	}
}

func TestNotifyHandsOutRoomThatAppearedWithoutRelease(t *testing.T) {
	q, g, b := New(), &slots{cap: 0}, NewBound(10)
	res := queueUp(t, q, context.Background(), []string{"1", "2"}, func(string) Ticket { return ticket(g, 0, "c", b) })
	g.extra.Store(2) // a reload raised the cap
	q.Kick()
	for range 2 {
		if r := <-res; r.err != nil {
			t.Fatal(r.err)
		}
	}
}

// Many clients hammer four gates of two slots: the cap is never exceeded,
// everyone is served, and nothing is left over.
func TestCapHoldsUnderContention(t *testing.T) {
	q, b := New(), NewBound(1000)
	gates := []Gate{&slots{cap: 2}, &slots{cap: 2}, &slots{cap: 2}, &slots{cap: 2}}
	var wg sync.WaitGroup
	var served atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				g, err := q.Wait(context.Background(), Ticket{Key: fmt.Sprint(i % 7), Gates: gates, MaxWait: time.Minute, Bound: b})
				if err != nil {
					t.Error(err)
					return
				}
				served.Add(1)
				runtime.Gosched()
				q.Release(g)
			}
		}()
	}
	wg.Wait()
	if served.Load() != 1000 {
		t.Fatalf("served %d of 1000", served.Load())
	}
	for i, g := range gates {
		s := g.(*slots)
		if s.peak.Load() > 2 || s.n.Load() != 0 {
			t.Fatalf("gate %d: peak %d, left %d", i, s.peak.Load(), s.n.Load())
		}
	}
	if q.Depth() != 0 || len(q.levels) != 0 {
		t.Fatalf("queue not empty: depth %d, %d levels", q.Depth(), len(q.levels))
	}
}

func TestRetryAfterIsBounded(t *testing.T) {
	q := New()
	if d := q.RetryAfter(); d < time.Second || d > time.Minute {
		t.Fatalf("empty queue: %v", d)
	}
	now := time.Unix(1000, 0)
	q.now = func() time.Time { return now }
	for range 50 { // ten a second for five seconds
		now = now.Add(100 * time.Millisecond)
		q.drain.observe(now)
	}
	q.size = 20
	if d := q.RetryAfter(); d < time.Second || d > 3*time.Second {
		t.Fatalf("20 waiting at ~10/s: Retry-After %v, want about 2s", d)
	}
	q.size = 1 << 30
	if d := q.RetryAfter(); d != time.Minute {
		t.Fatalf("huge queue: %v, want the 60s cap", d)
	}
}

func BenchmarkReleaseWithNobodyWaiting(b *testing.B) {
	q, g := New(), &slots{cap: 1 << 40}
	for b.Loop() {
		g.TryEnter()
		q.Release(g)
	}
}

// The memory a waiting request costs the queue (its goroutine aside).
func TestMemoryPerWaiter(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a thousand waiters")
	}
	q, g, b := New(), &slots{cap: 0}, NewBound(2000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	for i := range 1000 {
		wg.Add(1)
		go func() { defer wg.Done(); q.Wait(ctx, ticket(g, i%3, fmt.Sprint(i%50), b)) }()
	}
	waitFor(t, "1000 queued", func() bool { return q.Depth() == 1000 })
	runtime.GC()
	runtime.ReadMemStats(&after)
	perWaiter := (int64(after.HeapInuse+after.StackInuse) - int64(before.HeapInuse+before.StackInuse)) / 1000
	t.Logf("about %d bytes per waiting request, goroutine stack included", perWaiter)
	if perWaiter > 20_000 {
		t.Errorf("%d bytes per waiter: 1000 would cost more than 20 MB", perWaiter)
	}
	cancel()
	wg.Wait()
}

// A newcomer that finds a slot free while others wait for the same gate
// queues behind them instead of taking it.
func TestNewcomerDoesNotOvertake(t *testing.T) {
	q, g, b := New(), &slots{cap: 1}, NewBound(10)
	g.TryEnter()
	res := queueUp(t, q, context.Background(), []string{"first"}, func(string) Ticket { return ticket(g, 0, "a", b) })
	// the slot frees without a Release reaching the queue (a raced Leave)
	g.Leave()
	newcomer := make(chan error, 1)
	go func() {
		got, err := q.Wait(context.Background(), ticket(g, 0, "b", b))
		if err == nil {
			q.Release(got)
		}
		newcomer <- err
	}()
	r := <-res
	if r.err != nil || r.id != "first" {
		t.Fatalf("the free slot went to %q (%v), not the request waiting for it", r.id, r.err)
	}
	select {
	case err := <-newcomer:
		t.Fatalf("the newcomer got in while the first held the only slot: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	q.Release(g)
	if err := <-newcomer; err != nil {
		t.Fatalf("newcomer: %v", err)
	}
}

// A burst far past the bound: the queue holds its bound, refuses the rest
// at once, and keeps nothing of them.
func TestBurstPastTheBound(t *testing.T) {
	q, g, b := New(), &slots{cap: 0}, NewBound(100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() { defer wg.Done(); q.Wait(ctx, ticket(g, 0, fmt.Sprint(i), b)) }()
	}
	waitFor(t, "100 queued", func() bool { return q.Depth() == 100 })
	var refused atomic.Int64
	var burst sync.WaitGroup
	for w := range 8 {
		burst.Add(1)
		go func() {
			defer burst.Done()
			for i := range 100_000 / 8 {
				if _, err := q.Wait(ctx, ticket(g, i%5, fmt.Sprint(w, i), b)); errors.Is(err, ErrFull) {
					refused.Add(1)
				}
			}
		}()
	}
	burst.Wait()
	if refused.Load() != 100_000 || q.Depth() != 100 || b.Waiting() != 100 {
		t.Fatalf("refused %d of 100,000; depth %d, bound %d: want all refused and 100 still waiting", refused.Load(), q.Depth(), b.Waiting())
	}
	cancel()
	wg.Wait()
	if q.Depth() != 0 || len(q.levels) != 0 {
		t.Fatalf("after everyone left: depth %d, %d levels", q.Depth(), len(q.levels))
	}
}
