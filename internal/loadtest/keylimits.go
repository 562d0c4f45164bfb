package main

// Key limits' cost (issue 24, `make loadtest-keylimits`): the same light
// load through olla with key_limits off, on with counters in memory, and
// on with counters in a real redis-server, in interleaved rounds of one
// run, and the Caddy process's CPU per request, throughput and latency of
// each against off. Every request is counted against all four limits
// (requests and tokens per minute, budgets per day and month) of its key,
// one key per client connection, with limits far above the load so
// nothing is refused: what is measured is the cost of counting.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// keyLimitsVariant is one configuration of the key-limits runs.
type keyLimitsVariant struct {
	name    string
	slug    string
	storage string // "" (no key_limits), "memory" or "redis"
}

// keyLimitsVariants are what a round runs; the second "off" is the
// control: its ratio to the first is the run's own noise.
func keyLimitsVariants() []keyLimitsVariant {
	return []keyLimitsVariant{
		{name: "key_limits off", slug: "off"},
		{name: "control: key_limits off again", slug: "off-again"},
		{name: "key_limits in memory", slug: "memory", storage: "memory"},
		{name: "key_limits in redis", slug: "redis", storage: "redis"},
	}
}

// keyLimitsClients is the load: clients looping on instant non-streamed
// answers, so the proxy's own work per request is what the CPU shows.
const keyLimitsClients = 8

// caddyfile is the variant's config; redisAddr is the server for "redis".
func (v keyLimitsVariant) caddyfile(backends []string, port, admin int, redisAddr string) string {
	c := overloadContender{name: v.name}
	cfg := c.caddyfile("ollama", backends, port, admin)
	if v.storage == "" {
		return cfg
	}
	block := "\t\tkey_limits {\n" +
		"\t\t\tkey {http.request.remote}\n" + // a key per client connection
		"\t\t\ttokens_per_minute 1000000000000\n\t\t\trequests_per_minute 1000000000000\n" +
		"\t\t\tbudget_day 1000000000\n\t\t\tbudget_month 1000000000\n"
	if v.storage == "redis" {
		block += "\t\t\tstorage redis " + redisAddr + "\n"
	}
	block += "\t\t}\n"
	// before the olla block's closing brace (the last "\t}\n}\n")
	i := len(cfg) - len("\t}\n}\n")
	return cfg[:i] + block + cfg[i:]
}

// keyLimitsResult is every round of every variant.
type keyLimitsResult struct {
	rounds   int
	cpu      [4][]float64 // per variant: Caddy CPU microseconds per request
	redisCPU []float64    // redis-server CPU microseconds per request (redis variant)
	rps      [4][]float64
	p50      [4][]time.Duration
	skipped  string // why the redis variant did not run, if it did not
}

// runKeyLimits measures and prints the table.
func runKeyLimits(ctx context.Context, o options, sup *supervisor, work workDirs, stdout, stderr io.Writer) int {
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "loadtest: "+format+"\n", a...) }
	ports := newRoutingPorts(o.portBase, o.adminBase)
	if err := checkPortsFree(append(slices.Clone(ports.sims[:2]), addrOf(ports.port), addrOf(ports.admin))); err != nil {
		logf("%v", err)
		return 1
	}
	logf("key limits: %d rounds of off, off again (the control), memory and redis, %s + %s warm-up each, %d clients of instant answers",
		o.rounds, o.duration, o.warmup, keyLimitsClients)
	r, err := measureKeyLimits(ctx, o, ports, sup, work, stderr)
	if err != nil {
		logf("key limits: %v", err)
		return 1
	}
	printKeyLimits(stdout, r)
	return 0
}

func measureKeyLimits(ctx context.Context, o options, ports routingPorts, sup *supervisor, work workDirs, progress io.Writer) (keyLimitsResult, error) {
	var r keyLimitsResult
	logName := "keylimits"
	sims, err := startOverloadSims(ctx, sup, o.simBin, "ollama", testModel, "tokens=5", ports.sims[:2], logName)
	if err != nil {
		return r, err
	}
	defer sims.proc.stop(3 * time.Second)
	redisAddr, redisProc, err := startRedis(ctx, sup, o.out, logName)
	if err != nil {
		r.skipped = err.Error()
	} else {
		defer redisProc.stop(3 * time.Second)
	}
	variants := keyLimitsVariants()
	url := "http://" + addrOf(ports.port) + "/olla/ollama" + chatPath
	for round := 0; round < o.rounds; round++ {
		for k := range variants {
			vi := (round + k) % len(variants)
			v := variants[vi]
			if v.storage == "redis" && redisProc == nil {
				continue
			}
			name := fmt.Sprintf("%s-r%d-%s", logName, round+1, v.slug)
			cfg := filepath.Join(o.out, name+".Caddyfile")
			if err := os.WriteFile(cfg, []byte(v.caddyfile(ports.sims[:2], ports.port, ports.admin, redisAddr)), 0o644); err != nil {
				return r, err
			}
			p, err := startCaddyReady(ctx, sup, work.caddy, cfg, name, url, requestBody(false))
			if err != nil {
				return r, err
			}
			w := newWindow(time.Now(), o.warmup, o.duration)
			type cpus struct {
				use   cpuUse
				redis float64 // seconds
			}
			done := make(chan cpus, 1)
			go func() {
				var c cpus
				extra := []int{sims.proc.pid()}
				if redisProc != nil {
					extra = append(extra, redisProc.pid())
				}
				if !sleepUntil(ctx, w.measureFrom) {
					done <- c
					return
				}
				a, err1 := takeCPUSnapshot(p.pid(), extra...)
				ra, _ := redisTicks(redisProc)
				if err1 != nil || !sleepUntil(ctx, w.stopAt) {
					done <- c
					return
				}
				b, err2 := takeCPUSnapshot(p.pid(), extra...)
				rb, _ := redisTicks(redisProc)
				if err2 != nil {
					done <- c
					return
				}
				c.use = cpuBetween(a, b)
				if elapsed, total := b.at.Sub(a.at).Seconds(), float64(b.total-a.total); elapsed > 0 && total > 0 {
					hz := total / float64(runtime.NumCPU()) / elapsed
					c.redis = float64(rb-ra) / hz
				}
				done <- c
			}()
			out := drive(ctx, loadSpec{url: url, body: requestBody(false), clients: keyLimitsClients}, w)
			c := <-done
			var counted error
			if v.storage != "" {
				counted = checkCounted(ctx, "http://"+addrOf(ports.port))
			}
			p.stop(3 * time.Second)
			if counted != nil {
				return r, fmt.Errorf("%s: %w", v.name, counted)
			}
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
			st := summarizeRun(out, o.duration, c.use)
			if out.errors+out.truncated > 0 {
				return r, fmt.Errorf("%s: %d errors, %d truncated (%v)", v.name, out.errors, out.truncated, out.samples)
			}
			fmt.Fprintf(progress, "loadtest: key limits round %d %-30s %.0f req/s, p50 %s, %.1f us CPU per request (other load %.2f cores)\n",
				round+1, v.name, st.rps, st.totalP50, st.cpuPerReq, st.foreignCores)
			r.cpu[vi] = append(r.cpu[vi], st.cpuPerReq)
			r.rps[vi] = append(r.rps[vi], st.rps)
			r.p50[vi] = append(r.p50[vi], st.totalP50)
			if v.storage == "redis" && out.ok > 0 {
				r.redisCPU = append(r.redisCPU, c.redis*1e6/float64(out.ok))
			}
		}
		r.rounds++
	}
	return r, nil
}

// checkCounted asks the proxy's /internal/stats/usage whether its store
// counted requests: a run whose limits counted nothing measured nothing.
func checkCounted(ctx context.Context, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/internal/stats/usage?top=100", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var page struct {
		Keys []struct {
			Windows []struct {
				Limit string  `json:"limit"`
				Used  float64 `json:"used"`
			} `json:"windows"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 8<<20)).Decode(&page); err != nil {
		return fmt.Errorf("reading /internal/stats/usage: %w", err)
	}
	var used float64
	for _, k := range page.Keys {
		for _, w := range k.Windows {
			if w.Limit == "requests_per_minute" {
				used += w.Used
			}
		}
	}
	if used == 0 {
		return errors.New("the key limits store counted no request (/internal/stats/usage shows no requests_per_minute used)")
	}
	return nil
}

func redisTicks(p *child) (int64, error) {
	if p == nil {
		return 0, nil
	}
	return processTicks(p.pid())
}

// startRedis starts redis-server on a unix socket under dir (no port to
// collide on, nothing persisted) and waits until it answers.
func startRedis(ctx context.Context, sup *supervisor, dir, logName string) (string, *child, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, errors.New("redis-server is not installed (apt-get install redis-server)")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	sock := filepath.Join(abs, "redis.sock")
	_ = os.Remove(sock)
	p, err := sup.start("redis", logName+"-redis", bin, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", abs)
	if err != nil {
		return "", nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock, p, nil
		}
		if time.Now().After(deadline) || !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			p.stop(time.Second)
			return "", nil, errors.New("redis-server did not start listening")
		}
	}
}

func printKeyLimits(w io.Writer, r keyLimitsResult) {
	fmt.Fprintln(w, "### Cost of key_limits (issue 24)")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%d clients looping on instant non-streamed answers; every request counted against four limits of its key (a key per connection); medians of %d interleaved rounds. Ratios are against key_limits off: of the medians, and (paired) the median of each round's own ratio, which a neighbour's load in one round skews less.\n\n",
		keyLimitsClients, r.rounds)
	fmt.Fprintln(w, "| variant | Caddy CPU per request | ratio | paired | requests/s | ratio | paired | latency p50 | target |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|")
	off, offRPS := medianF(r.cpu[0]), medianF(r.rps[0])
	for i, v := range keyLimitsVariants() {
		if len(r.cpu[i]) == 0 {
			fmt.Fprintf(w, "| %s | not run: %s | | | | | | | |\n", v.name, r.skipped)
			continue
		}
		cpu, rps := medianF(r.cpu[i]), medianF(r.rps[i])
		pairedCPU, pairedRPS := pairedRatio(r.cpu[i], r.cpu[0]), pairedRatio(r.rps[i], r.rps[0])
		target := ""
		if v.storage == "memory" {
			target = "CPU within 5 % of off (paired): " + yesNo(pairedCPU <= 1.05)
		}
		if v.storage == "redis" {
			target = fmt.Sprintf("redis-server: %.1f us per request more", medianF(r.redisCPU))
		}
		if v.slug == "off-again" {
			target = "the same config twice: the run's own noise"
		}
		fmt.Fprintf(w, "| %s | %.1f us | %.3f | %.3f | %.0f | %.3f | %.3f | %s | %s |\n", v.name, cpu, over(cpu, off), pairedCPU,
			rps, over(rps, offRPS), pairedRPS, medianD(r.p50[i]), target)
	}
}

// pairedRatio is the median over rounds of a[k]/b[k] (rounds both ran).
func pairedRatio(a, b []float64) float64 {
	var rs []float64
	for k := range min(len(a), len(b)) {
		if b[k] > 0 {
			rs = append(rs, a[k]/b[k])
		}
	}
	return medianF(rs)
}

// over is a over b, 0 when b is.
func over(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
