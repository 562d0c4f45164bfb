package balancer

import (
	"slices"
	"testing"
)

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name       string
		priorities []int
		loads      []int64
		want       []int
	}{
		{"strict cycle", []int{0, 0, 0}, nil, []int{0, 1, 2, 0, 1, 2, 0}},
		{"ignores load", []int{0, 0, 0}, []int64{9, 0, 5}, []int{0, 1, 2, 0, 1, 2}},
		{"ignores priority", []int{10, 100, 50}, nil, []int{0, 1, 2, 0, 1, 2}},
		{"two", []int{1, 1}, nil, []int{0, 1, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, c := mustNew(t, RoundRobin), newEndpoints(tt.priorities, tt.loads)
			got := make([]int, len(tt.want))
			for i := range got {
				got[i] = b.Select(c)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("picks = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRoundRobinChangingSet checks that the cycle stays in range when the
// candidate set shrinks between calls, as it does when an endpoint goes down.
func TestRoundRobinChangingSet(t *testing.T) {
	b := mustNew(t, RoundRobin)
	three, two := equalEndpoints(3), equalEndpoints(2)
	got := []int{b.Select(three), b.Select(three), b.Select(two), b.Select(two), b.Select(three)}
	if want := []int{0, 1, 0, 1, 1}; !slices.Equal(got, want) {
		t.Errorf("picks = %v, want %v", got, want)
	}
}
