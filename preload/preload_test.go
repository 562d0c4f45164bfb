package preload

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-olla/olla/profiles"
)

// backend is a fake endpoint: an LRU of resident models holding at most
// capacity (0: any number), a listed set, and a load handler.
type backend struct {
	mu       sync.Mutex
	typ      string
	routable bool
	listed   map[string]bool // nil: discovery not done
	resident []string
	capacity int
	at       time.Time // when the residency report was taken
	noReport bool
	sent     []string                                      // models asked for, in order
	answer   func(model string) (int, http.Header, string) // nil: load it, 200
	inFlight atomic.Int32
	peak     atomic.Int32
	hold     chan struct{} // when set, Send waits for it
}

func newBackend(typ string, listed ...string) *backend {
	b := &backend{typ: typ, routable: true, listed: map[string]bool{}}
	for _, m := range listed {
		b.listed[m] = true
	}
	return b
}

func (b *backend) Routable() bool { b.mu.Lock(); defer b.mu.Unlock(); return b.routable }

func (b *backend) Listed(model string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.listed == nil {
		return "", false
	}
	for name := range b.listed {
		if strings.EqualFold(name, model) {
			return name, true
		}
	}
	return "", true
}

func (b *backend) Signals() *profiles.Signals {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.noReport {
		return nil
	}
	s := &profiles.Signals{LoadedKnown: true, At: b.at}
	for _, m := range b.resident {
		s.AddLoaded(m)
	}
	return s
}

func (b *backend) Profile() *profiles.Profile { p, _ := profiles.Lookup(b.typ); return p }

func (b *backend) Send(ctx context.Context, req profiles.LoadRequest, limit int64) (int, http.Header, []byte, error) {
	n := b.inFlight.Add(1)
	defer b.inFlight.Add(-1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if b.hold != nil {
		select {
		case <-b.hold:
		case <-ctx.Done():
			return 0, nil, nil, ctx.Err()
		}
	}
	model := modelOf(req)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = append(b.sent, model)
	if b.answer != nil {
		status, h, body := b.answer(model)
		if status != http.StatusOK {
			return status, h, []byte(body), nil
		}
	}
	b.loadLocked(model)
	return http.StatusOK, nil, []byte(`{"success":true}`), nil
}

// loadLocked makes model resident, evicting the least recently used.
func (b *backend) loadLocked(model string) {
	for i, m := range b.resident {
		if m == model {
			b.resident = append(b.resident[:i], b.resident[i+1:]...)
			break
		}
	}
	if b.capacity > 0 && len(b.resident) >= b.capacity {
		b.resident = b.resident[1:]
	}
	b.resident = append(b.resident, model)
}

// report stamps a new residency report at t.
func (b *backend) report(t time.Time) { b.mu.Lock(); b.at = t; b.mu.Unlock() }

func (b *backend) sentModels() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.sent...)
}

// failWhile answers loads with status while on is set, then loads them.
func failWhile(on *atomic.Bool, status int, h http.Header, body string) func(string) (int, http.Header, string) {
	return func(string) (int, http.Header, string) {
		if on.Load() {
			return status, h, body
		}
		return http.StatusOK, nil, ""
	}
}

func modelOf(req profiles.LoadRequest) string {
	var v struct {
		Model     string `json:"model"`
		ModelName string `json:"model_name"`
	}
	_ = json.Unmarshal(req.Body, &v)
	if v.Model != "" {
		return v.Model
	}
	if v.ModelName != "" {
		return v.ModelName
	}
	// oMLX: /v1/models/{id}/load
	p := strings.TrimSuffix(strings.TrimPrefix(req.Path, "/v1/models/"), "/load")
	return p
}

// rig steps a Warmer against a backend on a fake clock; each round is a
// new residency report one second later.
type rig struct {
	t    *testing.T
	w    *Warmer
	b    *backend
	now  time.Time
	gate *Gate
	opts Options
	log  *zap.Logger
	logs *observer.ObservedLogs
}

func newRig(t *testing.T, b *backend, wants ...Want) *rig {
	core, logs := observer.New(zap.InfoLevel)
	r := &rig{t: t, w: &Warmer{}, b: b, now: time.Unix(1_000_000, 0), gate: &Gate{}, log: zap.New(core), logs: logs,
		opts: Options{Retries: 2, Timeout: time.Minute}}
	r.w.clock = func() time.Time { return r.now }
	r.w.Configure(wants)
	return r
}

// round advances the clock by d, takes a residency report and steps.
func (r *rig) round(d time.Duration) {
	r.now = r.now.Add(d)
	r.b.report(r.now)
	r.w.Step(context.Background(), r.b, r.opts, r.gate, r.log)
}

// outage takes the endpoint out of rotation for one round and back.
func (r *rig) outage() {
	for _, up := range []bool{false, true} {
		r.b.mu.Lock()
		r.b.routable = up
		r.b.mu.Unlock()
		if !up {
			r.rounds(1)
		}
	}
}

func (r *rig) rounds(n int) {
	for range n {
		r.round(time.Second)
	}
}

func (r *rig) state(model string) ModelStatus {
	for _, m := range r.w.Status().Models {
		if m.Model == model {
			return m
		}
	}
	r.t.Fatalf("no status for %q", model)
	return ModelStatus{}
}

func wants(models ...string) []Want {
	out := make([]Want, len(models))
	for i, m := range models {
		out[i] = Want{Model: m}
	}
	return out
}

func TestWarmsEachModelOnceThenIsWarm(t *testing.T) {
	for _, typ := range []string{"ollama", "llamacpp", "lm-studio", "omlx", "docker-model-runner", "lemonade"} {
		t.Run(typ, func(t *testing.T) {
			b := newBackend(typ, "a", "b", "c")
			r := newRig(t, b, wants("a", "b")...)
			r.rounds(6)
			if got := b.sentModels(); strings.Join(got, ",") != "a,b" {
				t.Fatalf("loads sent %v, want a then b, once each", got)
			}
			st := r.w.Status()
			if st.State != EndpointWarm || st.Loads != 2 || st.Failures != 0 {
				t.Fatalf("status %+v, want warm with 2 loads", st)
			}
			for _, m := range st.Models {
				if m.State != StateResident || m.Loads != 1 {
					t.Fatalf("model %+v, want resident after one load", m)
				}
			}
		})
	}
}

func TestAlreadyResidentIsNotLoaded(t *testing.T) {
	b := newBackend("lm-studio", "a")
	b.resident = []string{"a"}
	r := newRig(t, b, wants("a")...)
	r.rounds(3)
	// LM Studio loads a second instance when asked again: never ask
	if got := b.sentModels(); len(got) != 0 {
		t.Fatalf("sent %v for a resident model", got)
	}
	if st := r.w.Status(); st.State != EndpointWarm {
		t.Fatalf("status %+v", st)
	}
}

func TestMissingModelIsReportedAndOthersWarm(t *testing.T) {
	b := newBackend("ollama", "a", "b")
	r := newRig(t, b, wants("a", "nope", "b")...)
	r.rounds(6)
	if got := b.sentModels(); strings.Join(got, ",") != "a,b" {
		t.Fatalf("sent %v: the missing model must not be asked for", got)
	}
	m := r.state("nope")
	if m.State != StateMissing || !strings.Contains(m.Detail, `does not list "nope"`) {
		t.Fatalf("missing model status %+v", m)
	}
	if r.state("a").State != StateResident || r.state("b").State != StateResident {
		t.Fatalf("the other models are not resident: %+v", r.w.Status())
	}
	if st := r.w.Status(); st.State != EndpointPartial || !strings.Contains(st.Reason, "nope (missing)") {
		t.Fatalf("endpoint status %+v, want partial naming the missing model", st)
	}
	if n := r.logs.FilterMessageSnippet("does not list").Len(); n != 1 {
		t.Fatalf("the missing model was logged %d times, want once", n)
	}
}

func TestLoadsTheListedName(t *testing.T) {
	b := newBackend("lm-studio", "qwen/qwen3-8b")
	r := newRig(t, b, wants("Qwen/Qwen3-8B")...)
	r.rounds(3)
	if got := b.sentModels(); len(got) != 1 || got[0] != "qwen/qwen3-8b" {
		t.Fatalf("sent %v, want the backend's own spelling", got)
	}
	if r.state("Qwen/Qwen3-8B").State != StateResident {
		t.Fatalf("not resident: %+v", r.w.Status())
	}
}

func TestSitewideModelSkippedWhereNotListed(t *testing.T) {
	b := newBackend("ollama", "a")
	r := newRig(t, b, Want{Model: "a"}, Want{Model: "elsewhere", Sitewide: true})
	r.rounds(4)
	if m := r.state("elsewhere"); m.State != StateSkipped {
		t.Fatalf("site-wide model status %+v, want skipped", m)
	}
	if st := r.w.Status(); st.State != EndpointWarm {
		t.Fatalf("status %+v, want warm (skipped models do not count)", st)
	}
}

func TestUnknownListLoadsAndA404MarksMissing(t *testing.T) {
	b := newBackend("omlx")
	b.listed = nil // discovery has not answered
	b.answer = func(model string) (int, http.Header, string) {
		if model == "ghost" {
			return http.StatusNotFound, nil, `{"detail":"Model not found: ghost"}`
		}
		return http.StatusOK, nil, ""
	}
	r := newRig(t, b, wants("ghost", "real")...)
	r.rounds(6)
	if m := r.state("ghost"); m.State != StateMissing || !strings.Contains(m.Detail, "Model not found: ghost") {
		t.Fatalf("ghost %+v", m)
	}
	if got := b.sentModels(); strings.Join(got, ",") != "ghost,real" {
		t.Fatalf("sent %v, want one try for ghost then real", got)
	}
	if r.state("real").State != StateResident {
		t.Fatalf("real not resident: %+v", r.w.Status())
	}
}

func TestMemoryRefusalStopsTheEndpoint(t *testing.T) {
	for name, answer := range map[string]func(string) (int, http.Header, string){
		"omlx 507": func(string) (int, http.Header, string) {
			return http.StatusInsufficientStorage, nil, `{"detail":"Insufficient memory to load big"}`
		},
		"ollama 500 memory": func(string) (int, http.Header, string) {
			return http.StatusInternalServerError, nil, `{"error":"model requires more system memory (64 GiB) than is available (16 GiB)"}`
		},
	} {
		t.Run(name, func(t *testing.T) {
			b := newBackend("omlx", "big", "small")
			b.answer = answer
			r := newRig(t, b, wants("big", "small")...)
			r.rounds(10)
			if got := b.sentModels(); len(got) != 1 {
				t.Fatalf("sent %v after a refusal, want the one refused load only", got)
			}
			st := r.w.Status()
			if st.State != EndpointStopped || !strings.Contains(st.Reason, "refused to load \"big\"") {
				t.Fatalf("status %+v, want stopped naming the refusal", st)
			}
			if r.logs.FilterMessage("preloading stopped on this endpoint").Len() != 1 {
				t.Fatalf("the stop was not logged once: %v", r.logs.All())
			}
		})
	}
}

func TestLoadEvictingAnotherPreloadedModelStops(t *testing.T) {
	b := newBackend("llamacpp", "a", "b")
	b.capacity = 1 // --models-max 1
	r := newRig(t, b, wants("a", "b")...)
	r.rounds(8)
	if got := b.sentModels(); strings.Join(got, ",") != "a,b" {
		t.Fatalf("sent %v, want a, b and nothing after b evicted a", got)
	}
	st := r.w.Status()
	if st.State != EndpointStopped || !strings.Contains(st.Reason, `loading "b" evicted "a"`) {
		t.Fatalf("status %+v, want stopped naming the eviction", st)
	}
}

func TestBackendEvictionIsRewarmedWithBackoff(t *testing.T) {
	b := newBackend("ollama", "a", "other")
	r := newRig(t, b, wants("a")...)
	r.rounds(3)
	if r.state("a").State != StateResident {
		t.Fatalf("a not resident")
	}
	evict := func() {
		b.mu.Lock()
		b.resident = []string{"other"}
		b.mu.Unlock()
	}
	evict()
	r.rounds(3) // first eviction: warmed again at once
	if got := b.sentModels(); len(got) != 2 || r.state("a").State != StateResident {
		t.Fatalf("after one eviction sent %v, state %+v", got, r.state("a"))
	}
	evict()
	r.rounds(10) // second: waits 30s
	if got := b.sentModels(); len(got) != 2 {
		t.Fatalf("second eviction re-warmed within 10s: %v", got)
	}
	if m := r.state("a"); m.State != StateWaiting || m.Evictions != 2 {
		t.Fatalf("state %+v, want waiting after 2 evictions", m)
	}
	r.round(30 * time.Second)
	r.rounds(2)
	if got := b.sentModels(); len(got) != 3 || r.state("a").State != StateResident {
		t.Fatalf("after the backoff sent %v, state %+v", got, r.state("a"))
	}
}

func TestRestartedBackendIsWarmedAtOnceEveryTime(t *testing.T) {
	b := newBackend("ollama", "a")
	r := newRig(t, b, wants("a")...)
	r.rounds(3)
	for i := range 4 {
		b.mu.Lock()
		b.resident = nil // a restart: nothing loaded
		b.mu.Unlock()
		r.rounds(3)
		if got := len(b.sentModels()); got != i+2 || r.state("a").State != StateResident {
			t.Fatalf("restart %d: %d loads, state %+v", i+1, got, r.state("a"))
		}
	}
	if m := r.state("a"); m.Evictions != 0 {
		t.Fatalf("restarts counted as evictions: %+v", m)
	}
}

func TestTransientFailuresRetryThenGiveUpUntilRecovery(t *testing.T) {
	b := newBackend("ollama", "a")
	var fail atomic.Bool
	fail.Store(true)
	b.answer = failWhile(&fail, http.StatusServiceUnavailable, http.Header{"Retry-After": {"100000"}}, `{"error":"server busy"}`)
	r := newRig(t, b, wants("a")...)
	for range 12 {
		r.round(10 * time.Minute) // past any backoff (Retry-After is capped)
	}
	if got := len(b.sentModels()); got != 3 { // the first try and 2 retries
		t.Fatalf("sent %d loads, want 3", got)
	}
	if m := r.state("a"); m.State != StateFailed || !strings.Contains(m.Detail, "gave up after 3") {
		t.Fatalf("state %+v", m)
	}
	// the endpoint goes down and recovers: a new episode tries again
	fail.Store(false)
	r.outage()
	r.rounds(3)
	if m := r.state("a"); m.State != StateResident {
		t.Fatalf("after recovery %+v", m)
	}
}

func TestRecoveryLiftsAStop(t *testing.T) {
	b := newBackend("omlx", "a")
	var refuse atomic.Bool
	refuse.Store(true)
	b.answer = failWhile(&refuse, http.StatusInsufficientStorage, nil, "no memory")
	r := newRig(t, b, wants("a")...)
	r.rounds(3)
	if r.w.Status().State != EndpointStopped {
		t.Fatalf("not stopped: %+v", r.w.Status())
	}
	refuse.Store(false)
	r.outage()
	r.rounds(3)
	if st := r.w.Status(); st.State != EndpointWarm {
		t.Fatalf("after recovery %+v", st)
	}
}

func TestNothingHappensWithoutAResidencyReport(t *testing.T) {
	b := newBackend("ollama", "a")
	b.noReport = true
	r := newRig(t, b, wants("a")...)
	r.rounds(3)
	if len(b.sentModels()) != 0 {
		t.Fatal("loaded without knowing what is resident")
	}
	if st := r.w.Status(); st.State != EndpointWaiting {
		t.Fatalf("status %+v", st)
	}
}

func TestTypesWithoutALoadRoute(t *testing.T) {
	b := newBackend("vllm", "a")
	r := newRig(t, b, wants("a")...)
	r.rounds(2)
	st := r.w.Status()
	if len(b.sentModels()) != 0 || st.State != EndpointUnsupported || !strings.Contains(st.Reason, "no route that loads") {
		t.Fatalf("status %+v", st)
	}
}

func TestConfigureKeepsStateForAnEqualList(t *testing.T) {
	b := newBackend("ollama", "a")
	r := newRig(t, b, wants("a")...)
	r.rounds(3)
	r.w.Configure(wants("a"))
	if r.state("a").Loads != 1 {
		t.Fatal("an equal list reset the state")
	}
	r.w.Configure(nil)
	if r.w.Status() != nil || r.w.Wanted() {
		t.Fatal("an empty list still reports")
	}
}

func TestGateBoundsLoadsAcrossEndpoints(t *testing.T) {
	gate := &Gate{}
	gate.SetLimit(2)
	hold := make(chan struct{})
	var peak atomic.Int32
	var inFlight atomic.Int32
	var wg sync.WaitGroup
	for i := range 6 {
		b := newBackend("ollama", "m")
		b.hold = hold
		b.report(time.Now().Add(time.Hour))
		w := &Warmer{}
		w.Configure(wants("m"))
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.Step(context.Background(), &countingTarget{backend: b, inFlight: &inFlight, peak: &peak}, Options{}, gate, nil)
		}()
		_ = i
	}
	deadline := time.Now().Add(30 * time.Second)
	for inFlight.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a third would have entered by now if the gate let it
	close(hold)
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak loads in flight %d, want 2", p)
	}
}

type countingTarget struct {
	*backend
	inFlight, peak *atomic.Int32
}

func (c *countingTarget) Send(ctx context.Context, req profiles.LoadRequest, limit int64) (int, http.Header, []byte, error) {
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return c.backend.Send(ctx, req, limit)
}

func TestGateGivesUpWithItsContext(t *testing.T) {
	gate := &Gate{}
	gate.SetLimit(1)
	if !gate.acquire(context.Background()) {
		t.Fatal("first acquire failed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() { done <- gate.acquire(ctx) }()
	cancel()
	if <-done {
		t.Fatal("acquired after its context ended")
	}
	gate.release()
	if !gate.acquire(context.Background()) {
		t.Fatal("the place was not handed back")
	}
}

func TestStepStopsWithItsContext(t *testing.T) {
	b := newBackend("ollama", "a")
	b.hold = make(chan struct{}) // never answers
	b.report(time.Now().Add(time.Hour))
	w := &Warmer{}
	w.Configure(wants("a"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Step(ctx, b, Options{}, &Gate{}, nil)
		close(done)
	}()
	for b.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if m := w.Status().Models[0]; m.State != StatePending {
		t.Fatalf("state after a cancelled load %+v, want pending", m)
	}
}

func TestLoadRequestsPerType(t *testing.T) {
	cases := map[string]string{
		"ollama":              `POST /api/generate {"keep_alive":-1,"model":"m:7b"}`,
		"llamacpp":            `POST /models/load {"model":"m:7b"}`,
		"lm-studio":           `POST /api/v1/models/load {"model":"m:7b"}`,
		"omlx":                `POST /v1/models/m:7b/load `,
		"docker-model-runner": `POST /engines/v1/chat/completions {"model":"m:7b"}`,
		"lemonade":            `POST /api/v1/load {"model_name":"m:7b"}`,
	}
	for typ, want := range cases {
		p, _ := profiles.Lookup(typ)
		lr, ok := p.LoadRequest("m:7b", -1)
		if got := lr.Method + " " + lr.Path + " " + string(lr.Body); !ok || got != want {
			t.Errorf("%s: %q, want %q", typ, got, want)
		}
	}
	p, _ := profiles.Lookup("docker-model-runner")
	if lr, _ := p.LoadRequest("m", 0); lr.Header.Get("X-Preload-Only") != "true" {
		t.Error("docker model runner's load lacks X-Preload-Only")
	}
	p, _ = profiles.Lookup("ollama")
	if lr, _ := p.LoadRequest("m", 30*time.Minute); string(lr.Body) != `{"keep_alive":"30m0s","model":"m"}` {
		t.Errorf("ollama keep_alive: %s", lr.Body)
	}
	for _, typ := range []string{"vllm", "sglang", "vllm-mlx", "lmdeploy", "litellm", "openai-compatible"} {
		p, _ := profiles.Lookup(typ)
		if p.CanLoad() {
			t.Errorf("%s claims a load route", typ)
		}
	}
}

func TestQuoteAndRetryAfterAreBounded(t *testing.T) {
	if q := quote([]byte(strings.Repeat("x", 10_000))); len(q) > maxDetail+4 {
		t.Fatalf("quote is %d bytes", len(q))
	}
	if d := retryAfter(http.Header{"Retry-After": {"999999999"}}); d != maxRetryAfter {
		t.Fatalf("retry-after %v", d)
	}
	if d := backoff(1000); d != maxBackoff {
		t.Fatalf("backoff %v", d)
	}
	if d := rewarmDelay(1000); d != maxRewarmDelay {
		t.Fatalf("rewarm %v", d)
	}
}
