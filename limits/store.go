package limits

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Window is the span a counter counts over; counters start again at each
// window's start (fixed windows in UTC), so every instance sharing a store
// agrees on them without coordination.
type Window uint8

const (
	Minute Window = iota
	Day
	Month
)

// start is the window's start containing now, as a number fit for a
// store key, and the window's end.
func (w Window) bounds(now time.Time) (id int64, end time.Time) {
	now = now.UTC()
	switch w {
	case Day:
		s := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		return s.Unix(), s.AddDate(0, 0, 1)
	case Month:
		s := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
		return s.Unix(), s.AddDate(0, 1, 0)
	}
	s := now.Truncate(time.Minute)
	return s.Unix(), s.Add(time.Minute)
}

func (w Window) String() string {
	switch w {
	case Day:
		return "day"
	case Month:
		return "month"
	}
	return "minute"
}

// Counter is one count a request is checked against or adds to. Key,
// Model and Kind identify it; the store adds the window. They are kept
// apart, not joined into one name, so the memory store can find a counter
// without building a string on every request.
type Counter struct {
	// Key is the key's id (see KeyID).
	Key string
	// Model is the model of a per-model limit ("" for the key's own).
	Model string
	// Kind names the limit ("tokens_per_minute").
	Kind   string
	Window Window
	// Limit is the most the window may count; 0 counts without a limit.
	Limit int64
	// N is what this request adds: 1 to a request count at admission,
	// tokens or cost once the response has ended.
	N int64
}

// Name is the counter's name in a shared store: key, model and kind.
func (c Counter) Name() string {
	if c.Model == "" {
		return c.Key + "|" + c.Kind
	}
	return c.Key + "|m=" + c.Model + "|" + c.Kind
}

// Result is a Take's outcome.
type Result struct {
	// Over is the index of the first counter at its limit, -1 for none.
	Over int
	// Used is that counter's count, before this request.
	Used int64
}

// Store keeps counters. Memory is the default; Redis shares them between
// instances. Each call is one round trip at most.
type Store interface {
	// Take checks the current window of every counter against its limit:
	// a counter is over when its count plus max(N, 1) passes its limit.
	// When none is over, or force is set (shadow mode), it adds each
	// counter's N. Check and add are one atomic step.
	Take(ctx context.Context, now time.Time, cs []Counter, force bool) (Result, error)
	// Add adds each counter's N to its current window.
	Add(ctx context.Context, now time.Time, cs []Counter) error
	// Peek reads counters' current windows (0 for none).
	Peek(ctx context.Context, now time.Time, cs []Counter) ([]int64, error)
}

// ErrFull is a memory store with no room for another counter.
var ErrFull = errors.New("the limits store is full: too many distinct keys in the current windows")

// Memory is a Store in this process. Counters of ended windows are swept
// when room runs out; at most MaxEntries live at once. The counters are
// spread over shards by key, so one request's counters share a shard and
// one lock: requests of different keys do not wait for each other.
type Memory struct {
	shards    [memShards]memShard
	max       int64
	n         atomic.Int64 // counters held, across shards
	lastSweep atomic.Int64 // unix nanos
	windows   atomic.Pointer[minuteBounds]
}

// memKey is a counter's identity in a shard's map.
type memKey struct{ key, model, kind string }

// memShards spreads the keys: far more shards than cores, so two requests
// rarely meet on one lock.
const memShards = 64

type memShard struct {
	mu sync.Mutex
	m  map[memKey]*entry
	_  [40]byte // shards' locks on cache lines of their own
}

type entry struct {
	window int64 // the window's start
	expiry time.Time
	n      int64
}

// DefaultMaxEntries bounds a memory store: four counters for each of
// 50,000 keys, about 10 MB.
const DefaultMaxEntries = 200_000

// NewMemory makes a memory store holding at most maxEntries counters
// (DefaultMaxEntries when 0).
func NewMemory(maxEntries int) *Memory {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	s := &Memory{max: int64(maxEntries)}
	for i := range s.shards {
		s.shards[i].m = make(map[memKey]*entry)
	}
	return s
}

// Len is how many counters the store holds.
func (s *Memory) Len() int { return int(s.n.Load()) }

// shardSeed spreads keys over shards; per process, like the maps'.
var shardSeed = maphash.MakeSeed()

// shardOf is the shard of a key.
func shardOf(key string) int { return int(maphash.String(shardSeed, key) % memShards) }

func (s *Memory) shard(key string) *memShard { return &s.shards[shardOf(key)] }

// bounds are the current window of each Window, computed once per call.
type bounds [3]struct {
	id  int64
	end time.Time
}

func boundsAt(now time.Time) (b bounds) {
	for w := range b {
		b[w].id, b[w].end = Window(w).bounds(now)
	}
	return b
}

// minuteBounds are the windows of one UTC minute: every window boundary
// is a minute boundary, so they hold for the whole minute.
type minuteBounds struct {
	minute int64 // unix seconds / 60
	b      bounds
}

// boundsAt is boundsAt(now), worked out once a minute: the calendar
// arithmetic of a day and a month costs more than the rest of a request's
// counting.
func (s *Memory) boundsAt(now time.Time) *bounds {
	u := now.Unix()
	minute := u / 60
	if u < 0 && u%60 != 0 {
		minute--
	}
	if mb := s.windows.Load(); mb != nil && mb.minute == minute {
		return &mb.b
	}
	mb := &minuteBounds{minute: minute, b: boundsAt(now)}
	s.windows.Store(mb)
	return &mb.b
}

// get returns c's current window in sh (locked), creating it; nil when
// the store is full.
func (s *Memory) get(sh *memShard, b *bounds, c Counter, create bool) *entry {
	id, end := b[c.Window].id, b[c.Window].end
	k := memKey{c.Key, c.Model, c.Kind}
	e := sh.m[k]
	if e != nil && e.window != id {
		e.window, e.expiry, e.n = id, end, 0
	}
	if e != nil || !create {
		return e
	}
	if s.n.Add(1) > s.max {
		s.n.Add(-1)
		return nil
	}
	e = &entry{window: id, expiry: end}
	sh.m[k] = e
	return e
}

// sweep drops counters whose window has ended, in every shard, at most
// once a second. No shard lock is held by the caller.
func (s *Memory) sweep(now time.Time) {
	last := s.lastSweep.Load()
	if t := now.UnixNano(); t-last < int64(time.Second) && t > last || !s.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if !now.Before(e.expiry) {
				delete(sh.m, k)
				s.n.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
}

// locked runs f with the shard of cs's counters locked (one request's
// counters share a key, so one shard; a mixed batch locks each of its
// shards in order). When f finds the store full, it sweeps ended windows
// and runs f once more.
func (s *Memory) locked(now time.Time, cs []Counter, f func() bool) {
	var held [4]int
	shards := held[:0]
	for _, c := range cs {
		if i := shardOf(c.Key); !slices.Contains(shards, i) {
			shards = append(shards, i)
		}
	}
	slices.Sort(shards)
	for try := 0; ; try++ {
		for _, i := range shards {
			s.shards[i].mu.Lock()
		}
		full := !f()
		for _, i := range shards {
			s.shards[i].mu.Unlock()
		}
		if !full || try > 0 {
			return
		}
		s.sweep(now)
	}
}

// Take implements Store.
func (s *Memory) Take(_ context.Context, now time.Time, cs []Counter, force bool) (Result, error) {
	b := s.boundsAt(now)
	res := Result{Over: -1}
	var err error
	var buf [8]*entry // a request's counters: no allocation
	es := buf[:0]
	if len(cs) > len(buf) {
		es = make([]*entry, 0, len(cs))
	}
	es = es[:len(cs)]
	s.locked(now, cs, func() bool {
		res, err = Result{Over: -1}, nil
		for i, c := range cs {
			e := s.get(s.shard(c.Key), b, c, true)
			if e == nil {
				err = ErrFull
				return false
			}
			es[i] = e
			if res.Over < 0 && c.Limit > 0 && e.n+max(c.N, 1) > c.Limit {
				res.Over, res.Used = i, e.n
			}
		}
		if res.Over >= 0 && !force {
			return true
		}
		for i, c := range cs {
			es[i].n = addCapped(es[i].n, c.N)
		}
		return true
	})
	return res, err
}

// Add implements Store. A counter with no room is not counted.
func (s *Memory) Add(_ context.Context, now time.Time, cs []Counter) error {
	b := s.boundsAt(now)
	var err error
	var doneBuf [8]bool // counted already: the retry after a sweep skips them
	done := doneBuf[:0]
	if len(cs) > len(doneBuf) {
		done = make([]bool, 0, len(cs))
	}
	done = done[:len(cs)]
	s.locked(now, cs, func() bool {
		err = nil
		for i, c := range cs {
			if c.N <= 0 || done[i] {
				continue
			}
			if e := s.get(s.shard(c.Key), b, c, true); e != nil {
				e.n = addCapped(e.n, c.N)
				done[i] = true
			} else {
				err = ErrFull
			}
		}
		return err == nil
	})
	return err
}

// Peek implements Store.
func (s *Memory) Peek(_ context.Context, now time.Time, cs []Counter) ([]int64, error) {
	b := s.boundsAt(now)
	out := make([]int64, len(cs))
	s.locked(now, cs, func() bool {
		for i, c := range cs {
			if e := s.get(s.shard(c.Key), b, c, false); e != nil {
				out[i] = e.n
			}
		}
		return true
	})
	return out, nil
}

// maxCounter keeps a count well inside int64, whatever is added.
const maxCounter = 1 << 62

// addCapped adds n (never negative) to v without overflowing.
func addCapped(v, n int64) int64 {
	if n <= 0 {
		return v
	}
	if v > maxCounter-n {
		return maxCounter
	}
	return v + n
}
