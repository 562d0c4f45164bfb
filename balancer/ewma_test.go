package balancer

import (
	"sync"
	"testing"
	"time"
)

func TestEWMA(t *testing.T) {
	var e EWMA
	if e.Value() != 0 {
		t.Fatalf("zero EWMA = %v, want 0", e.Value())
	}
	e.Observe(0)
	e.Observe(-time.Second)
	if e.Value() != 0 {
		t.Fatalf("non-positive samples changed it to %v", e.Value())
	}
	e.Observe(100 * time.Millisecond)
	if e.Value() != 100*time.Millisecond {
		t.Fatalf("first sample: %v, want 100ms", e.Value())
	}
	e.Observe(200 * time.Millisecond)
	if e.Value() != 125*time.Millisecond {
		t.Fatalf("second sample: %v, want 125ms (a quarter of the way)", e.Value())
	}
	for range 100 {
		e.Observe(time.Second)
	}
	if d := time.Second - e.Value(); d < 0 || d > time.Millisecond {
		t.Fatalf("after many 1s samples: %v, want about 1s", e.Value())
	}
	e.Observe(time.Nanosecond)
	if e.Value() <= 0 {
		t.Fatalf("a tiny sample made it unsampled: %v", e.Value())
	}
	e.Reset()
	if e.Value() != 0 {
		t.Fatalf("after Reset: %v", e.Value())
	}
}

// TestEWMAConcurrent observes from many goroutines (run with -race); with
// every sample equal the average must be exactly that sample.
func TestEWMAConcurrent(t *testing.T) {
	var e EWMA
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 1000 {
				e.Observe(40 * time.Millisecond)
				if v := e.Value(); v != 40*time.Millisecond {
					t.Errorf("Value = %v while every sample is 40ms", v)
					return
				}
			}
		})
	}
	wg.Wait()
}
