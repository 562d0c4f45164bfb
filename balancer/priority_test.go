package balancer

import (
	"slices"
	"testing"
)

func TestPriority(t *testing.T) {
	tests := []struct {
		name       string
		priorities []int
		loads      []int64
		hold       bool  // keep each pick in flight
		want       []int // pick counts over 60 selections
	}{
		{
			name:       "equal tier idle",
			priorities: []int{100, 100, 100},
			want:       []int{20, 20, 20},
		},
		{
			name:       "top tier only",
			priorities: []int{100, 100, 50},
			want:       []int{30, 30, 0},
		},
		{
			name:       "top tier anywhere in the order",
			priorities: []int{10, 80, 50, 80},
			want:       []int{0, 30, 0, 30},
		},
		{
			name:       "busy top tier still beats idle lower tier",
			priorities: []int{100, 50},
			loads:      []int64{50, 0},
			want:       []int{60, 0},
		},
		{
			name:       "least loaded within the tier",
			priorities: []int{100, 100, 100, 50},
			loads:      []int64{3, 1, 2, 0},
			want:       []int{0, 60, 0, 0},
		},
		{
			name:       "tied within the tier take turns",
			priorities: []int{100, 100, 100, 50},
			loads:      []int64{4, 1, 1, 0},
			want:       []int{0, 30, 30, 0},
		},
		{
			name:       "in-flight picks level the tier",
			priorities: []int{100, 100, 100, 50},
			loads:      []int64{0, 10, 5, 0},
			hold:       true,
			want:       []int{25, 15, 20, 0},
		},
		{
			name:       "lower tier when no higher one is given",
			priorities: []int{10, 10},
			want:       []int{30, 30},
		},
		{
			name:       "negative priorities",
			priorities: []int{-5, -1, -1},
			want:       []int{0, 30, 30},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, c := mustNew(t, Priority), newEndpoints(tt.priorities, tt.loads)
			if got := tally(b, c, 60, tt.hold); !slices.Equal(got, tt.want) {
				t.Errorf("pick counts = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPriorityFailsOverByTier removes tiers from the candidate set, as the
// caller does when their endpoints become unroutable, and checks that each
// lower tier takes over only then.
func TestPriorityFailsOverByTier(t *testing.T) {
	b := mustNew(t, Priority)
	sets := []struct {
		priorities []int
		tier       int
	}{
		{[]int{100, 80, 100, 50}, 100},
		{[]int{80, 50}, 80},
		{[]int{50}, 50},
		{[]int{100, 50}, 100}, // the preferred endpoint recovered
	}
	for _, set := range sets {
		c := newEndpoints(set.priorities, nil)
		for range 10 {
			if i := b.Select(c); c.Priority(i) != set.tier {
				t.Fatalf("among %v: picked %d (priority %d), want priority %d",
					set.priorities, i, c.Priority(i), set.tier)
			}
		}
	}
}
