// Package admission holds requests that find every candidate endpoint full
// until one of them has room: a bounded queue that serves the highest
// priority first and, within a priority, takes turns across fairness keys
// (client IPs, say) so one busy client cannot starve the rest; each key's own
// requests stay in arrival order.
//
// It has no Caddy types. The root package hands it Gates (endpoints with a
// concurrency cap, counted in their pooled state) and releases slots through
// the Queue, which passes each freed slot straight to the next waiter that
// can use it.
package admission

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Gate is something with limited room, one endpoint as the queue sees it.
// Implementations are shared by every request and must be safe for
// concurrent use.
type Gate interface {
	// TryEnter takes one slot if there is room now. It must not block: the
	// queue calls it while holding its lock.
	TryEnter() bool
	// Leave gives back a slot TryEnter took.
	Leave()
}

// Errors Wait returns besides the context's own.
var (
	// ErrFull is a request refused because its site's queue bound was reached.
	ErrFull = errors.New("queue full")
	// ErrTimeout is a request that waited its whole MaxWait for room.
	ErrTimeout = errors.New("waited past max_wait")
)

// Bound caps how many requests of one site may wait at once. A site's
// handler owns one; the queue itself is shared by every site, so a slot freed
// on an endpoint two sites use goes to whichever waiter is next in line.
type Bound struct {
	max     int64
	waiting atomic.Int64
}

// NewBound returns a bound of max waiting requests (max >= 1).
func NewBound(max int) *Bound { return &Bound{max: int64(max)} }

// Waiting is how many requests under this bound wait now.
func (b *Bound) Waiting() int64 { return b.waiting.Load() }

// Max is the bound.
func (b *Bound) Max() int64 { return b.max }

func (b *Bound) enter() bool {
	for {
		n := b.waiting.Load()
		if n >= b.max {
			return false
		}
		if b.waiting.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (b *Bound) leave() { b.waiting.Add(-1) }

// Ticket describes one waiting request.
type Ticket struct {
	// Priority: higher is served first.
	Priority int
	// Key is the fairness key (a client IP, an API key's hash): within a
	// priority the queue takes turns across keys.
	Key string
	// Gates are the endpoints that may serve the request; any one will do.
	Gates []Gate
	// MaxWait bounds the wait (> 0).
	MaxWait time.Duration
	// Bound is the site's queue bound.
	Bound *Bound
}

// Queue is the waiting room. The zero value is not usable: call New.
type Queue struct {
	mu     sync.Mutex
	levels []*level // by priority, highest first
	size   int
	depth  atomic.Int64 // size, readable without the lock
	drain  drainRate
	now    func() time.Time
}

// New returns an empty queue.
func New() *Queue { return &Queue{now: time.Now} }

// level is one priority's waiters: lanes in turn order, one per key.
type level struct {
	priority int
	lanes    []*lane
	next     int // index of the lane whose turn is next
	byKey    map[string]*lane
}

// lane is one fairness key's waiters in arrival order.
type lane struct {
	key     string
	waiters []*waiter
}

type waiter struct {
	gates  []Gate
	grant  chan Gate // buffered: the granter never blocks
	lvl    *level
	ln     *lane
	queued bool // guarded by Queue.mu
}

// Depth is how many requests wait now.
func (q *Queue) Depth() int { return int(q.depth.Load()) }

// Wait holds the request until one of its gates lets it in, and returns that
// gate with a slot taken (the caller gives it back with Release). It returns
// ErrFull at once when the ticket's bound is reached, ErrTimeout after
// MaxWait, or the context's error when the client left; in every error case
// no slot is held and the request is no longer queued.
func (q *Queue) Wait(ctx context.Context, t Ticket) (Gate, error) {
	if !t.Bound.enter() {
		return nil, ErrFull
	}
	defer t.Bound.leave()

	q.mu.Lock()
	// Room may have appeared since the caller looked; checking under the
	// lock means a slot freed after this point finds us queued (no lost
	// wake-up). With nobody waiting a free slot is simply taken; otherwise
	// we queue first and let the turn order decide, so a newcomer never
	// overtakes a request that waited for the same endpoint.
	if q.size == 0 {
		for _, g := range t.Gates {
			if g.TryEnter() {
				q.mu.Unlock()
				return g, nil
			}
		}
	}
	w := &waiter{gates: t.Gates, grant: make(chan Gate, 1)}
	q.enqueue(w, t.Priority, t.Key)
	for _, g := range t.Gates {
		for q.size > 0 && q.grantOne(g) {
		}
	}
	q.mu.Unlock()

	timer := time.NewTimer(t.MaxWait)
	defer timer.Stop()
	var err error
	select {
	case g := <-w.grant:
		return g, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = ErrTimeout
	}
	q.mu.Lock()
	if w.queued {
		q.remove(w)
		q.mu.Unlock()
		return nil, err
	}
	q.mu.Unlock()
	// granted while we gave up: pass the slot on
	q.Release(<-w.grant)
	return nil, err
}

// Release gives back a slot taken through Wait or the gate's own TryEnter,
// and hands it to the next waiter that can use it.
func (q *Queue) Release(g Gate) {
	g.Leave()
	if q.depth.Load() > 0 {
		q.Notify(g)
	}
}

// Notify offers g's free room to the waiters, in turn, until g is full or
// nobody waiting wants it. Call it whenever g may have gained room other than
// by Release: it became healthy again, a parking ran out, its cap was raised.
func (q *Queue) Notify(g Gate) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.size > 0 && q.grantOne(g) {
	}
}

// Kick offers every gate a waiter wants: the safety net for room that
// appeared without an event.
func (q *Queue) Kick() {
	q.mu.Lock()
	defer q.mu.Unlock()
	var seen []Gate
	for _, lv := range q.levels {
		for _, ln := range lv.lanes {
			for _, w := range ln.waiters {
				for _, g := range w.gates {
					if !containsGate(seen, g) {
						seen = append(seen, g)
					}
				}
			}
		}
	}
	for _, g := range seen {
		for q.size > 0 && q.grantOne(g) {
		}
	}
}

// RetryAfter estimates when a refused request could get in: the current
// depth over the recent rate at which waiters were served, within [1s, 60s].
func (q *Queue) RetryAfter() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	rate := q.drain.perSecond(q.now())
	if rate <= 0 {
		return 5 * time.Second
	}
	d := time.Duration(float64(q.size+1) / rate * float64(time.Second))
	return min(max(d, time.Second), time.Minute)
}

// grantOne gives g to the first waiter in turn order that accepts it. It
// reports false when no waiter wants g or g has no room.
func (q *Queue) grantOne(g Gate) bool {
	for _, lv := range q.levels {
		n := len(lv.lanes)
		for i := 0; i < n; i++ {
			ln := lv.lanes[(lv.next+i)%n]
			for _, w := range ln.waiters {
				if !containsGate(w.gates, g) {
					continue
				}
				if !g.TryEnter() {
					return false
				}
				// the next turn in this priority goes to the lane after this one
				lv.next = (lv.next + i + 1) % n
				q.remove(w)
				w.grant <- g
				q.drain.observe(q.now())
				return true
			}
		}
	}
	return false
}

func containsGate(gates []Gate, g Gate) bool {
	for _, x := range gates {
		if x == g {
			return true
		}
	}
	return false
}

func (q *Queue) enqueue(w *waiter, priority int, key string) {
	var lv *level
	i := 0
	for ; i < len(q.levels); i++ {
		if q.levels[i].priority == priority {
			lv = q.levels[i]
			break
		}
		if q.levels[i].priority < priority {
			break
		}
	}
	if lv == nil {
		lv = &level{priority: priority, byKey: map[string]*lane{}}
		q.levels = append(q.levels, nil)
		copy(q.levels[i+1:], q.levels[i:])
		q.levels[i] = lv
	}
	ln := lv.byKey[key]
	if ln == nil {
		ln = &lane{key: key}
		lv.byKey[key] = ln
		// a new key joins the rotation just before the current turn, so it
		// is served after every key already waiting has had one turn
		at := lv.next
		lv.lanes = append(lv.lanes, nil)
		copy(lv.lanes[at+1:], lv.lanes[at:])
		lv.lanes[at] = ln
		if len(lv.lanes) > 1 {
			lv.next = (at + 1) % len(lv.lanes)
		}
	}
	ln.waiters = append(ln.waiters, w)
	w.lvl, w.ln, w.queued = lv, ln, true
	q.size++
	q.depth.Add(1)
}

// remove takes a queued waiter out, dropping its lane and level when empty
// so the structure never outgrows what waits.
func (q *Queue) remove(w *waiter) {
	ln, lv := w.ln, w.lvl
	for i, x := range ln.waiters {
		if x == w {
			copy(ln.waiters[i:], ln.waiters[i+1:])
			ln.waiters[len(ln.waiters)-1] = nil
			ln.waiters = ln.waiters[:len(ln.waiters)-1]
			break
		}
	}
	w.queued, w.ln, w.lvl = false, nil, nil
	q.size--
	q.depth.Add(-1)
	if len(ln.waiters) > 0 {
		return
	}
	delete(lv.byKey, ln.key)
	for i, x := range lv.lanes {
		if x == ln {
			copy(lv.lanes[i:], lv.lanes[i+1:])
			lv.lanes[len(lv.lanes)-1] = nil
			lv.lanes = lv.lanes[:len(lv.lanes)-1]
			if i < lv.next {
				lv.next--
			}
			break
		}
	}
	if len(lv.lanes) == 0 {
		lv.next = 0
		for i, x := range q.levels {
			if x == lv {
				q.levels = append(q.levels[:i], q.levels[i+1:]...)
				break
			}
		}
	} else if lv.next >= len(lv.lanes) {
		lv.next = 0
	}
}

// drainRate counts served waiters per second over the last ten seconds.
type drainRate struct {
	counts [drainWindow]int64
	secs   [drainWindow]int64 // the unix second each count belongs to
	first  int64              // the first second ever counted
}

const drainWindow = 10

func (d *drainRate) observe(now time.Time) {
	sec := now.Unix()
	if d.first == 0 {
		d.first = sec
	}
	i := sec % drainWindow
	if d.secs[i] != sec {
		d.secs[i], d.counts[i] = sec, 0
	}
	d.counts[i]++
}

func (d *drainRate) perSecond(now time.Time) float64 {
	if d.first == 0 {
		return 0
	}
	sec := now.Unix()
	var n int64
	for i := range d.secs {
		if sec-d.secs[i] < drainWindow {
			n += d.counts[i]
		}
	}
	span := min(sec-d.first+1, drainWindow)
	return float64(n) / float64(span)
}
