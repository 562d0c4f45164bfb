package integration

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddy-olla/olla/internal/sim"
)

// TestFallbackChain: an alias that is an ordered chain serves from the
// second model when the first answers 429, when its endpoint answers 503,
// and when no endpoint serves the first at all; X-Olla-Model and the
// routing reason say which model served and why. A chain whose models all
// fail is answered with the first model's error.
func TestFallbackChain(t *testing.T) {
	bigBox := startSim(t, sim.Config{Kind: sim.Ollama, Name: "big-box", Models: []string{"big"}, Tokens: 3})
	smallBox := startSim(t, sim.Config{Kind: sim.Ollama, Name: "small-box", Models: []string{"small"}, Tokens: 3})
	load(t, site(endpointBlock("big-box", bigBox.URL, "ollama")+endpointBlock("small-box", smallBox.URL, "ollama")+`
		aliases {
			fast small
			smart {
				fallback big small
			}
			ghost {
				fallback nosuch small
			}
			doomed {
				fallback big nosuch
			}
		}`))
	waitRoutable(t, "big-box", "small-box")

	ask := func(model string) (int, string, string, string) {
		t.Helper()
		res := post(t, "/olla/openai/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)
		body := readAll(t, res)
		var c struct {
			Model string `json:"model"`
		}
		json.Unmarshal([]byte(body), &c)
		return res.StatusCode, res.Header.Get("X-Olla-Model"), res.Header.Get("X-Olla-Routing-Reason"), c.Model + "|" + res.Header.Get("X-Olla-Endpoint") + "|" + body
	}

	// control: the first model serves while it can
	code, served, reason, rest := ask("smart")
	if code != 200 || served != "big" || !strings.Contains(rest, "|big-box|") || !strings.Contains(reason, `fallback chain "smart": big`) {
		t.Fatalf("first model: %d %q %q %s", code, served, reason, rest)
	}
	for _, status := range []int{429, 503} {
		bigBox.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: status, RetryAfter: 1, Path: "/v1/chat/completions", Times: 1})
		code, served, reason, rest = ask("smart")
		if code != 200 || served != "small" || !strings.HasPrefix(rest, "small|small-box|") ||
			!strings.Contains(reason, "big: every endpoint refused or was full") {
			t.Errorf("after a %d from the first model: %d %q %q %s", status, code, served, reason, rest)
		}
		// the 429/503 parked big-box for its Retry-After: the chain skips
		// it at routing now, until the second is over
		waitRoutable(t, "big-box")
	}
	// the first model is missing everywhere
	code, served, reason, rest = ask("ghost")
	if code != 200 || served != "small" || !strings.Contains(reason, "nosuch: model_not_found") {
		t.Errorf("first model missing: %d %q %q %s", code, served, reason, rest)
	}
	// the backend gets the model it serves, not the chain's name
	if last := smallBox.LastRequest(); !strings.Contains(string(last.Body), `"model":"small"`) {
		t.Errorf("the second model's endpoint got %s", last.Body)
	}
	// every model fails: the first one's answer stands (its 429 passed on)
	bigBox.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: 429, Path: "/v1/chat/completions", Times: 5})
	code, _, _, rest = ask("doomed")
	if code != 429 {
		t.Errorf("a chain with nothing left: %d %s", code, rest)
	}
	bigBox.SetFault(sim.Fault{})
}
