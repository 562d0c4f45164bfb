package fleet

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestRunOneLoop: Run probes and polls on their own intervals; a model
// fetch that hangs (it runs after a good probe) does not hold up the load
// polls; two Runs of one endpoint (a reload's overlap) never poll it twice
// at once; and Run returns when its context ends.
func TestRunOneLoop(t *testing.T) {
	var probes, polls, fetches, pollsAtFetch, concurrentPolls, maxConcurrent atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			probes.Add(1)
		case "/v1/models":
			if fetches.Add(1) == 1 {
				pollsAtFetch.Store(polls.Load())
			}
			select { // a model list that never comes (until the test ends)
			case <-release:
			case <-r.Context().Done():
			}
		case "/metrics":
			n := concurrentPolls.Add(1)
			defer concurrentPolls.Add(-1)
			for {
				m := maxConcurrent.Load()
				if n <= m || maxConcurrent.CompareAndSwap(m, n) {
					break
				}
			}
			polls.Add(1)
			time.Sleep(20 * time.Millisecond) // overlapping loops would overlap here
			fmt.Fprint(w, "vllm:num_requests_waiting 0\nvllm:num_requests_running 1\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	defer close(release)
	s := testSettings(t, "ep", srv.URL, "vllm")
	s.CheckInterval, s.CheckTimeout, s.DiscoveryTimeout = 200*time.Millisecond, 100*time.Millisecond, time.Minute
	if err := s.PollLoad(MinLoadInterval); err != nil {
		t.Fatal(err)
	}
	st := newEndpoint(s)
	defer st.Destruct()

	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{}, 2)
	for range 2 {
		go func() { st.Run(ctx, zap.NewNop()); stopped <- struct{}{} }()
	}
	deadline := time.Now().Add(30 * time.Second)
	for fetches.Load() < 1 || polls.Load()-pollsAtFetch.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s: %d probes, %d polls (%d while a model fetch hangs), %d model fetches", probes.Load(), polls.Load(), polls.Load()-pollsAtFetch.Load(), fetches.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m := maxConcurrent.Load(); m != 1 {
		t.Errorf("%d polls at once from two loops of one endpoint, want 1", m)
	}
	cancel()
	for range 2 {
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
}
