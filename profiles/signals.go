package profiles

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Signals is what one poll of a backend's load surface said about it. Every
// value has a Known flag: a backend that does not expose a value, or exposed
// it in a form we cannot trust, leaves it unknown, and an unknown value must
// score neutral. Signals are read-only once parsed (copies share the loaded
// set), so one value may be read by any number of goroutines.
type Signals struct {
	// LoadedKnown marks loaded as read: the models resident now (Ollama
	// /api/ps, LM Studio entries with state "loaded"). Use Resident to ask.
	LoadedKnown bool
	loaded      map[string]struct{} // lower-case names and their aliases

	// ServesListed says the backend serves every model it lists without
	// loading one first (vLLM, SGLang, llama.cpp): each counts as resident.
	ServesListed bool

	WaitingKnown bool
	Waiting      int64 // requests queued, not yet running

	RunningKnown bool
	Running      int64 // requests being processed

	SlotsKnown bool
	SlotsTotal int64 // parallel slots (llama.cpp /slots)
	SlotsBusy  int64 // slots processing a request

	KVKnown bool
	KVUsage float64 // KV-cache occupancy, 0..1

	// StartedKnown: the backend stated when its process started
	// (process_start_time_seconds on vLLM's and SGLang's /metrics); a new
	// value means it restarted and its caches are empty.
	StartedKnown bool
	Started      int64 // unix milliseconds
	// DecodeKnown marks DecodeSeconds and DecodeTokens as read: the
	// backend's own running totals of time spent between output tokens and
	// of those tokens (vLLM's and SGLang's inter-token latency histogram,
	// sum and count; llama.cpp's tokens_predicted_seconds_total and
	// tokens_predicted_total). Their growth between two polls is the box's
	// time per output token.
	DecodeKnown   bool
	DecodeSeconds float64
	DecodeTokens  float64

	// CacheKnown: the backend stated how many tokens its KV cache holds
	// (vLLM's cache_config_info num_gpu_blocks × block_size, llama.cpp's
	// n_ctx summed over its /slots), at most MaxCacheTokens.
	CacheKnown  bool
	CacheTokens int64

	// At is when the body was parsed; callers ignore signals that are too
	// old (the design's rule: older than three polling intervals).
	At time.Time
}

// Resident reports whether model is loaded now and whether that is known.
// Ollama's "tiny" and "tiny:latest" name the same model. It does not
// allocate for a lower-case model name.
func (s *Signals) Resident(model string) (resident, known bool) {
	if s.ServesListed {
		return true, true
	}
	if !s.LoadedKnown {
		return false, false
	}
	_, ok := s.loaded[strings.ToLower(model)]
	return ok, true
}

// LoadedModels returns the resident models' names (with their aliases),
// sorted, for status pages. It is nil unless LoadedKnown.
func (s *Signals) LoadedModels() []string {
	if !s.LoadedKnown {
		return nil
	}
	out := make([]string, 0, len(s.loaded))
	for name := range s.loaded {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// AddLoaded records name as resident and marks the loaded set known. It is
// for building Signals by hand (tests, simulators); call it before sharing.
func (s *Signals) AddLoaded(name string) {
	s.LoadedKnown = true
	s.addLoaded(name)
}

func (s *Signals) addLoaded(name string) {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return
	}
	if s.loaded == nil {
		s.loaded = map[string]struct{}{}
	}
	s.loaded[name] = struct{}{}
	// Ollama lists "tiny:latest" and answers to "tiny".
	if base, ok := strings.CutSuffix(name, ":latest"); ok && base != "" {
		s.loaded[base] = struct{}{}
	}
}

// Load-surface formats: how a LoadSurface's body is read.
const (
	SignalsOllamaPS = "ollama-ps"       // Ollama GET /api/ps
	SignalsLMStudio = "lmstudio-models" // LM Studio GET /api/v0/models
	SignalsSlots    = "llamacpp-slots"  // llama.cpp GET /slots
	SignalsMetrics  = "prometheus"      // GET /metrics (vLLM, SGLang, llama.cpp --metrics)
)

// LoadSurface is one URL path that tells how busy a backend is, and the
// format of its body.
type LoadSurface struct {
	Path   string
	Format string // one of the Signals* constants
	// Also marks a residency surface read on every poll besides the first
	// load surface that answered (llama.cpp's /models, which says which
	// models a router-mode server has loaded); see Signals.WithResidency.
	Also bool
}

// WithResidency is s with the loaded set r read, when r read one: the
// residency surface's word replaces the type's "serves what it lists" rule.
func (s Signals) WithResidency(r Signals) Signals {
	if !r.LoadedKnown {
		return s
	}
	s.LoadedKnown, s.loaded, s.ServesListed = true, r.loaded, false
	if s.At.IsZero() {
		s.At = r.At
	}
	return s
}

// WithDecode is s with the decode totals r read, when s has none (llama.cpp
// states them on /metrics, read beside /slots).
func (s Signals) WithDecode(r Signals) Signals {
	if r.DecodeKnown && !s.DecodeKnown {
		s.DecodeKnown, s.DecodeSeconds, s.DecodeTokens = true, r.DecodeSeconds, r.DecodeTokens
	}
	return s
}

// maxLoadedModels bounds a loaded-model list. A backend holding more
// resident models than this is not telling the truth (or is not a single
// server), so its list is ignored rather than trusted in part.
const maxLoadedModels = 1024

// ParseSignals reads a load-surface body in the given format (one of the
// Signals* constants). A body it cannot read is an error and gives no
// signals at all; a readable body with some values missing gives those values
// unknown. It never panics, whatever the body: callers cap bodies (1 MiB) and
// may pass a truncated one.
func ParseSignals(format string, body []byte) (Signals, error) {
	var s Signals
	var err error
	switch format {
	case SignalsOllamaPS:
		s, err = ParseOllamaPS(body)
	case SignalsLMStudio:
		s, err = ParseLMStudioModels(body)
	case SignalsSlots:
		s, err = ParseSlots(body)
	case SignalsMetrics:
		s, err = ParseMetrics(body)
	case SignalsOMLXStatus:
		s, err = ParseOMLXStatus(body)
	case SignalsDMRPS:
		s, err = ParseDMRPS(body)
	case SignalsVLLMMLXStatus:
		s, err = ParseVLLMMLXStatus(body)
	case SignalsLlamaModels:
		s, err = ParseLlamaModels(body)
	case SignalsLemonadeHealth:
		s, err = ParseLemonadeHealth(body)
	default:
		return Signals{}, fmt.Errorf("unknown load-surface format %q", format)
	}
	return s, err
}

// ParseOllamaPS reads Ollama's /api/ps: {"models":[{"name","model",...}]}.
// Both "name" and "model" are taken as the loaded model's names; unknown
// fields are ignored.
func ParseOllamaPS(body []byte) (Signals, error) {
	var ps struct {
		Models *[]struct {
			Name  string `json:"name"`
			Model string `json:"model"`
		} `json:"models"`
	}
	if err := decodeJSON(body, &ps); err != nil {
		return Signals{}, fmt.Errorf("ollama /api/ps: %w", err)
	}
	if ps.Models == nil {
		return Signals{}, fmt.Errorf("ollama /api/ps: no \"models\" list")
	}
	if n := len(*ps.Models); n > maxLoadedModels {
		return Signals{}, fmt.Errorf("ollama /api/ps: %d loaded models, more than %d: ignored", n, maxLoadedModels)
	}
	s := Signals{LoadedKnown: true, loaded: map[string]struct{}{}, At: time.Now()}
	for _, m := range *ps.Models {
		s.addLoaded(m.Name)
		s.addLoaded(m.Model)
	}
	return s, nil
}

// ParseLMStudioModels reads LM Studio's /api/v0/models: the models whose
// state is "loaded" are resident.
func ParseLMStudioModels(body []byte) (Signals, error) {
	models, err := ParseModels(FormatLMStudio, body)
	if err != nil {
		return Signals{}, fmt.Errorf("lm studio /api/v0/models: %w", err)
	}
	s := Signals{LoadedKnown: true, loaded: map[string]struct{}{}, At: time.Now()}
	n := 0
	for _, m := range models {
		if m.State == "loaded" {
			if n++; n > maxLoadedModels {
				return Signals{}, fmt.Errorf("lm studio /api/v0/models: more than %d loaded models: ignored", maxLoadedModels)
			}
			s.addLoaded(m.Name)
		}
	}
	return s, nil
}

// ParseSlots reads llama.cpp's /slots: one object per parallel slot, busy
// when "is_processing" is true. The busy slots are also the running count.
func ParseSlots(body []byte) (Signals, error) {
	var slots []struct {
		IsProcessing *bool           `json:"is_processing"`
		NCtx         json.RawMessage `json:"n_ctx"` // read apart: a bad one says nothing of the load

	}
	if err := decodeJSON(body, &slots); err != nil {
		return Signals{}, fmt.Errorf("llama.cpp /slots: %w", err)
	}
	if len(slots) == 0 {
		return Signals{}, fmt.Errorf("llama.cpp /slots: no slots")
	}
	s := Signals{SlotsKnown: true, RunningKnown: true, At: time.Now()}
	s.SlotsTotal = int64(len(slots))
	for i, slot := range slots {
		if slot.IsProcessing == nil {
			return Signals{}, fmt.Errorf("llama.cpp /slots: slot %d has no is_processing", i)
		}
		if *slot.IsProcessing {
			s.SlotsBusy++
		}
	}
	s.Running = s.SlotsBusy
	// each slot has its share of the context (llama-server -c 4096 -np 4
	// gives four of 1024); one without a believable size says nothing
	total := 0.0
	for _, slot := range slots {
		n := positiveInt(strings.Trim(string(slot.NCtx), `"`))
		if n == 0 {
			return s, nil
		}
		total += n
	}
	s.CacheKnown, s.CacheTokens = true, int64(min(total, MaxCacheTokens))
	return s, nil
}

// MaxCacheTokens bounds the KV cache size a backend states (2^40 tokens,
// far beyond any server): a larger claim is capped.
const MaxCacheTokens = 1 << 40

// decodeJSON decodes one JSON value, rejecting trailing data.
func decodeJSON(body []byte, v any) error {
	body = bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")))
	if len(body) == 0 {
		return fmt.Errorf("empty body")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not the expected JSON (%s): %s", describeJSONError(err), snippet(body))
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// A metricSignal maps one backend metric to a Signals value: backend
// signals as data, so a new backend's metric is one more row.
type metricSignal struct {
	name  string
	field signalField
	// fallback rows are used only when no primary row for the field matched
	// (vLLM's older gpu_cache_usage_perc).
	fallback bool
}

type signalField int8

const (
	fieldWaiting signalField = iota
	fieldRunning
	fieldKV
)

// metricSignals are the metrics read from a Prometheus /metrics body. Counts
// are summed over label sets (one per model or data-parallel engine); KV
// usage takes the highest, the engine closest to evicting.
var metricSignals = []metricSignal{
	// vLLM
	{name: "vllm:num_requests_waiting", field: fieldWaiting},
	{name: "vllm:num_requests_running", field: fieldRunning},
	{name: "vllm:kv_cache_usage_perc", field: fieldKV}, // a fraction despite the name
	{name: "vllm:gpu_cache_usage_perc", field: fieldKV, fallback: true},
	// SGLang
	{name: "sglang:num_queue_reqs", field: fieldWaiting},
	{name: "sglang:num_running_reqs", field: fieldRunning},
	{name: "sglang:token_usage", field: fieldKV},
	// llama.cpp with --metrics
	{name: "llamacpp:requests_deferred", field: fieldWaiting},
	{name: "llamacpp:requests_processing", field: fieldRunning},
	{name: "llamacpp:kv_cache_usage_ratio", field: fieldKV}, // older builds only
}

// decodeMetric names a backend's running totals of decode time and output
// tokens: a histogram's sum and count, or two counters.
type decodeMetric struct {
	histogram      string // its _sum is seconds, its _count tokens
	seconds, count string // counters, when there is no histogram
}

// decodeMetrics are read in order; the first one present counts.
var decodeMetrics = []decodeMetric{
	{histogram: "vllm:inter_token_latency_seconds"},
	{histogram: "vllm:time_per_output_token_seconds"}, // before vLLM 0.11
	{histogram: "sglang:inter_token_latency_seconds"},
	{histogram: "sglang:time_per_output_token_seconds"},
	{seconds: "llamacpp:tokens_predicted_seconds_total", count: "llamacpp:tokens_predicted_total"},
}

// decodeTotals reads the first decodeMetrics entry present: seconds and
// tokens, summed over label sets, finite and not negative.
func decodeTotals(families map[string]*dto.MetricFamily) (seconds, tokens float64, ok bool) {
	for _, m := range decodeMetrics {
		if m.histogram != "" {
			mf := families[m.histogram]
			if mf == nil || len(mf.GetMetric()) == 0 {
				continue
			}
			sum, count := 0.0, 0.0
			for _, x := range mf.GetMetric() {
				h := x.GetHistogram()
				if h == nil {
					return 0, 0, false
				}
				sum += h.GetSampleSum()
				count += float64(h.GetSampleCount())
			}
			if math.IsNaN(sum) || math.IsInf(sum, 0) || sum < 0 {
				return 0, 0, false
			}
			return min(sum, maxCount), min(count, maxCount), true
		}
		secs, ok1 := familyValue(families[m.seconds], false)
		toks, ok2 := familyValue(families[m.count], false)
		if ok1 && ok2 {
			return secs, toks, true
		}
	}
	return 0, 0, false
}

// maxCount caps a count a backend reports, so that a lying or broken backend
// cannot overflow anything downstream.
const maxCount = 1 << 30

// ParseMetrics reads the load metrics of vLLM, SGLang and llama.cpp from a
// Prometheus text exposition, with expfmt. Only the lines of the metrics in
// metricSignals are handed to the parser: the rest of a /metrics body
// (histograms, process metrics, whatever a newer server adds) can neither
// slow nor break this. A body cut off mid-line (capped by the caller) loses
// only its last line. A metric whose values are not finite numbers is left
// unknown. A body with none of the metrics is an error.
func ParseMetrics(body []byte) (Signals, error) {
	families, err := parseSelected(body)
	if err != nil {
		return Signals{}, fmt.Errorf("metrics: %w", err)
	}
	s := Signals{At: time.Now()}
	var sums [3]float64
	var known [3]bool
	for _, pass := range []bool{false, true} {
		for _, row := range metricSignals {
			if row.fallback != pass || (pass && known[row.field]) {
				continue
			}
			v, ok := familyValue(families[row.name], row.field == fieldKV)
			if !ok {
				continue
			}
			if row.field == fieldKV {
				sums[row.field] = max(sums[row.field], v)
			} else {
				sums[row.field] += v
			}
			known[row.field] = true
		}
	}
	if !known[fieldWaiting] && !known[fieldRunning] && !known[fieldKV] {
		return Signals{}, fmt.Errorf("metrics: none of the load metrics this proxy reads (%s, ...)", metricSignals[0].name)
	}
	s.StartedKnown, s.Started = startTime(families[processStart])
	s.CacheKnown, s.CacheTokens = cacheTokens(families[cacheConfig])
	count := func(v float64) int64 { return int64(min(math.Round(v), maxCount)) }
	s.WaitingKnown, s.Waiting = known[fieldWaiting], count(sums[fieldWaiting])
	s.RunningKnown, s.Running = known[fieldRunning], count(sums[fieldRunning])
	s.KVKnown, s.KVUsage = known[fieldKV], min(sums[fieldKV], 1)
	s.DecodeSeconds, s.DecodeTokens, s.DecodeKnown = decodeTotals(families)
	return s, nil
}

// cacheConfig is vLLM's KV cache configuration: a gauge of 1 whose labels
// are the settings, num_gpu_blocks and block_size (tokens a block) among
// them; one sample per engine.
const cacheConfig = "vllm:cache_config_info"

// cacheTokens is the KV cache's size in tokens that cache_config_info
// states, summed over the engines (each has its own), capped at
// MaxCacheTokens. A sample without whole positive numbers for both labels
// (vLLM writes "None" before the cache is sized) makes it unknown.
func cacheTokens(mf *dto.MetricFamily) (bool, int64) {
	if mf == nil || len(mf.GetMetric()) == 0 {
		return false, 0
	}
	total := 0.0
	for _, m := range mf.GetMetric() {
		var blocks, size float64
		for _, lp := range m.GetLabel() {
			switch lp.GetName() {
			case "num_gpu_blocks":
				blocks = positiveInt(lp.GetValue())
			case "block_size":
				size = positiveInt(lp.GetValue())
			}
		}
		if blocks == 0 || size == 0 {
			return false, 0
		}
		total += blocks * size
	}
	return true, int64(min(total, MaxCacheTokens))
}

// positiveInt is a label's whole positive number, 0 when it is none.
func positiveInt(v string) float64 {
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || !(n >= 1) || math.IsInf(n, 1) || n != math.Trunc(n) {
		return 0
	}
	return n
}

// processStart is the standard Prometheus process collector's start time,
// which vLLM and SGLang (Python's prometheus_client) expose.
const processStart = "process_start_time_seconds"

// maxStartMillis bounds a stated process start time (the year 2100); a
// value beyond it, or not finite, or not positive, is not believed.
const maxStartMillis = 4_102_444_800_000

// startTime is a process start time family's one value in unix
// milliseconds. More than one sample (a multi-process exposition) says no
// single start time: unknown.
func startTime(mf *dto.MetricFamily) (bool, int64) {
	if mf == nil || len(mf.GetMetric()) != 1 {
		return false, 0
	}
	v, ok := sampleValue(mf.GetMetric()[0], false)
	if ms := v * 1000; ok && ms >= 1 && ms <= maxStartMillis {
		return true, int64(math.Round(ms))
	}
	return false, 0
}

// sampleValue is a gauge's or an untyped sample's value (with counters, a
// counter's too), when it is finite and not negative.
func sampleValue(m *dto.Metric, counters bool) (float64, bool) {
	var v float64
	switch {
	case m.GetGauge() != nil:
		v = m.GetGauge().GetValue()
	case m.GetUntyped() != nil:
		v = m.GetUntyped().GetValue()
	case counters && m.GetCounter() != nil:
		v = m.GetCounter().GetValue()
	default:
		return 0, false
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, false
	}
	return v, true
}

// familyValue is a family's samples summed (or, with highest, their
// maximum). Samples must be gauges, counters or untyped, finite and not
// negative; otherwise the family is unknown.
func familyValue(mf *dto.MetricFamily, highest bool) (float64, bool) {
	if mf == nil || len(mf.GetMetric()) == 0 {
		return 0, false
	}
	total := 0.0
	for _, m := range mf.GetMetric() {
		v, ok := sampleValue(m, true)
		if !ok {
			return 0, false
		}
		if highest {
			total = max(total, v)
		} else {
			total += v
		}
	}
	return min(total, maxCount), true
}

// parseSelected parses the lines of the metrics we read. If the body does
// not end with a newline its last line may have been cut off by the cap:
// when the parse fails because of it, the line is dropped and the rest
// parsed again.
func parseSelected(body []byte) (map[string]*dto.MetricFamily, error) {
	selected, last := selectLines(body)
	families, err := parseText(selected)
	if err != nil && last >= 0 {
		families, err = parseText(selected[:last])
	}
	return families, err
}

func parseText(text []byte) (map[string]*dto.MetricFamily, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(bytes.NewReader(text))
}

// selectLines returns the lines of body that belong to the metrics in
// metricSignals (samples and their # HELP and # TYPE comments), each ended
// with a newline. If the body's last line has no newline and is selected,
// last is the length of the result without it; otherwise last is -1.
func selectLines(body []byte) (selected []byte, last int) {
	last = -1
	for len(body) > 0 {
		line, rest, complete := bytes.Cut(body, []byte("\n"))
		body = rest
		if !wanted(line) {
			continue
		}
		if !complete {
			last = len(selected)
		}
		selected = append(selected, line...)
		selected = append(selected, '\n')
	}
	return selected, last
}

// wanted reports whether a line is a sample, # HELP or # TYPE of one of the
// metrics in metricSignals.
func wanted(line []byte) bool {
	line = bytes.TrimLeft(line, " \t")
	if rest, ok := bytes.CutPrefix(line, []byte("#")); ok {
		rest = bytes.TrimLeft(rest, " \t")
		if r, ok := bytes.CutPrefix(rest, []byte("HELP")); ok {
			rest = r
		} else if r, ok := bytes.CutPrefix(rest, []byte("TYPE")); ok {
			rest = r
		} else {
			return false
		}
		line = bytes.TrimLeft(rest, " \t")
	}
	for _, row := range metricSignals {
		if named(line, row.name) {
			return true
		}
	}
	if named(line, processStart) || named(line, cacheConfig) {
		return true
	}
	for _, m := range decodeMetrics {
		for _, name := range [...]string{m.histogram, m.seconds, m.count} {
			if name == "" {
				continue
			}
			r, ok := bytes.CutPrefix(line, []byte(name))
			if !ok {
				continue
			}
			if m.histogram != "" { // a histogram's lines: the family, its _sum and _count (not its buckets)
				if s, ok := bytes.CutPrefix(r, []byte("_sum")); ok {
					r = s
				} else if s, ok := bytes.CutPrefix(r, []byte("_count")); ok {
					r = s
				}
			}
			if named(r, "") {
				return true
			}
		}
	}
	return false
}

// named reports whether line starts with the metric name.
func named(line []byte, name string) bool {
	r, ok := bytes.CutPrefix(line, []byte(name))
	return ok && len(r) > 0 && (r[0] == ' ' || r[0] == '\t' || r[0] == '{')
}
