package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/internal/sim"
	"github.com/caddy-olla/olla/preload"
	"github.com/caddy-olla/olla/profiles"
)

// preloadStatuses reads every endpoint's preload status.
func preloadStatuses(t testing.TB) map[string]*preload.Status {
	t.Helper()
	return preloadStatusesAt(t, "/internal/status/endpoints")
}

// preloadStatusesAt reads them from a status route (the dashboard's data
// has the same endpoints list).
func preloadStatusesAt(t testing.TB, path string) map[string]*preload.Status {
	t.Helper()
	var body struct {
		Endpoints []struct {
			Name    string          `json:"name"`
			Preload *preload.Status `json:"preload"`
		} `json:"endpoints"`
	}
	getJSON(t, path, &body)
	out := map[string]*preload.Status{}
	for _, e := range body.Endpoints {
		out[e.Name] = e.Preload
	}
	return out
}

func modelState(st *preload.Status, model string) preload.ModelStatus {
	if st != nil {
		for _, m := range st.Models {
			if m.Model == model {
				return m
			}
		}
	}
	return preload.ModelStatus{}
}

// simResident reads what a simulator holds in memory through its own
// residency surface and the profile's parser, as a person would ask the
// backend itself.
func simResident(t testing.TB, s *sim.Server, typ string) []string {
	t.Helper()
	p, _ := profiles.Lookup(typ)
	for _, surface := range p.LoadSurfaces {
		res, err := http.Get(s.URL + surface.Path)
		if err != nil {
			t.Fatalf("%s: %v", surface.Path, err)
		}
		b := readAll(t, res)
		if res.StatusCode != http.StatusOK {
			continue
		}
		if sig, err := p.ParseSignals(surface, []byte(b)); err == nil && sig.LoadedKnown {
			return sig.LoadedModels()
		}
	}
	t.Fatalf("%s: no residency surface answered", typ)
	return nil
}

// holds says whether every model is among the resident ones.
func holds(resident []string, models ...string) bool {
	for _, m := range models {
		if !slices.Contains(resident, strings.ToLower(m)) && !slices.Contains(resident, strings.ToLower(m)+":latest") {
			return false
		}
	}
	return true
}

// preloadSim is one backend of each type with a load route (and one
// declared `type auto`).
type preloadSim struct {
	name, typ, chatPath string
	cfg                 sim.Config
	declared            string // the config's type, when not typ
}

var preloadSims = []preloadSim{
	{"p-ollama", "ollama", "/olla/ollama/api/chat", sim.Config{Kind: sim.Ollama}, ""},
	{"p-lmstudio", "lm-studio", "/olla/lmstudio/v1/chat/completions", sim.Config{Kind: sim.LMStudio}, ""},
	{"p-router", "llamacpp", "/olla/llamacpp/v1/chat/completions", sim.Config{Kind: sim.LlamaCpp, Router: true}, ""},
	{"p-omlx", "omlx", "/olla/omlx/v1/chat/completions", sim.Config{Kind: sim.OMLX}, ""},
	{"p-dmr", "docker-model-runner", "/olla/dmr/v1/chat/completions", sim.Config{Kind: sim.DockerModelRunner}, ""},
	{"p-lemonade", "lemonade", "/olla/lemonade/api/v1/chat/completions", sim.Config{Kind: sim.Lemonade}, ""},
	{"p-auto", "ollama", "/olla/ollama/api/chat", sim.Config{Kind: sim.Ollama}, "auto"},
}

// TestPreload: through real Caddy, each backend type with a load route gets
// its preload list (and the site-wide models it lists) loaded after Caddy
// starts, before any request: the simulators themselves report the models
// resident, and the first request for one loads nothing. A preload list
// naming a model the backend lacks gets a clear message in the status and
// nothing else is affected. After a simulator restarts (holding nothing),
// its models are loaded again before the next request.
func TestPreload(t *testing.T) {
	sims := map[string]*sim.Server{}
	block := "\t\tpreload shared {\n\t\t\tconcurrency 3\n\t\t\ttimeout 30s\n\t\t}\n"
	for _, ps := range preloadSims {
		cfg := ps.cfg
		// each model with a distinct name per backend, so routes do not cross
		cfg.Models = []string{ps.name + "-a", ps.name + "-b", ps.name + "-spare"}
		if ps.name == "p-ollama" {
			cfg.Models = append(cfg.Models, "shared")
		}
		cfg.Name, cfg.Tokens = ps.name, 2
		cfg.Capacity = sim.Capacity{MaxLoaded: 3, LoadTime: 200 * time.Millisecond}
		sims[ps.name] = startSim(t, cfg)
		list := ps.name + "-a " + ps.name + "-b"
		if ps.name == "p-ollama" {
			list += " nope" // not on this backend
		}
		typ := ps.typ
		if ps.declared != "" {
			typ = ps.declared
		}
		block += endpointBlock(ps.name, sims[ps.name].URL, typ, "\t\t\tload_interval 100ms", "\t\t\tpreload "+list)
	}
	load(t, site(block))

	// warm before any request
	waitFor(t, "every preload list resident", 60*time.Second, func() bool {
		st := preloadStatuses(t)
		for _, ps := range preloadSims {
			if st[ps.name] == nil {
				return false
			}
			for _, m := range st[ps.name].Models {
				if m.State != preload.StateResident && m.State != preload.StateMissing && m.State != preload.StateSkipped {
					return false
				}
			}
			if !holds(simResident(t, sims[ps.name], ps.typ), ps.name+"-a", ps.name+"-b") {
				return false
			}
		}
		return holds(simResident(t, sims["p-ollama"], "ollama"), "shared")
	})
	st := preloadStatuses(t)
	for _, ps := range preloadSims {
		for _, m := range []string{ps.name + "-a", ps.name + "-b"} {
			if ms := modelState(st[ps.name], m); ms.State != preload.StateResident || ms.Loads != 1 {
				t.Errorf("%s %s: %+v, want resident after one load", ps.name, m, ms)
			}
		}
		if ps.name != "p-ollama" {
			if ms := modelState(st[ps.name], "shared"); ms.State != preload.StateSkipped || !ms.Sitewide {
				t.Errorf("%s: the site-wide model it does not list: %+v", ps.name, ms)
			}
		}
	}
	// the model Ollama lacks: a clear message, never asked for, the rest warm
	nope := modelState(st["p-ollama"], "nope")
	if nope.State != preload.StateMissing || !strings.Contains(nope.Detail, `does not list "nope"`) || nope.Loads != 0 {
		t.Errorf("missing model: %+v", nope)
	}
	// never asked for (a 404 would count a failure), and it keeps the
	// endpoint from "warm" only
	if st["p-ollama"].State != preload.EndpointPartial || st["p-ollama"].Failures != 0 {
		t.Errorf("p-ollama: %+v", st["p-ollama"])
	}
	if ms := modelState(st["p-ollama"], "shared"); ms.State != preload.StateResident || !ms.Sitewide {
		t.Errorf("site-wide model on the backend that lists it: %+v", ms)
	}

	// the dashboard's data carries the same
	for name, p := range preloadStatusesAt(t, "/internal/ui/data") {
		if p == nil || len(p.Models) < 2 {
			t.Errorf("dashboard data for %s has no preload list: %+v", name, p)
		}
	}

	// the first request for each preloaded model loads nothing
	firstRequestsWarm(t, sims, "after start")

	// a restarted backend holds nothing; it is warmed again before the next
	// request, whether the restart was quick (the residency report shows
	// the models gone) or an outage the health checks saw (recovery)
	for _, name := range []string{"p-ollama", "p-omlx"} {
		sims[name].Close()
		if err := sims[name].Restart(); err != nil {
			t.Fatal(err)
		}
	}
	sims["p-router"].Close()
	waitFor(t, "p-router seen down", 30*time.Second, func() bool { return !endpointsStatus(t)["p-router"].Routable })
	if err := sims["p-router"].Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "restarted backends warm again", 60*time.Second, func() bool {
		for _, name := range []string{"p-ollama", "p-omlx", "p-router"} {
			typ := map[string]string{"p-ollama": "ollama", "p-omlx": "omlx", "p-router": "llamacpp"}[name]
			if !holds(simResident(t, sims[name], typ), name+"-a", name+"-b") {
				return false
			}
		}
		return true
	})
	firstRequestsWarm(t, sims, "after a restart")
}

// firstRequestsWarm sends one request for each preloaded model and checks
// the backend loaded nothing for it (its cold-load count did not move).
func firstRequestsWarm(t *testing.T, sims map[string]*sim.Server, when string) {
	t.Helper()
	for _, ps := range preloadSims {
		s := sims[ps.name]
		before := s.CapacityStats().Loads
		model := ps.name + "-a"
		res := post(t, ps.chatPath, `{"model":"`+model+`","stream":false,"messages":[{"role":"user","content":"hi"}]}`)
		if b := readAll(t, res); res.StatusCode != http.StatusOK || res.Header.Get("X-Sim-Name") != ps.name {
			t.Errorf("%s %s: %d from %q: %s", when, model, res.StatusCode, res.Header.Get("X-Sim-Name"), b)
			continue
		}
		if after := s.CapacityStats().Loads; after != before {
			t.Errorf("%s: the first request for %s on %s loaded it cold (%d loads, were %d)", when, model, ps.name, after, before)
		}
	}
}

// TestPreloadNeverFightsTheBackend: a load that evicts another preloaded
// model (llama.cpp router mode holding one model) and a load the backend
// refuses for memory (oMLX's 507) each stop preloading on that endpoint,
// say why in the status, and leave requests alone.
func TestPreloadNeverFightsTheBackend(t *testing.T) {
	router := startSim(t, sim.Config{Kind: sim.LlamaCpp, Router: true, Models: []string{"ra", "rb"}, Name: "router", Tokens: 2,
		Capacity: sim.Capacity{MaxLoaded: 1}})
	mac := startSim(t, sim.Config{Kind: sim.OMLX, Models: []string{"big", "small"}, Name: "mac", Tokens: 2})
	mac.Sim.SetFault(sim.Fault{Mode: sim.FaultStatus, Status: http.StatusInsufficientStorage, Path: "/v1/models/big/load"})
	poll := "\t\t\tload_interval 100ms"
	load(t, site(endpointBlock("router", router.URL, "llamacpp", poll, "\t\t\tpreload ra rb")+
		endpointBlock("mac", mac.URL, "omlx", poll, "\t\t\tpreload big small")))
	waitFor(t, "both stopped", 60*time.Second, func() bool {
		st := preloadStatuses(t)
		return st["router"] != nil && st["router"].State == preload.EndpointStopped &&
			st["mac"] != nil && st["mac"].State == preload.EndpointStopped
	})
	st := preloadStatuses(t)
	if !strings.Contains(st["router"].Reason, `loading "rb" evicted "ra"`) {
		t.Errorf("router: %q", st["router"].Reason)
	}
	if !strings.Contains(st["mac"].Reason, `refused to load "big"`) || !strings.Contains(st["mac"].Reason, "507") {
		t.Errorf("mac: %q", st["mac"].Reason)
	}
	// nothing more is sent: the loads stay where they were
	loads := map[string]int64{"router": st["router"].Loads, "mac": st["mac"].Loads}
	time.Sleep(2 * time.Second) // four preload ticks and many load polls: time for a load that must not come
	st = preloadStatuses(t)
	if st["router"].Loads != loads["router"] || st["mac"].Loads != loads["mac"] || modelState(st["mac"], "small").Loads != 0 {
		t.Errorf("loads went on after the stop: %+v / %+v", st["router"], st["mac"])
	}
	for path, model := range map[string]string{"/olla/llamacpp/v1/chat/completions": "ra", "/olla/omlx/v1/chat/completions": "small"} {
		res := post(t, path, `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)
		if b := readAll(t, res); res.StatusCode != http.StatusOK {
			t.Errorf("%s after the stop: %d %s", model, res.StatusCode, b)
		}
	}
}

// BenchmarkPreloadTTFT measures, through real Caddy in one run, the time to
// first token of the first request for a preloaded model (after Caddy
// started or the backend restarted, once the preload finished), of a warm
// request, and of the first request for a model nobody preloaded (a cold
// load). Two Ollama simulators: TTFT 50 ms, a cold load 400 ms. Run it with
//
//	go test -run '^$' -bench BenchmarkPreloadTTFT -benchtime 5x ./internal/integration/
func BenchmarkPreloadTTFT(b *testing.B) {
	cfg := func(name, model string) sim.Config {
		return sim.Config{Kind: sim.Ollama, Models: []string{model}, Name: name, TTFT: 50 * time.Millisecond, Tokens: 2,
			Capacity: sim.Capacity{MaxLoaded: 1, LoadTime: 400 * time.Millisecond}}
	}
	pre, cold := startSim(b, cfg("pre", "hot")), startSim(b, cfg("cold", "plain"))
	poll := "\t\t\tload_interval 100ms"
	load(b, site(endpointBlock("pre", pre.URL, "ollama", poll, "\t\t\tpreload hot")+endpointBlock("cold", cold.URL, "ollama", poll)))
	var first, warm, coldFirst []time.Duration
	b.ResetTimer()
	for i := range b.N {
		if i > 0 { // the first round measures after Caddy started; the others after a restart
			for _, s := range []*sim.Server{pre, cold} {
				s.Close()
				if err := s.Restart(); err != nil {
					b.Fatal(err)
				}
			}
		}
		waitFor(b, "hot preloaded", 60*time.Second, func() bool {
			st := preloadStatuses(b)["pre"]
			return holds(simResident(b, pre, "ollama"), "hot") && st != nil && st.State == preload.EndpointWarm
		})
		first = append(first, ttftOf(b, "hot"))
		warm = append(warm, ttftOf(b, "hot"))
		coldFirst = append(coldFirst, ttftOf(b, "plain"))
	}
	b.StopTimer()
	med := func(d []time.Duration) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[len(s)/2]) / float64(time.Millisecond)
	}
	b.ReportMetric(med(first), "first-preloaded-ms")
	b.ReportMetric(med(warm), "warm-ms")
	b.ReportMetric(med(coldFirst), "first-cold-ms")
	b.ReportMetric(med(first)/med(warm), "first/warm")
	b.ReportMetric(med(coldFirst)/med(warm), "cold/warm")
}

// ttftOf streams one chat for model through Caddy and returns the time to
// its first content line.
func ttftOf(t testing.TB, model string) time.Duration {
	t.Helper()
	start := time.Now()
	res := post(t, "/olla/ollama/api/chat", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", model, res.StatusCode, readAll(t, res))
	}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		var line struct {
			Message struct{ Content string } `json:"message"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message.Content != "" {
			d := time.Since(start)
			for sc.Scan() { // read the rest so the connection is reused
			}
			return d
		}
	}
	t.Fatal(fmt.Errorf("%s: no content line", model))
	return 0
}
