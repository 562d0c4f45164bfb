package balancer

// endpoints is a test Candidates: configured priorities and live counters,
// as the olla app will hold them.
type endpoints struct {
	priorities []int
	inFlight   []Counter
}

// newEndpoints returns candidates with the given priorities and, if loads is
// not nil, that many attempts already in flight to each.
func newEndpoints(priorities []int, loads []int64) *endpoints {
	e := &endpoints{priorities: priorities, inFlight: make([]Counter, len(priorities))}
	for i, load := range loads {
		for range load {
			e.inFlight[i].Acquire()
		}
	}
	return e
}

// equalEndpoints returns n idle candidates of the same priority.
func equalEndpoints(n int) *endpoints {
	return newEndpoints(make([]int, n), nil)
}

func (e *endpoints) Len() int             { return len(e.priorities) }
func (e *endpoints) Priority(i int) int   { return e.priorities[i] }
func (e *endpoints) InFlight(i int) int64 { return e.inFlight[i].Load() }

// mustNew returns the named balancer or fails the test.
func mustNew(t interface {
	Helper()
	Fatalf(string, ...any)
}, name string) Balancer {
	t.Helper()
	b, err := New(name)
	if err != nil {
		t.Fatalf("New(%q): %v", name, err)
	}
	return b
}

// tally selects rounds times and counts how often each index was picked.
// With hold, every pick stays in flight, as if its attempt were still running.
func tally(b Balancer, c *endpoints, rounds int, hold bool) []int {
	counts := make([]int, c.Len())
	for range rounds {
		i := b.Select(c)
		counts[i]++
		if hold {
			c.inFlight[i].Acquire()
		}
	}
	return counts
}
