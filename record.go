package olla

import (
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-olla/olla/usage"
)

// requestRecord is what one request under /olla/ came to: it feeds the
// metrics, the per-model stats and the access log entry.
type requestRecord struct {
	provider    string // route prefix
	model       string // as the client asked ("" for none)
	endpoint    string // the endpoint that answered last
	backendType string
	status      int
	start       time.Time
	duration    time.Duration
	headerWait  time.Duration // time to the backend's headers
	ttft        time.Duration // time to the first body byte
	bytes       int64
	usage       usage.Counts
	hasUsage    bool
	attempts    int
	failovers   int
	reason      string // why the endpoint was chosen (X-Olla-Routing-Reason)
	streamErr   error
}

// outputTokens is the output token count the backend reported (0: none).
func (rec *requestRecord) outputTokens() int64 {
	if !rec.hasUsage {
		return 0
	}
	return rec.usage.Output
}

// tokensPerSecond is the generation speed: the backend's own timing where
// it reports one, else tokens over the time after the first token.
func (rec *requestRecord) tokensPerSecond() float64 {
	if !rec.hasUsage || rec.usage.Output == 0 {
		return 0
	}
	gen := rec.usage.GenerationTime
	if gen <= 0 {
		gen = rec.duration - rec.ttft
	}
	if gen <= 0 {
		return 0
	}
	return float64(rec.usage.Output) / gen.Seconds()
}

// observe hands a finished request to the metrics and stats, and adds its
// olla fields to Caddy's access log entry. Nothing here carries a
// credential: endpoint names, model names, numbers.
func (rq *request) observe() {
	rec := &rq.rec
	rec.provider = rq.prefix
	rec.start = rq.start
	rec.duration = time.Since(rq.start)
	h := rq.h
	model := h.modelLabel(rec.model)
	if rq.keyAdmitted {
		rq.recordKey(model)
	}
	rq.endTrace()
	h.app.metrics.observe(rec, model)
	h.app.activity.observe(rec, time.Now())
	if model != unknownModelLabel && model != "" {
		h.app.stats.observe(rec, model)
	}
	// access-log fields only when this server writes an access log
	if srv, _ := rq.r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); srv == nil || srv.Logs == nil {
		return
	}
	if extra, ok := rq.r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Add(zap.String("olla_request_id", rq.id))
		if rec.endpoint != "" {
			extra.Add(zap.String("olla_endpoint", rec.endpoint))
		}
		if rec.model != "" {
			extra.Add(zap.String("olla_model", rec.model))
		}
		extra.Add(zap.Int("olla_status", rec.status))
		if rec.ttft > 0 {
			extra.Add(zap.Duration("olla_ttft", rec.ttft))
		}
		if rec.hasUsage {
			extra.Add(zap.Int64("olla_tokens_in", rec.usage.Input))
			extra.Add(zap.Int64("olla_tokens_out", rec.usage.Output))
		}
		if rec.failovers > 0 {
			extra.Add(zap.Int("olla_failovers", rec.failovers))
		}
		if rq.keyID != "" {
			extra.Add(zap.String("olla_key", rq.keyID)) // hashed: never the credential
		}
		if c := rq.keyCounts; rq.keyCounted {
			// the usage line: what the key is charged for, estimated or not
			extra.Add(zap.Dict("olla_usage", zap.Int64("input", c.Input), zap.Int64("output", c.Output),
				zap.Int64("cached", c.Cached), zap.Float64("cost", rq.keyCost), zap.Bool("estimated", c.Estimated),
				zap.Bool("clamped", c.Clamped)))
		}
	}
}

// unknownModelLabel stands for every model no endpoint lists: client input
// must not mint metric labels.
const unknownModelLabel = "unknown"

// modelLabel bounds label cardinality: a model is a label only if an
// endpoint lists it or it is a configured alias.
func (h *Handler) modelLabel(model string) string {
	if model == "" {
		return ""
	}
	if _, ok := h.Aliases[model]; ok {
		return model
	}
	if _, ok := h.Fallbacks[model]; ok {
		return model
	}
	for _, st := range h.states {
		if name, ok := st.LookupModel(model); ok {
			return name
		}
	}
	return unknownModelLabel
}
