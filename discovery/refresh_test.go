package discovery

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRefresherSingleFlightWithInterval: concurrent callers share one
// refresh; callers after it, within the interval, start none; after the
// interval one more may run.
func TestRefresherSingleFlightWithInterval(t *testing.T) {
	var r Refresher
	var runs atomic.Int64
	release := make(chan struct{})
	fn := func() {
		runs.Add(1)
		<-release
	}
	now := time.Unix(1_800_000_000, 0)
	var wg sync.WaitGroup
	var ran atomic.Int64
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.Refresh(context.Background(), now, 5*time.Second, fn) {
				ran.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for runs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("50 concurrent misses ran %d refreshes, want 1", n)
	}
	for i := range 20 {
		if r.Refresh(context.Background(), now.Add(time.Duration(i)*200*time.Millisecond), 5*time.Second, fn) {
			t.Fatalf("a refresh %s after the last one ran; the interval is 5s", time.Duration(i)*200*time.Millisecond)
		}
	}
	if !r.Refresh(context.Background(), now.Add(5*time.Second), 5*time.Second, fn) || runs.Load() != 2 {
		t.Fatalf("no refresh once the interval passed (%d runs)", runs.Load())
	}
}

// TestRefresherCallerLeaving: a caller whose context ends stops waiting,
// and the refresh still runs to its end for the others.
func TestRefresherCallerLeaving(t *testing.T) {
	var r Refresher
	release, finished := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	now := time.Unix(1_800_000_000, 0)
	r.Refresh(ctx, now, time.Second, func() {
		<-release
		close(finished)
	})
	other := make(chan struct{})
	go func() {
		r.Refresh(context.Background(), now, time.Second, func() { t.Error("a second refresh started while one was in flight") })
		close(other)
	}()
	close(release)
	<-finished
	<-other
}
