package olla

import (
	"math"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
)

// reservoirSize is how many recent latencies a model keeps for p95/p99.
const reservoirSize = 100

// modelStatsStore holds per-model usage since the process started. Only
// models an endpoint lists become keys, so its size is bounded by the
// catalogue, not by client input.
type modelStatsStore struct {
	models *xsync.MapOf[string, *modelStats]
}

func newModelStatsStore() *modelStatsStore {
	return &modelStatsStore{models: xsync.NewMapOf[string, *modelStats]()}
}

// modelStats is one model's counters.
type modelStats struct {
	requests, successes, failures atomic.Int64
	latencyNs, ttftNs, ttftCount  atomic.Int64
	tokensIn, tokensOut           atomic.Int64
	genNs                         atomic.Int64 // generation time of requests with token counts
	bytes                         atomic.Int64
	lastRequested                 atomic.Int64 // unix nanos

	mu        sync.Mutex
	recent    [reservoirSize]time.Duration
	recentN   int
	endpoints map[string]int64
}

func (s *modelStatsStore) observe(rec *requestRecord, model string) {
	ms, _ := s.models.LoadOrCompute(model, func() *modelStats { return &modelStats{endpoints: map[string]int64{}} })
	ms.requests.Add(1)
	if rec.status >= 200 && rec.status < 400 && rec.streamErr == nil {
		ms.successes.Add(1)
	} else {
		ms.failures.Add(1)
	}
	ms.latencyNs.Add(int64(rec.duration))
	if rec.ttft > 0 {
		ms.ttftNs.Add(int64(rec.ttft))
		ms.ttftCount.Add(1)
	}
	if rec.hasUsage {
		ms.tokensIn.Add(rec.usage.Input)
		ms.tokensOut.Add(rec.usage.Output)
		if tps := rec.tokensPerSecond(); tps > 0 {
			ms.genNs.Add(int64(float64(rec.usage.Output) / tps * 1e9))
		}
	}
	ms.bytes.Add(rec.bytes)
	ms.lastRequested.Store(rec.start.UnixNano())
	ms.mu.Lock()
	ms.recent[ms.recentN%reservoirSize] = rec.duration
	ms.recentN++
	if rec.endpoint != "" {
		ms.endpoints[rec.endpoint]++
	}
	ms.mu.Unlock()
}

// modelStatsView is an entry of /internal/stats/models.
type modelStatsView struct {
	Name               string           `json:"name"`
	TotalRequests      int64            `json:"total_requests"`
	SuccessfulRequests int64            `json:"successful_requests"`
	FailedRequests     int64            `json:"failed_requests"`
	SuccessRate        float64          `json:"success_rate"`
	TotalTraffic       int64            `json:"total_traffic_bytes"`
	AverageLatencyMs   int64            `json:"average_latency_ms"`
	P95LatencyMs       int64            `json:"p95_latency_ms"`
	P99LatencyMs       int64            `json:"p99_latency_ms"`
	AverageTTFTMs      int64            `json:"average_ttft_ms"`
	TokensIn           int64            `json:"tokens_in"`
	TokensOut          int64            `json:"tokens_out"`
	TokensPerSecond    float64          `json:"tokens_per_second"`
	LastRequested      string           `json:"last_requested"`
	EndpointBreakdown  map[string]int64 `json:"endpoint_breakdown,omitempty"`
}

func (ms *modelStats) view(name string, withEndpoints bool) modelStatsView {
	v := modelStatsView{Name: name, TotalRequests: ms.requests.Load(), SuccessfulRequests: ms.successes.Load(),
		FailedRequests: ms.failures.Load(), TotalTraffic: ms.bytes.Load(), TokensIn: ms.tokensIn.Load(), TokensOut: ms.tokensOut.Load(),
		LastRequested: time.Unix(0, ms.lastRequested.Load()).UTC().Format(time.RFC3339)}
	if v.TotalRequests > 0 {
		v.SuccessRate = math.Round(1000*float64(v.SuccessfulRequests)/float64(v.TotalRequests)) / 10
		v.AverageLatencyMs = ms.latencyNs.Load() / v.TotalRequests / int64(time.Millisecond)
	}
	if n := ms.ttftCount.Load(); n > 0 {
		v.AverageTTFTMs = ms.ttftNs.Load() / n / int64(time.Millisecond)
	}
	if gen := ms.genNs.Load(); gen > 0 {
		v.TokensPerSecond = math.Round(10*float64(v.TokensOut)/(float64(gen)/1e9)) / 10
	}
	ms.mu.Lock()
	n := min(ms.recentN, reservoirSize)
	recent := make([]time.Duration, n)
	copy(recent, ms.recent[:n])
	if withEndpoints {
		v.EndpointBreakdown = make(map[string]int64, len(ms.endpoints))
		for k, c := range ms.endpoints {
			v.EndpointBreakdown[k] = c
		}
	}
	ms.mu.Unlock()
	if n > 0 {
		sort.Slice(recent, func(a, b int) bool { return recent[a] < recent[b] })
		v.P95LatencyMs = recent[(n*95-1)/100].Milliseconds()
		v.P99LatencyMs = recent[(n*99-1)/100].Milliseconds()
	}
	return v
}

// serveModelStats answers /internal/stats/models.
func (rq *request) serveModelStats() error {
	q := rq.r.URL.Query()
	withEndpoints := q.Get("include_endpoints") == "true"
	var models []modelStatsView
	var total, ok int64
	rq.h.app.stats.models.Range(func(name string, ms *modelStats) bool {
		v := ms.view(name, withEndpoints)
		models = append(models, v)
		total += v.TotalRequests
		ok += v.SuccessfulRequests
		return true
	})
	sort.Slice(models, func(a, b int) bool {
		if models[a].TotalRequests != models[b].TotalRequests {
			return models[a].TotalRequests > models[b].TotalRequests
		}
		return models[a].Name < models[b].Name
	})
	if models == nil {
		models = []modelStatsView{}
	}
	summary := map[string]any{"total_models": len(models), "total_requests": total}
	if total > 0 {
		summary["overall_success_rate"] = math.Round(1000*float64(ok)/float64(total)) / 10
		summary["most_popular_model"] = models[0].Name
		summary["least_popular_model"] = models[len(models)-1].Name
	}
	return rq.writeJSON(http.StatusOK, map[string]any{"timestamp": time.Now().UTC().Format(time.RFC3339),
		"models": models, "summary": summary})
}

// serveTranslatorStats answers /internal/stats/translators: the Anthropic
// Messages and the Responses APIs' passthrough and translation counts
// (translators.go).
func (rq *request) serveTranslatorStats() error {
	return rq.writeJSON(http.StatusOK, rq.h.app.translators.body(time.Now()))
}
