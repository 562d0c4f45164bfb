package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/redistest"
	"github.com/caddy-olla/olla/internal/sim"
)

// TestStickySharedInRedis: two Caddy processes share sticky pins through a
// real redis-server (sticky_sessions storage redis). Sessions start on the
// first while e1 fails its health checks, so they are pinned to e2, not
// to their rendezvous home; once e1 is back, the second process, which
// never saw them, sends every one of them to e2 too (a hit), while new
// sessions it places itself go to their homes, some of them e1.
func TestStickySharedInRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a caddy binary")
	}
	rs := redistest.Start(t)
	e1 := startSim(t, sim.Config{Kind: sim.OpenAI, Name: "e1", Models: []string{"m"}})
	e2 := startSim(t, sim.Config{Kind: sim.OpenAI, Name: "e2", Models: []string{"m"}})
	block := endpointBlock("e1", e1.URL, "openai-compatible") + endpointBlock("e2", e2.URL, "openai-compatible") +
		"sticky_sessions {\n key_sources session_header\n storage redis " + rs.Socket + "\n}\n"
	secondBase, logs := bothCaddies(t, block, []string{"e1", "e2"})
	routable := func(b string) int {
		res, err := client.Get(b + "/internal/ready")
		if err != nil {
			return -1
		}
		defer res.Body.Close()
		var body struct {
			Routable int `json:"endpoints_routable"`
		}
		if json.NewDecoder(res.Body).Decode(&body) != nil {
			return -1
		}
		return body.Routable
	}
	ask := func(b, id string) (string, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, b+"/olla/openai/v1/chat/completions",
			strings.NewReader(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("X-Olla-Session-ID", id)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v\nsecond caddy's log:\n%s", b, err, logs)
		}
		readAll(t, res)
		if res.StatusCode != 200 {
			t.Fatalf("%s %s: %d", b, id, res.StatusCode)
		}
		return res.Header.Get("X-Olla-Endpoint"), res.Header.Get("X-Olla-Sticky-Session")
	}

	e1.SetFault(sim.Fault{Mode: sim.FaultFailHealth})
	waitFor(t, "e1 out on both", 60*time.Second, func() bool { return routable(base) == 1 && routable(secondBase) == 1 })
	const n = 20
	for i := range n {
		if ep, _ := ask(base, fmt.Sprintf("s-%d", i)); ep != "e2" {
			t.Fatalf("with e1 out, session %d went to %q", i, ep)
		}
	}
	e1.SetFault(sim.Fault{})
	waitFor(t, "e1 back on both", 60*time.Second, func() bool { return routable(base) == 2 && routable(secondBase) == 2 })
	waitFor(t, "the pins written to redis", 30*time.Second, func() bool { return rs.Count("olla:pin:*") >= n })

	for i := range n {
		if ep, sticky := ask(secondBase, fmt.Sprintf("s-%d", i)); ep != "e2" || sticky != "hit" {
			t.Errorf("session %d on the second process: %q (%s), want e2 (hit)", i, ep, sticky)
		}
	}
	homes := map[string]int{}
	for i := range n {
		ep, sticky := ask(secondBase, fmt.Sprintf("new-%d", i))
		if sticky != "miss" {
			t.Errorf("new session %d: %s", i, sticky)
		}
		homes[ep]++
	}
	if homes["e1"] == 0 {
		t.Errorf("new sessions all went to e2 (%v): the shared pins prove nothing", homes)
	}
	res := getOK(t, "/internal/stats/sticky")
	if body := readAll(t, res); !strings.Contains(body, `"storage":"redis"`) {
		t.Errorf("/internal/stats/sticky: %s", body)
	}
}
