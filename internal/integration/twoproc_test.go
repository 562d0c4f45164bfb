package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
)

// The second Caddy process listens beside the first, below the ephemeral
// range too.
const (
	secondPort      = httpPort + 1
	secondHTTPSPort = httpsPort + 1
)

// TestStickyTwoProcesses: two Caddy processes with one config, sharing no
// state, send each new session to the same endpoint. The first is the
// in-process Caddy every test here uses; the second is a real caddy binary
// built from ./cmd/caddy and run as its own process (caddytest holds the
// one admin port, so a second in-process Caddy is not possible, and a
// second process is the honest test of "no shared state" anyway).
func TestStickyTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a caddy binary")
	}
	names := []string{"e1", "e2", "e3", "e4"}
	var block string
	for _, n := range names {
		s := startSim(t, sim.Config{Kind: sim.OpenAI, Name: n, Models: []string{"m"}})
		block += endpointBlock(n, s.URL, "openai-compatible")
	}
	// Speed is each process's own measurement: a busy machine can make one
	// process see an endpoint as slow and keep new sessions from it while
	// the other does not. The agreement under test is for equal views, so
	// the one judgement a stall can skew is off (the balancer's tests cover
	// it, including its floor for noise).
	block += "load_balancer adaptive {\n ttft 0\n}\nsticky_sessions {\n key_sources session_header\n}\n"

	secondBase, logs := bothCaddies(t, block, names)

	placed := map[string]int{}
	for i := range 24 {
		id := fmt.Sprintf("session-%d", i)
		var got [2]string
		for j, b := range []string{base, secondBase} {
			req, _ := http.NewRequest(http.MethodPost, b+"/olla/openai/v1/chat/completions", strings.NewReader(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("X-Olla-Session-ID", id)
			res, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v\nsecond caddy's log:\n%s", b, err, logs)
			}
			res.Body.Close()
			if res.StatusCode != 200 || res.Header.Get("X-Olla-Sticky-Session") != "miss" {
				t.Fatalf("%s %s: %d sticky %q", b, id, res.StatusCode, res.Header.Get("X-Olla-Sticky-Session"))
			}
			got[j] = res.Header.Get("X-Olla-Endpoint")
		}
		if got[0] != got[1] || got[0] == "" {
			t.Errorf("%s: first caddy chose %q, second %q", id, got[0], got[1])
		}
		placed[got[0]]++
	}
	if len(placed) < 3 {
		t.Errorf("24 sessions landed on %d endpoints (%v): the agreement proves little", len(placed), placed)
	}
}

// bothCaddies runs block's site in the in-process Caddy and in a second
// process, and waits until both route to every one of names.
func bothCaddies(t *testing.T, block string, names []string) (string, *syncBuilder) {
	t.Helper()
	secondBase, logs := startSecondCaddy(t, site(block))
	load(t, site(block))
	waitRoutable(t, names...)
	waitFor(t, "the second caddy's endpoints routable", 30*time.Second, func() bool {
		res, err := client.Get(secondBase + "/internal/ready")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		var body struct {
			Routable int `json:"endpoints_routable"`
		}
		return json.NewDecoder(res.Body).Decode(&body) == nil && body.Routable == len(names)
	})
	return secondBase, logs
}

// startSecondCaddy builds ./cmd/caddy and runs it as a process of its own
// with caddyfile (a site() config, moved to secondPort with no admin
// endpoint); it stops with the test. It returns the second site's base URL
// and its log.
func startSecondCaddy(t *testing.T, caddyfile string) (string, *syncBuilder) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "caddy")
	build := exec.Command("go", "build", "-o", bin, "github.com/caddy-olla/olla/cmd/caddy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the second caddy: %v\n%s", err, out)
	}
	dir := t.TempDir()
	second := strings.NewReplacer("admin localhost:2999", "admin off",
		fmt.Sprintf("http_port %d", httpPort), fmt.Sprintf("http_port %d", secondPort),
		fmt.Sprintf("https_port %d", httpsPort), fmt.Sprintf("https_port %d", secondHTTPSPort),
		fmt.Sprintf("http://localhost:%d {", httpPort), fmt.Sprintf("http://localhost:%d {", secondPort)).Replace(caddyfile)
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(second), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	logs := &syncBuilder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	return fmt.Sprintf("http://localhost:%d", secondPort), logs
}

// syncBuilder is a strings.Builder a process may write while a test reads.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPrefixTwoProcesses: conversations without a session id, their turns
// sent through two Caddy processes with one config in turn, each turn the
// whole conversation so far: every conversation stays on one endpoint (its
// first turn on either process goes to the rendezvous home of its own
// first message, which the other process computes alike; later turns
// follow that process's index), and the conversations spread over the
// endpoints although they share one system prompt.
func TestPrefixTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a caddy binary")
	}
	names := []string{"p1", "p2", "p3", "p4"}
	var block string
	for _, n := range names {
		block += endpointBlock(n, startSim(t, sim.Config{Kind: sim.OpenAI, Name: n, Models: []string{"m"}}).URL, "openai-compatible")
	}
	block += "load_balancer adaptive {\n ttft 0\n}\nsticky_sessions\n"
	secondBase, logs := bothCaddies(t, block, names)
	system := strings.Repeat("You are a careful assistant. ", 40)
	placed := map[string]int{}
	for i := range 16 {
		msgs := `{"role":"system","content":"` + system + `"},{"role":"user","content":"` + strings.Repeat(fmt.Sprintf("conversation %d asks ", i), 30) + `"}`
		var got []string
		for turn := range 4 {
			b := []string{base, secondBase}[(i+turn)%2]
			req, _ := http.NewRequest(http.MethodPost, b+"/olla/openai/v1/chat/completions", strings.NewReader(`{"model":"m","max_tokens":1,"messages":[`+msgs+`]}`))
			res, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v\nsecond caddy's log:\n%s", b, err, logs)
			}
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("%s conversation %d turn %d: %d", b, i, turn, res.StatusCode)
			}
			if s := res.Header.Get("X-Olla-Sticky-Session"); s == "hit" || s == "miss" {
				t.Fatalf("a conversation without a session id: X-Olla-Sticky-Session %q", s)
			}
			if r := res.Header.Get("X-Olla-Routing-Reason"); strings.Contains(r, "prefix=") {
				t.Fatalf("the routing reason names the index's match: %q", r)
			}
			got = append(got, res.Header.Get("X-Olla-Endpoint"))
			msgs += fmt.Sprintf(`,{"role":"assistant","content":"answer %d"},{"role":"user","content":"and turn %d?"}`, turn, turn+1)
		}
		for _, ep := range got[1:] {
			if ep != got[0] || ep == "" {
				t.Errorf("conversation %d moved between endpoints across the two processes: %v", i, got)
				break
			}
		}
		placed[got[0]]++
	}
	if len(placed) < 3 {
		t.Errorf("16 conversations sharing a system prompt landed on %d endpoints (%v)", len(placed), placed)
	}
}
