package balancer

import (
	"slices"
	"testing"
)

func TestLeastConnections(t *testing.T) {
	tests := []struct {
		name       string
		priorities []int
		loads      []int64
		hold       bool  // keep each pick in flight
		want       []int // pick counts over 60 selections
	}{
		{
			name:       "idle equals take turns",
			priorities: []int{0, 0, 0},
			want:       []int{20, 20, 20},
		},
		{
			name:       "least loaded",
			priorities: []int{0, 0, 0},
			loads:      []int64{3, 1, 2},
			want:       []int{0, 60, 0},
		},
		{
			name:       "ties spread",
			priorities: []int{0, 0, 0, 0},
			loads:      []int64{2, 0, 0, 5},
			want:       []int{0, 30, 30, 0},
		},
		{
			name:       "ignores priority",
			priorities: []int{100, 10},
			loads:      []int64{1, 0},
			want:       []int{0, 60},
		},
		{
			name:       "in-flight picks level the load",
			priorities: []int{0, 0, 0},
			loads:      []int64{0, 10, 5},
			hold:       true,
			want:       []int{25, 15, 20},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, c := mustNew(t, LeastConnections), newEndpoints(tt.priorities, tt.loads)
			if got := tally(b, c, 60, tt.hold); !slices.Equal(got, tt.want) {
				t.Errorf("pick counts = %v, want %v", got, tt.want)
			}
		})
	}
}
