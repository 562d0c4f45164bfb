package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
	"github.com/caddy-olla/olla/internal/slowclient"
)

// Our own timing of the streams we copy (engines.Stream): the decode rate
// of servers that state none, and the service time, taken from the
// backend's bytes and never from the client's read of them.

// learnedTimes is one model's learned figures on an endpoint.
type learnedTimes struct{ TPOTMs, ServiceMs float64 }

// learned reads endpoint's learned figures for model from the status
// (zero: none yet).
func learned(t testing.TB, endpoint, model string) learnedTimes {
	t.Helper()
	for _, l := range signalsStatus(t)[endpoint].Learned {
		if l.Model == model {
			return learnedTimes{l.TPOTMs, l.ServiceMs}
		}
	}
	return learnedTimes{}
}

// promptChat posts a streamed OpenAI chat with a prompt of its own and
// reads the whole answer; it returns the endpoint that served it.
func promptChat(t testing.TB, model, prompt string, extra string) string {
	t.Helper()
	body := fmt.Sprintf(`{"model":%q,"stream":true,%s"messages":[{"role":"user","content":%q}]}`, model, extra, prompt)
	res := post(t, "/olla/openai/v1/chat/completions", body)
	readAll(t, res)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d for %q", res.StatusCode, prompt)
	}
	return res.Header.Get("X-Olla-Endpoint")
}

// TestSlowDecoderLeftByMeasuredRate (issue 20 item 7 on servers that state
// no decode rate): of three LM Studio servers, which state neither slots
// nor decode totals, one decodes ten times slower with the same time to
// first token. Once our own timing of its streams shows it, no new
// conversation goes there while the others have room.
func TestSlowDecoderLeftByMeasuredRate(t *testing.T) {
	const model = "m"
	fast := sim.Config{Kind: sim.LMStudio, Models: []string{model}, TTFT: 10 * time.Millisecond, TokensPerSecond: 200, Tokens: 16}
	slow := fast
	slow.TokensPerSecond = 20 // 50 ms a token against 5
	fast.Name, slow.Name = "fast", "slow"
	a, b, s := startSim(t, fast), startSim(t, fast), startSim(t, slow)
	load(t, site(endpointBlock("a", a.URL, "lm-studio")+endpointBlock("b", b.URL, "lm-studio")+
		endpointBlock("slow", s.URL, "lm-studio")+"load_balancer adaptive\n"))
	waitRoutable(t, "a", "b", "slow")
	// a box with no figure yet scores like any other: it gets traffic and
	// is measured
	n := 0
	waitFor(t, "every endpoint's decode rate measured", 60*time.Second, func() bool {
		n++
		promptChat(t, model, fmt.Sprintf("warm-up %d", n), "")
		return learned(t, "a", model).TPOTMs > 0 && learned(t, "b", model).TPOTMs > 0 && learned(t, "slow", model).TPOTMs > 0
	})
	a1, b1, s1 := learned(t, "a", model).TPOTMs, learned(t, "b", model).TPOTMs, learned(t, "slow", model).TPOTMs
	if s1 < 2*max(a1, b1) {
		t.Fatalf("measured ms per token: a %v, b %v, slow %v; want slow over twice the others",
			a1, b1, s1)
	}
	served := map[string]int{}
	for i := range 20 {
		served[promptChat(t, model, fmt.Sprintf("conversation %d", i), "")]++
	}
	if served["slow"] != 0 || served["a"]+served["b"] != 20 {
		t.Fatalf("20 new conversations after the measure went %v; want none on the slow box", served)
	}
}

// TestClientCannotTimeABox: a client cannot give a box a time per token
// by what it asks or how it reads: a hang-up mid-stream, a few tokens
// (max_tokens), a buffered answer and a stream it reads slowly leave no
// figure; a whole stream read at once does (the control; a stream that
// comes faster than any copy, like the big one here, is never timed: its
// copy spends its time writing, see engines.Stream.TimePerToken). The service
// time learned from the slowly read stream is the backend's, not the
// client's read.
func TestClientCannotTimeABox(t *testing.T) {
	const model = "m"
	cfg := sim.Config{Kind: sim.LMStudio, Models: []string{model}, TTFT: 10 * time.Millisecond, TokensPerSecond: 100, Tokens: 30}
	paced := startSim(t, cfg)
	// big: the server's answer to a chat is 128 events of 64 KiB after
	// 200 ms, far more than the socket buffers hold for a client that
	// does not read
	bigURL, _ := overlaySim(t, cfg, "/v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(200 * time.Millisecond)
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		payload := strings.Repeat("x", 64<<10)
		for i := range 128 {
			if _, err := fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%d%s\"}}]}\n\n", i, payload); err != nil {
				return
			}
			rc.Flush()
		}
		io.WriteString(w, "data: [DONE]\n\n")
	})
	load(t, site(endpointBlock("paced", paced.URL, "lm-studio")+"load_balancer adaptive\n"))
	waitRoutable(t, "paced")
	idle := func(name string) {
		waitFor(t, name+"'s attempts to end", 30*time.Second, func() bool { return endpointsStatus(t)[name].ActiveConnections == 0 })
	}
	noFigure := func(what string) {
		t.Helper()
		idle("paced")
		if got := learned(t, "paced", model).TPOTMs; got != 0 {
			t.Fatalf("after %s: measured %v ms per token, want none", what, got)
		}
	}
	body := func(extra string, stream bool) string {
		return fmt.Sprintf(`{"model":%q,"stream":%t,%s"messages":[{"role":"user","content":"hi"}]}`, model, stream, extra)
	}

	// a hang-up after the first event
	res := post(t, "/olla/openai/v1/chat/completions", body("", true))
	if line, err := bufio.NewReader(res.Body).ReadString('\n'); err != nil || !strings.HasPrefix(line, "data:") {
		t.Fatalf("first line %q, %v", line, err)
	}
	res.Body.Close()
	noFigure("a hang-up mid-stream")
	// a few tokens asked for
	readAll(t, post(t, "/olla/openai/v1/chat/completions", body(`"max_tokens":3,`, true)))
	noFigure("a 3-token answer")
	// a buffered answer
	readAll(t, post(t, "/olla/openai/v1/chat/completions", body(`"max_tokens":30,`, false)))
	noFigure("a buffered answer")
	// the control: a whole stream read at once is timed
	readAll(t, post(t, "/olla/openai/v1/chat/completions", body("", true)))
	idle("paced")
	if got := learned(t, "paced", model).TPOTMs; got <= 0 {
		t.Fatal("a whole stream read at once left no figure")
	}

	// a client that reads nothing for 3 s, then everything
	reload(t, site(endpointBlock("big", bigURL, "lm-studio")+"load_balancer adaptive\n"))
	waitRoutable(t, "big")
	status, n, took, err := slowclient.Post(strings.TrimPrefix(base, "http://"), "/olla/openai/v1/chat/completions", body("", true), 3*time.Second, patientTimeout)
	if status != http.StatusOK || err != nil || n < 128<<16 {
		t.Fatalf("slow read: status %d, %d bytes, %v", status, n, err)
	}
	idle("big")
	sp := learned(t, "big", model)
	if sp.TPOTMs != 0 {
		t.Fatalf("a stream the client held back was timed: %v ms per token", sp.TPOTMs)
	}
	if svc := sp.ServiceMs; svc <= 0 || svc > float64(took.Milliseconds())/2 {
		t.Fatalf("service time %v ms after a request the client took %v to read; want the backend's (about 200 ms), under half of that",
			svc, took)
	}
}
