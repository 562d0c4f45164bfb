package main

// What is measured: the scenarios, the three contenders and their generated
// Caddyfiles, and the loop that runs every contender once per round.

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// testModel is the model both simulated backends serve.
const testModel = "llama3.2:latest"

// chatPath is the upstream API path the load uses; clients send it under the
// /olla/ollama prefix to every contender.
const chatPath = "/api/chat"

// scenario is one load shape with the simulator pacing it needs.
type scenario struct {
	key     string        // "a", "b", "c", "r"
	title   string        // one line for the report
	clients int           // concurrent clients, each looping back-to-back (reload: streams, one each)
	stream  bool          // "stream":true (NDJSON) or "stream":false (one JSON answer)
	ttft    time.Duration // simulator time to first token
	tps     float64       // simulator tokens per second (0 = no pacing)
	tokens  int           // tokens per answer
	reload  bool          // reload under load (reload.go) rather than a throughput measurement
	hostile bool          // hostile clients on loaded backends (hostile.go) rather than a throughput measurement
}

// scenarios lists every scenario the harness knows, in report order.
func scenarios() []scenario {
	return []scenario{
		{key: "a", title: "16 clients, instant non-streamed answers", clients: 16, stream: false, tokens: 5},
		{key: "b", title: "16 clients, instant 5-chunk streams", clients: 16, stream: true, tokens: 5},
		{key: "c", title: "1,000 clients, streams: 100 ms to first token, then 20 tokens at 50/s",
			clients: 1000, stream: true, ttft: 100 * time.Millisecond, tps: 50, tokens: 20},
		{key: "h", title: fmt.Sprintf("hostile clients on loaded backends: 1,000 clients streaming as in (c) while the health route "+
			"answers after %s (check_timeout %s) and %d more clients reset the connection after %d lines, again and again",
			healthDelay, hostileTimeout, hostileClients, hostileLines),
			clients: 1000, stream: true, ttft: 100 * time.Millisecond, tps: 50, tokens: 20, hostile: true},
		// (r): streams of about 5 s, the last starting 1 s in; the 20
		// reloads run from about 1.1 s to 3.1 s, while every stream is open.
		{key: "r", title: fmt.Sprintf("reload under load: 200 streams (100 ms to first token, then 50 tokens at 10/s), "+
			"%d forced reloads through the admin API %s apart, alternating two load balancers", reloadCount, reloadEvery),
			clients: 200, stream: true, ttft: 100 * time.Millisecond, tps: 10, tokens: 50, reload: true},
	}
}

// scenarioHelp describes the scenarios for -h.
func scenarioHelp() string {
	var parts []string
	for _, s := range scenarios() {
		parts = append(parts, "("+s.key+") "+s.title)
	}
	return strings.Join(parts, "; ")
}

// pickScenarios parses the -scenarios list.
func pickScenarios(list string) ([]scenario, error) {
	all := scenarios()
	keys := make([]string, len(all))
	for i, s := range all {
		keys[i] = s.key
	}
	var out []scenario
	seen := map[string]bool{}
	for _, k := range strings.Split(list, ",") {
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "" || seen[k] {
			continue
		}
		found := false
		for _, s := range all {
			if s.key == k {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", k, strings.Join(keys, ", "))
		}
		seen[k] = true
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no scenario given")
	}
	return out, nil
}

// requestBody is the chat request every client sends.
func requestBody(stream bool) []byte {
	return []byte(fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Say hello in five words."}],"stream":%t}`,
		testModel, stream))
}

// Contender indexes, also the column order of the report.
const (
	olla = iota
	sherpa
	reverseProxy
	numContenders
)

// contender is one Caddy configuration under test.
type contender struct {
	name   string // report name
	engine string // olla engine name; empty for plain reverse_proxy
	port   int    // site port on 127.0.0.1
	admin  int    // admin port on 127.0.0.1 (pprof and /load live there)
	config string // path of the generated Caddyfile
	// altConfig is the path of the same configuration with the other load
	// balancer (least connections), which scenario (r) alternates with config.
	altConfig string
	// hostilePath is the path of the configuration scenario (h) runs: as
	// config, with health checks that time out before the sims answer.
	hostilePath string
}

// newContenders returns the three contenders, indexed by the constants above.
func newContenders(portBase, adminBase int) []contender {
	return []contender{
		olla:         {name: "olla", engine: "olla", port: portBase + 10, admin: adminBase + 1},
		sherpa:       {name: "sherpa", engine: "sherpa", port: portBase + 20, admin: adminBase + 2},
		reverseProxy: {name: "reverse_proxy", port: portBase + 30, admin: adminBase + 3},
	}
}

// contenderAddrs lists the site and admin addresses of cs.
func contenderAddrs(cs []contender) []string {
	var out []string
	for _, c := range cs {
		out = append(out, addrOf(c.port), addrOf(c.admin))
	}
	return out
}

// chatURL is the URL clients send the chat request to.
func (c contender) chatURL() string {
	return "http://" + addrOf(c.port) + "/olla/ollama" + chatPath
}

// adminURL is the base URL of c's admin endpoint.
func (c contender) adminURL() string { return "http://" + addrOf(c.admin) }

// caddyfile renders c's configuration for the given backend addresses.
func (c contender) caddyfile(backends []string) string { return c.render(backends, false) }

// altCaddyfile is caddyfile with least-connections balancing instead of
// round-robin, and nothing else changed.
func (c contender) altCaddyfile(backends []string) string { return c.render(backends, true) }

// render writes the configuration, balancing round-robin or, when
// leastConn is set, by least connections.
func (c contender) render(backends []string, leastConn bool) string {
	return c.renderChecks(backends, leastConn, 2*time.Second, time.Second)
}

// renderChecks is render with the olla endpoints' check_interval and
// check_timeout (plain reverse_proxy has no active checks).
func (c contender) renderChecks(backends []string, leastConn bool, interval, timeout time.Duration) string {
	lb, policy := "round-robin", "round_robin"
	if leastConn {
		lb, policy = "least-connections", "least_conn"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# generated by internal/loadtest for the %s contender\n", c.name)
	fmt.Fprintf(&b, "{\n\tadmin %s\n\tauto_https off\n\tpersist_config off\n}\n\n", addrOf(c.admin))
	fmt.Fprintf(&b, "http://:%d {\n\tbind 127.0.0.1\n", c.port)
	if c.engine != "" {
		fmt.Fprintf(&b, "\tolla {\n\t\tengine %s\n\t\tload_balancer %s\n", c.engine, lb)
		for i, a := range backends {
			fmt.Fprintf(&b, "\t\tendpoint sim-%c {\n\t\t\turl http://%s\n\t\t\ttype ollama\n"+
				"\t\t\tcheck_interval %s\n\t\t\tcheck_timeout %s\n\t\t}\n", 'a'+i, a, interval, timeout)
		}
		b.WriteString("\t}\n")
	} else {
		// The same path space as olla's /olla/ollama/ route: prefix
		// stripped, round-robin over the same backends, streaming.
		fmt.Fprintf(&b, "\thandle_path /olla/ollama/* {\n\t\treverse_proxy %s {\n"+
			"\t\t\tlb_policy %s\n\t\t\tflush_interval -1\n\t\t}\n\t}\n", strings.Join(backends, " "), policy)
	}
	b.WriteString("}\n")
	return b.String()
}

// scenarioResult holds every run of one scenario, per contender.
type scenarioResult struct {
	sc      scenario
	runs    [numContenders][]runStats    // throughput scenarios
	reload  [numContenders]*reloadStats  // scenario (r); nil where not run
	hostile [numContenders]*hostileStats // scenario (h); nil where not run
}

// savedProfile is a CPU profile fetched during a run.
type savedProfile struct {
	label string // "(c) olla"
	path  string
	err   error
}

// runScenario runs sc for every round and contender. It returns what was
// measured so far even when it fails.
func runScenario(ctx context.Context, o options, sc scenario, sup *supervisor, caddyBin string,
	cs []contender, sims *simSet, progress io.Writer) (scenarioResult, []savedProfile, error) {
	res := scenarioResult{sc: sc}
	var profs []savedProfile
	if err := sims.setTiming(ctx, sc.ttft, sc.tps, sc.tokens); err != nil {
		return res, nil, err
	}
	for r := 0; r < o.rounds; r++ {
		for i := range cs {
			idx := (r + i) % len(cs) // round 1: olla, sherpa, rp; round 2: sherpa, rp, olla; ...
			var prof *savedProfile
			if r == 0 && wantsProfile(o, sc.key) {
				prof = &savedProfile{label: fmt.Sprintf("(%s) %s", sc.key, cs[idx].name),
					path: filepath.Join(o.out, fmt.Sprintf("cpu-%s-%s.pprof", sc.key, cs[idx].name))}
			}
			st, err := runOne(ctx, o, sc, r, sup, caddyBin, cs[idx], sims, prof, progress)
			if prof != nil {
				profs = append(profs, *prof)
			}
			if err != nil {
				return res, profs, fmt.Errorf("round %d, %s: %w", r+1, cs[idx].name, err)
			}
			res.runs[idx] = append(res.runs[idx], st)
		}
	}
	return res, profs, nil
}

// runOne starts a fresh Caddy for c, drives the load at it, reads its peak
// RSS and stops it. When prof is set, a CPU profile is fetched from its
// admin endpoint during the measured window.
func runOne(ctx context.Context, o options, sc scenario, round int, sup *supervisor, caddyBin string,
	c contender, sims *simSet, prof *savedProfile, progress io.Writer) (runStats, error) {
	logName := fmt.Sprintf("%s-r%d-%s", sc.key, round+1, c.name)
	p, err := startContender(ctx, sup, caddyBin, c, logName)
	if err != nil {
		return runStats{}, err
	}
	defer p.stop(3 * time.Second)
	if err := sims.resetStats(ctx); err != nil {
		return runStats{}, err
	}

	w := newWindow(time.Now(), o.warmup, o.duration)
	profDone := make(chan struct{})
	if prof != nil {
		secs := min(5, max(1, int(o.duration/time.Second)-1))
		at := w.measureFrom.Add((o.duration - time.Duration(secs)*time.Second) / 2)
		go func() {
			defer close(profDone)
			prof.err = fetchProfile(ctx, c.adminURL(), at, secs, prof.path)
		}()
	} else {
		close(profDone)
	}

	cpuDone := make(chan cpuUse, 1)
	go func() { cpuDone <- measureCPU(ctx, w, p.pid(), sims.proc.pid()) }()

	out := drive(ctx, loadSpec{url: c.chatURL(), body: requestBody(sc.stream), clients: sc.clients}, w)
	<-profDone
	cpu := <-cpuDone
	if ctx.Err() != nil {
		return runStats{}, ctx.Err()
	}
	if p.exited() {
		return runStats{}, fmt.Errorf("%w (%v); log %s:\n%s", errProcessGone, p.err, p.log, p.logTail(15))
	}
	st := summarizeRun(out, o.duration, cpu)
	if st.rssKiB, err = peakRSS(p.pid()); err != nil {
		return runStats{}, err
	}
	split, _ := sims.inferenceCounts(ctx)
	printProgress(progress, sc, round, c, st, out, split, p.log)
	return st, nil
}

// measureCPU snapshots the CPU counters at the start and the end of w's
// measured window. It returns the zero cpuUse if ctx ends or /proc fails.
func measureCPU(ctx context.Context, w window, contender, sim int) cpuUse {
	if !sleepUntil(ctx, w.measureFrom) {
		return cpuUse{}
	}
	a, err := takeCPUSnapshot(contender, sim)
	if err != nil || !sleepUntil(ctx, w.stopAt) {
		return cpuUse{}
	}
	b, err := takeCPUSnapshot(contender, sim)
	if err != nil {
		return cpuUse{}
	}
	return cpuBetween(a, b)
}
