package integration

import (
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/pflag"

	"github.com/caddy-olla/olla/internal/sim"
)

// runCommand runs a registered caddy subcommand in process, as `caddy NAME
// args...` would (caddy's Flags read every value from its text), and
// returns what it printed on standard output.
func runCommand(t *testing.T, name string, args ...string) (string, int, error) {
	t.Helper()
	cmd, ok := caddycmd.Commands()[name]
	if !ok {
		t.Fatalf("caddy %s is not registered", name)
	}
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	cmd.Flags.VisitAll(func(f *flag.Flag) { fs.String(f.Name, f.DefValue, f.Usage) })
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	out := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		out <- string(b)
	}()
	code, runErr := cmd.Func(caddycmd.Flags{FlagSet: fs})
	os.Stdout = stdout
	w.Close()
	return <-out, code, runErr
}

type benchReport struct {
	Prompts   int `json:"prompts"`
	MaxTokens int `json:"max_tokens"`
	Results   []struct {
		Endpoint        string   `json:"endpoint"`
		Type            string   `json:"type"`
		Model           string   `json:"model"`
		Via             string   `json:"via"`
		Requests        int      `json:"requests"`
		Errors          int      `json:"errors"`
		TTFTp50         *float64 `json:"ttft_ms_p50"`
		TTFTp95         *float64 `json:"ttft_ms_p95"`
		TokensPerSecond *float64 `json:"tokens_per_second"`
		ErrorMessages   []string `json:"error_messages"`
		ServedBy        []string `json:"served_by"`
		Skipped         int      `json:"skipped"`
	} `json:"results"`
}

// TestOllaBench runs `caddy olla-bench` against a running config (the
// in-process Caddy's admin API) with --through: every endpoint x model is
// measured directly and each model through the proxy, the JSON says so with
// plausible figures, and an endpoint that hangs costs one timeout and is
// reported, not waited on per prompt.
func TestOllaBench(t *testing.T) {
	fast := startSim(t, sim.Config{Kind: sim.Ollama, Models: []string{"m1", "m2"}, TTFT: 5 * time.Millisecond, TokensPerSecond: 400, Tokens: 8, Name: "fast"})
	dmr := startSim(t, sim.Config{Kind: sim.DockerModelRunner, Models: []string{"ai/m3"}, TTFT: 5 * time.Millisecond, TokensPerSecond: 400, Tokens: 8, Name: "dmr"})
	hang := startSim(t, sim.Config{Kind: sim.VLLM, Models: []string{"h"}, Name: "hang"})
	load(t, site(endpointBlock("fast", fast.URL, "ollama")+endpointBlock("dmr", dmr.URL, "dmr")+endpointBlock("hang", hang.URL, "vllm")))
	waitRoutable(t, "fast", "dmr", "hang")
	hang.SetFault(sim.Fault{Mode: sim.FaultHang})

	jsonPath := filepath.Join(t.TempDir(), "bench.json")
	stdout, code, err := runCommand(t, "olla-bench", "--address", "localhost:2999", "--through", base,
		"--max-tokens", "6", "--timeout", "2s", "--json", jsonPath)
	if err != nil || code != 0 {
		t.Fatalf("olla-bench: code %d, %v\n%s", code, err, stdout)
	}
	for _, col := range []string{"ENDPOINT", "TTFT P50", "TTFT P95", "TOKENS/S", "ERRORS"} {
		if !strings.Contains(stdout, col) {
			t.Errorf("the table has no %s column:\n%s", col, stdout)
		}
	}
	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep benchReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("JSON: %v\n%s", err, raw)
	}
	rows := map[string]int{}
	for i, r := range rep.Results {
		rows[r.Via+" "+r.Endpoint+" "+r.Model] = i
	}
	for _, key := range []string{"direct fast m1:latest", "direct fast m2:latest", "direct dmr ai/m3", "proxy  m1:latest", "proxy  m2:latest", "proxy  ai/m3", "direct hang h", "proxy  h"} {
		if _, ok := rows[key]; !ok {
			t.Errorf("no row %q in %s", key, raw)
		}
	}
	if t.Failed() {
		return
	}
	for _, key := range []string{"direct fast m1:latest", "direct dmr ai/m3", "proxy  m1:latest", "proxy  ai/m3"} {
		r := rep.Results[rows[key]]
		if r.Requests != rep.Prompts || r.Errors != 0 || r.TTFTp50 == nil || r.TTFTp95 == nil || *r.TTFTp50 <= 0 ||
			*r.TTFTp95 < *r.TTFTp50 || r.TokensPerSecond == nil || *r.TokensPerSecond <= 0 {
			t.Errorf("%s: %+v", key, r)
		}
	}
	if r := rep.Results[rows["proxy  ai/m3"]]; len(r.ServedBy) != 1 || r.ServedBy[0] != "dmr" {
		t.Errorf("through the proxy ai/m3 was served by %v", r.ServedBy)
	}
	// the hanging endpoint: one timeout, the rest skipped, a clear message
	h := rep.Results[rows["direct hang h"]]
	if h.Requests != 1 || h.Errors != 1 || h.Skipped != rep.Prompts-1 || h.TTFTp50 != nil ||
		len(h.ErrorMessages) != 1 || !strings.Contains(h.ErrorMessages[0], "no answer within 2s") {
		t.Errorf("hanging endpoint: %+v", h)
	}
	if rep.Prompts != 5 || rep.MaxTokens != 6 {
		t.Errorf("report header: %d prompts, max_tokens %d", rep.Prompts, rep.MaxTokens)
	}
}
