package balancer

import (
	"fmt"
	"testing"
)

// TestSessionPlacement: under every strategy but adaptive, a request with a
// session key goes to its pinned endpoint if that is a candidate (whatever
// its priority), else to its rendezvous home among the candidates the
// strategy keeps (the top tier under priority), skipping one loaded past
// the bound; the same key finds the same home, and round-robin's turn is not
// spent on it. SessionKey is the hash sticky sessions key requests with.
func TestSessionPlacement(t *testing.T) {
	for _, strategy := range []string{Priority, RoundRobin, LeastConnections} {
		t.Run(strategy, func(t *testing.T) {
			p, err := NewPipeline(Config{Strategy: strategy})
			if err != nil {
				t.Fatal(err)
			}
			f := newFleet("a", "b", "c", "d", "low")
			f.prio = []int{10, 10, 10, 10, 1}
			top := []string{"a", "b", "c", "d"}
			if strategy != Priority {
				top = append(top, "low")
			}
			for k := range 50 {
				key := SessionKey("session_header", fmt.Appendf(nil, "conversation-%d", k), "m")
				want := top[Rendezvous(key, top, make([]float64, len(top)), DefaultLoadBound)]
				for range 3 {
					if i, _ := p.Schedule(Request{Key: key}, f); f.names[i] != want {
						t.Fatalf("key %d placed on %s, want its home %s", k, f.names[i], want)
					}
				}
				if i, _ := p.Schedule(Request{Key: key, Pinned: "low"}, f); f.names[i] != "low" {
					t.Fatalf("key %d pinned to low went to %s", k, f.names[i])
				}
				if i, _ := p.Schedule(Request{Key: key, Pinned: "gone"}, f); f.names[i] != want {
					t.Fatalf("key %d pinned to an endpoint no longer a candidate went to %s, want its home %s", k, f.names[i], want)
				}
			}
			// a home loaded past 1.25 x the mean is skipped
			key := SessionKey("prefix_hash", []byte(`[{"role":"user"}]`), "m")
			i, _ := p.Schedule(Request{Key: key}, f)
			f.hold(i, 20)
			if j, _ := p.Schedule(Request{Key: key}, f); j == i {
				t.Errorf("a home with 20 in flight against idle others still took the session")
			}
		})
	}
	// round-robin: placed requests take no turn from the cycle
	p, _ := NewPipeline(Config{Strategy: RoundRobin})
	plain, _ := NewPipeline(Config{Strategy: RoundRobin})
	f := newFleet("a", "b", "c")
	var got, want []string
	for k := range 6 {
		i, _ := p.Schedule(Request{}, f)
		got = append(got, f.names[i])
		p.Schedule(Request{Key: uint64(k + 1)}, f)
		i, _ = plain.Schedule(Request{}, f)
		want = append(want, f.names[i])
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("round-robin with sessions in between went %v, without them %v", got, want)
	}
	if SessionKey("", nil, "") == 0 {
		t.Error("SessionKey returned 0, which means no key")
	}
}
