package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// queueDepth reads olla_queue_depth from /internal/metrics.
func queueDepth(t testing.TB) int {
	t.Helper()
	res, err := client.Get(base + "/internal/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "olla_queue_depth "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	t.Fatal("no olla_queue_depth in /internal/metrics")
	return 0
}

// quick is a short non-streamed chat: two tokens.
const quick = `{"model":"m","stream":false,"options":{"num_predict":2},"messages":[{"role":"user","content":"hi"}]}`

// long is a streamed chat that holds its slot for the sim's whole answer.
const long = `{"model":"m","messages":[{"role":"user","content":"hold"}]}`

type queued struct {
	id     string
	status int
	header http.Header
	body   string
	err    error
	done   time.Time
}

// send posts body with headers in the background; results arrive on out.
func send(ctx context.Context, id, path, body string, out chan<- queued, header ...string) {
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			out <- queued{id: id, err: err, done: time.Now()}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		out <- queued{id: id, status: res.StatusCode, header: res.Header, body: string(b), done: time.Now()}
	}()
}

// queueSite is one Ollama endpoint with max_concurrency 1 and a queue.
func queueSite(simURL string, queue string, extra ...string) string {
	return site(endpointBlock("solo", simURL, "ollama", append([]string{"max_concurrency 1"}, extra...)...) + queue)
}

// holdSlot starts a long stream that takes the only slot; the returned func
// hangs up, which frees the slot at once.
func holdSlot(t *testing.T) func() {
	t.Helper()
	res := post(t, "/olla/ollama/api/chat", long)
	if res.StatusCode != 200 {
		t.Fatalf("holder: %d", res.StatusCode)
	}
	var once sync.Once
	return func() { once.Do(func() { res.Body.Close() }) }
}

// enqueue sends requests one at a time, each after the previous is
// counted in the queue, so their arrival order is known.
func enqueue(t *testing.T, ids []string, out chan<- queued, header func(id string) []string) {
	t.Helper()
	for _, id := range ids {
		before := queueDepth(t)
		send(context.Background(), id, "/olla/ollama/api/chat", quick, out, header(id)...)
		waitFor(t, id+" queued", 30*time.Second, func() bool { return queueDepth(t) == before+1 })
	}
}

func collect(t *testing.T, out <-chan queued, n int) []queued {
	t.Helper()
	var got []queued
	for range n {
		select {
		case q := <-out:
			got = append(got, q)
		case <-time.After(60 * time.Second):
			t.Fatalf("only %d of %d requests came back", len(got), n)
		}
	}
	return got
}

func order(got []queued) string {
	var ids []string
	for _, q := range got {
		ids = append(ids, q.id)
	}
	return strings.Join(ids, " ")
}

func TestQueueOrder(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, TTFT: 50 * time.Millisecond, TokensPerSecond: 10, Tokens: 60_000})
	load(t, queueSite(s.URL, `		queue {
			max_size 50
			max_wait 60s
			priority {http.request.header.X-Olla-Priority}
			fair_by {http.request.header.X-Client}
		}
`))
	waitRoutable(t, "solo")

	t.Run("FIFO within a priority", func(t *testing.T) {
		finish := holdSlot(t)
		out := make(chan queued, 4)
		enqueue(t, []string{"a", "b", "c", "d"}, out, func(string) []string { return []string{"X-Client", "one"} })
		finish()
		got := collect(t, out, 4)
		if order(got) != "a b c d" {
			t.Fatalf("served %q, want arrival order", order(got))
		}
		for _, q := range got {
			if q.status != 200 || q.header.Get("X-Olla-Queue-Time") == "" {
				t.Fatalf("%s: %d, X-Olla-Queue-Time %q", q.id, q.status, q.header.Get("X-Olla-Queue-Time"))
			}
		}
	})

	t.Run("a higher priority overtakes", func(t *testing.T) {
		finish := holdSlot(t)
		out := make(chan queued, 4)
		enqueue(t, []string{"low1", "low2", "high", "garbage"}, out, func(id string) []string {
			switch id {
			case "high":
				return []string{"X-Olla-Priority", "10", "X-Client", "one"}
			case "garbage":
				// not an integer: priority 0, behind the others
				return []string{"X-Olla-Priority", "urgent!!", "X-Client", "one"}
			}
			return []string{"X-Client", "one"}
		})
		finish()
		if got := order(collect(t, out, 4)); got != "high low1 low2 garbage" {
			t.Fatalf("served %q, want high first, then arrival order", got)
		}
	})

	t.Run("fair across clients", func(t *testing.T) {
		finish := holdSlot(t)
		out := make(chan queued, 12)
		var ids []string
		for i := range 10 {
			ids = append(ids, fmt.Sprintf("greedy%d", i))
		}
		ids = append(ids, "modest")
		enqueue(t, ids, out, func(id string) []string {
			return []string{"X-Client", strings.TrimRight(id, "0123456789")}
		})
		finish()
		got := collect(t, out, 11)
		for i, q := range got {
			if q.id == "modest" && i > 2 {
				t.Fatalf("the modest client was served %dth of 11 (%s): one client starved another", i+1, order(got))
			}
		}
	})

	t.Run("a client that leaves while queued takes no slot", func(t *testing.T) {
		finish := holdSlot(t)
		ctx, cancel := context.WithCancel(context.Background())
		out := make(chan queued, 2)
		before := queueDepth(t)
		send(ctx, "leaver", "/olla/ollama/api/chat", quick, out)
		waitFor(t, "leaver queued", 30*time.Second, func() bool { return queueDepth(t) == before+1 })
		send(context.Background(), "stayer", "/olla/ollama/api/chat", quick, out)
		waitFor(t, "stayer queued", 30*time.Second, func() bool { return queueDepth(t) == before+2 })
		cancel()
		waitFor(t, "leaver gone from the queue", 30*time.Second, func() bool { return queueDepth(t) == before+1 })
		served := s.Requests("/api/chat")
		finish()
		got := collect(t, out, 2)
		for _, q := range got {
			if q.id == "stayer" && q.status != 200 {
				t.Fatalf("stayer: %d %s", q.status, q.body)
			}
		}
		waitFor(t, "the stayer served", 30*time.Second, func() bool { return s.Requests("/api/chat") == served+1 })
	})
}

func TestQueueFullAndTimeout(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, TTFT: 50 * time.Millisecond, TokensPerSecond: 10, Tokens: 60_000})
	load(t, queueSite(s.URL, `		queue {
			max_size 2
			max_wait 5s
		}
`))
	waitRoutable(t, "solo")
	finish := holdSlot(t)
	defer finish()
	out := make(chan queued, 3)
	enqueue(t, []string{"w1", "w2"}, out, func(string) []string { return nil })

	// full: a third waits nowhere, 429 with Retry-After, in the API's format
	res := post(t, "/olla/openai/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`)
	body := readAll(t, res)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" ||
		!strings.Contains(body, `"error"`) || !strings.Contains(body, "queue is full") {
		t.Fatalf("queue full: %d Retry-After %q %s", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	res = post(t, "/olla/ollama/api/chat", quick)
	if body := readAll(t, res); res.StatusCode != 429 || !strings.HasPrefix(body, `{"error":"`) {
		t.Fatalf("queue full on an Ollama path: %d %s", res.StatusCode, body)
	}

	// waited past max_wait: 503 with Retry-After, saying so
	for _, q := range collect(t, out, 2) {
		if q.status != http.StatusServiceUnavailable || q.header.Get("Retry-After") == "" || !strings.Contains(q.body, "max_wait") {
			t.Fatalf("%s after max_wait: %d %q %s", q.id, q.status, q.header.Get("Retry-After"), q.body)
		}
	}
}

// TestBusyBackendGoesBackInLine: a backend's own 503 (llama-server with no
// free slot) sends the request to another endpoint, never a 502.
func TestBusyBackendRetriedElsewhere(t *testing.T) {
	busy := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, TTFT: 50 * time.Millisecond, TokensPerSecond: 10, Tokens: 60_000,
		Capacity: sim.Capacity{Slots: 1, RejectWhenFull: true}})
	spare := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, Tokens: 2})
	load(t, site(endpointBlock("busy", busy.URL, "ollama", "priority 100")+endpointBlock("spare", spare.URL, "ollama", "priority 10")+`		queue {
			max_wait 10s
		}
`))
	waitRoutable(t, "busy", "spare")
	finish := holdSlot(t) // busy's only slot
	defer finish()
	res := post(t, "/olla/ollama/api/chat", quick)
	if body := readAll(t, res); res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "spare" {
		t.Fatalf("with busy full: %d from %q: %s", res.StatusCode, res.Header.Get("X-Olla-Endpoint"), body)
	}
	if st := busy.CapacityStats(); st.Rejected == 0 {
		t.Fatalf("busy never answered 503; the test did not test anything: %+v", st)
	}
}

// TestQueueCapUnderBurst: 4 llama-server-like backends with 2 slots that
// answer 503 when full, max_concurrency 2 each, 60 requests at once: every
// one succeeds and no backend ever runs more than 2.
func TestQueueCapUnderBurst(t *testing.T) {
	var sims []*sim.Server
	var block string
	for i := range 4 {
		s := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, TTFT: 10 * time.Millisecond, TokensPerSecond: 100, Tokens: 3,
			Capacity: sim.Capacity{Slots: 2, RejectWhenFull: true}})
		sims = append(sims, s)
		block += endpointBlock(fmt.Sprintf("b%d", i), s.URL, "ollama", "max_concurrency 2")
	}
	load(t, site(block+`		load_balancer least-connections
		queue {
			max_size 100
			max_wait 60s
		}
`))
	waitRoutable(t, "b0", "b1", "b2", "b3")
	out := make(chan queued, 60)
	for i := range 60 {
		send(context.Background(), strconv.Itoa(i), "/olla/ollama/api/chat", quick, out)
	}
	for _, q := range collect(t, out, 60) {
		if q.status != 200 {
			t.Fatalf("request %s: %d %s", q.id, q.status, q.body)
		}
	}
	for i, s := range sims {
		if st := s.CapacityStats(); st.PeakRunning > 2 || st.Rejected > 0 {
			t.Errorf("b%d: peak %d running, %d rejected; max_concurrency 2 should keep both at or under the slots", i, st.PeakRunning, st.Rejected)
		}
	}
	if d := queueDepth(t); d != 0 {
		t.Errorf("queue depth %d after the burst", d)
	}
}

// TestReloadWithQueuedRequests: 100 requests queued behind one slot, a
// reload while they wait: every one is served exactly once.
func TestReloadWithQueuedRequests(t *testing.T) {
	s := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m"}, TokensPerSecond: 50, Tokens: 60_000})
	cfg := queueSite(s.URL, `		queue {
			max_size 200
			max_wait 120s
		}
`)
	load(t, cfg)
	waitRoutable(t, "solo")
	finish := holdSlot(t)
	out := make(chan queued, 100)
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send(context.Background(), strconv.Itoa(i), "/olla/ollama/api/chat", quick, out)
		}()
	}
	wg.Wait()
	waitFor(t, "100 queued", 2*time.Minute, func() bool { return queueDepth(t) == 100 })
	before := s.Requests("/api/chat")
	reload(t, cfg)
	finish()
	for _, q := range collect(t, out, 100) {
		if q.status != 200 {
			t.Fatalf("request %s after the reload: %d %s", q.id, q.status, q.body)
		}
	}
	if got := s.Requests("/api/chat") - before; got != 100 {
		t.Fatalf("the backend served %d requests for 100 queued: lost or doubled", got)
	}
}
