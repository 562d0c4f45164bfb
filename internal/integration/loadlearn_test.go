package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// Residency and learned load times (issue 20 item 2) through real Caddy and
// simulated Ollamas that hold one model at a time: a model hot enough to
// saturate its warm server is loaded on a second one when waiting there
// costs more than the load the proxy learned, and not when the load costs
// more; a flood for a cold model rides on one load; a client that hangs
// up during a load teaches no load time. The tests assert which endpoint
// answered and how many loads the simulators did, never a duration.

const learnModel = "m:latest"

// streamChat sends a streamed Ollama chat for learnModel and reads it to
// the end (or until ctx ends); it returns the status and the endpoint
// that answered. Safe from any goroutine.
func streamChat(ctx context.Context, path string) (int, string, error) {
	body := fmt.Sprintf(`{"model":%q,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, learnModel)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
	}
	return res.StatusCode, res.Header.Get("X-Olla-Endpoint"), sc.Err()
}

// learnedLoad is the load time the proxy shows as learned for learnModel
// on endpoint name (0: none).
func learnedLoad(t testing.TB, name string) float64 {
	for _, l := range signalsStatus(t)[name].Learned {
		if l.Model == learnModel {
			return l.LoadMs
		}
	}
	return 0
}

// learnFleet starts n Ollama simulators listing learnModel (and another
// model), none loaded, each with one slot and answers of about 800 ms
// (16 tokens at 20 a second), loading a model in loadTime; and Caddy
// routing to them under the shipped adaptive balancer, once every
// endpoint's residency reading is fresh. Polls 2 s apart stay fresh (three
// intervals) however late a busy machine runs them.
func learnFleet(t *testing.T, loadTime time.Duration, names ...string) map[string]*sim.Server {
	sims := map[string]*sim.Server{}
	var blocks strings.Builder
	for _, name := range names {
		s := startSim(t, sim.Config{Kind: sim.Ollama, Name: name, Models: []string{learnModel, "other:latest"},
			TTFT: 20 * time.Millisecond, TokensPerSecond: 20, Tokens: 16,
			Capacity: sim.Capacity{Slots: 1, QueueMax: 32, MaxLoaded: 1, LoadTime: loadTime}})
		sims[name] = s
		blocks.WriteString(endpointBlock(name, s.URL, "ollama", "load_interval 2s"))
	}
	load(t, site(blocks.String()+"load_balancer adaptive\n"))
	waitRoutable(t, names...)
	waitFor(t, "every endpoint's residency read", 30*time.Second, func() bool {
		st := signalsStatus(t)
		for _, name := range names {
			if !st[name].Fresh {
				return false
			}
		}
		return true
	})
	return sims
}

// TestHotModelLoadsASecondCopy: the model is loaded on one server (the
// proxy learns that load), answers there one at a time, then a burst of
// four queues on its one slot, so its answers show the queue. With one
// request held there, the next goes to the other server and loads the
// model there when the learned load (100 ms) is less than that wait; when
// the learned load (3 s) is more, it waits on the warm server and nothing
// loads.
func TestHotModelLoadsASecondCopy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		loadTime time.Duration
		second   bool
	}{
		{"cheap load", 100 * time.Millisecond, true},
		{"dear load", 3 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sims := learnFleet(t, tc.loadTime, "o1", "o2")
			const path = "/olla/ollama/api/chat"
			ctx := context.Background()
			status, warm, err := streamChat(ctx, path)
			if err != nil || status != 200 {
				t.Fatalf("first request: %d %v", status, err)
			}
			cold := map[string]string{"o1": "o2", "o2": "o1"}[warm]
			waitFor(t, "the first load learned", 30*time.Second, func() bool { return learnedLoad(t, warm) > 0 })
			// warm answers, one at a time: the TTFT floor
			for i := range 3 {
				if status, ep, err := streamChat(ctx, path); err != nil || status != 200 || ep != warm {
					t.Fatalf("warm request %d: %d from %q (%v), want %s", i, status, ep, err, warm)
				}
			}
			// a burst that queues on the one slot
			var wg sync.WaitGroup
			eps := make([]string, 4)
			for i := range eps {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if status, ep, err := streamChat(ctx, path); err == nil && status == 200 {
						eps[i] = ep
					}
				}()
			}
			wg.Wait()
			for i, ep := range eps {
				if ep != warm {
					t.Fatalf("burst request %d: answered by %q, want the warm %s (nothing showed a queue yet)", i, ep, warm)
				}
			}
			if l := sims[cold].CapacityStats().Loads; l != 0 {
				t.Fatalf("%s loaded the model %d times before the queue showed", cold, l)
			}
			// one request held at the warm server
			hold, release := context.WithCancel(ctx)
			defer release()
			held := make(chan string, 1)
			go func() {
				_, ep, _ := streamChat(hold, path)
				held <- ep
			}()
			waitFor(t, "the held request running at "+warm, 30*time.Second, func() bool {
				return endpointsStatus(t)[warm].ActiveConnections == 1
			})
			status, ep, err := streamChat(ctx, path)
			if err != nil || status != 200 {
				t.Fatalf("the probe: %d %v", status, err)
			}
			loads := sims[cold].CapacityStats().Loads
			if tc.second && (ep != cold || loads != 1) {
				t.Fatalf("learned load %.0f ms, the warm queue longer: answered by %s with %d loads at %s; want %s, loaded once",
					learnedLoad(t, warm), ep, loads, cold, cold)
			}
			if !tc.second && (ep != warm || loads != 0) {
				t.Fatalf("learned load %.0f ms, longer than the warm queue: answered by %s with %d loads at %s; want %s and none",
					learnedLoad(t, warm), ep, loads, cold, warm)
			}
			release()
			if ep := <-held; ep != warm && ep != "" {
				t.Fatalf("the held request went to %s, want %s", ep, warm)
			}
		})
	}
}

// TestColdModelFloodLoadsOnce (hostile): while our load of a model no
// server holds is under way on one, a flood of requests for it all ride
// on that load: the three servers load it once in all, and every request
// is answered.
func TestColdModelFloodLoadsOnce(t *testing.T) {
	sims := learnFleet(t, time.Second, "o1", "o2", "o3")
	const path = "/olla/ollama/api/chat"
	ctx := context.Background()
	first := make(chan error, 1)
	go func() {
		status, _, err := streamChat(ctx, path)
		if err == nil && status != 200 {
			err = fmt.Errorf("status %d", status)
		}
		first <- err
	}()
	loads := func() (n int64) {
		for _, s := range sims {
			n += s.CapacityStats().Loads
		}
		return n
	}
	waitFor(t, "the first load under way", 30*time.Second, func() bool { return loads() == 1 })
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, err := streamChat(ctx, path)
			if err == nil && status != 200 {
				err = fmt.Errorf("status %d", status)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a request of the flood: %v", err)
		}
	}
	if err := <-first; err != nil {
		t.Fatalf("the first request: %v", err)
	}
	if n := loads(); n != 1 {
		t.Fatalf("a flood during one load: the servers loaded the model %d times, want 1", n)
	}
}

// TestHangUpDuringALoadTeachesNothing (hostile): a client that hangs up
// while the model loads leaves no load time learned (its hang-up is not
// the backend's load), and the load is no longer counted as under way: the
// next request for the model, on a fresh reading, is answered.
func TestHangUpDuringALoadTeachesNothing(t *testing.T) {
	sims := learnFleet(t, 2*time.Second, "o1")
	const path = "/olla/ollama/api/chat"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		streamChat(ctx, path)
	}()
	waitFor(t, "the load under way", 30*time.Second, func() bool { return sims["o1"].CapacityStats().Loads == 1 })
	cancel()
	<-done
	waitFor(t, "the hung-up attempt to end", 30*time.Second, func() bool {
		return endpointsStatus(t)["o1"].ActiveConnections == 0
	})
	if ms := learnedLoad(t, "o1"); ms != 0 {
		t.Fatalf("a client that hung up during the load taught a load time of %.0f ms", ms)
	}
	if status, ep, err := streamChat(context.Background(), path); err != nil || status != 200 || ep != "o1" {
		t.Fatalf("after the hang-up: %d from %q (%v)", status, ep, err)
	}
}
