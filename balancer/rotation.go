package balancer

import "sync/atomic"

// rotation hands out turns 0, 1, 2, … to concurrent callers without a lock.
// It is the only state a balancer keeps: round-robin cycles over all
// candidates with it, and the other strategies use it to take equally good
// candidates in turn, so that equal endpoints share load evenly instead of
// the first one in config order taking everything.
type rotation struct {
	next atomic.Uint64
}

// turn returns the next position in a cycle of the given size, which must be
// positive. The counter is unsigned so that wrapping around after 2^64 turns
// never produces a negative index.
func (r *rotation) turn(size int) int {
	return int((r.next.Add(1) - 1) % uint64(size))
}
