package main

// Numbers: per-run statistics from the raw latencies, and the median and
// range of each metric over the rounds.

import (
	"slices"
	"time"
)

// runStats is what one run of one contender came to.
type runStats struct {
	rps                float64 // complete 200 answers per second of the measured window
	ttfbP50, ttfbP99   time.Duration
	totalP50, totalP99 time.Duration
	errors, truncated  int64
	rssKiB             int64   // peak resident set of the contender's Caddy (VmHWM)
	cpuPerReq          float64 // the contender's CPU microseconds per complete answer
	foreignCores       float64 // cores busy outside the run during the window (noise)
}

// summarizeRun turns a run's raw measurements into its statistics. It sorts
// the latency slices in place.
func summarizeRun(out loadOutcome, measured time.Duration, cpu cpuUse) runStats {
	slices.Sort(out.ttfb)
	slices.Sort(out.total)
	var perReq float64
	if out.ok > 0 {
		perReq = cpu.contenderSeconds * 1e6 / float64(out.ok)
	}
	return runStats{
		cpuPerReq:    perReq,
		foreignCores: cpu.foreignCores,
		rps:          float64(out.ok) / measured.Seconds(),
		ttfbP50:      percentile(out.ttfb, 0.50),
		ttfbP99:      percentile(out.ttfb, 0.99),
		totalP50:     percentile(out.total, 0.50),
		totalP99:     percentile(out.total, 0.99),
		errors:       out.errors,
		truncated:    out.truncated,
	}
}

// percentile is the nearest-rank percentile p (0..1] of sorted values; 0
// when there are none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// metric names a column of the report.
type metric int

// The metrics, in report order.
const (
	metricRPS metric = iota
	metricTTFBP50
	metricTTFBP99
	metricTotalP50
	metricTotalP99
	metricErrors
	metricTruncated
	metricRSS
	metricCPUPerReq
	metricForeign
	numMetrics
)

// value returns m of s in the report's unit: requests/s, milliseconds,
// counts, MiB, microseconds, cores.
func (s runStats) value(m metric) float64 {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	switch m {
	case metricRPS:
		return s.rps
	case metricTTFBP50:
		return ms(s.ttfbP50)
	case metricTTFBP99:
		return ms(s.ttfbP99)
	case metricTotalP50:
		return ms(s.totalP50)
	case metricTotalP99:
		return ms(s.totalP99)
	case metricErrors:
		return float64(s.errors)
	case metricTruncated:
		return float64(s.truncated)
	case metricRSS:
		return float64(s.rssKiB) / 1024
	case metricCPUPerReq:
		return s.cpuPerReq
	case metricForeign:
		return s.foreignCores
	}
	return 0
}

// spread is the median and range of one metric over rounds.
type spread struct {
	median, min, max float64
	n                int // rounds it is made of
}

// spreadOf summarizes metric m over runs.
func spreadOf(runs []runStats, m metric) spread {
	if len(runs) == 0 {
		return spread{}
	}
	vals := make([]float64, len(runs))
	for i, r := range runs {
		vals[i] = r.value(m)
	}
	slices.Sort(vals)
	med := vals[len(vals)/2]
	if len(vals)%2 == 0 {
		med = (vals[len(vals)/2-1] + vals[len(vals)/2]) / 2
	}
	return spread{median: med, min: vals[0], max: vals[len(vals)-1], n: len(vals)}
}

// sumOf adds up a count metric over runs.
func sumOf(runs []runStats, m metric) float64 {
	var t float64
	for _, r := range runs {
		t += r.value(m)
	}
	return t
}
