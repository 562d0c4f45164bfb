package balancer

import (
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestNew(t *testing.T) {
	for _, name := range Names() {
		b, err := New(name)
		if err != nil || b == nil {
			t.Errorf("New(%q) = %v, %v; want a balancer", name, b, err)
		}
	}

	for _, name := range []string{"", "random", "Priority", "round_robin", " least-connections"} {
		b, err := New(name)
		if err == nil {
			t.Errorf("New(%q) = %T, nil; want an error", name, b)
			continue
		}
		for _, valid := range Names() {
			if !strings.Contains(err.Error(), valid) {
				t.Errorf("New(%q) error %q does not list %q", name, err, valid)
			}
		}
	}
}

func TestNamesIsACopy(t *testing.T) {
	want := []string{Priority, RoundRobin, LeastConnections}
	names := Names()
	if !slices.Equal(names, want) {
		t.Fatalf("Names() = %v, want %v", names, want)
	}
	names[0] = "changed"
	if got := Names(); !slices.Equal(got, want) {
		t.Errorf("Names() after modifying a returned slice = %v, want %v", got, want)
	}
}

func TestBalancersDoNotShareState(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			c := equalEndpoints(3)
			first, second := mustNew(t, name), mustNew(t, name)
			first.Select(c)
			first.Select(c)
			if got := second.Select(c); got != 0 {
				t.Errorf("a new balancer's first pick = %d, want 0", got)
			}
		})
	}
}

func TestSelectEmpty(t *testing.T) {
	for _, name := range Names() {
		if got := mustNew(t, name).Select(equalEndpoints(0)); got != -1 {
			t.Errorf("%s: Select(no candidates) = %d, want -1", name, got)
		}
	}
}

func TestSelectSingle(t *testing.T) {
	for _, name := range Names() {
		b, c := mustNew(t, name), newEndpoints([]int{7}, []int64{42})
		for range 5 {
			if got := b.Select(c); got != 0 {
				t.Fatalf("%s: Select(one candidate) = %d, want 0", name, got)
			}
		}
	}
}

// TestEvenDistribution checks that idle, equal candidates share the load
// exactly, not merely on average.
func TestEvenDistribution(t *testing.T) {
	for _, name := range Names() {
		for _, n := range []int{2, 3, 7} {
			b, c := mustNew(t, name), equalEndpoints(n)
			counts := tally(b, c, 100*n, false)
			for i, got := range counts {
				if got != 100 {
					t.Errorf("%s over %d: candidate %d picked %d times, want 100 (all: %v)", name, n, i, got, counts)
				}
			}
		}
	}
}

func TestSelectAllocatesNothing(t *testing.T) {
	for _, name := range Names() {
		b := mustNew(t, name)
		var c Candidates = newEndpoints([]int{100, 100, 50, 100}, []int64{1, 0, 0, 0})
		if allocs := testing.AllocsPerRun(1000, func() { b.Select(c) }); allocs != 0 {
			t.Errorf("%s: Select allocates %v times per call, want 0", name, allocs)
		}
	}
}

// TestConcurrentSelect runs selections and attempt accounting from many
// goroutines at once; run it with -race. Every pick must be in range, the
// priority balancer must stay in the top tier throughout, and every counter
// must be back to zero once all attempts have finished.
func TestConcurrentSelect(t *testing.T) {
	const goroutines, rounds = 32, 500
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			b := mustNew(t, name)
			c := newEndpoints([]int{100, 50, 100, 100, 10}, nil)
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					for range rounds {
						i := b.Select(c)
						if i < 0 || i >= c.Len() {
							t.Errorf("Select = %d, out of range", i)
							return
						}
						if name == Priority && c.Priority(i) != 100 {
							t.Errorf("Select = %d (priority %d), want the top tier", i, c.Priority(i))
							return
						}
						c.inFlight[i].Acquire()
						c.inFlight[i].Release()
					}
				})
			}
			wg.Wait()
			for i := range c.Len() {
				if got := c.InFlight(i); got != 0 {
					t.Errorf("candidate %d has %d in flight after all attempts finished", i, got)
				}
			}
		})
	}
}
