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
	if e.Value() != 112500*time.Microsecond {
		t.Fatalf("slower sample: %v, want 112.5ms (an eighth of the way)", e.Value())
	}
	e.Observe(12500 * time.Microsecond)
	if e.Value() != 62500*time.Microsecond {
		t.Fatalf("faster sample: %v, want 62.5ms (half the way)", e.Value())
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

// TestEWMAForgets: an average with no sample for EWMAMaxAge reads as
// unknown, and the next sample starts it afresh rather than blending with a
// judgement that starved the endpoint of samples.
func TestEWMAForgets(t *testing.T) {
	var e EWMA
	t0 := time.Unix(1000, 0)
	e.ObserveAt(3*time.Second, t0)
	if v := e.ValueAt(t0.Add(EWMAMaxAge)); v != 3*time.Second {
		t.Fatalf("at the age limit: %v, want 3s", v)
	}
	if v := e.ValueAt(t0.Add(EWMAMaxAge + time.Millisecond)); v != 0 {
		t.Fatalf("past the age limit: %v, want 0 (unknown)", v)
	}
	later := t0.Add(2 * EWMAMaxAge)
	e.ObserveAt(100*time.Millisecond, later)
	if v := e.ValueAt(later); v != 100*time.Millisecond {
		t.Fatalf("first sample after forgetting: %v, want 100ms (not blended with 3s)", v)
	}
	e.ObserveAt(200*time.Millisecond, later.Add(time.Second))
	if v := e.ValueAt(later.Add(time.Second)); v != 112500*time.Microsecond {
		t.Fatalf("a fresh second sample: %v, want 112.5ms", v)
	}
}
