package balancer

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestCounter(t *testing.T) {
	tests := []struct {
		name string
		ops  string // a: Acquire, r: Release
		want int64
	}{
		{"zero value", "", 0},
		{"acquire", "aaa", 3},
		{"balanced", "aararr", 0},
		{"release when idle", "r", 0},
		{"extra releases", "aarrrr", 0},
		{"acquire after extra releases", "rrraa", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Counter
			for _, op := range tt.ops {
				if op == 'a' {
					c.Acquire()
				} else {
					c.Release()
				}
				if c.Load() < 0 {
					t.Fatalf("count went negative: %d", c.Load())
				}
			}
			if got := c.Load(); got != tt.want {
				t.Errorf("after %q: Load() = %d, want %d", tt.ops, got, tt.want)
			}
		})
	}
}

// TestCounterConcurrent has many goroutines acquire and release, each
// releasing once more than it acquired, while an observer watches for a
// negative count. Every release has to be matched by an earlier acquire or be
// absorbed at zero, so once everyone is done the count must be exactly zero.
func TestCounterConcurrent(t *testing.T) {
	const goroutines, rounds = 64, 1000
	var (
		c        Counter
		done     atomic.Bool
		workers  sync.WaitGroup
		observer sync.WaitGroup
	)
	observer.Go(func() {
		for !done.Load() {
			if n := c.Load(); n < 0 {
				t.Errorf("count went negative: %d", n)
				return
			}
		}
	})
	for range goroutines {
		workers.Go(func() {
			for range rounds {
				c.Acquire()
				c.Release()
			}
			c.Release() // unmatched
		})
	}
	workers.Wait()
	done.Store(true)
	observer.Wait()
	if got := c.Load(); got != 0 {
		t.Errorf("Load() after all releases = %d, want 0", got)
	}
}
