package integration

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// conversation is a chat body: one shared system prompt, a first message of
// conversation i's own (long enough to fill a block past the system
// prompt), and turns more.
func conversation(model string, i, turns int) string {
	msgs := `{"role":"system","content":"` + strings.Repeat("You are a careful assistant. ", 30) + `"},{"role":"user","content":"` +
		strings.Repeat(fmt.Sprintf("conversation %d asks ", i), 30) + `"}`
	for t := range turns {
		msgs += fmt.Sprintf(`,{"role":"assistant","content":"answer %d"},{"role":"user","content":"and turn %d?"}`, t, t+1)
	}
	return `{"model":"` + model + `","max_tokens":2,"messages":[` + msgs + `]}`
}

// TestPrefixTiersAreHard, through Caddy with the shipped settings
// (adaptive, sticky_sessions): no cached prefix, session id or pin moves a
// request to a lower priority tier while the top tier has room, even when
// the lower one is the only one holding the model warm; and no response
// tells a client whether another sent the same prompt.
func TestPrefixTiersAreHard(t *testing.T) {
	main := startSim(t, sim.Config{Kind: sim.VLLM, Name: "main", Models: []string{"m"}})
	overflow := startSim(t, sim.Config{Kind: sim.VLLM, Name: "overflow", Models: []string{"m"}})
	load(t, site(endpointBlock("main", main.URL, "vllm", "priority 100")+endpointBlock("overflow", overflow.URL, "vllm", "priority 10")+
		"load_balancer adaptive\nsticky_sessions\n"))
	waitRoutable(t, "main", "overflow")
	for i := range 12 {
		for turn := range 3 {
			header := []string{}
			if i%3 == 0 {
				header = []string{"X-Olla-Session-ID", fmt.Sprint("session-", i)}
			}
			res := post(t, "/olla/openai/v1/chat/completions", conversation("m", i, turn), header...)
			readAll(t, res)
			if res.StatusCode != 200 || res.Header.Get("X-Olla-Endpoint") != "main" {
				t.Fatalf("conversation %d turn %d: %d from %q (%s), want the priority 100 tier", i, turn, res.StatusCode,
					res.Header.Get("X-Olla-Endpoint"), res.Header.Get("X-Olla-Routing-Reason"))
			}
		}
	}
	// the oracle: a second client resends conversation 1's first turn
	// word for word; nothing in the answer says it was seen before
	for range 2 {
		res := post(t, "/olla/openai/v1/chat/completions", conversation("m", 1, 0))
		readAll(t, res)
		if s := res.Header.Get("X-Olla-Sticky-Session"); s == "hit" || s == "miss" || s == "repin" {
			t.Errorf("X-Olla-Sticky-Session %q for a prompt without a session id", s)
		}
		if r := res.Header.Get("X-Olla-Routing-Reason"); strings.Contains(r, "prefix") || strings.Contains(r, "home") {
			t.Errorf("the routing reason says what the index holds: %q", r)
		}
	}
	var stats map[string]any
	getJSON(t, "/internal/stats/prefix", &stats)
	// 8 conversations of 3 turns without a session id, and the 2 resent: the
	// later turns found their earlier ones held
	if stats["enabled"] != true || stats["routed"].(float64) < 26 || stats["held"].(float64) < 16 {
		t.Errorf("prefix stats: %v", stats)
	}
	if n := overflow.Stats().ByPath["POST /v1/chat/completions"]; n != 0 {
		t.Errorf("the overflow tier served %d requests while the top tier had room", n)
	}
}

// TestPrefixTwoOllamasBothServe: the demo's two Ollamas holding the same
// model, 12 conversations at once without session ids, each turn a slow
// stream: both serve, neither sits idle while the other takes them all.
func TestPrefixTwoOllamasBothServe(t *testing.T) {
	var sims []*sim.Server
	for _, n := range []string{"ollama-a", "ollama-b"} {
		sims = append(sims, startSim(t, sim.Config{Kind: sim.Ollama, Name: n, Models: []string{"llama3.2:latest"},
			TTFT: 50 * time.Millisecond, TokensPerSecond: 20, Tokens: 6}))
	}
	load(t, site(endpointBlock("ollama-a", sims[0].URL, "ollama", "load_interval 100ms")+
		endpointBlock("ollama-b", sims[1].URL, "ollama", "load_interval 100ms")+"load_balancer adaptive\nsticky_sessions\n"))
	waitRoutable(t, "ollama-a", "ollama-b")
	var wg sync.WaitGroup
	var mu sync.Mutex
	served := map[string]int{}
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for turn := range 3 {
				res := post(t, "/olla/ollama/api/chat", strings.Replace(conversation("llama3.2:latest", i, turn), `"max_tokens":2`, `"stream":true`, 1))
				body := readAll(t, res)
				if res.StatusCode != 200 || !strings.Contains(body, `"done":true`) {
					t.Errorf("conversation %d turn %d: %d %.200s", i, turn, res.StatusCode, body)
					return
				}
				mu.Lock()
				served[res.Header.Get("X-Olla-Endpoint")]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if served["ollama-a"] < 6 || served["ollama-b"] < 6 {
		t.Errorf("36 turns of 12 concurrent conversations: %v, want both Ollamas serving", served)
	}
}
