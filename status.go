package olla

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/preload"
	"github.com/caddy-olla/olla/profiles"
)

// Version is reported by /version.
const Version = "0.1.0"

var processStart = time.Now()

// requestIDFor takes the client's X-Request-ID when it is sane (at most 128
// printable ASCII characters), else makes one.
func requestIDFor(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 128 {
		ok := true
		for i := 0; i < len(id); i++ {
			if id[i] < 0x21 || id[i] > 0x7e {
				ok = false
				break
			}
		}
		if ok {
			return id
		}
	}
	var b [16]byte
	const hexdigits = "0123456789abcdef"
	v := rand.Uint64()
	for i := range b {
		b[i] = hexdigits[v&0xf]
		v >>= 4
	}
	return "olla-" + string(b[:])
}

// serveInternal answers /internal/* and /version.
func (rq *request) serveInternal(path string) error {
	h := rq.h
	if path == "/internal/ui" || strings.HasPrefix(path, "/internal/ui/") {
		return rq.serveDashboard(path)
	}
	switch path {
	case "/internal/health":
		return rq.writeJSON(http.StatusOK, map[string]string{"status": "healthy"})
	case "/internal/ready":
		now := time.Now()
		up := 0
		for _, st := range h.states {
			if st.Routable(now) {
				up++
			}
		}
		body := map[string]any{"ready": up > 0, "endpoints_routable": up, "endpoints_total": len(h.states)}
		if up == 0 {
			rq.w.Header().Set("Retry-After", "5")
			return rq.writeJSON(http.StatusServiceUnavailable, body)
		}
		return rq.writeJSON(http.StatusOK, body)
	case "/internal/status":
		return rq.writeCached(h.status())
	case "/internal/status/endpoints":
		return rq.writeCached(h.endpointsStatus())
	case "/internal/status/models":
		return rq.serveModelsStatus()
	case "/internal/metrics":
		promhttp.HandlerFor(h.app.registry, promhttp.HandlerOpts{}).ServeHTTP(rq.w, rq.r)
		return nil
	case "/internal/stats/models":
		return rq.serveModelStats()
	case "/internal/stats/sticky":
		return rq.serveStickyStats()
	case "/internal/stats/usage":
		return rq.serveUsageStats()
	case "/internal/stats/prefix":
		return rq.servePrefixStats()
	case "/internal/stats/translators":
		return rq.serveTranslatorStats()
	case "/internal/process":
		return rq.writeJSON(http.StatusOK, processStats(h.app.bodies))
	case "/version":
		return rq.writeJSON(http.StatusOK, versionInfo())
	}
	return rq.fail(apiError{status: http.StatusNotFound, code: "not_found",
		message: fmt.Sprintf("no such route %s; see /internal/status, /internal/health, /internal/ready", path)})
}

// writeJSON answers with v as JSON.
func (rq *request) writeJSON(status int, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf = append(buf, '\n')
	rq.rec.status = status
	h := rq.w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(buf)))
	rq.w.WriteHeader(status)
	if rq.r.Method != http.MethodHead {
		_, _ = rq.w.Write(buf)
	}
	return nil
}

// cached is a status body with the part its ETag covers: stable fields
// only, so the tag changes when the state does, not when a clock ticks.
type cached struct {
	body   any
	stable any
}

// writeCached answers a status route with a weak ETag (304 on a match) and
// gzip when the client takes it.
func (rq *request) writeCached(c cached) error {
	stable, _ := json.Marshal(c.stable)
	sum := fnv.New64a()
	sum.Write(stable)
	if rq.notModified(`W/"` + strconv.FormatUint(sum.Sum64(), 36) + `"`) {
		return nil
	}
	buf, err := json.Marshal(c.body)
	if err != nil {
		return err
	}
	buf = append(buf, '\n')
	return rq.writeTagged(len(buf), func(w io.Writer) error { _, err := w.Write(buf); return err },
		func() []byte { return gzipBytes(buf) })
}

// notModified sets an answer's validators and, when the client's copy is
// current, answers 304.
func (rq *request) notModified(etag string) bool {
	h := rq.w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "private, no-cache")
	h.Set("Vary", "Accept-Encoding")
	if inm := rq.r.Header.Get("If-None-Match"); inm != "" && len(inm) <= 1024 && etagMatches(inm, etag) {
		rq.rec.status = http.StatusNotModified
		rq.w.WriteHeader(http.StatusNotModified)
		return true
	}
	return false
}

// writeTagged answers 200 with a JSON body of size bytes that write writes;
// gz gives it gzipped (nil: not worth it), used when the client takes gzip.
func (rq *request) writeTagged(size int, write func(io.Writer) error, gz func() []byte) error {
	h := rq.w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	if size >= minGzipSize && acceptsGzip(rq.r.Header.Get("Accept-Encoding")) {
		if z := gz(); z != nil {
			size, write = len(z), func(w io.Writer) error { _, err := w.Write(z); return err }
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("Content-Length", strconv.Itoa(size))
	rq.rec.status = http.StatusOK
	rq.w.WriteHeader(http.StatusOK)
	if rq.r.Method != http.MethodHead {
		_ = write(rq.w) // a client that left is no error of ours
	}
	return nil
}

func gzipBytes(buf []byte) []byte {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(buf)
	_ = zw.Close()
	return z.Bytes()
}

func etagMatches(header, etag string) bool {
	weak := strings.TrimPrefix(etag, "W/")
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == weak {
			return true
		}
	}
	return false
}

func acceptsGzip(ae string) bool {
	for _, part := range strings.Split(ae, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(name), "gzip") {
			return !strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") || strings.Contains(params, "q=0.")
		}
	}
	return false
}

// endpointStatus is an entry of /internal/status/endpoints.
type endpointStatus struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	Type              string `json:"type"`
	Status            string `json:"status"`
	Reason            string `json:"reason"`
	Routable          bool   `json:"routable"`
	Drained           bool   `json:"drained,omitempty"`
	MaxConcurrency    int    `json:"max_concurrency,omitempty"` // 0: no cap; active_connections counts against it
	Priority          int    `json:"priority"`
	URL               string `json:"url"`
	ModelCount        int    `json:"model_count"`
	RequestCount      int64  `json:"request_count"`
	FailureCount      int64  `json:"failure_count"`
	ActiveConnections int64  `json:"active_connections"`
	SuccessRate       string `json:"success_rate"`
	AvgLatencyMs      *int64 `json:"avg_latency_ms,omitempty"`
	CircuitBreaker    string `json:"circuit_breaker"`
	BreakerOpens      int64  `json:"circuit_breaker_opens"` // since start-up; a reload keeps it
	HealthCheck       string `json:"health_check"`
	HealthCheckAt     string `json:"health_check_at,omitempty"`
	NextCheckAt       string `json:"next_check_at,omitempty"`
	ParkedUntil       string `json:"parked_until,omitempty"` // a backend's Retry-After, capped at 5m
	ResponseTime      string `json:"response_time,omitempty"`
	LastModelSync     string `json:"last_model_sync,omitempty"`
	LastModelSyncAt   string `json:"last_model_sync_at,omitempty"`
	ModelError        string `json:"model_error,omitempty"`
	Issues            string `json:"issues,omitempty"`
	// Signals are the backend's load signals (fleet/signals.go)
	Signals *fleet.SignalStatus `json:"signals,omitempty"`
	// TypeAuto is how a `type auto` endpoint was typed (fleet/autotype.go)
	TypeAuto *fleet.AutoStatus `json:"type_auto,omitempty"`
	// Preload is the endpoint's preload list and how warm it is, or why
	// preloading stopped (preload.Warmer)
	Preload *preload.Status `json:"preload,omitempty"`
}

// endpointID is a stable short id of an endpoint's sanitised URL and name.
func endpointID(s *fleet.Settings) string {
	sum := fnv.New32a()
	sum.Write([]byte(s.DisplayURL + "\x00" + s.Name))
	return strconv.FormatUint(uint64(sum.Sum32()), 36)
}

func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

// describe reports one endpoint's state; stable fields feed the ETag.
func describe(st *fleet.Endpoint, now time.Time) (endpointStatus, endpointStatus) {
	return describeStatus(st.Status(now), now)
}

func describeStatus(fs fleet.Status, now time.Time) (endpointStatus, endpointStatus) {
	s, hs := fs.Settings, fs.Health
	es := endpointStatus{ID: endpointID(s), Name: s.Name, Type: s.Type, Status: string(hs.Status), Reason: hs.Reason,
		Routable: fs.Routable, Priority: s.Priority, URL: s.DisplayURL, RequestCount: fs.Requests, FailureCount: fs.Failures,
		ActiveConnections: fs.InFlight, SuccessRate: "N/A", CircuitBreaker: string(fs.Breaker),
		BreakerOpens: fs.BreakerOpens, Drained: fs.Drained, MaxConcurrency: s.MaxConcurrency}
	if reqs := fs.Requests; reqs > 0 {
		es.SuccessRate = fmt.Sprintf("%.1f%%", 100*float64(reqs-fs.Failures)/float64(reqs))
		avg := int64(fs.HeaderWait) / reqs / int64(time.Millisecond)
		es.AvgLatencyMs = &avg
	}
	if fs.Discovered {
		es.ModelCount = len(fs.Models)
		es.ModelError = fs.ModelError
	}
	var issues []string
	if es.Drained {
		issues = append(issues, "drained through the admin API")
	}
	if !hs.Status.Routable() {
		issues = append(issues, "unavailable")
	}
	if hs.Failures > 3 {
		issues = append(issues, "unstable")
	}
	if fs.Breaker != discovery.BreakerClosed {
		issues = append(issues, "circuit breaker "+string(fs.Breaker))
	}
	es.Issues = strings.Join(issues, ", ")
	if until := fs.ParkedUntil; !until.IsZero() {
		es.ParkedUntil = until.UTC().Format(time.RFC3339)
	}
	sig := fs.Signals
	es.Signals = &sig
	es.TypeAuto = fs.TypeAuto
	es.Preload = fs.Preload
	stable := es
	// what scheduling changes on, not the counts that move every poll
	stable.Signals = &fleet.SignalStatus{Polling: sig.Polling, Fresh: sig.Fresh, Warm: sig.Warm, Serves: sig.Serves, Problem: sig.Problem}
	stable.Reason = "" // carries latencies
	stable.AvgLatencyMs = nil
	stable.SuccessRate = ""

	es.HealthCheck = ago(hs.CheckedAt, now)
	if !hs.CheckedAt.IsZero() {
		es.HealthCheckAt = hs.CheckedAt.UTC().Format(time.RFC3339)
		es.ResponseTime = hs.Latency.Round(time.Millisecond).String()
	}
	if !fs.NextCheck.IsZero() {
		es.NextCheckAt = fs.NextCheck.UTC().Format(time.RFC3339)
	}
	if !fs.ModelsAt.IsZero() {
		es.LastModelSync = ago(fs.ModelsAt, now)
		es.LastModelSyncAt = fs.ModelsAt.UTC().Format(time.RFC3339)
	}
	return es, stable
}

func (h *Handler) describeAll(now time.Time) (all, stable []endpointStatus) {
	for _, st := range h.states {
		a, s := describe(st, now)
		all, stable = append(all, a), append(stable, s)
	}
	return all, stable
}

func (h *Handler) endpointsStatus() cached {
	now := time.Now()
	all, stable := h.describeAll(now)
	healthy, routable := 0, 0
	for _, e := range all {
		if e.Status == string(discovery.StatusHealthy) {
			healthy++
		}
		if e.Routable {
			routable++
		}
	}
	return cached{
		body: map[string]any{"timestamp": now.UTC().Format(time.RFC3339), "endpoints": all,
			"total_count": len(all), "healthy_count": healthy, "routable_count": routable},
		stable: stable,
	}
}

func (h *Handler) status() cached {
	now := time.Now()
	all, stable := h.describeAll(now)
	up := 0
	var reqs, fails, active int64
	for _, e := range all {
		if e.Routable {
			up++
		}
		reqs += e.RequestCount
		fails += e.FailureCount
		active += e.ActiveConnections
	}
	sys := "healthy"
	switch ratio := float64(up) / float64(max(len(all), 1)); {
	case len(all) == 0 || ratio < 0.5:
		sys = "critical"
	case ratio < 0.8:
		sys = "degraded"
	}
	successRate := "N/A"
	if reqs > 0 {
		successRate = fmt.Sprintf("%.1f%%", 100*float64(reqs-fails)/float64(reqs))
	}
	body := map[string]any{
		"timestamp": now.UTC().Format(time.RFC3339),
		"proxy":     map[string]string{"engine": h.Engine, "profile": profileName(h.Profile), "balancer": h.LoadBalancer},
		"endpoints": all,
		"system": map[string]any{"status": sys, "endpoints_up": fmt.Sprintf("%d/%d", up, len(all)),
			"success_rate": successRate, "total_requests": reqs, "total_failures": fails,
			"active_connections": active, "uptime": now.Sub(processStart).Round(time.Second).String(),
			"start_time": processStart.UTC().Format(time.RFC3339), "version": Version, "has_traffic": reqs > 0},
		"queue": h.queueStatus(),
	}
	return cached{body: body, stable: []any{sys, stable, h.Engine, h.Profile, h.LoadBalancer}}
}

func profileName(p string) string {
	if p == "" {
		return "auto"
	}
	return p
}

// modelSummary is an entry of /internal/status/models.
type modelSummary struct {
	Name          string   `json:"name"`
	Type          string   `json:"type,omitempty"`
	Family        string   `json:"family,omitempty"`
	Size          int64    `json:"size,omitempty"`
	Params        string   `json:"params,omitempty"`
	Quant         string   `json:"quant,omitempty"`
	LastSeen      string   `json:"last_seen"`
	Endpoints     []string `json:"endpoints"`
	EndpointTypes []string `json:"endpoint_types"`
}

// serveModelsStatus answers /internal/status/models from the catalogue
// view. Its body tells times to the second ("5s ago"), so it is encoded at
// most once a second while asked for, and not at all for a client whose
// copy is current.
func (rq *request) serveModelsStatus() error {
	h := rq.h
	ctx := rq.r.Context()
	in := h.catalogueInput(time.Now())
	if rq.notModified(h.etag(in, "status/models")) {
		return nil
	}
	c, err := h.allEntries(ctx, in)
	if err != nil {
		return rq.viewFailed(err)
	}
	v, err := h.view(ctx, in, "status/models", strconv.FormatInt(in.now.Unix(), 10), func() (any, int64) {
		buf, _ := json.Marshal(h.modelsStatus(c, in.now))
		buf = append(buf, '\n')
		b := &encodedBody{plain: buf}
		if len(buf) >= minGzipSize {
			b.gz = gzipBytes(buf)
		}
		return b, int64(len(b.plain) + len(b.gz))
	})
	if err != nil {
		return rq.viewFailed(err)
	}
	b := v.(*encodedBody)
	return rq.writeTagged(len(b.plain), func(w io.Writer) error { _, err := w.Write(b.plain); return err },
		func() []byte { return b.gz })
}

// encodedBody is an answer kept encoded, and gzipped when worth it.
type encodedBody struct{ plain, gz []byte }

func (h *Handler) modelsStatus(c *catalogueEntries, now time.Time) map[string]any {
	entries := c.entries
	byFamily := map[string][]string{}
	summaries := make([]modelSummary, 0, len(entries))
	endpointsSeen := map[string]bool{}
	for _, e := range entries {
		fam := e.Model.Family
		if fam == "" {
			fam = "unknown"
		}
		byFamily[fam] = append(byFamily[fam], e.ID)
		var eps []string
		for _, s := range e.Sources {
			eps = append(eps, s.Endpoint)
			endpointsSeen[s.Endpoint] = true
		}
		summaries = append(summaries, modelSummary{Name: e.ID, Type: e.Model.Type, Family: e.Model.Family, Size: e.Model.Size,
			Params: e.Model.ParameterSize, Quant: e.Model.Quantization, LastSeen: lastSeen(h, e, now), Endpoints: eps, EndpointTypes: e.Types()})
	}
	for _, names := range byFamily {
		sort.Strings(names)
	}
	return map[string]any{"timestamp": now.UTC().Format(time.RFC3339), "models_by_family": byFamily,
		"models": summaries, "total_models": len(entries), "total_families": len(byFamily), "total_endpoints": len(endpointsSeen)}
}

// lastSeen is when a model was last in a model list of any of its sources.
func lastSeen(h *Handler, e discovery.Entry, now time.Time) string {
	var latest time.Time
	for _, s := range e.Sources {
		for _, st := range h.states {
			if st.Name() == s.Endpoint {
				if at := st.ModelsUpdatedAt(); at.After(latest) {
					latest = at
				}
			}
		}
	}
	return ago(latest, now)
}

func processStats(bodies *bodyBudget) map[string]any {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	mib := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	return map[string]any{
		"timestamp": time.Now().UTC().Format(time.RFC3339),
		"memory": map[string]any{"heap_alloc": mib(m.HeapAlloc), "heap_sys": mib(m.HeapSys), "heap_inuse": mib(m.HeapInuse),
			"heap_released": mib(m.HeapReleased), "stack_inuse": mib(m.StackInuse), "total_alloc": mib(m.TotalAlloc)},
		"garbage_collection": map[string]any{"num_gc_cycles": m.NumGC, "total_gc_time": time.Duration(m.PauseTotalNs).String(),
			"gc_cpu_fraction": m.GCCPUFraction},
		"goroutines": map[string]any{"count": runtime.NumGoroutine()},
		// the process-wide budget's use (request_limits max_buffered_bytes)
		"request_bodies": map[string]any{"buffered_bytes": bodies.used.Load()},
		"runtime": map[string]any{"uptime": time.Since(processStart).Round(time.Second).String(), "go_version": runtime.Version(),
			"num_cpu": runtime.NumCPU(), "gomaxprocs": runtime.GOMAXPROCS(0)},
		"allocations": map[string]any{"total_mallocs": m.Mallocs, "total_frees": m.Frees, "net_objects": m.Mallocs - m.Frees},
	}
}

func versionInfo() map[string]any {
	return map[string]any{
		"name": "Olla", "version": Version, "edition": "Caddy module",
		"description": "LLM load balancer and proxy as a Caddy module",
		"build":       map[string]string{"go_version": runtime.Version(), "platform": runtime.GOOS + "/" + runtime.GOARCH},
		"capabilities": []string{"load_balancing", "health_checking", "model_unification", "endpoint_discovery",
			"circuit_breaking", "failover", "config_reload"},
		"supported_backends": profiles.Types(),
		"api": map[string]any{"version": "v1", "endpoints": map[string]string{"health": "/internal/health",
			"status": "/internal/status", "process": "/internal/process", "version": "/version", "models": "/olla/models"}},
	}
}
