package main

// Scenario (r), reload under load: with a few hundred long streams in
// flight, the contender's configuration is reloaded through Caddy's admin
// API again and again (forced, alternating two configurations that differ
// only in the load balancer). Every stream must still complete, and the
// olla handler's view of its backends (health, models) must come through
// unchanged. It is a correctness check, not a throughput measurement: one
// run per contender, whatever -rounds says.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// The shape of scenario (r) beyond what its scenario entry says (streams,
// pacing): how many reloads, how far apart, and how long to wait for the
// streams to be in flight.
const (
	reloadCount    = 20
	reloadEvery    = 100 * time.Millisecond // from the start of one reload to the start of the next
	reloadRamp     = time.Second            // the streams start spread over this
	rpInFlightWait = 1200 * time.Millisecond
	inFlightLimit  = 5 * time.Second  // give up waiting for every stream to be counted in flight
	settleLimit    = 5 * time.Second  // give up waiting for every endpoint to be healthy before the load
	reloadTimeout  = 10 * time.Second // one POST /load
	streamLimit    = 30 * time.Second // a stream still open this long after the load began is cancelled (failed)
)

// reloadStats is what one contender's run of scenario (r) came to.
type reloadStats struct {
	streams   int
	completed int64
	failed    int64 // transport error or non-200
	truncated int64 // 200 without the terminator
	samples   []string

	reloads      int // POST /load attempts
	reloadErrors int // transport errors and non-200 answers
	reloadSample string
	reloadP50    time.Duration
	reloadMax    time.Duration

	inFlight        int64 // streams the contender counted in flight at the first reload; -1 when it cannot tell
	endedBeforeLast int   // streams that ended before the last reload began (they did not see every reload)

	health       bool   // the contender reports endpoint health (olla, sherpa)
	healthSame   bool   // status and model_count of every endpoint unchanged
	healthDetail string // what changed, or why it could not be compared
	healthBefore string // "sim-a healthy/1, sim-b healthy/1"

	elapsed time.Duration // load start to the last stream's end
}

// passed reports whether the run met the targets: every stream complete,
// every reload accepted and (where the contender reports it) the health
// state unchanged.
func (s *reloadStats) passed() bool {
	return s.completed == int64(s.streams) && s.failed == 0 && s.truncated == 0 &&
		s.reloadErrors == 0 && s.reloads == reloadCount && (!s.health || s.healthSame)
}

// reloadContenders is the order scenario (r) runs the contenders in.
func reloadContenders() []int { return []int{olla, sherpa, reverseProxy} }

// runReloadScenario runs scenario (r) once for every contender.
func runReloadScenario(ctx context.Context, sc scenario, sup *supervisor, caddyBin string,
	cs []contender, sims *simSet, progress io.Writer) (scenarioResult, error) {
	res := scenarioResult{sc: sc}
	for _, idx := range reloadContenders() {
		st, err := runReloadOne(ctx, sc, sup, caddyBin, cs[idx], sims, progress)
		if err != nil {
			return res, fmt.Errorf("%s: %w", cs[idx].name, err)
		}
		res.reload[idx] = st
	}
	return res, nil
}

// runReloadOne starts a fresh Caddy for c, starts sc.clients streams, reloads
// c reloadCount times while they run, waits for them and stops c.
func runReloadOne(ctx context.Context, sc scenario, sup *supervisor, caddyBin string,
	c contender, sims *simSet, progress io.Writer) (*reloadStats, error) {
	configs := make([][]byte, 2)
	for i, path := range []string{c.config, c.altConfig} {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		configs[i] = b
	}
	// startContender's readiness probe is a non-streamed chat request with
	// a 2 s timeout: answers are instant until the streams begin.
	if err := sims.setTiming(ctx, 0, 0, 5); err != nil {
		return nil, err
	}
	p, err := startContender(ctx, sup, caddyBin, c, "r-"+c.name)
	if err != nil {
		return nil, err
	}
	defer p.stop(3 * time.Second)
	if err := sims.resetStats(ctx); err != nil {
		return nil, err
	}

	st := &reloadStats{streams: sc.clients, inFlight: -1, health: c.engine != ""}
	sc0 := &statusClient{base: "http://" + addrOf(c.port)}
	defer sc0.close()
	if st.health {
		// Health comparisons start from a settled state: every endpoint
		// probed healthy and its models listed (startContender needed only
		// one routable backend).
		if err := sc0.waitSettled(ctx, settleLimit); err != nil {
			fmt.Fprintf(progress, "  (r) %s: endpoints not all healthy before the load: %v\n", c.name, err)
		}
	}

	if err := sims.setTiming(ctx, sc.ttft, sc.tps, sc.tokens); err != nil {
		return nil, err
	}
	start := time.Now()
	streamsDone := make(chan []streamEnd, 1)
	go func() {
		streamsDone <- burst(ctx, loadSpec{url: c.chatURL(), body: requestBody(true), clients: sc.clients},
			start, reloadRamp, start.Add(streamLimit))
	}()

	// Wait until every stream is in flight; the olla handler counts them
	// per endpoint, plain reverse_proxy does not say, so it gets a fixed
	// wait past the ramp.
	var before []endpointHealth
	if st.health {
		deadline := start.Add(inFlightLimit)
		for {
			eps, err := sc0.endpoints(ctx)
			if err == nil {
				before = eps
				st.inFlight = activeSum(eps)
				if st.inFlight >= int64(sc.clients) {
					break
				}
			}
			if time.Now().After(deadline) || !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
				break
			}
		}
		if before == nil {
			st.healthDetail = "no /internal/status/endpoints answer before the reloads"
		}
	} else {
		sleepUntil(ctx, start.Add(rpInFlightWait))
	}

	// The reloads: forced (Cache-Control: must-revalidate), alternating the
	// alternative configuration and the original one, so the last leaves
	// the original in place.
	var took []time.Duration
	rc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: reloadTimeout}
	first := time.Now()
	var lastAt time.Time
	for i := 0; i < reloadCount && ctx.Err() == nil; i++ {
		if !sleepUntil(ctx, first.Add(time.Duration(i)*reloadEvery)) {
			break
		}
		lastAt = time.Now()
		err := postLoad(ctx, rc, c.adminURL(), configs[(i+1)%2])
		took = append(took, time.Since(lastAt))
		st.reloads++
		if err != nil {
			st.reloadErrors++
			if st.reloadSample == "" {
				st.reloadSample = fmt.Sprintf("reload %d: %v", i+1, err)
			}
		}
	}
	slices.Sort(took)
	st.reloadP50, st.reloadMax = percentile(took, 0.5), percentile(took, 1)

	ends := <-streamsDone
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	seen := map[string]bool{}
	var last time.Time
	for _, e := range ends {
		switch e.kind {
		case resultOK:
			st.completed++
		case resultError:
			st.failed++
		case resultTruncated:
			st.truncated++
		}
		if e.detail != "" && !seen[e.detail] && len(st.samples) < maxErrorSamples {
			seen[e.detail] = true
			st.samples = append(st.samples, e.detail)
		}
		if !lastAt.IsZero() && e.at.Before(lastAt) {
			st.endedBeforeLast++
		}
		if e.at.After(last) {
			last = e.at
		}
	}
	st.elapsed = last.Sub(start)

	if p.exited() {
		return nil, fmt.Errorf("%w (%v); log %s:\n%s", errProcessGone, p.err, p.log, p.logTail(15))
	}
	if st.health && before != nil {
		after, err := sc0.endpoints(ctx)
		if err != nil {
			st.healthDetail = "after the run: " + err.Error()
		} else {
			st.healthSame, st.healthDetail = compareHealth(before, after)
		}
		st.healthBefore = describeHealth(before)
	}
	printReloadProgress(progress, sc, c, st, p.log)
	return st, nil
}

// postLoad replaces the configuration of the Caddy whose admin endpoint is
// adminURL, forcing the reload even when the configuration is unchanged.
func postLoad(ctx context.Context, hc *http.Client, adminURL string, caddyfile []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, adminURL+"/load", strings.NewReader(string(caddyfile)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 300))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", res.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// streamEnd is how one stream of a burst ended, and when.
type streamEnd struct {
	kind   resultKind
	at     time.Time
	detail string // "error: ..." or "truncated: ..."; empty when complete
}

// burst sends one request per client, the clients starting spread over
// ramp from start, reads every answer to its end and reports how each
// ended. Requests still open at limit are cancelled (and fail).
func burst(ctx context.Context, spec loadSpec, start time.Time, ramp time.Duration, limit time.Time) []streamEnd {
	ctx, cancel := context.WithDeadline(ctx, limit)
	defer cancel()
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: spec.clients + 10,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	header := http.Header{"Content-Type": {"application/json"}}

	ends := make([]streamEnd, spec.clients)
	var wg sync.WaitGroup
	for i := range ends {
		begin := start.Add(time.Duration(i) * ramp / time.Duration(spec.clients))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sleepUntil(ctx, begin) {
				ends[i] = streamEnd{kind: resultError, at: time.Now(), detail: "error: not started: " + context.Cause(ctx).Error()}
				return
			}
			c := &client{hc: hc, spec: spec, header: header, buf: make([]byte, 16<<10)}
			r := c.once(ctx, time.Now())
			e := streamEnd{kind: r.kind, at: time.Now()}
			switch r.kind {
			case resultError:
				e.detail = "error: " + r.detail
			case resultTruncated:
				e.detail = "truncated: " + r.detail
			}
			ends[i] = e
		}()
	}
	wg.Wait()
	return ends
}

// endpointHealth is the part of an /internal/status/endpoints entry the
// scenario looks at.
type endpointHealth struct {
	Name              string `json:"name"`
	Status            string `json:"status"`
	Routable          bool   `json:"routable"`
	ModelCount        int    `json:"model_count"`
	ActiveConnections int64  `json:"active_connections"`
	FailureCount      int64  `json:"failure_count"`
	BreakerOpens      *int64 `json:"circuit_breaker_opens"` // nil from a build that does not count them
	// Signals carries what the proxy learned per model (the routing
	// fleets report its load times); nil from a build that shows none
	Signals *struct {
		Learned []struct {
			Model  string  `json:"model"`
			LoadMs float64 `json:"load_ms"`
		} `json:"learned"`
	} `json:"signals"`
}

// statusClient reads a contender's /internal/status/endpoints.
type statusClient struct {
	base string
	hc   *http.Client
}

// endpoints fetches the contender's endpoint list.
func (s *statusClient) endpoints(ctx context.Context) ([]endpointHealth, error) {
	if s.hc == nil {
		s.hc = &http.Client{Transport: &http.Transport{}, Timeout: 3 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/internal/status/endpoints", nil)
	if err != nil {
		return nil, err
	}
	res, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /internal/status/endpoints: status %d: %s", res.StatusCode, clip(strings.TrimSpace(string(b)), 200))
	}
	var body struct {
		Endpoints []endpointHealth `json:"endpoints"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("GET /internal/status/endpoints: %w", err)
	}
	if len(body.Endpoints) == 0 {
		return nil, fmt.Errorf("GET /internal/status/endpoints: no endpoints listed")
	}
	return body.Endpoints, nil
}

// waitSettled waits until every endpoint is healthy with its models listed.
func (s *statusClient) waitSettled(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		eps, err := s.endpoints(ctx)
		if err == nil {
			settled := true
			for _, e := range eps {
				settled = settled && e.Status == "healthy" && e.ModelCount > 0
			}
			if settled {
				return nil
			}
			err = fmt.Errorf("still %s", describeHealth(eps))
		}
		if time.Now().After(deadline) || !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return err
		}
	}
}

// close releases the client's idle connections.
func (s *statusClient) close() {
	if s.hc != nil {
		s.hc.CloseIdleConnections()
	}
}

// activeSum adds up the endpoints' in-flight requests.
func activeSum(eps []endpointHealth) int64 {
	var n int64
	for _, e := range eps {
		n += e.ActiveConnections
	}
	return n
}

// compareHealth reports whether every endpoint has the same status and
// model count in after as in before (and no endpoint came or went), and
// what differs when not.
func compareHealth(before, after []endpointHealth) (bool, string) {
	key := func(eps []endpointHealth) map[string]string {
		m := make(map[string]string, len(eps))
		for _, e := range eps {
			m[e.Name] = fmt.Sprintf("%s/%d", e.Status, e.ModelCount)
		}
		return m
	}
	b, a := key(before), key(after)
	names := make([]string, 0, len(b)+len(a))
	for n := range b {
		names = append(names, n)
	}
	for n := range a {
		if _, ok := b[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var diffs []string
	for _, n := range names {
		x, inB := b[n]
		y, inA := a[n]
		switch {
		case !inA:
			diffs = append(diffs, n+" "+x+" → gone")
		case !inB:
			diffs = append(diffs, n+" new → "+y)
		case x != y:
			diffs = append(diffs, n+" "+x+" → "+y)
		}
	}
	return len(diffs) == 0, strings.Join(diffs, ", ")
}

// describeHealth lists the endpoints as "name status/models".
func describeHealth(eps []endpointHealth) string {
	parts := make([]string, len(eps))
	for i, e := range eps {
		parts[i] = fmt.Sprintf("%s %s/%d", e.Name, e.Status, e.ModelCount)
	}
	return strings.Join(parts, ", ")
}
