package olla

import (
	"sort"
	"sync"
	"time"
)

// activity is what the dashboard shows of recent traffic: the last requests
// and per-interval totals over the last ten minutes. It lives with the
// shared metrics, so a reload keeps it. Both parts are fixed-size rings, so
// memory does not grow with traffic: about 100 × 200 B for the log and
// 120 × 48 B for the timeline.
type activity struct {
	mu   sync.Mutex
	log  [recentRequests]recentRequest
	next int // where the next entry goes
	n    int // entries held (up to recentRequests)

	buckets [timelineBuckets]timelineBucket
}

const (
	recentRequests  = 100
	timelineBuckets = 120 // of timelineStep: ten minutes
	timelineStep    = 5 * time.Second
)

// recentRequest is one line of the dashboard's request log. It never holds
// a body or a header: what the client asked for, where it went, how it went.
type recentRequest struct {
	Time      time.Time `json:"time"`
	Model     string    `json:"model"`
	Endpoint  string    `json:"endpoint"`
	Status    int       `json:"status"`
	TTFTMs    int64     `json:"ttft_ms"`
	Duration  int64     `json:"duration_ms"`
	TokensIn  int64     `json:"tokens_in"`
	TokensOut int64     `json:"tokens_out"`
	Reason    string    `json:"reason"`
}

// timelineBucket sums the requests that ended in one step.
type timelineBucket struct {
	start    int64 // unix seconds of the step's start; 0 = empty
	requests int64
	errors   int64
	ttftSum  time.Duration
	ttftN    int64
	queueMax int64
}

// maxLoggedModel bounds what a client-chosen model name costs the log.
const maxLoggedModel = 200

func (a *activity) observe(rec *requestRecord, now time.Time) {
	model := rec.model
	if len(model) > maxLoggedModel {
		model = model[:maxLoggedModel] + "…"
	}
	e := recentRequest{Time: now.UTC().Truncate(time.Millisecond), Model: model, Endpoint: rec.endpoint,
		Status: rec.status, TTFTMs: rec.ttft.Milliseconds(), Duration: rec.duration.Milliseconds(), Reason: rec.reason}
	if rec.hasUsage {
		e.TokensIn, e.TokensOut = rec.usage.Input, rec.usage.Output
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.log[a.next] = e
	a.next = (a.next + 1) % recentRequests
	a.n = min(a.n+1, recentRequests)
	b := a.bucket(now)
	b.requests++
	if rec.status >= 500 || rec.streamErr != nil {
		b.errors++
	}
	if rec.ttft > 0 {
		b.ttftSum += rec.ttft
		b.ttftN++
	}
}

// sampleQueue records a queue depth seen now, for the timeline's maximum.
func (a *activity) sampleQueue(depth int64, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.bucket(now)
	b.queueMax = max(b.queueMax, depth)
}

// bucket returns the step holding now, reset if it held an older step.
// The caller holds a.mu.
func (a *activity) bucket(now time.Time) *timelineBucket {
	step := int64(timelineStep / time.Second)
	start := now.Unix() / step * step
	b := &a.buckets[(start/step)%timelineBuckets]
	if b.start != start {
		*b = timelineBucket{start: start}
	}
	return b
}

// recent returns the request log, newest first.
func (a *activity) recent() []recentRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]recentRequest, 0, a.n)
	for i := 1; i <= a.n; i++ {
		out = append(out, a.log[(a.next-i+recentRequests)%recentRequests])
	}
	return out
}

// timelinePoint is one step of the dashboard's charts.
type timelinePoint struct {
	Time      int64   `json:"t"` // unix seconds
	PerSecond float64 `json:"rps"`
	Errors    int64   `json:"errors"`
	TTFTMs    float64 `json:"ttft_ms"` // mean over the step; 0 = none
	QueueMax  int64   `json:"queue"`
}

// timeline returns the last ten minutes, oldest first, one point per step
// (steps with no traffic included, so the charts' time axis is even).
func (a *activity) timeline(now time.Time) []timelinePoint {
	step := int64(timelineStep / time.Second)
	last := now.Unix() / step * step
	first := last - step*(timelineBuckets-1)
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]timelinePoint, 0, timelineBuckets)
	for t := first; t <= last; t += step {
		p := timelinePoint{Time: t}
		if b := a.buckets[(t/step)%timelineBuckets]; b.start == t {
			p.PerSecond = float64(b.requests) / float64(step)
			p.Errors = b.errors
			p.QueueMax = b.queueMax
			if b.ttftN > 0 {
				p.TTFTMs = float64((b.ttftSum / time.Duration(b.ttftN)).Microseconds()) / 1000
			}
		}
		out = append(out, p)
	}
	return out
}

// endpointActivity summarises the log for one endpoint: median TTFT and
// generation speed over its recent requests.
type endpointActivity struct {
	TTFTp50Ms       *int64   `json:"ttft_p50_ms,omitempty"`
	TokensPerSecond *float64 `json:"tokens_per_second,omitempty"`
}

func summarise(log []recentRequest) map[string]endpointActivity {
	ttfts := map[string][]int64{}
	tokens := map[string]int64{}
	genMs := map[string]int64{}
	for _, e := range log {
		if e.Endpoint == "" || e.Status >= 400 {
			continue
		}
		if e.TTFTMs > 0 {
			ttfts[e.Endpoint] = append(ttfts[e.Endpoint], e.TTFTMs)
		}
		if e.TokensOut > 0 && e.Duration > e.TTFTMs {
			tokens[e.Endpoint] += e.TokensOut
			genMs[e.Endpoint] += e.Duration - e.TTFTMs
		}
	}
	out := map[string]endpointActivity{}
	for ep, ts := range ttfts {
		sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
		p50 := ts[len(ts)/2]
		ea := out[ep]
		ea.TTFTp50Ms = &p50
		out[ep] = ea
	}
	for ep, n := range tokens {
		if ms := genMs[ep]; ms > 0 {
			tps := float64(n) * 1000 / float64(ms)
			ea := out[ep]
			ea.TokensPerSecond = &tps
			out[ep] = ea
		}
	}
	return out
}
