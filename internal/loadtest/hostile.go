package main

// Scenario (h), hostile clients on loaded backends: 1,000 paced streams
// while both simulators answer their health route later than the
// contenders' check_timeout (slow_health), and 300 more clients keep
// opening streams and resetting the connection (RST) after a few lines.
// The backends serve every request fine throughout, so every failed or cut
// paced stream, every refused hostile request, every breaker that opened
// and every endpoint taken offline is the contender's doing. One run per
// contender, whatever -rounds says.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The shape of scenario (h) beyond its scenario entry (paced clients and
// their pacing).
const (
	hostileClients  = 300                     // clients that hang up mid-stream, again and again
	hostileLines    = 3                       // NDJSON lines a hostile client reads before its reset
	hostilePause    = time.Second             // a hostile client's pause between hang-ups
	hostileWindow   = 20 * time.Second        // load time; long enough for several probes to time out in a row
	healthDelay     = 1500 * time.Millisecond // the sims' health answers come this late...
	hostileTimeout  = 500 * time.Millisecond  // ...after the contenders' check_timeout
	hostileInterval = time.Second             // the contenders' check_interval
	statusPollEvery = 100 * time.Millisecond
)

// hostileStats is what one contender's run of scenario (h) came to.
type hostileStats struct {
	load runStats    // the paced clients: TTFB, errors, truncated, peak RSS
	out  loadOutcome // their raw outcome (samples)
	hang hangupOutcome

	health bool // the contender reports endpoint health (olla, sherpa)
	// From /internal/status/endpoints, as differences over the run; -1
	// where the contender does not say.
	breakerOpens   int64
	backendFails   int64 // failure_count: failures counted against backends
	offlineEntries int   // times an endpoint was seen leave the routable set
	offlineFor     time.Duration
	statusesSeen   string // "sim-a healthy, offline; sim-b healthy"
	pollErrors     int
	downLogged     int // "endpoint is down" lines in the contender's log

	probes int64 // health probes the sims received during the run (each answered after healthDelay)
}

// failedServable is the number of requests a backend could have served
// that failed: every paced failure and every hostile request refused or
// failed before its hang-up (the backends served everything in time).
func (h *hostileStats) failedServable() int64 {
	return h.load.errors + h.hang.refused + h.hang.failed
}

// passed reports the targets: nothing servable failed, nothing cut, no
// breaker opened (known to be none: a contender that does not count its
// openings cannot pass), no endpoint taken offline.
func (h *hostileStats) passed() bool {
	return h.failedServable() == 0 && h.load.truncated == 0 &&
		(!h.health || h.breakerOpens == 0 && h.offlineEntries == 0 && h.downLogged == 0)
}

// hostileConfig renders c's configuration for scenario (h): as caddyfile,
// with health checks every hostileInterval that give up after
// hostileTimeout.
func (c contender) hostileConfig(backends []string) string {
	return c.renderChecks(backends, false, hostileInterval, hostileTimeout)
}

// runHostileScenario runs scenario (h) once for every contender.
func runHostileScenario(ctx context.Context, sc scenario, sup *supervisor, caddyBin string,
	cs []contender, sims *simSet, progress io.Writer) (scenarioResult, error) {
	res := scenarioResult{sc: sc}
	for _, idx := range reloadContenders() {
		st, err := runHostileOne(ctx, sc, sup, caddyBin, cs[idx], sims, progress)
		if err != nil {
			return res, fmt.Errorf("%s: %w", cs[idx].name, err)
		}
		res.hostile[idx] = st
	}
	return res, nil
}

// runHostileOne starts a fresh Caddy for c with the (h) configuration, lets
// its endpoints settle, slows the sims' health route, drives the paced and
// the hostile clients for hostileWindow, and reads what c made of it.
func runHostileOne(ctx context.Context, sc scenario, sup *supervisor, caddyBin string,
	c contender, sims *simSet, progress io.Writer) (*hostileStats, error) {
	if err := sims.setFault(ctx, ""); err != nil {
		return nil, err
	}
	if err := sims.setTiming(ctx, 0, 0, 5); err != nil {
		return nil, err
	}
	hc := c
	hc.config = c.hostilePath
	p, err := startContender(ctx, sup, caddyBin, hc, "h-"+c.name)
	if err != nil {
		return nil, err
	}
	defer p.stop(3 * time.Second)

	st := &hostileStats{health: c.engine != "", breakerOpens: -1, backendFails: -1}
	status := &statusClient{base: "http://" + addrOf(c.port)}
	defer status.close()
	var first []endpointHealth
	if st.health {
		if err := status.waitSettled(ctx, settleLimit); err != nil {
			fmt.Fprintf(progress, "  (h) %s: endpoints not all healthy before the load: %v\n", c.name, err)
		}
		if first, err = status.endpoints(ctx); err != nil {
			return nil, fmt.Errorf("reading its endpoints before the load: %w", err)
		}
	}
	downBefore := countLogLines(p.log, `"msg":"endpoint is down"`)

	if err := sims.setTiming(ctx, sc.ttft, sc.tps, sc.tokens); err != nil {
		return nil, err
	}
	if err := sims.setFault(ctx, fmt.Sprintf(`{"mode":"slow_health","delay":%q}`, healthDelay.String())); err != nil {
		return nil, err
	}
	defer func() { _ = sims.setFault(context.WithoutCancel(ctx), "") }()
	if err := sims.resetStats(ctx); err != nil {
		return nil, err
	}

	w := newWindow(time.Now(), 0, hostileWindow) // everything counts: no warm-up
	pollCtx, stopPoll := context.WithCancel(ctx)
	polled := make(chan healthWatch, 1)
	go func() {
		var hw healthWatch
		if st.health {
			hw = watchHealth(pollCtx, status, first)
		}
		polled <- hw
	}()
	hangDone := make(chan hangupOutcome, 1)
	go func() {
		hangDone <- hangUps(ctx, hangupSpec{addr: addrOf(c.port), path: "/olla/ollama" + chatPath, body: requestBody(true),
			clients: hostileClients, lines: hostileLines, pause: hostilePause}, w.start.Add(time.Second), w.stopAt)
	}()
	st.out = drive(ctx, loadSpec{url: c.chatURL(), body: requestBody(true), clients: sc.clients}, w)
	st.hang = <-hangDone
	stopPoll()
	hw := <-polled
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if p.exited() {
		return nil, fmt.Errorf("%w (%v); log %s:\n%s", errProcessGone, p.err, p.log, p.logTail(15))
	}
	st.load = summarizeRun(st.out, hostileWindow, cpuUse{})
	if st.load.rssKiB, err = peakRSS(p.pid()); err != nil {
		return nil, err
	}
	if n, err := sims.healthProbes(ctx); err == nil {
		st.probes = n
	}
	if st.health {
		last, err := status.endpoints(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading its endpoints after the load: %w", err)
		}
		st.breakerOpens, st.backendFails = statusDeltas(first, last)
		st.offlineEntries, st.offlineFor, st.statusesSeen, st.pollErrors = hw.entries, hw.offlineFor, hw.describe(), hw.errors
		st.downLogged = countLogLines(p.log, `"msg":"endpoint is down"`) - downBefore
	}
	printHostileProgress(progress, sc, c, st, p.log)
	return st, nil
}

// statusDeltas are the breaker openings and the failures counted against
// backends between two reads of the endpoints; opens is -1 when the
// contender does not report it.
func statusDeltas(first, last []endpointHealth) (opens, fails int64) {
	at := func(eps []endpointHealth) map[string]endpointHealth {
		m := map[string]endpointHealth{}
		for _, e := range eps {
			m[e.Name] = e
		}
		return m
	}
	f := at(first)
	for _, e := range last {
		b := f[e.Name]
		if e.BreakerOpens == nil {
			opens = -1
		} else if opens >= 0 {
			opens += *e.BreakerOpens
			if b.BreakerOpens != nil {
				opens -= *b.BreakerOpens
			}
		}
		fails += e.FailureCount - b.FailureCount
	}
	return opens, fails
}

// healthWatch is what polling the endpoints during a run saw.
type healthWatch struct {
	entries    int           // routable → not routable transitions, over all endpoints
	offlineFor time.Duration // time endpoints spent not routable, summed (to poll resolution)
	seen       map[string][]string
	order      []string
	errors     int
}

// watchHealth polls the endpoints every statusPollEvery until ctx ends,
// starting from first.
func watchHealth(ctx context.Context, s *statusClient, first []endpointHealth) healthWatch {
	hw := healthWatch{seen: map[string][]string{}}
	routable := map[string]bool{}
	since := map[string]time.Time{}
	note := func(e endpointHealth) {
		if _, ok := hw.seen[e.Name]; !ok {
			hw.order = append(hw.order, e.Name)
		}
		if !slices.Contains(hw.seen[e.Name], e.Status) {
			hw.seen[e.Name] = append(hw.seen[e.Name], e.Status)
		}
	}
	for _, e := range first {
		routable[e.Name] = e.Routable
		note(e)
	}
	last := time.Now()
	for sleepUntil(ctx, time.Now().Add(statusPollEvery)) {
		eps, err := s.endpoints(ctx)
		if err != nil {
			if ctx.Err() == nil {
				hw.errors++
			}
			continue
		}
		now := time.Now()
		for _, e := range eps {
			note(e)
			was, known := routable[e.Name]
			if !e.Routable {
				if was || !known {
					hw.entries++
					since[e.Name] = last // it left some time after the previous poll; count from there
				}
			} else if !was && known {
				hw.offlineFor += now.Sub(since[e.Name])
			}
			routable[e.Name] = e.Routable
		}
		last = now
	}
	for name, r := range routable {
		if !r && !since[name].IsZero() {
			hw.offlineFor += last.Sub(since[name])
		}
	}
	return hw
}

// describe lists the statuses each endpoint was seen in.
func (hw healthWatch) describe() string {
	parts := make([]string, 0, len(hw.order))
	for _, n := range hw.order {
		parts = append(parts, n+" "+strings.Join(hw.seen[n], "/"))
	}
	return strings.Join(parts, ", ")
}

// countLogLines counts the lines of a log that contain s.
func countLogLines(path, s string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte(s))
}

// hangupSpec is what the hostile clients send and how they leave.
type hangupSpec struct {
	addr, path string
	body       []byte
	clients    int
	lines      int           // NDJSON lines read before the reset
	pause      time.Duration // between one client's hang-ups
}

// hangupOutcome counts what the hostile clients' requests came to.
type hangupOutcome struct {
	hungUp  int64 // got a 200 and spec.lines lines, then reset the connection
	refused int64 // answered with another status
	failed  int64 // no answer, or the stream ended or broke before spec.lines lines
	samples []string
}

// hangUps runs spec's clients, starting spread over a second from start,
// until stopAt: each opens a connection, sends a streamed chat request,
// reads spec.lines lines and resets the connection (SO_LINGER 0, so the
// contender sees an RST, not a polite close), pauses and does it again.
func hangUps(ctx context.Context, spec hangupSpec, start, stopAt time.Time) hangupOutcome {
	var out hangupOutcome
	var mu sync.Mutex
	var hung, refused, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range spec.clients {
		begin := start.Add(time.Duration(i) * time.Second / time.Duration(spec.clients))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleepUntil(ctx, begin) {
				return
			}
			for time.Now().Before(stopAt) && ctx.Err() == nil {
				kind, detail := hangUpOnce(ctx, spec)
				switch kind {
				case hangupDone:
					hung.Add(1)
				case hangupRefused:
					refused.Add(1)
				case hangupFailed:
					if ctx.Err() != nil {
						return // the run is over, not the contender's doing
					}
					failed.Add(1)
				}
				if detail != "" {
					mu.Lock()
					if len(out.samples) < maxErrorSamples && !slices.Contains(out.samples, detail) {
						out.samples = append(out.samples, detail)
					}
					mu.Unlock()
				}
				if !sleepUntil(ctx, time.Now().Add(spec.pause)) {
					return
				}
			}
		}()
	}
	wg.Wait()
	out.hungUp, out.refused, out.failed = hung.Load(), refused.Load(), failed.Load()
	return out
}

// hangupKind classifies one hostile request.
type hangupKind uint8

const (
	hangupDone hangupKind = iota
	hangupRefused
	hangupFailed
)

// hangUpOnce is one hostile request; detail describes anything but a clean
// hang-up.
func hangUpOnce(ctx context.Context, spec hangupSpec) (hangupKind, string) {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", spec.addr)
	if err != nil {
		return hangupFailed, "hostile: dial: " + err.Error()
	}
	tcp := conn.(*net.TCPConn)
	defer func() {
		_ = tcp.SetLinger(0) // close with an RST
		_ = tcp.Close()
	}()
	stop := context.AfterFunc(ctx, func() { _ = tcp.SetDeadline(time.Now()) })
	defer stop()
	_ = tcp.SetDeadline(time.Now().Add(30 * time.Second))

	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		spec.path, spec.addr, len(spec.body))
	if _, err := tcp.Write(append([]byte(req), spec.body...)); err != nil {
		return hangupFailed, "hostile: sending: " + err.Error()
	}
	br := bufio.NewReader(tcp)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return hangupFailed, "hostile: reading the answer: " + err.Error()
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 200))
		return hangupRefused, fmt.Sprintf("hostile: status %d: %s", res.StatusCode, bytes.TrimSpace(b))
	}
	body := bufio.NewReader(res.Body)
	for n := 0; n < spec.lines; n++ {
		line, err := body.ReadSlice('\n')
		if bytes.Contains(line, []byte(ndjsonDone)) {
			return hangupFailed, fmt.Sprintf("hostile: the stream ended after %d lines, before the hang-up", n+1)
		}
		if err != nil {
			return hangupFailed, fmt.Sprintf("hostile: stream broke after %d lines: %v", n, err)
		}
	}
	return hangupDone, ""
}

// setFault installs a fault on every backend (see POST /_sim/fault); ""
// clears it.
func (s *simSet) setFault(ctx context.Context, fault string) error {
	for _, u := range s.urls {
		if err := controlCall(ctx, http.MethodPost, u+"/_sim/fault", fault, nil); err != nil {
			return err
		}
	}
	return nil
}

// healthProbes is how many health probes ("/" of an Ollama backend) the
// backends received since the last reset.
func (s *simSet) healthProbes(ctx context.Context) (int64, error) {
	var n int64
	for _, u := range s.urls {
		var st struct {
			ByPath map[string]int64 `json:"by_path"`
		}
		if err := controlCall(ctx, http.MethodGet, u+"/_sim/stats", "", &st); err != nil {
			return 0, err
		}
		n += st.ByPath["GET /"] + st.ByPath["HEAD /"]
	}
	return n, nil
}

// printHostileProgress writes one line about a finished run of scenario (h).
func printHostileProgress(w io.Writer, sc scenario, c contender, st *hostileStats, logPath string) {
	fmt.Fprintf(w, "  (%s) %-13s paced: %d ok, %d failed, %d truncated, TTFB p50/p99 %s/%s ms; hostile: %d hang-ups, %d refused, %d failed; "+
		"breakers opened %s, failures counted against backends %s, offline %s; %d health probes; peak RSS %s MiB\n",
		sc.key, c.name, st.out.ok, st.load.errors, st.load.truncated,
		formatValue(metricTTFBP50, st.load.value(metricTTFBP50)), formatValue(metricTTFBP99, st.load.value(metricTTFBP99)),
		st.hang.hungUp, st.hang.refused, st.hang.failed, countCell(st.health, st.breakerOpens), countCell(st.health, st.backendFails),
		offlineCell(st), st.probes, formatValue(metricRSS, st.load.value(metricRSS)))
	for _, s := range append(slices.Clone(st.out.samples), st.hang.samples...) {
		fmt.Fprintf(w, "      e.g. %s\n", s)
	}
	if st.health {
		fmt.Fprintf(w, "      statuses seen: %s\n", st.statusesSeen)
		if st.pollErrors > 0 {
			fmt.Fprintf(w, "      %d status polls failed\n", st.pollErrors)
		}
	}
	if n, first := logErrorLines(logPath); n > 0 {
		fmt.Fprintf(w, "      %d error-level lines in %s; first: %s\n", n, logPath, clip(first, 400))
	}
}

// countCell prints a count the contender may not report.
func countCell(has bool, n int64) string {
	if !has || n < 0 {
		return "–"
	}
	return fmt.Sprint(n)
}

// offlineCell is "N× (log: M), X.Y s" or "–": how often an endpoint was
// seen to leave the routable set (and how often the contender logged one
// going down), and the seconds endpoints spent out, summed over them.
func offlineCell(st *hostileStats) string {
	if !st.health {
		return "–"
	}
	return fmt.Sprintf("%d× (log: %d), %.1f s", st.offlineEntries, st.downLogged, st.offlineFor.Seconds())
}

// printHostileTable writes the table of scenario (h) and its PASS/MISS line.
func printHostileTable(w io.Writer, res scenarioResult) {
	fmt.Fprintf(w, "(%s) %s: one run of %s per contender\n", res.sc.key, res.sc.title, hostileWindow)
	names := contenderNames()
	header := []string{"metric"}
	for c := range numContenders {
		header = append(header, names[c])
		if c != reverseProxy {
			header = append(header, "×rp")
		}
	}
	rp := res.hostile[reverseProxy]
	type rowDef struct {
		label string
		cell  func(st *hostileStats) string
		m     metric // for the ×rp column; -1: none
	}
	defs := []rowDef{
		{"failed, a backend could serve", func(st *hostileStats) string { return fmt.Sprint(st.failedServable()) }, -1},
		{"  paced streams failed", func(st *hostileStats) string { return fmt.Sprint(st.load.errors) }, -1},
		{"  hostile refused/failed", func(st *hostileStats) string { return fmt.Sprintf("%d/%d", st.hang.refused, st.hang.failed) }, -1},
		{"truncated streams", func(st *hostileStats) string { return fmt.Sprint(st.load.truncated) }, -1},
		{"paced streams completed", func(st *hostileStats) string { return fmt.Sprint(st.out.ok) }, metricRPS},
		{"hang-ups (RST after 3 lines)", func(st *hostileStats) string { return fmt.Sprint(st.hang.hungUp) }, -1},
		{"breakers opened", func(st *hostileStats) string { return countCell(st.health, st.breakerOpens) }, -1},
		{"failures held against backends", func(st *hostileStats) string { return countCell(st.health, st.backendFails) }, -1},
		{"went offline (log), s offline", offlineCell, -1},
		{"health probes (all late)", func(st *hostileStats) string { return fmt.Sprint(st.probes) }, -1},
		{"TTFB p50 (ms)", func(st *hostileStats) string { return formatValue(metricTTFBP50, st.load.value(metricTTFBP50)) }, metricTTFBP50},
		{"TTFB p99 (ms)", func(st *hostileStats) string { return formatValue(metricTTFBP99, st.load.value(metricTTFBP99)) }, metricTTFBP99},
		{"peak RSS (MiB)", func(st *hostileStats) string { return formatValue(metricRSS, st.load.value(metricRSS)) }, metricRSS},
	}
	rows := [][]string{header}
	for _, d := range defs {
		row := []string{d.label}
		for c := range numContenders {
			st := res.hostile[c]
			if st == nil {
				row = append(row, "–")
			} else {
				row = append(row, d.cell(st))
			}
			if c == reverseProxy {
				continue
			}
			if d.m < 0 || st == nil || rp == nil || rp.load.value(d.m) == 0 {
				row = append(row, "")
			} else {
				row = append(row, fmt.Sprintf("%.2f×", st.load.value(d.m)/rp.load.value(d.m)))
			}
		}
		rows = append(rows, row)
	}
	writeAligned(w, rows, "    ")
	for _, c := range []int{olla, sherpa} {
		if st := res.hostile[c]; st != nil && st.statusesSeen != "" {
			fmt.Fprintf(w, "    %s statuses seen: %s\n", names[c], st.statusesSeen)
		}
	}
	fmt.Fprintf(w, "    failed counts requests: a paced client whose request fails sends the next one 10 ms later; TTFB is of the requests that\n"+
		"    succeeded, so a contender that refuses most of them is measured under less load than reverse_proxy\n")
	fmt.Fprintf(w, "    (h) zero failed that a backend could serve, zero truncated, no breaker opened, no endpoint offline: %s\n",
		hostileVerdicts(res))
}

// hostileVerdicts is "olla PASS; sherpa MISS; reverse_proxy (reference) PASS".
func hostileVerdicts(res scenarioResult) string {
	var parts []string
	for _, c := range []int{olla, sherpa, reverseProxy} {
		st := res.hostile[c]
		if st == nil {
			continue
		}
		verdict := "MISS"
		if st.passed() {
			verdict = "PASS"
		}
		label := contenderNames()[c]
		if c == reverseProxy {
			label += " (reference)"
		}
		parts = append(parts, label+" "+verdict)
	}
	if len(parts) == 0 {
		return "no runs"
	}
	return strings.Join(parts, "; ")
}

// hostileTarget is the targets-line entry of scenario (h) for contender c.
func hostileTarget(results []scenarioResult, c int) string {
	label := fmt.Sprintf("(h) %s hostile clients", contenderNames()[c])
	for i := range results {
		st := results[i].hostile[c]
		if st == nil {
			continue
		}
		verdict := "MISS"
		if st.passed() {
			verdict = "PASS"
		}
		return fmt.Sprintf("%s: %s (%d failed, %d truncated, breakers opened %s, offline %s)", label, verdict,
			st.failedServable(), st.load.truncated, countCell(st.health, st.breakerOpens), offlineCell(st))
	}
	return label + ": n/a"
}
