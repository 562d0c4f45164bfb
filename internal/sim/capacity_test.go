package sim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const chatBody = `{"model":"tiny","stream":true,"messages":[{"role":"user","content":"hi"}]}`

// holdStreams opens n streams and returns them open (headers read), plus a
// func that reads them all to the end.
func holdStreams(t *testing.T, url, body string, n int) (statuses []int, finish func()) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var bodies []io.ReadCloser
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := openStream(t, context.Background(), url, body)
			mu.Lock()
			statuses = append(statuses, res.StatusCode)
			bodies = append(bodies, res.Body)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return statuses, func() {
		for _, b := range bodies {
			io.Copy(io.Discard, b)
			b.Close()
		}
	}
}

func TestSlotsRejectWhenFullLikeLlamaServer(t *testing.T) {
	// OpenAI-style servers send headers at once, so two streams hold both
	// slots while their tokens are paced out
	s := startT(t, Config{Kind: VLLM, TTFT: 200 * time.Millisecond, TokensPerSecond: 5, Tokens: 3,
		Capacity: Capacity{Slots: 2, RejectWhenFull: true}})
	_, finish := holdStreams(t, s.URL+"/v1/chat/completions", chatBody, 2)
	waitFor(t, "two running", func() bool { return s.CapacityStats().Running == 2 })
	res, b := post(t, s.URL+"/v1/chat/completions", chatBody)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d (Retry-After %q) %s; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"), b)
	}
	finish()
	st := s.CapacityStats()
	if st.PeakRunning != 2 || st.Rejected != 1 {
		t.Fatalf("stats %+v: want peak 2, 1 rejected", st)
	}
	waitFor(t, "slots freed", func() bool { return s.CapacityStats().Running == 0 })
}

func TestSlotsQueueServesEveryone(t *testing.T) {
	s := startT(t, Config{Kind: VLLM, TTFT: 10 * time.Millisecond, TokensPerSecond: 50, Tokens: 3,
		Capacity: Capacity{Slots: 1, QueueMax: 10}})
	var wg sync.WaitGroup
	codes := make(chan int, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, _ := post(t, s.URL+"/v1/chat/completions", chatBody)
			codes <- res.StatusCode
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("a queued request got %d", c)
		}
	}
	if st := s.CapacityStats(); st.PeakRunning != 1 || st.Running != 0 || st.Waiting != 0 {
		t.Fatalf("stats %+v: want peak 1, none left", st)
	}
}

func TestQueuedClientThatLeavesFreesItsPlace(t *testing.T) {
	s := startT(t, Config{Kind: VLLM, TTFT: 50 * time.Millisecond, TokensPerSecond: 2, Tokens: 4,
		Capacity: Capacity{Slots: 1, QueueMax: 1}})
	_, finish := holdStreams(t, s.URL+"/v1/chat/completions", chatBody, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/chat/completions", strings.NewReader(chatBody))
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	waitFor(t, "one waiting", func() bool { return s.CapacityStats().Waiting == 1 })
	cancel()
	<-done
	waitFor(t, "the waiter gone", func() bool { return s.CapacityStats().Waiting == 0 })
	finish()
	waitFor(t, "all done", func() bool { return s.CapacityStats().Running == 0 })
}

func TestPrefixCacheHitsOnAResentConversation(t *testing.T) {
	s := startT(t, Config{Kind: VLLM, Tokens: 2, Capacity: Capacity{Slots: 4, CacheBlocks: 1000, BlockTokens: 4}})
	turn1 := `{"model":"tiny","messages":[{"role":"system","content":"` + strings.Repeat("You are a careful assistant. ", 20) + `"},{"role":"user","content":"first question"}]}`
	post(t, s.URL+"/v1/chat/completions", turn1)
	first := s.CapacityStats()
	if first.CachedTokens != 0 {
		t.Fatalf("a cold cache hit %d tokens", first.CachedTokens)
	}
	turn2 := strings.TrimSuffix(turn1, "]}") + `,{"role":"assistant","content":"an answer"},{"role":"user","content":"and another"}]}`
	post(t, s.URL+"/v1/chat/completions", turn2)
	second := s.CapacityStats()
	if got := second.CachedTokens; got < 100 {
		t.Fatalf("resent conversation: %d cached tokens of %d, want most of the shared prefix", got, second.PromptTokens-first.PromptTokens)
	}
	// a different conversation shares nothing
	post(t, s.URL+"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"`+strings.Repeat("unrelated words ", 40)+`"}]}`)
	if third := s.CapacityStats(); third.CachedTokens != second.CachedTokens {
		t.Fatalf("an unrelated prompt hit the cache: %d -> %d", second.CachedTokens, third.CachedTokens)
	}
}

func TestPrefixCacheHoldsTheAnswerForTheNextTurn(t *testing.T) {
	s := startT(t, Config{Kind: VLLM, Tokens: 40, Capacity: Capacity{Slots: 4, CacheBlocks: 1000, BlockTokens: 4}})
	turn1 := `{"model":"tiny","messages":[{"role":"user","content":"` + strings.Repeat("tell me more ", 10) + `"}]}`
	_, b := post(t, s.URL+"/v1/chat/completions", turn1)
	var answer struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(b, &answer); err != nil || len(answer.Choices) == 0 || len(answer.Choices[0].Message.Content) < 100 {
		t.Fatalf("answer %s (%v)", b, err)
	}
	next := func(reply string) int64 {
		before := s.CapacityStats()
		body := strings.TrimSuffix(turn1, "]}") + `,{"role":"assistant","content":"` + reply + `"},{"role":"user","content":"go on"}]}`
		post(t, s.URL+"/v1/chat/completions", body)
		return s.CapacityStats().CachedTokens - before.CachedTokens
	}
	// what the two next turns share whatever the answer: the first
	// prompt and the assistant message's opening
	prompt1 := int64(len(`[{"role":"user","content":"`+strings.Repeat("tell me more ", 10)+`"},{"role":"assistant","content":"`) / 4)
	// the answer resent as it was given: cached past the first prompt,
	// through most of the answer
	if got := next(answer.Choices[0].Message.Content); got < prompt1+20 {
		t.Fatalf("resent answer: %d tokens cached, want more than the shared %d plus most of the answer", got, prompt1)
	}
	// another answer in its place shares only the first prompt
	if got := next(strings.Repeat("x", len(answer.Choices[0].Message.Content))); got > prompt1 {
		t.Fatalf("a different answer: %d tokens cached, want at most the shared %d", got, prompt1)
	}
}

func TestPrefixCacheIsBounded(t *testing.T) {
	s := startT(t, Config{Kind: VLLM, Tokens: 1, Capacity: Capacity{CacheBlocks: 8, BlockTokens: 4}})
	for i := range 20 {
		post(t, s.URL+"/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"`+strings.Repeat(string(rune('a'+i)), 200)+`"}]}`)
	}
	if st := s.CapacityStats(); st.CacheUsed > 8 {
		t.Fatalf("cache holds %d blocks, more than its 8", st.CacheUsed)
	}
}

// TestPrefixCacheEvictsUnderMemoryPressure: running requests hold KV
// blocks (their prompts, and their answers while decoding), so a busy
// server keeps less history than an idle one with the same traffic.
func TestPrefixCacheEvictsUnderMemoryPressure(t *testing.T) {
	// 4 tokens a block (16 bytes); a completion prompt is cached as its
	// JSON string, quotes included
	p := `{"model":"tiny","prompt":"` + strings.Repeat("p", 638) + `"}` // 40 blocks
	q := func(i int) string {
		return `{"model":"tiny","stream":true,"prompt":"` + strings.Repeat(string(rune('a'+i)), 158) + `"}` // 10 blocks
	}
	resentHit := func(concurrent bool) (int64, int64) {
		// 100 blocks: P (40) and two others (10 each) fit, but not also
		// two answers of 100 tokens (25 blocks each) being decoded
		s := startT(t, Config{Kind: VLLM, Tokens: 100, TokensPerSecond: 100,
			Capacity: Capacity{Slots: 4, CacheBlocks: 100, BlockTokens: 4}})
		url := s.URL + "/v1/completions"
		post(t, url, p)
		if concurrent {
			_, finish := holdStreams(t, url, q(0), 1)
			_, finish2 := holdStreams(t, url, q(1), 1)
			waitFor(t, "two running", func() bool { return s.CapacityStats().Running == 2 })
			finish()
			finish2()
		} else {
			post(t, url, q(0))
			post(t, url, q(1))
		}
		waitFor(t, "idle", func() bool { return s.CapacityStats().Running == 0 })
		before := s.CapacityStats()
		post(t, url, p)
		after := s.CapacityStats()
		return after.CachedTokens - before.CachedTokens, after.CacheEvictions
	}
	idle, idleEvictions := resentHit(false)
	busy, busyEvictions := resentHit(true)
	if idle != 160 || idleEvictions != 0 {
		t.Fatalf("one request at a time: P resent with %d tokens cached and %d evictions, want all 160 and none", idle, idleEvictions)
	}
	// the two answers being decoded took 50 blocks: P's tail went first,
	// its head stayed
	if busy >= idle || busy == 0 || busyEvictions == 0 {
		t.Fatalf("under pressure: P resent with %d tokens cached (%d evictions), want fewer than %d but its head", busy, busyEvictions, idle)
	}
}

func TestOllamaResidencyEvictsAndShowsInPs(t *testing.T) {
	s := startT(t, Config{Kind: Ollama, Models: []string{"a:latest", "b:latest"}, Tokens: 1,
		Capacity: Capacity{MaxLoaded: 1, LoadTime: time.Millisecond}})
	ask := func(m string) {
		res, b := post(t, s.URL+"/api/chat", `{"model":"`+m+`","stream":false,"messages":[{"role":"user","content":"x"}]}`)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d %s", m, res.StatusCode, b)
		}
	}
	ps := func() []string {
		_, b := get(t, s.URL+"/api/ps")
		var out struct{ Models []struct{ Name string } }
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range out.Models {
			names = append(names, m.Name)
		}
		return names
	}
	if got := ps(); len(got) != 0 {
		t.Fatalf("nothing loaded yet, /api/ps lists %v", got)
	}
	ask("a")
	ask("a")
	ask("b")
	if got := ps(); len(got) != 1 || got[0] != "b:latest" {
		t.Fatalf("/api/ps after a, a, b: %v; want only b:latest", got)
	}
	ask("a")
	if st := s.CapacityStats(); st.Loads != 3 {
		t.Fatalf("loads %d, want 3 (a, b, a again)", st.Loads)
	}
}

func TestLMStudioStateFollowsResidency(t *testing.T) {
	s := startT(t, Config{Kind: LMStudio, Models: []string{"m1", "m2"}, Tokens: 1, Capacity: Capacity{MaxLoaded: 1}})
	post(t, s.URL+"/v1/chat/completions", `{"model":"m2","messages":[{"role":"user","content":"x"}]}`)
	_, b := get(t, s.URL+"/api/v0/models")
	var out struct{ Data []struct{ ID, State string } }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	for _, m := range out.Data {
		if want := map[string]string{"m1": "not-loaded", "m2": "loaded"}[m.ID]; m.State != want {
			t.Fatalf("%s is %q, want %q (%s)", m.ID, m.State, want, b)
		}
	}
}

func parseMetrics(t *testing.T, b []byte) map[string]float64 {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("not Prometheus text: %v\n%s", err, b)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			switch {
			case m.Gauge != nil:
				out[name] = m.Gauge.GetValue()
			case m.Counter != nil:
				out[name] = m.Counter.GetValue()
			}
		}
	}
	return out
}

func TestLoadSurfacesReportTheQueue(t *testing.T) {
	t.Run("vllm metrics", func(t *testing.T) {
		s := startT(t, Config{Kind: VLLM, TTFT: 100 * time.Millisecond, TokensPerSecond: 4, Tokens: 3,
			Capacity: Capacity{Slots: 1, QueueMax: 5, CacheBlocks: 10}})
		_, finish := holdStreams(t, s.URL+"/v1/chat/completions", chatBody, 1)
		done := make(chan struct{})
		go func() { defer close(done); post(t, s.URL+"/v1/chat/completions", chatBody) }()
		waitFor(t, "one waiting", func() bool { return s.CapacityStats().Waiting == 1 })
		_, b := get(t, s.URL+"/metrics")
		m := parseMetrics(t, b)
		if m["vllm:num_requests_running"] != 1 || m["vllm:num_requests_waiting"] != 1 {
			t.Fatalf("metrics %v", m)
		}
		if u, ok := m["vllm:kv_cache_usage_perc"]; !ok || u <= 0 || u > 1 {
			t.Fatalf("kv_cache_usage_perc %v, %v: want the running request's blocks", u, ok)
		}
		finish()
		<-done
		// idle: the cache still holds blocks, but no request does, and
		// vLLM counts evictable cached blocks as free
		waitFor(t, "idle", func() bool { return s.CapacityStats().Running == 0 })
		_, b = get(t, s.URL+"/metrics")
		if st, m := s.CapacityStats(), parseMetrics(t, b); st.CacheUsed == 0 || m["vllm:kv_cache_usage_perc"] != 0 {
			t.Fatalf("idle: %d blocks cached, kv_cache_usage_perc %v; want some cached and usage 0", st.CacheUsed, m["vllm:kv_cache_usage_perc"])
		}
	})
	t.Run("llama.cpp slots and metrics", func(t *testing.T) {
		s := startT(t, Config{Kind: LlamaCpp, TTFT: 100 * time.Millisecond, TokensPerSecond: 4, Tokens: 3,
			Capacity: Capacity{Slots: 3, RejectWhenFull: true}})
		// llama.cpp sends headers with the first token: hold the streams open
		// from goroutines and wait on the server's own count
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() { defer wg.Done(); post(t, s.URL+"/v1/chat/completions", chatBody) }()
		}
		waitFor(t, "two running", func() bool { return s.CapacityStats().Running == 2 })
		_, b := get(t, s.URL+"/slots")
		var slots []struct {
			ID           int  `json:"id"`
			IsProcessing bool `json:"is_processing"`
		}
		if err := json.Unmarshal(b, &slots); err != nil {
			t.Fatal(err)
		}
		busy := 0
		for _, sl := range slots {
			if sl.IsProcessing {
				busy++
			}
		}
		if len(slots) != 3 || busy != 2 {
			t.Fatalf("/slots: %d slots, %d busy; want 3 and 2: %s", len(slots), busy, b)
		}
		_, b = get(t, s.URL+"/metrics")
		if m := parseMetrics(t, b); m["llamacpp:requests_processing"] != 2 {
			t.Fatalf("metrics %v", m)
		}
		wg.Wait()
	})
}

func TestCapacitySpecOptions(t *testing.T) {
	sp, err := ParseSpec("vllm@:0=m;slots=2;queue=8;prefill=1ms;cache=64;block=16;slowdown=0.2")
	if err != nil {
		t.Fatal(err)
	}
	want := Capacity{Slots: 2, QueueMax: 8, PrefillPerToken: time.Millisecond, CacheBlocks: 64, BlockTokens: 16, DecodeSlowdown: 0.2}
	if sp.Config.Capacity != want {
		t.Fatalf("got %+v, want %+v", sp.Config.Capacity, want)
	}
	sp, err = ParseSpec("ollama@:0=a,b;maxloaded=1;load=2s;slots=1;reject")
	if err != nil || !sp.Config.Capacity.RejectWhenFull || sp.Config.Capacity.MaxLoaded != 1 || sp.Config.Capacity.LoadTime != 2*time.Second {
		t.Fatalf("got %+v, %v", sp.Config.Capacity, err)
	}
	for _, bad := range []string{"vllm@:0;slots=-1", "vllm@:0;slowdown=x", "vllm@:0;load=fast", "vllm@:0;reject=maybe"} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestDecodeTotalsStated: vLLM's /metrics states the answers' output
// tokens and the time between them as its inter-token latency histogram,
// and llama.cpp's as its predicted-token counters, so a scheduler can read
// a box's decode speed; a slower box states a larger sum per token.
func TestDecodeTotalsStated(t *testing.T) {
	histogram := func(t *testing.T, b []byte, name string) (sum float64, count uint64) {
		t.Helper()
		p := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("not Prometheus text: %v\n%s", err, b)
		}
		f := fams[name]
		if f == nil || len(f.Metric) != 1 || f.Metric[0].Histogram == nil {
			t.Fatalf("no histogram %s in\n%s", name, b)
		}
		return f.Metric[0].Histogram.GetSampleSum(), f.Metric[0].Histogram.GetSampleCount()
	}
	for _, tps := range []float64{40, 40.0 / 3} {
		s := startT(t, Config{Kind: VLLM, TTFT: time.Millisecond, TokensPerSecond: tps, Tokens: 4,
			Capacity: Capacity{Slots: 2, QueueMax: 5}})
		post(t, s.URL+"/v1/chat/completions", chatBody)
		post(t, s.URL+"/v1/chat/completions", chatBody)
		_, b := get(t, s.URL+"/metrics")
		sum, count := histogram(t, b, "vllm:inter_token_latency_seconds")
		if want := 8 / tps; count != 8 || sum < want*0.99 || sum > want*1.01 {
			t.Fatalf("%v tokens/s: %v s over %d tokens, want %v over 8", tps, sum, count, want)
		}
	}
	s := startT(t, Config{Kind: LlamaCpp, TTFT: time.Millisecond, TokensPerSecond: 50, Tokens: 5, Capacity: Capacity{Slots: 1, RejectWhenFull: true}})
	post(t, s.URL+"/v1/chat/completions", chatBody)
	_, b := get(t, s.URL+"/metrics")
	if m := parseMetrics(t, b); m["llamacpp:tokens_predicted_total"] != 5 || m["llamacpp:tokens_predicted_seconds_total"] < 0.099 || m["llamacpp:tokens_predicted_seconds_total"] > 0.101 {
		t.Fatalf("llama.cpp: %v", m)
	}
}

// TestRequestsDuringALoadWaitForIt: a second request for a model that is
// still loading waits for that load (as Ollama's queued requests do)
// rather than answering at once, and the load is counted once.
func TestRequestsDuringALoadWaitForIt(t *testing.T) {
	s := startT(t, Config{Kind: Ollama, Models: []string{"a:latest"}, Tokens: 1,
		Capacity: Capacity{Slots: 4, QueueMax: 4, MaxLoaded: 1, LoadTime: time.Hour}})
	body := `{"model":"a","stream":false,"messages":[{"role":"user","content":"x"}]}`
	ask := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/api/chat", strings.NewReader(body))
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := make(chan error, 1)
	go func() { first <- ask(ctx) }()
	waitFor(t, "the first request loading", func() bool { return s.CapacityStats().Loads == 1 })
	short, stop := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer stop()
	if err := ask(short); err == nil {
		t.Fatal("a request for a model still loading (for an hour) answered at once")
	}
	if st := s.CapacityStats(); st.Loads != 1 {
		t.Fatalf("loads %d, want 1: the second request waits on the first's load", st.Loads)
	}
	cancel()
	<-first
}
