package olla

import (
	"errors"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-olla/olla/admission"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/fleet/prefix"
	"github.com/caddy-olla/olla/preload"
	"github.com/caddy-olla/olla/usage"
)

// shared holds what outlives a config and is one for the whole process: the
// metric vectors (so counts carry across reloads), the per-model stats, the
// dashboard's activity, the waiting room, the body budget and the
// translator stats. It lives in a UsagePool entry, referenced by every olla
// app: a reload's new app takes its reference before the old one lets go,
// so requests waiting or holding buffered bytes across a reload keep
// theirs. (The endpoints are pooled the same way, in fleet.)
var shared = caddy.NewUsagePool()

const sharedKey = "olla"

type sharedValues struct {
	metrics     *ollaMetrics
	stats       *modelStatsStore
	activity    *activity
	usage       *usage.Ledger
	room        *admission.Queue // queue.go
	bodies      *bodyBudget      // budget.go
	translators *translators     // translators.go
	preloads    *preload.Gate    // preload loads in flight across endpoints
}

func newSharedValues() *sharedValues {
	room := admission.New()
	return &sharedValues{metrics: newOllaMetrics(room), stats: newModelStatsStore(), activity: new(activity), usage: new(usage.Ledger),
		room: room, bodies: new(bodyBudget), translators: new(translators), preloads: new(preload.Gate)}
}

func (*sharedValues) Destruct() error { return nil }

// ollaMetrics are the request metrics, named olla_* so dashboards built for
// the standalone proxy keep working.
type ollaMetrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	ttft        *prometheus.HistogramVec
	tokens      *prometheus.CounterVec
	failovers   *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	// key_limits
	keyTokens      *prometheus.CounterVec
	keyRefusals    *prometheus.CounterVec
	keyStoreErrors prometheus.Counter
	// catalogueBuilds counts catalogue views built: a rebuild follows a
	// model list or availability change, never a request as such.
	catalogueBuilds *prometheus.CounterVec

	// prefix affinity (prefixroute.go): requests a prompt of their own
	// placed, by the endpoint that served them and whether it held more
	// than the shared head; and releases of a saturated holder
	prefixRequests *prometheus.CounterVec
	prefixReleases *prometheus.CounterVec

	// the admission queue (process-wide, like the endpoints)
	queueWait     prometheus.Histogram
	queueRejected *prometheus.CounterVec
	queueDepth    prometheus.GaugeFunc
}

func newOllaMetrics(room *admission.Queue) *ollaMetrics {
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	return &ollaMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "olla_requests_total",
			Help: "Requests under /olla/, by answering endpoint, model, provider route and status."},
			[]string{"endpoint", "model", "provider", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "olla_request_duration_seconds",
			Help: "Whole request time, to the end of the response body.", Buckets: buckets},
			[]string{"endpoint", "provider"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "olla_time_to_first_token_seconds",
			Help: "Time from the request to the first response body byte.", Buckets: buckets},
			[]string{"endpoint", "model"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "olla_tokens_total",
			Help: "Tokens reported by backends, by direction (in: prompt, out: completion, cached: the part of in read from the server's cache)."},
			[]string{"endpoint", "model", "direction"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "olla_failovers_total",
			Help: "Attempts that moved a request to another endpoint before its first byte."},
			[]string{"provider"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "olla_rate_limited_total",
			Help: "Requests refused by a rate limit, by bucket (global, client, health, endpoint)."},
			[]string{"bucket"}),
		keyTokens: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "olla_key_tokens_total",
			Help: "Tokens per key (hashed), by direction (in, out, cached); past the first 100 keys seen, summed as key=\"other\"."},
			[]string{"key", "direction"}),
		keyRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "olla_key_limit_refusals_total",
			Help: "Requests a key limit refused (mode enforced) or would have (mode shadow), by limit."},
			[]string{"limit", "mode"}),
		keyStoreErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "olla_key_limit_store_errors_total",
			Help: "Key limit store operations that failed (the request was then admitted or refused per on_storage_error)."}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "olla_queue_wait_seconds",
			Help: "Time requests waited in the queue for an endpoint with room.", Buckets: buckets}),
		queueRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "olla_queue_rejected_total",
			Help: "Requests that left the queue without a slot, by reason (full, timeout, client_gone)."},
			[]string{"reason"}),
		queueDepth: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "olla_queue_depth",
			Help: "Requests waiting in the queue now."}, func() float64 { return float64(room.Depth()) }),
		prefixRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "olla_prefix_requests_total",
			Help: "Requests without a session id whose prompt has a block of its own, by the endpoint that served them and match: held (its index held more of the prompt than the shared system prompt and tools) or miss."},
			[]string{"endpoint", "match"}),
		prefixReleases: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "olla_prefix_releases_total",
			Help: "Requests whose prompt another endpoint held, let go because that one was saturated, by the endpoint that served them instead."},
			[]string{"endpoint"}),
		catalogueBuilds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "olla_catalogue_builds_total",
			Help: "Model catalogue views built (merged or encoded), by kind; each follows a model list or availability change."},
			[]string{"view"}),
	}
}

func (m *ollaMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.duration, m.ttft, m.tokens, m.failovers, m.rateLimited, m.catalogueBuilds,
		m.keyTokens, m.keyRefusals, m.keyStoreErrors, m.prefixRequests, m.prefixReleases,
		m.queueWait, m.queueRejected, m.queueDepth}
}

// register adds cs to reg; the same collectors registered twice (two
// handlers, one config) is fine.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// observe counts one finished request. model is already bounded.
func (m *ollaMetrics) observe(rec *requestRecord, model string) {
	status := strconv.Itoa(rec.status)
	m.requests.WithLabelValues(rec.endpoint, model, rec.provider, status).Inc()
	if rec.endpoint == "" {
		return
	}
	m.duration.WithLabelValues(rec.endpoint, rec.provider).Observe(rec.duration.Seconds())
	if rec.ttft > 0 {
		m.ttft.WithLabelValues(rec.endpoint, model).Observe(rec.ttft.Seconds())
	}
	if rec.hasUsage {
		m.tokens.WithLabelValues(rec.endpoint, model, "in").Add(float64(rec.usage.Input))
		m.tokens.WithLabelValues(rec.endpoint, model, "out").Add(float64(rec.usage.Output))
		if rec.usage.Cached > 0 {
			m.tokens.WithLabelValues(rec.endpoint, model, "cached").Add(float64(rec.usage.Cached))
		}
	}
	if rec.failovers > 0 {
		m.failovers.WithLabelValues(rec.provider).Add(float64(rec.failovers))
	}
}

// endpointCollector reports the state of a config's endpoints when
// scraped: health, breaker, in-flight attempts and discovered models.
type endpointCollector struct{ app *App }

var (
	descUp = prometheus.NewDesc("olla_endpoint_up",
		"1 when the endpoint is routable, 0 otherwise.", []string{"endpoint", "type", "status"}, nil)
	descBreaker = prometheus.NewDesc("olla_endpoint_circuit_breaker_open",
		"1 while the endpoint's circuit breaker keeps traffic away.", []string{"endpoint"}, nil)
	descInFlight = prometheus.NewDesc("olla_endpoint_connections",
		"Attempts in flight to the endpoint.", []string{"endpoint"}, nil)
	descModels = prometheus.NewDesc("olla_endpoint_models",
		"Models discovered on the endpoint.", []string{"endpoint"}, nil)
	descEndpointRequests = prometheus.NewDesc("olla_endpoint_requests_total",
		"Attempts sent to the endpoint.", []string{"endpoint"}, nil)
	descEndpointFailures = prometheus.NewDesc("olla_endpoint_failures_total",
		"Attempts to the endpoint that failed (no answer or a 5xx).", []string{"endpoint"}, nil)
	descSignalsFresh = prometheus.NewDesc("olla_endpoint_signals_fresh",
		"1 while the endpoint's load signals are recent enough to schedule on (at most 3 load_intervals old).", []string{"endpoint"}, nil)
	descSignalAge = prometheus.NewDesc("olla_endpoint_signals_age_seconds",
		"Age of the endpoint's last good load-signal read.", []string{"endpoint"}, nil)
	descSignalWaiting = prometheus.NewDesc("olla_endpoint_backend_waiting",
		"Requests waiting in the backend's own queue, as its load surface last said.", []string{"endpoint"}, nil)
	descSignalRunning = prometheus.NewDesc("olla_endpoint_backend_running",
		"Requests the backend is running, as its load surface last said.", []string{"endpoint"}, nil)
	descSignalSlots = prometheus.NewDesc("olla_endpoint_backend_slots",
		"Parallel slots the backend reports (llama.cpp /slots).", []string{"endpoint"}, nil)
	descSignalKV = prometheus.NewDesc("olla_endpoint_backend_kv_cache_usage",
		"The backend's KV-cache occupancy, 0 to 1.", []string{"endpoint"}, nil)
	descSignalWarm = prometheus.NewDesc("olla_endpoint_models_warm",
		"Model names resident on the endpoint now (Ollama /api/ps, LM Studio state), by the last read; a name and its :latest spelling count apart.", []string{"endpoint"}, nil)
	descSignalPollFailures = prometheus.NewDesc("olla_endpoint_signal_poll_failures_total",
		"Load-surface polls that gave no signals (missing, slow, too large or unreadable).", []string{"endpoint"}, nil)
)

func (c endpointCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descBreaker, descInFlight, descModels, descEndpointRequests, descEndpointFailures,
		descSignalsFresh, descSignalAge, descSignalWaiting, descSignalRunning, descSignalSlots, descSignalKV, descSignalWarm, descSignalPollFailures} {
		ch <- d
	}
}

func (c endpointCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for _, st := range c.app.snapshot() {
		fs := st.Status(now)
		name := fs.Settings.Name
		up := 0.0
		if fs.Routable {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, name, fs.Settings.Type, string(fs.Health.Status))
		open := 0.0
		if fs.BreakerBlocked {
			open = 1
		}
		ch <- prometheus.MustNewConstMetric(descBreaker, prometheus.GaugeValue, open, name)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(fs.InFlight), name)
		ch <- prometheus.MustNewConstMetric(descModels, prometheus.GaugeValue, float64(len(fs.Models)), name)
		ch <- prometheus.MustNewConstMetric(descEndpointRequests, prometheus.CounterValue, float64(fs.Requests), name)
		ch <- prometheus.MustNewConstMetric(descEndpointFailures, prometheus.CounterValue, float64(fs.Failures), name)
		collectSignals(ch, &fs, now)
	}
}

// collectSignals reports an endpoint's load signals: only the values its
// backend exposes, so an absent gauge means "unknown", not zero.
func collectSignals(ch chan<- prometheus.Metric, fs *fleet.Status, now time.Time) {
	name := fs.Settings.Name
	ch <- prometheus.MustNewConstMetric(descSignalPollFailures, prometheus.CounterValue, float64(fs.Signals.Failures), name)
	sig := fs.LastSignals
	if sig == nil {
		ch <- prometheus.MustNewConstMetric(descSignalsFresh, prometheus.GaugeValue, 0, name)
		return
	}
	fresh := 0.0
	if fs.SignalsFresh {
		fresh = 1
	}
	ch <- prometheus.MustNewConstMetric(descSignalsFresh, prometheus.GaugeValue, fresh, name)
	ch <- prometheus.MustNewConstMetric(descSignalAge, prometheus.GaugeValue, now.Sub(sig.At).Seconds(), name)
	gauge := func(d *prometheus.Desc, known bool, v float64) {
		if known {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
		}
	}
	gauge(descSignalWaiting, sig.WaitingKnown, float64(sig.Waiting))
	gauge(descSignalRunning, sig.RunningKnown, float64(sig.Running))
	gauge(descSignalSlots, sig.SlotsKnown, float64(sig.SlotsTotal))
	gauge(descSignalKV, sig.KVKnown, sig.KVUsage)
	if sig.LoadedKnown {
		ch <- prometheus.MustNewConstMetric(descSignalWarm, prometheus.GaugeValue, float64(len(sig.LoadedModels())), name)
	}
}

// prefixCollector reports the config's prefix indexes when scraped: each
// endpoint's blocks held and budget (summed over the handlers that route
// to it), blocks evicted for room, and what its backend lost (process-wide,
// from fleet). Labels are endpoint names, which the config bounds; nothing
// of a prompt shows.
type prefixCollector struct{ app *App }

var (
	descPrefixBlocks = prometheus.NewDesc("olla_prefix_index_blocks",
		"Blocks of prompt (256 bytes each) the prefix index holds for the endpoint.", []string{"endpoint"}, nil)
	descPrefixBudget = prometheus.NewDesc("olla_prefix_index_budget_blocks",
		"The most blocks the prefix index may hold for the endpoint (cache_blocks, else the KV cache its backend states, else 65536).", []string{"endpoint"}, nil)
	descPrefixEvictions = prometheus.NewDesc("olla_prefix_index_evictions_total",
		"Blocks the prefix index evicted for room, least recently used first (since this config loaded).", []string{"endpoint"}, nil)
	descPrefixForgets = prometheus.NewDesc("olla_prefix_forgets_total",
		"Times the endpoint's backend lost what it cached, by cause: restart (all of it) or unload (a model's part); the index forgets it.", []string{"endpoint", "cause"}, nil)
)

func (c prefixCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPrefixBlocks, descPrefixBudget, descPrefixEvictions, descPrefixForgets} {
		ch <- d
	}
}

func (c prefixCollector) Collect(ch chan<- prometheus.Metric) {
	totals := map[*fleet.Endpoint]prefix.EndpointStats{}
	for _, pr := range c.app.prefixRoutings() {
		for st := range pr.slots {
			es, t := pr.index.Stats(pr.slot(st)), totals[st]
			t.Blocks, t.Budget, t.Evictions = t.Blocks+es.Blocks, t.Budget+es.Budget, t.Evictions+es.Evictions
			totals[st] = t
		}
	}
	for st, t := range totals {
		name := st.Name()
		ch <- prometheus.MustNewConstMetric(descPrefixBlocks, prometheus.GaugeValue, float64(t.Blocks), name)
		ch <- prometheus.MustNewConstMetric(descPrefixBudget, prometheus.GaugeValue, float64(t.Budget), name)
		ch <- prometheus.MustNewConstMetric(descPrefixEvictions, prometheus.CounterValue, float64(t.Evictions), name)
		restarts, unloads := st.CacheLossCounts()
		ch <- prometheus.MustNewConstMetric(descPrefixForgets, prometheus.CounterValue, float64(restarts), name, "restart")
		ch <- prometheus.MustNewConstMetric(descPrefixForgets, prometheus.CounterValue, float64(unloads), name, "unload")
	}
}
