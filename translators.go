package olla

import (
	"math"
	"sync/atomic"
	"time"
)

// Fallback reasons: why a request was translated.
const (
	// fallbackNoNative: no endpoint serving the model speaks the API.
	fallbackNoNative = "no_native_endpoint"
	// fallbackNativeUnavailable: a native endpoint serves the model but
	// failed before answering, or was full.
	fallbackNativeUnavailable = "native_endpoint_unavailable"
)

// translatorOutcome is what one request on a translating route (Anthropic
// Messages, the Responses API) came to, for /internal/stats/translators.
type translatorOutcome struct {
	start     time.Time
	mode      string // of the attempt that answered
	anyNative bool   // a candidate was native
	ok        bool   // the answer was a complete success
	answered  bool   // a backend answered; else we did (bad input, no endpoint)
}

// translators counts the requests of each translating route since the
// process started (process-wide, like the endpoints: a reload keeps the
// counts).
type translators struct {
	anthropic, responses translatorStats
}

// translatorStats counts one translating route's requests.
type translatorStats struct {
	total, successes, failures          atomic.Int64
	passthrough, translation, rejected  atomic.Int64
	streaming, nonStreaming             atomic.Int64
	latencyNs                           atomic.Int64
	fallbackNoNative, fallbackNativeOut atomic.Int64
}

// record counts one request: o is what it came to, stream whether the
// client asked for a stream, streamErr how a passed-through stream ended.
func (s *translatorStats) record(o *translatorOutcome, stream bool, streamErr error) {
	s.total.Add(1)
	s.latencyNs.Add(int64(time.Since(o.start)))
	// a passed-through stream that broke off counts as failed
	if o.ok && o.answered && streamErr == nil {
		s.successes.Add(1)
	} else {
		s.failures.Add(1)
	}
	if stream {
		s.streaming.Add(1)
	} else {
		s.nonStreaming.Add(1)
	}
	switch {
	case !o.answered:
		s.rejected.Add(1) // answered by us: bad input, no endpoint
	case o.mode == modePassthrough:
		s.passthrough.Add(1)
	default:
		s.translation.Add(1)
		if o.anyNative {
			s.fallbackNativeOut.Add(1)
		} else {
			s.fallbackNoNative.Add(1)
		}
	}
}

func percent(part, total int64) float64 {
	if total == 0 {
		return 0
	}
	return math.Round(1000*float64(part)/float64(total)) / 10
}

// translatorCounts is one translator's counts read at once.
type translatorCounts struct {
	total, ok, failed, pass, trans, stream, nonStream int64
}

// entry is one translator of /internal/stats/translators in the
// standalone's shape, with our own fallback reasons and rejected count.
func (s *translatorStats) entry(name string) (map[string]any, translatorCounts) {
	c := translatorCounts{total: s.total.Load(), ok: s.successes.Load(), failed: s.failures.Load(),
		pass: s.passthrough.Load(), trans: s.translation.Load(), stream: s.streaming.Load(), nonStream: s.nonStreaming.Load()}
	noNative, nativeOut := s.fallbackNoNative.Load(), s.fallbackNativeOut.Load()
	avg := int64(0)
	if c.total > 0 {
		avg = time.Duration(s.latencyNs.Load() / c.total).Milliseconds()
	}
	return map[string]any{
		"translator_name": name, "total_requests": c.total, "successful_requests": c.ok, "failed_requests": c.failed,
		"success_rate": percent(c.ok, c.total), "passthrough_rate": percent(c.pass, c.pass+c.trans), "average_latency_ms": avg,
		"passthrough_requests": c.pass, "translation_requests": c.trans, "rejected_requests": s.rejected.Load(),
		"streaming_requests": c.stream, "non_streaming_requests": c.nonStream,
		"fallback_no_compatible_endpoints":                 noNative,
		"fallback_translator_does_not_support_passthrough": 0,
		"fallback_cannot_passthrough":                      nativeOut,
		"fallback_reasons":                                 map[string]int64{fallbackNoNative: noNative, fallbackNativeUnavailable: nativeOut},
	}, c
}

// body is /internal/stats/translators: the Anthropic translator (Messages
// ↔ chat completions) and the Responses one (Responses ↔ chat
// completions), and a summary over both.
func (t *translators) body(now time.Time) map[string]any {
	a, ac := t.anthropic.entry("anthropic")
	r, rc := t.responses.entry("responses")
	active := 0
	for _, c := range []translatorCounts{ac, rc} {
		if c.total > 0 {
			active++
		}
	}
	ok, pass, trans := ac.ok+rc.ok, ac.pass+rc.pass, ac.trans+rc.trans
	return map[string]any{
		"timestamp":   now.UTC().Format(time.RFC3339),
		"translators": []map[string]any{a, r},
		"summary": map[string]any{"total_translators": 2, "active_translators": active, "total_requests": ac.total + rc.total,
			"total_passthrough": pass, "total_translations": trans,
			"total_streaming": ac.stream + rc.stream, "total_non_streaming": ac.nonStream + rc.nonStream,
			"overall_success_rate": percent(ok, ac.total+rc.total), "overall_passthrough_rate": percent(pass, pass+trans)},
	}
}
