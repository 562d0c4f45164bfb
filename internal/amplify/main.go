// Command amplify measures what decoded Anthropic bodies cost a running
// proxy (issue 21): the olla module's Caddy in front of a minimal
// OpenAI-compatible backend, fed
//
//   - 8 concurrent 29 MB count_tokens bodies of 1,000,000 one-letter text
//     blocks (the review's amplification body),
//   - 4 concurrent 14 MB translated /v1/messages bodies, once as 500,000
//     blocks and once as one 14 MB text block (a body the bounds let
//     through, translated and sent on),
//
// and, as the baseline, the same bytes POSTed to /olla/openai/v1/chat/
// completions, which reads, checks and forwards them without decoding.
// For each it reports the statuses, the Caddy process's peak RSS above
// its idle RSS (VmHWM, reset through /proc/<pid>/clear_refs before each
// run) and its CPU time, with the ratios to the baseline. The target:
// peak RSS at most 2 x max_buffered_bytes above idle.
//
// Run from the repository root inside a private network namespace (it
// listens on 127.0.0.1:40190 and :40191):
//
//	unshare -n sh -c 'ip link set lo up; go run ./internal/amplify'
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-olla/olla/internal/testbody"
)

const (
	addr      = "127.0.0.1:40190"
	adminAddr = "127.0.0.1:40191"
	budget    = 256 << 20 // max_buffered_bytes, the default
)

func main() {
	rounds := flag.Int("rounds", 1, "runs of each case; the report keeps the largest peak and the median CPU")
	flag.Parse()
	if err := run(*rounds); err != nil {
		fmt.Fprintln(os.Stderr, "amplify:", err)
		os.Exit(1)
	}
}

func run(rounds int) error {
	dir, err := os.MkdirTemp("", "amplify")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "caddy")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/caddy").CombinedOutput(); err != nil {
		return fmt.Errorf("building caddy: %v\n%s", err, out)
	}
	backend, err := startBackend()
	if err != nil {
		return err
	}
	defer backend.Close()
	caddyfile := fmt.Sprintf(`{
	admin %s
	auto_https off
}
http://%s {
	bind 127.0.0.1
	olla {
		endpoint t {
			url %s
			type openai-compatible
		}
	}
}
`, adminAddr, addr, "http://"+backend.Addr)
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		return err
	}
	cmd := exec.Command(bin, "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	if err := waitReady(); err != nil {
		return err
	}

	blocks29 := testbody.AnthropicBlocks("m", 1_000_000, 0)
	blocks14 := testbody.AnthropicBlocks("m", 500_000, 8)
	text14 := []byte(`{"model":"m","max_tokens":8,"messages":[{"role":"user","content":"` + strings.Repeat("x", 14<<20) + `"}]}`)
	cases := []struct {
		name, path string
		body       []byte
		n          int
	}{
		{"count_tokens 29 MB, 1,000,000 blocks", "/olla/anthropic/v1/messages/count_tokens", blocks29, 8},
		{"baseline: the same bytes on /olla/openai", "/olla/openai/v1/chat/completions", blocks29, 8},
		{"messages 14 MB, 500,000 blocks", "/olla/anthropic/v1/messages", blocks14, 4},
		{"baseline: the same bytes on /olla/openai", "/olla/openai/v1/chat/completions", blocks14, 4},
		{"messages 14 MB, one text block (translated)", "/olla/anthropic/v1/messages", text14, 4},
		{"baseline: the same bytes on /olla/openai", "/olla/openai/v1/chat/completions", text14, 4},
	}
	idle, err := rss(pid, "VmRSS")
	if err != nil {
		return err
	}
	fmt.Printf("caddy pid %d, idle RSS %.1f MiB, max_buffered_bytes %d MiB (target: peak at most %d MiB above idle)\n\n",
		pid, mib(idle), budget>>20, 2*budget>>20)
	fmt.Printf("%-46s %4s %-22s %14s %10s %12s %10s\n", "case", "n", "statuses", "peak-idle MiB", "x base", "CPU s", "x base")
	var basePeak, baseCPU float64
	results := make([]result, len(cases))
	for i := len(cases) - 1; i >= 0; i-- { // the baseline of each pair first
		c := cases[i]
		var runs []result
		for range rounds {
			r, err := measure(pid, idle, c.path, c.body, c.n)
			if err != nil {
				return err
			}
			runs = append(runs, r)
		}
		results[i] = summarise(runs)
	}
	for i, c := range cases {
		r := results[i]
		if strings.HasPrefix(c.name, "baseline") {
			basePeak, baseCPU = r.peak, r.cpu
		} else {
			basePeak, baseCPU = results[i+1].peak, results[i+1].cpu
		}
		fmt.Printf("%-46s %4d %-22s %14.1f %10.2f %12.2f %10.2f\n", c.name, c.n, r.statuses, r.peak, ratio(r.peak, basePeak), r.cpu, ratio(r.cpu, baseCPU))
	}
	return nil
}

type result struct {
	statuses  string
	peak, cpu float64 // MiB above idle; CPU seconds
}

func summarise(runs []result) result {
	out := runs[0]
	cpus := make([]float64, 0, len(runs))
	for _, r := range runs {
		out.peak = max(out.peak, r.peak)
		cpus = append(cpus, r.cpu)
	}
	sort.Float64s(cpus)
	out.cpu = cpus[len(cpus)/2]
	return out
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func mib(kb int64) float64 { return float64(kb) / 1024 }

// measure sends n copies of body at once and reports the statuses, the
// peak RSS above idle and the CPU time the proxy spent.
func measure(pid int, idle int64, path string, body []byte, n int) (result, error) {
	// settle: let the previous case's garbage go back to the OS
	time.Sleep(3 * time.Second)
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return result{}, fmt.Errorf("resetting the peak RSS: %w", err)
	}
	cpu0, err := cpuSeconds(pid)
	if err != nil {
		return result{}, err
	}
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 10 * time.Minute}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code := 0
			res, err := hc.Post("http://"+addr+path, "application/json", bytes.NewReader(body))
			if err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				code = res.StatusCode
			}
			mu.Lock()
			counts[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	cpu1, err := cpuSeconds(pid)
	if err != nil {
		return result{}, err
	}
	peak, err := rss(pid, "VmHWM")
	if err != nil {
		return result{}, err
	}
	codes := make([]int, 0, len(counts))
	for c := range counts {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%dx%d", counts[c], c))
	}
	return result{statuses: strings.Join(parts, " "), peak: mib(peak - idle), cpu: cpu1 - cpu0}, nil
}

// startBackend is an OpenAI-compatible server that lists model m and
// answers every chat at once, reading and dropping the body: the cost
// measured is the proxy's alone (and the measuring process stays small).
func startBackend() (*http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Addr: ln.Addr().String(), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if strings.HasSuffix(r.URL.Path, "/v1/models") {
			_, _ = io.WriteString(w, `{"object":"list","data":[{"id":"m","object":"model","owned_by":"amplify"}]}`)
			return
		}
		_, _ = io.WriteString(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

func waitReady() error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get("http://" + addr + "/internal/ready")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the proxy did not become ready")
}

// rss reads a kB field (VmRSS, VmHWM) of /proc/<pid>/status.
func rss(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// cpuSeconds is the process's user and system time.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// fields after the command name, which is in parentheses
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100, nil // clock ticks (USER_HZ 100)
}
