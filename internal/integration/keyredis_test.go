package integration

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/redistest"
	"github.com/caddy-olla/olla/internal/sim"
)

// TestKeyLimitsSharedInRedis: two Caddy processes (this test's and a
// second binary) count one key's budget in one real redis-server. Each
// sends its requests one at a time, so together they admit at most the
// budget's worth plus the one request each may have in flight when it is
// crossed. With Redis killed, the process configured to fail open keeps
// serving and the one configured closed answers 503; once Redis is back
// (empty), counting resumes in both without a restart.
func TestKeyLimitsSharedInRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a caddy binary")
	}
	rs := redistest.Start(t)
	s := startSim(t, sim.Config{Kind: sim.OpenAI, Name: "r1", Models: []string{"m"}, Tokens: 5})
	block := func(onError string) string {
		return endpointBlock("r1", s.URL, "openai-compatible") + fmt.Sprintf(`
		key_limits {
			key {http.request.header.X-Team}
			budget_day 50
			cost {
				input 0
				output 1
			}
			storage redis %s
			on_storage_error %s
		}`, rs.Socket, onError)
	}
	secondBase, logs := startSecondCaddy(t, site(block("closed")))
	load(t, site(block("open")))
	waitRoutable(t, "r1")
	waitFor(t, "the second caddy routable", 60*time.Second, func() bool {
		res, err := client.Get(secondBase + "/internal/ready")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
	ask := func(b, team string) int {
		req, _ := http.NewRequest(http.MethodPost, b+"/olla/openai/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("X-Team", team)
		res, err := client.Do(req)
		if err != nil {
			t.Errorf("%s: %v\nsecond caddy's log:\n%s", b, err, logs)
			return 0
		}
		readAll(t, res)
		return res.StatusCode
	}
	// both at once, each one request at a time: 5 tokens each against 50
	burst := func(team string) (admitted [2]int, other []int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i, b := range []string{base, secondBase} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 15 {
					code := ask(b, team)
					mu.Lock()
					switch code {
					case 200:
						admitted[i]++
					case 429:
					default:
						other = append(other, code)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return admitted, other
	}
	check := func(team string) {
		t.Helper()
		got, other := burst(team)
		sum := got[0] + got[1]
		if sum < 10 || sum > 10+2 || got[0] == 0 || got[1] == 0 || len(other) > 0 {
			t.Fatalf("%s: admitted %v (sum %d, want 10 to 12, both some), other answers %v", team, got, sum, other)
		}
	}
	check("team-a")

	// Redis dies: open keeps serving (and counts the failure), closed refuses
	rs.Kill()
	if code := ask(base, "team-b"); code != 200 {
		t.Errorf("fail open with redis down: %d", code)
	}
	if code := ask(secondBase, "team-b"); code != 503 {
		t.Errorf("fail closed with redis down: %d", code)
	}
	metrics := readAll(t, getOK(t, "/internal/metrics"))
	if !strings.Contains(metrics, "olla_key_limit_store_errors_total") || strings.Contains(metrics, "olla_key_limit_store_errors_total 0\n") {
		t.Errorf("store errors not counted")
	}
	// back, empty: both admit again, and one budget is enforced again
	rs.Restart()
	waitFor(t, "the closed instance admitting again", 30*time.Second, func() bool { return ask(secondBase, "team-c") == 200 })
	// the round trips the two instances send Redis for one burst, as the
	// server counts them (limits' TestRedisOneRoundTripPerRequest asserts
	// one per request; here a quiet moment longer than the flush delay
	// between two requests may add a flush, so the figure is logged)
	rs.ResetStats()
	check("team-d")
	trips, stats := rs.RoundTrips()
	t.Logf("redis round trips for 30 requests through two caddy processes: %d (%.2f per request); by command %v", trips, float64(trips)/30, stats)
}
