package olla

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-olla/olla/limits"
	"github.com/caddy-olla/olla/usage"
)

// KeyLimits is the `key_limits` block: an identity for every request and
// token and request limits and budgets per key (off unless given).
type KeyLimits struct {
	// Key is a placeholder giving the request's key, such as
	// {http.auth.user.id} after basic_auth or forward_auth, or a header
	// Caddy sets. The key is hashed before it is stored, counted or
	// shown. Empty: every request is anonymous.
	Key string `json:"key,omitempty"`
	// Anonymous is what happens to a request without a key: shared (the
	// default: all such requests share one key, "anonymous") or refuse
	// (401).
	Anonymous string `json:"anonymous,omitempty"`
	// TokensPerMinute, RequestsPerMinute, BudgetDay and BudgetMonth are
	// each key's limits over all models (0 = none). Budgets are in the
	// units of Cost, per UTC day and calendar month; without a Cost they
	// count tokens.
	TokensPerMinute   int64   `json:"tokens_per_minute,omitempty"`
	RequestsPerMinute int64   `json:"requests_per_minute,omitempty"`
	BudgetDay         float64 `json:"budget_day,omitempty"`
	BudgetMonth       float64 `json:"budget_month,omitempty"`
	// Cost prices tokens for the budgets.
	Cost *TokenCost `json:"cost,omitempty"`
	// Models are limits for each key on one model, by the name the client
	// sends (an alias or a model; any case).
	Models map[string]*ModelLimits `json:"models,omitempty"`
	// Shadow counts and reports what would be refused (header
	// X-Olla-Limit-Shadow, metric, log, /internal/stats/usage) but
	// refuses nothing.
	Shadow bool `json:"shadow,omitempty"`
	// OnStorageError is open (default: admit while the counters cannot be
	// read) or closed (503).
	OnStorageError string `json:"on_storage_error,omitempty"`
	// Storage is where the counters live: memory (default: this process)
	// or redis, shared by every instance that names the same server.
	Storage string `json:"storage,omitempty"`
	// RedisAddress is the Redis (or Valkey) server with storage redis:
	// host:port, a unix socket path, or a redis://, rediss:// or unix://
	// URL (with a password and database). Placeholders such as
	// {env.REDIS_URL} are allowed. It is never logged.
	RedisAddress string `json:"redis_address,omitempty"`
}

// TokenCost is a price per token.
type TokenCost struct {
	Input  float64 `json:"input,omitempty"`
	Output float64 `json:"output,omitempty"`
	// Cached prices prompt tokens read from the server's cache (default:
	// Input).
	Cached float64 `json:"cached,omitempty"`
}

// ModelLimits are one model's limits for each key.
type ModelLimits struct {
	TokensPerMinute   int64   `json:"tokens_per_minute,omitempty"`
	RequestsPerMinute int64   `json:"requests_per_minute,omitempty"`
	BudgetDay         float64 `json:"budget_day,omitempty"`
	BudgetMonth       float64 `json:"budget_month,omitempty"`
}

const (
	anonymousShared = "shared"
	anonymousRefuse = "refuse"
	storageMemory   = "memory"
	storageRedis    = "redis"
	storeFailOpen   = "open"
	storeFailClosed = "closed"
	// anonymousKey is the key every anonymous request shares.
	anonymousKey = "anonymous"
	// maxLimitModels bounds per-model rules (and so counters per key).
	maxLimitModels = 256
	// maxLimitValue bounds a per-minute limit.
	maxLimitValue = 1 << 40
)

// checkStorage checks a block's storage (memory or redis) and its address.
func checkStorage(block, storage, addr string) error {
	if err := checkEnum(block+" storage", storage, storageMemory, storageRedis); err != nil {
		return err
	}
	if (storage == storageRedis) != (addr != "") {
		return fmt.Errorf("%s: storage redis takes an address (storage redis <address>), and only it does", block)
	}
	return nil
}

func checkAmount(name string, v float64, maxV float64) error {
	if math.IsNaN(v) || v < 0 || v > maxV {
		return fmt.Errorf("key_limits %s must be between 0 and %g, got %v", name, maxV, v)
	}
	return nil
}

func (r ModelLimits) validate(scope string) error {
	for _, c := range []struct {
		name string
		v    float64
		max  float64
	}{
		{"tokens_per_minute", float64(r.TokensPerMinute), maxLimitValue},
		{"requests_per_minute", float64(r.RequestsPerMinute), maxLimitValue},
		{"budget_day", r.BudgetDay, limits.MaxBudget},
		{"budget_month", r.BudgetMonth, limits.MaxBudget},
	} {
		if err := checkAmount(scope+c.name, c.v, c.max); err != nil {
			return err
		}
	}
	return nil
}

func (k *KeyLimits) rule() ModelLimits {
	return ModelLimits{k.TokensPerMinute, k.RequestsPerMinute, k.BudgetDay, k.BudgetMonth}
}

// validate checks the block as written.
func (k *KeyLimits) validate() error {
	if k == nil {
		return nil
	}
	if err := checkEnum("key_limits anonymous", k.Anonymous, anonymousShared, anonymousRefuse); err != nil {
		return err
	}
	if err := checkEnum("key_limits on_storage_error", k.OnStorageError, storeFailOpen, storeFailClosed); err != nil {
		return err
	}
	if err := checkStorage("key_limits", k.Storage, k.RedisAddress); err != nil {
		return err
	}
	if k.Key != "" && !strings.Contains(k.Key, "{") {
		return fmt.Errorf("key_limits key %q is not a placeholder: every request would share it; use one such as {http.auth.user.id} or {http.request.header.X-Api-Key}", k.Key)
	}
	if k.Key == "" && k.Anonymous == anonymousRefuse {
		return fmt.Errorf("key_limits anonymous refuse needs a key placeholder: without one every request is anonymous")
	}
	if err := k.rule().validate(""); err != nil {
		return err
	}
	if c := k.Cost; c != nil {
		for name, v := range map[string]float64{"input": c.Input, "output": c.Output, "cached": c.Cached} {
			if err := checkAmount("cost "+name, v, 1e6); err != nil {
				return err
			}
		}
	}
	if len(k.Models) > maxLimitModels {
		return fmt.Errorf("key_limits has %d model blocks, more than %d", len(k.Models), maxLimitModels)
	}
	lower := map[string]string{}
	for name, m := range k.Models {
		if name == "" || m == nil {
			return fmt.Errorf("key_limits model %q needs a name and limits", name)
		}
		if prev, dup := lower[strings.ToLower(name)]; dup {
			return fmt.Errorf("key_limits models %q and %q differ only in case; model names match in any case", prev, name)
		}
		lower[strings.ToLower(name)] = name
		if err := m.validate(fmt.Sprintf("model %q ", name)); err != nil {
			return err
		}
	}
	return nil
}

// keyCounters is the process's memory store: process-wide, so counts
// survive a config reload and are shared by sites that name the same key.
var keyCounters = limits.NewMemory(0)

// keyPolicy is a provisioned KeyLimits.
type keyPolicy struct {
	key        string
	keyVar     string // the placeholder's name when key is one placeholder and nothing else: read without building a string
	refuseAnon bool
	failClosed bool
	shadow     bool
	limiter    *limits.Limiter
	redisAddr  string       // the pooled Redis client this policy holds, if any
	lastWarn   atomic.Int64 // unix nanos of the last store-error log line
	counters   sync.Map     // key label -> *keyTokenCounters
}

func toRule(m ModelLimits) limits.Rule {
	return limits.Rule{TokensPerMinute: m.TokensPerMinute, RequestsPerMinute: m.RequestsPerMinute, BudgetDay: m.BudgetDay, BudgetMonth: m.BudgetMonth}
}

func newKeyPolicy(k *KeyLimits) (*keyPolicy, error) {
	if k == nil {
		return nil, nil
	}
	p := &keyPolicy{key: k.Key, keyVar: soleVariable(k.Key), refuseAnon: k.Anonymous == anonymousRefuse, failClosed: k.OnStorageError == storeFailClosed, shadow: k.Shadow}
	pol := limits.Policy{Key: toRule(k.rule()), Shadow: k.Shadow}
	if c := k.Cost; c != nil {
		pol.Costs = limits.Costs{Input: c.Input, Output: c.Output, Cached: c.Cached}
	}
	if len(k.Models) > 0 {
		pol.Models = map[string]limits.Rule{}
		for name, m := range k.Models {
			pol.Models[name] = toRule(*m)
		}
	}
	var store limits.Store = keyCounters
	if k.Storage == storageRedis {
		addr, err := caddy.NewReplacer().ReplaceOrErr(k.RedisAddress, true, true)
		if err != nil {
			return nil, fmt.Errorf("key_limits redis address: %v", err)
		}
		v, _, err := redisStores.LoadOrNew(addr, func() (caddy.Destructor, error) {
			s, err := limits.NewRedis(addr)
			if err != nil {
				return nil, err
			}
			return pooledRedis{s}, nil
		})
		if err != nil {
			return nil, fmt.Errorf("key_limits: %v", err)
		}
		p.redisAddr = addr
		store = v.(pooledRedis).Redis
	}
	p.limiter = limits.New(pol, store)
	return p, nil
}

// redisStores holds one client per Redis address for the whole process,
// kept across reloads (a reload's old and new config share it) and closed
// when no config names it any more.
var redisStores = caddy.NewUsagePool()

type pooledRedis struct{ *limits.Redis }

func (p pooledRedis) Destruct() error { return p.Close() }

// release drops the policy's reference on its Redis client.
func (p *keyPolicy) release() {
	if p != nil && p.redisAddr != "" {
		_, _ = redisStores.Delete(p.redisAddr)
		p.redisAddr = ""
	}
}

// soleVariable is the placeholder's name when s is one placeholder and
// nothing else ("{http.auth.user.id}"), else "".
func soleVariable(s string) string {
	if len(s) < 3 || s[0] != '{' || s[len(s)-1] != '}' || strings.ContainsAny(s[1:len(s)-1], "{}\\") {
		return ""
	}
	return s[1 : len(s)-1]
}

// identify sets the request's key from the placeholder; a request without
// one shares the anonymous key, or is refused.
func (rq *request) identify() *apiError {
	p := rq.h.keys
	raw := ""
	if p.key != "" {
		if repl, ok := rq.r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			if p.keyVar != "" {
				raw, _ = repl.GetString(p.keyVar)
			} else {
				raw = repl.ReplaceAll(p.key, "")
			}
		}
	}
	if raw == "" {
		if p.refuseAnon {
			return &apiError{status: http.StatusUnauthorized, code: "key_required",
				message: "this proxy requires a key: the request carries none (key_limits anonymous refuse)"}
		}
		rq.keyID = anonymousKey
		return nil
	}
	rq.keyID = limits.KeyID(raw)
	return nil
}

// admitKey checks the request against its key's limits and counts it.
func (rq *request) admitKey(model string) *apiError {
	p := rq.h.keys
	rq.keyAdmitted = true
	d, err := p.limiter.Admit(rq.r.Context(), rq.keyID, model)
	m := rq.h.app.metrics
	if err != nil {
		m.keyStoreErrors.Inc()
		p.warn(rq.h.logger, "key limits store failed; "+map[bool]string{true: "refusing", false: "admitting"}[p.failClosed]+" requests", err)
		if p.failClosed {
			rq.keyAdmitted = false
			return &apiError{status: http.StatusServiceUnavailable, code: "limits_unavailable", retryAfter: time.Second,
				message: "the key limits store cannot be reached and the proxy is configured to refuse requests then (key_limits on_storage_error closed); retry shortly"}
		}
		return nil
	}
	if d.Limit == "" {
		return nil
	}
	hdr := rq.w.Header()
	if d.Shadowed {
		m.keyRefusals.WithLabelValues(d.Limit, "shadow").Inc()
		hdr.Set("X-Olla-Limit-Shadow", d.Limit)
		rq.h.app.usage.Shadowed(rq.keyID)
		rq.h.logger.Info("key limit would refuse (shadow)", zap.String("request_id", rq.id), zap.String("key", rq.keyID),
			zap.String("limit", d.Limit), zap.String("model", d.Model), zap.Float64("used", d.Used), zap.Float64("max", d.Max))
		return nil
	}
	rq.keyAdmitted = false
	m.keyRefusals.WithLabelValues(d.Limit, "enforced").Inc()
	rq.h.app.usage.Refused(rq.keyID)
	hdr.Set("X-Olla-Limit", d.Limit)
	code := "rate_limit_exceeded"
	if strings.HasPrefix(d.Limit, "budget_") {
		code = "insufficient_quota"
	}
	return &apiError{status: http.StatusTooManyRequests, code: code, retryAfter: d.RetryAfter,
		message: fmt.Sprintf("rate limit: %s; retry after %s (key_limits)", d.Describe(), d.RetryAfter.Round(time.Second))}
}

// storeWarnEvery spaces store-error log lines: an outage is one line per
// interval, not one per request.
const storeWarnEvery = 10 * time.Second

func (p *keyPolicy) warn(logger *zap.Logger, msg string, err error) {
	now := time.Now().UnixNano()
	last := p.lastWarn.Load()
	if now-last < int64(storeWarnEvery) || !p.lastWarn.CompareAndSwap(last, now) {
		return
	}
	logger.Warn(msg, zap.Error(err))
}

// lineCounter counts the newlines of a response as the client gets it, so
// a stream that reports no usage can be estimated by its events.
type lineCounter struct {
	*caddyhttp.ResponseWriterWrapper
	lines int64
	bytes int64
}

// countedWriter is a request's lineCounter and its wrapper, kept on the
// request.
type countedWriter struct {
	lc  lineCounter
	rww caddyhttp.ResponseWriterWrapper
}

// countLines wraps the request's writer in a lineCounter.
func (rq *request) countLines() *lineCounter {
	cw := &rq.counted
	cw.rww = caddyhttp.ResponseWriterWrapper{ResponseWriter: rq.w}
	cw.lc = lineCounter{ResponseWriterWrapper: &cw.rww}
	return &cw.lc
}

func (lc *lineCounter) Write(p []byte) (int, error) {
	lc.lines += int64(bytes.Count(p, []byte{'\n'}))
	lc.bytes += int64(len(p))
	return lc.ResponseWriterWrapper.Write(p)
}

// keyUsage is what the request's response came to, for its key: reported
// counts clamped to what the exchange could hold, estimated where absent.
// ok is false when nothing was generated (an error we answered, or no
// answer at all).
func (rq *request) keyUsage() (usage.Counts, bool) {
	rec := &rq.rec
	c := rec.usage
	if !rec.hasUsage {
		if rec.endpoint == "" || rec.status < 200 || rec.status >= 300 {
			return c, false
		}
	}
	c = c.Clamp(usage.Bounds{RequestBytes: rq.bodyLen, ResponseBytes: max(rec.bytes, rq.lines.bytesOr(0))})
	shape := usage.Shape{Bytes: rec.bytes}
	if rq.lines != nil {
		shape.Lines, shape.Bytes = rq.lines.lines, rq.lines.bytes
		ct := rq.w.Header().Get("Content-Type")
		shape.SSE = strings.HasPrefix(ct, "text/event-stream")
		shape.NDJSON = strings.Contains(ct, "ndjson")
	}
	return c.Complete(rq.bodyLen, shape), true
}

func (lc *lineCounter) bytesOr(d int64) int64 {
	if lc == nil {
		return d
	}
	return lc.bytes
}

// recordKey adds a finished request's usage to its key's counters and the
// usage ledger, under the model's metric label.
func (rq *request) recordKey(modelLabel string) {
	p := rq.h.keys
	c, ok := rq.keyUsage()
	if !ok {
		rq.h.app.usage.Observe(rq.keyID, modelLabel, rq.rec.endpoint, usage.Counts{}, 0)
		return
	}
	rq.keyCounts, rq.keyCounted = c, true
	// the client may be gone: the count is still owed. The memory store
	// does no I/O, and Redis buffers the counts (limits/batch.go), its
	// rare flush detached from the request's end.
	cost, err := p.limiter.Record(rq.r.Context(), rq.keyID, rq.rec.model, c)
	if err != nil {
		rq.h.app.metrics.keyStoreErrors.Inc()
		p.warn(rq.h.logger, "key limits store failed; usage not counted", err)
	}
	rq.keyCost = cost
	rank := rq.h.app.usage.Observe(rq.keyID, modelLabel, rq.rec.endpoint, c, cost)
	kt := p.tokenCounters(rq.h.app.metrics.keyTokens, usage.LabelOf(rq.keyID, rank, metricKeys))
	kt.in.Add(float64(c.Input))
	kt.out.Add(float64(c.Output))
	if c.Cached > 0 {
		kt.cached.Add(float64(c.Cached))
	}
}

// keyTokenCounters are one key label's olla_key_tokens_total series.
type keyTokenCounters struct{ in, out, cached prometheus.Counter }

// tokenCounters looks a label's series up once: WithLabelValues hashes
// and locks on every call. Labels are bounded (metricKeys and "other"),
// so the map is too.
func (p *keyPolicy) tokenCounters(vec *prometheus.CounterVec, label string) *keyTokenCounters {
	if v, ok := p.counters.Load(label); ok {
		return v.(*keyTokenCounters)
	}
	kt := &keyTokenCounters{in: vec.WithLabelValues(label, "in"), out: vec.WithLabelValues(label, "out"),
		cached: vec.WithLabelValues(label, "cached")}
	v, _ := p.counters.LoadOrStore(label, kt)
	return v.(*keyTokenCounters)
}

// metricKeys is how many keys get a label of their own in
// olla_key_tokens_total; later ones are summed as "other".
const metricKeys = 100

// usageTop is how many keys /internal/stats/usage lists by default (the
// rest summed as "other"), and maxUsageTop the most it lists.
const (
	usageTop    = 20
	maxUsageTop = 1000
)

// keyUsageView is one key's row: its totals since start and, with
// key_limits, each limit's current window.
type keyUsageView struct {
	usage.Entry
	Windows []limits.WindowState `json:"windows,omitempty"`
}

// serveUsageStats answers /internal/stats/usage: tokens, cost and
// refusals per key (hashed; the top ?top=N by tokens, default 20), per
// model and per endpoint since the process started, with each listed key's
// limits in their current windows.
func (rq *request) serveUsageStats() error {
	top := usageTop
	if n, err := strconv.Atoi(rq.r.URL.Query().Get("top")); err == nil && n > 0 {
		top = min(n, maxUsageTop)
	}
	rep := rq.h.app.usage.Snapshot(top)
	keys := make([]keyUsageView, 0, len(rep.Keys))
	p := rq.h.keys
	for _, e := range rep.Keys {
		v := keyUsageView{Entry: e}
		if p != nil && e.Name != usage.OtherKey {
			ctx, cancel := context.WithTimeout(rq.r.Context(), 2*time.Second)
			v.Windows, _ = p.limiter.Windows(ctx, e.Name)
			cancel()
		}
		keys = append(keys, v)
	}
	body := map[string]any{
		"timestamp":    time.Now().UTC().Format(time.RFC3339),
		"keys":         keys,
		"models":       rep.Models,
		"endpoints":    rep.Endpoints,
		"keys_tracked": rep.KeysTracked,
		"key_limits":   p != nil,
	}
	if p != nil {
		body["shadow"] = p.shadow
	}
	return rq.writeJSON(http.StatusOK, body)
}
