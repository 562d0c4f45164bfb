package limits

import (
	"context"
	"errors"
	"sync"
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

// Counter is one count a request is checked against or adds to.
type Counter struct {
	// Name identifies the count (key, model and kind); the store adds
	// the window.
	Name   string
	Window Window
	// Limit is the most the window may count; 0 counts without a limit.
	Limit int64
	// N is what this request adds: 1 to a request count at admission,
	// tokens or cost once the response has ended.
	N int64
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
// when room runs out; at most MaxEntries live at once.
type Memory struct {
	mu        sync.Mutex
	m         map[string]*entry
	max       int
	lastSweep time.Time
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
	return &Memory{m: make(map[string]*entry), max: maxEntries}
}

// Len is how many counters the store holds.
func (s *Memory) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// get returns c's current window, creating it; nil when full.
func (s *Memory) get(now time.Time, c Counter, create bool) *entry {
	id, end := c.Window.bounds(now)
	e := s.m[c.Name]
	if e != nil && e.window != id {
		e.window, e.expiry, e.n = id, end, 0
	}
	if e != nil || !create {
		return e
	}
	if len(s.m) >= s.max {
		s.sweep(now)
		if len(s.m) >= s.max {
			return nil
		}
	}
	e = &entry{window: id, expiry: end}
	s.m[c.Name] = e
	return e
}

// sweep drops counters whose window has ended, at most once a second.
func (s *Memory) sweep(now time.Time) {
	if now.Sub(s.lastSweep) < time.Second && now.After(s.lastSweep) {
		return
	}
	s.lastSweep = now
	for k, e := range s.m {
		if !now.Before(e.expiry) {
			delete(s.m, k)
		}
	}
}

// Take implements Store.
func (s *Memory) Take(_ context.Context, now time.Time, cs []Counter, force bool) (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := Result{Over: -1}
	var buf [8]*entry // a request's counters: no allocation
	es := buf[:0]
	if len(cs) > len(buf) {
		es = make([]*entry, 0, len(cs))
	}
	es = es[:len(cs)]
	for i, c := range cs {
		e := s.get(now, c, true)
		if e == nil {
			return res, ErrFull
		}
		es[i] = e
		if res.Over < 0 && c.Limit > 0 && e.n+max(c.N, 1) > c.Limit {
			res.Over, res.Used = i, e.n
		}
	}
	if res.Over >= 0 && !force {
		return res, nil
	}
	for i, c := range cs {
		es[i].n = addCapped(es[i].n, c.N)
	}
	return res, nil
}

// Add implements Store. A counter with no room is not counted.
func (s *Memory) Add(_ context.Context, now time.Time, cs []Counter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for _, c := range cs {
		if c.N <= 0 {
			continue
		}
		if e := s.get(now, c, true); e != nil {
			e.n = addCapped(e.n, c.N)
		} else {
			err = ErrFull
		}
	}
	return err
}

// Peek implements Store.
func (s *Memory) Peek(_ context.Context, now time.Time, cs []Counter) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int64, len(cs))
	for i, c := range cs {
		if e := s.get(now, c, false); e != nil {
			out[i] = e.n
		}
	}
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
