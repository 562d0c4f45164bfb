package fleet

import (
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/profiles"
)

// BenchmarkModelMemory reports the heap one discovered model holds in an
// endpoint's snapshot (a typical Ollama entry, parsed from its /api/tags
// JSON, with both lookup indexes).
func BenchmarkModelMemory(b *testing.B) {
	const n = 1000
	body := []byte(`{"models":[`)
	for i := range n {
		if i > 0 {
			body = append(body, ',')
		}
		body = fmt.Appendf(body, `{"name":"model-%04d:7b-instruct-q4_K_M","model":"model-%04d:7b-instruct-q4_K_M","modified_at":"2026-11-24T20:00:00Z","size":4683087332,"digest":"sha256:%064d","details":{"parent_model":"","format":"gguf","family":"llama","families":["llama"],"parameter_size":"7.6B","quantization_level":"Q4_K_M"}}`, i, i, i)
	}
	body = append(body, "]}"...)
	keep := make([]*modelSnapshot, 0, b.N)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range b.N {
		models, err := profiles.ParseModels(profiles.FormatOllama, body)
		if err != nil || len(models) != n {
			b.Fatal(err)
		}
		keep = append(keep, newModelSnapshot(models, time.Now()))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N*n), "B/model")
	runtime.KeepAlive(keep)
}

// TestReloadCapsParking: a reload never carries a parking or a put-off
// probe further than the Retry-After cap from now, whatever set it.
func TestReloadCapsParking(t *testing.T) {
	s := testSettings(t, "a", "http://127.0.0.1:1", "ollama")
	st := newEndpoint(s)
	defer st.Destruct()
	day := time.Now().Add(24 * time.Hour).UnixNano()
	st.parkedUntil.Store(day)
	st.nextCheck.Store(day)
	st.health.Store(&Health{Status: discovery.StatusRateLimited, Probed: true})
	st.update(s)
	limit := time.Now().Add(engines.MaxRetryAfter)
	for name, v := range map[string]int64{"parked until": st.parkedUntil.Load(), "next check": st.nextCheck.Load()} {
		if time.Unix(0, v).After(limit) {
			t.Errorf("%s %s after a reload, past the %s cap", name, time.Until(time.Unix(0, v)).Round(time.Second), engines.MaxRetryAfter)
		}
	}
	if got := st.ParkedTill(time.Now()); got.IsZero() || got.After(limit) {
		t.Errorf("parkedTill = %v, want a time within %s", got, engines.MaxRetryAfter)
	}
	// a short parking is kept as it is
	soon := time.Now().Add(time.Minute).UnixNano()
	st.parkedUntil.Store(soon)
	st.update(s)
	if st.parkedUntil.Load() != soon {
		t.Error("a reload moved a parking within the cap")
	}
}

// testSettings are an endpoint's settings as Provision fills them for a
// config naming only its name, URL and type.
func testSettings(tb testing.TB, name, rawURL, typ string) *Settings {
	tb.Helper()
	p, ok := profiles.Lookup(typ)
	if !ok {
		tb.Fatalf("no profile %q", typ)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		tb.Fatal(err)
	}
	join := func(path string) string {
		v := *u
		v.Path = strings.TrimSuffix(u.Path, "/") + path
		return v.String()
	}
	return &Settings{Name: name, Type: p.Name, Profile: p, URL: u, DisplayURL: u.String(), HealthURL: join(p.HealthPath),
		ModelsURL: join(p.ModelsPath), Priority: DefaultPriority, CheckInterval: DefaultCheckInterval, CheckTimeout: DefaultCheckTimeout,
		UnhealthyAfter: discovery.DefaultUnhealthyAfter, Header: http.Header{}, DiscoveryInterval: DefaultDiscoveryInterval,
		DiscoveryTimeout: DefaultDiscoveryTimeout}
}
