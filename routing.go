package olla

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/profiles"
)

// route is what a path under /olla/ addresses: which backend types may
// answer it.
type route struct {
	prefix string
	// types are the canonical backend types allowed; nil means every type.
	types map[string]bool
	// label names the route in error messages.
	label string
}

func (rt route) allows(typ string) bool { return rt.types == nil || rt.types[typ] }

// resolveRoute maps a route prefix to its backend types: a provider prefix
// to its own type only, `openai` to every OpenAI-compatible type, `proxy` to
// every type that serves the API path.
func resolveRoute(prefix, apiPath string) (route, bool) {
	switch prefix {
	case "openai":
		return openAIRoute, true
	case "proxy":
		rt := route{prefix: prefix, label: "any"}
		if ts := profiles.TypesForPath(apiPath); len(ts) > 0 {
			rt.types = make(map[string]bool, len(ts))
			for _, t := range ts {
				rt.types[t] = true
			}
			rt.label = strings.Join(ts, "/")
		}
		return rt, true
	}
	rt, ok := providerRoutes[prefix]
	return rt, ok
}

// The routes that do not depend on the API path, built once: the profiles
// are fixed when the program starts. Their types maps are shared, so
// nothing may write to a route's types.
var (
	openAIRoute    = newOpenAIRoute()
	providerRoutes = newProviderRoutes()
)

func newOpenAIRoute() route {
	types := map[string]bool{}
	for _, p := range profiles.All() {
		if p.OpenAICompatible {
			types[p.Name] = true
		}
	}
	return route{prefix: "openai", types: types, label: "OpenAI-compatible"}
}

// newProviderRoutes maps each profile's route prefix to its own type.
func newProviderRoutes() map[string]route {
	out := map[string]route{}
	for _, prefix := range profiles.Prefixes() {
		p, _ := profiles.ByPrefix(prefix)
		out[prefix] = route{prefix: prefix, types: map[string]bool{p.Name: true}, label: p.Name}
	}
	return out
}

// Routing strategies and fallbacks (model_registry).
const (
	strategyStrict     = "strict"
	strategyOptimistic = "optimistic"
	strategyDiscovery  = "discovery"

	fallbackCompatible = "compatible_only"
	fallbackAll        = "all"
	fallbackNone       = "none"

	defaultDiscoveryRefreshTimeout = 2 * time.Second
)

// routingStrategy is a validated ModelRegistry.
type routingStrategy struct {
	name           string
	fallback       string
	refreshOnMiss  bool
	refreshTimeout time.Duration
}

func newRoutingStrategy(mr *ModelRegistry) (routingStrategy, error) {
	rs := routingStrategy{name: strategyStrict, fallback: fallbackCompatible, refreshTimeout: defaultDiscoveryRefreshTimeout}
	if mr == nil {
		return rs, nil
	}
	switch mr.RoutingStrategy {
	case "":
	case strategyStrict, strategyOptimistic, strategyDiscovery:
		rs.name = mr.RoutingStrategy
	default:
		return rs, fmt.Errorf("unknown routing_strategy %q: expected strict, optimistic or discovery", mr.RoutingStrategy)
	}
	switch mr.FallbackBehavior {
	case "":
	case fallbackCompatible, fallbackAll, fallbackNone:
		rs.fallback = mr.FallbackBehavior
	default:
		return rs, fmt.Errorf("unknown fallback_behavior %q: expected compatible_only, all or none", mr.FallbackBehavior)
	}
	if mr.DiscoveryTimeout != 0 {
		rs.refreshTimeout = time.Duration(mr.DiscoveryTimeout)
	}
	rs.refreshOnMiss = mr.DiscoveryRefreshOnMiss
	return rs, nil
}

// decision is the outcome of routing one request.
type decision struct {
	candidates candidates
	// rewrite maps an endpoint to the model name it knows, where that
	// differs from what the client sent (an alias, or another case).
	rewrite  map[*fleet.Endpoint]string
	strategy string
	action   string // routed, fallback, rejected
	reason   string
	err      *apiError
	// panic: the candidates are not routable, only panic-eligible (see
	// panicRoute); the picker must not skip them for it
	panic bool
}

// route chooses the candidates for a request on rt naming model ("" when
// the request names none).
//
// Panic routing (Envoy's panic threshold, at its extreme): when no
// routable endpoint can take the request, because the route has none or
// because none of its routable ones serves the model, the endpoints that
// our probes took out only for transient failures (timeouts, resets, 5xx
// other than 503: what a loaded backend's health route does first) are
// tried anyway, and X-Olla-Routing-Reason says so. A 503 from us is then
// no better than their answer. fleet.Endpoint.panicEligible lists what
// never qualifies: open breakers, refused connections, 503/401/403/429
// answers, Retry-After parkings, drains and endpoints not probed yet.
func (h *Handler) route(ctx context.Context, rt route, model string, now time.Time) decision {
	// typed and up share one allocation; down is rare
	both := make(candidates, 0, 2*len(h.states))
	typed, up := both[:0:len(h.states)], both[len(h.states):len(h.states)]
	var down candidates
	for _, st := range h.states {
		if rt.allows(st.Type()) {
			typed = append(typed, st)
			if st.Routable(now) {
				up = append(up, st)
			} else if st.PanicEligible(now) {
				down = append(down, st)
			}
		}
	}
	if len(typed) == 0 {
		return rejected(h.strategy.name, "no_endpoint_of_type", apiError{status: http.StatusServiceUnavailable, code: "no_endpoints",
			retryAfter: 30 * time.Second,
			message: fmt.Sprintf("no %s endpoint is configured for /olla/%s/; configured types are %s",
				rt.label, rt.prefix, strings.Join(h.configuredTypes(), ", "))})
	}
	if len(up) == 0 && len(down) > 0 {
		return panicRoute(h.routeAmong(ctx, rt, typed, down, model), "no healthy endpoint")
	}
	d := h.routeAmong(ctx, rt, typed, up, model)
	if d.reason == "model_unavailable" && len(down) > 0 {
		// the model's homes are all out, some only for slow probes
		if p := h.serving(down, model); len(p.candidates) > 0 {
			return panicRoute(p, "no healthy endpoint serves the model")
		}
	}
	return d
}

// panicRoute marks a decision made among panic-eligible endpoints.
func panicRoute(d decision, why string) decision {
	if d.err != nil {
		return d
	}
	d.panic = true
	d.reason = fmt.Sprintf("panic: %s, trying all %d; %s", why, len(d.candidates), d.reason)
	return d
}

// routeAmong chooses among up, the endpoints of the route that may take
// requests; typed are all of the route's endpoints.
func (h *Handler) routeAmong(ctx context.Context, rt route, typed, up candidates, model string) decision {
	if model == "" {
		if len(up) == 0 {
			return rejected(h.strategy.name, "no_routable_endpoint", h.noneUp(rt, typed))
		}
		return decision{candidates: up, strategy: h.strategy.name, action: "routed", reason: "no_model_in_request"}
	}
	d := h.serving(up, model)
	if len(d.candidates) > 0 {
		return d
	}
	if h.strategy.name == strategyDiscovery && h.strategy.refreshOnMiss && len(up) > 0 {
		h.refreshModels(ctx, up)
		if d = h.matchModel(up, model); len(d.candidates) > 0 {
			d.reason = "model_found_after_refresh"
			return d
		}
	}
	return h.miss(rt, typed, up, model)
}

// serving keeps the endpoints of up that serve model, through an alias
// first.
func (h *Handler) serving(up candidates, model string) decision {
	if targets := h.aliasTargets(model); len(targets) > 0 {
		d := decision{strategy: "alias", action: "routed", rewrite: map[*fleet.Endpoint]string{}}
		for _, st := range up {
			for _, target := range targets {
				if name, ok := st.LookupModel(target); ok {
					d.candidates = append(d.candidates, st)
					d.rewrite[st] = name
					break
				}
			}
		}
		if len(d.candidates) > 0 {
			d.reason = fmt.Sprintf("alias %q resolved to %d endpoint(s)", model, len(d.candidates))
			return d
		}
	}
	return h.matchModel(up, model)
}

// matchModel keeps the routable endpoints that serve model.
func (h *Handler) matchModel(up candidates, model string) decision {
	d := decision{strategy: h.strategy.name, action: "routed", reason: "model_found"}
	for _, st := range up {
		if name, ok := st.LookupModel(model); ok {
			if d.candidates == nil {
				d.candidates = make(candidates, 0, len(up))
			}
			d.candidates = append(d.candidates, st)
			if name != model {
				if d.rewrite == nil {
					d.rewrite = map[*fleet.Endpoint]string{}
				}
				d.rewrite[st] = name
			}
		}
	}
	return d
}

// miss decides what happens when no routable endpoint of the route serves
// the model: a fallback the strategy allows, 503 when the model is known
// (or a first discovery is under way) but not routable, else 404.
func (h *Handler) miss(rt route, typed, up candidates, model string) decision {
	var homes []*fleet.Endpoint // endpoints that list the model, any status
	pending := false
	for _, st := range h.states {
		if _, ok := st.LookupModel(model); ok {
			homes = append(homes, st)
		}
		if rt.allows(st.Type()) && st.DiscoveryPending() {
			pending = true
		}
	}
	if h.strategy.name != strategyStrict && len(up) > 0 {
		switch h.strategy.fallback {
		case fallbackAll:
			reason := "model_not_found_fallback"
			if len(homes) > 0 {
				reason = "all_healthy_fallback"
			}
			return decision{candidates: up, strategy: h.strategy.name, action: "fallback", reason: reason}
		case fallbackCompatible:
			// endpoints of the same type as one that lists the model can
			// load it too (an Ollama pulls what another Ollama serves)
			homeTypes := map[string]bool{}
			for _, st := range homes {
				homeTypes[st.Type()] = true
			}
			var compatible candidates
			for _, st := range up {
				if homeTypes[st.Type()] {
					compatible = append(compatible, st)
				}
			}
			if len(compatible) > 0 {
				return decision{candidates: compatible, strategy: h.strategy.name, action: "fallback", reason: "compatible_type_fallback"}
			}
		}
	}
	retry := h.retryAfter(typed)
	switch {
	case len(homes) > 0:
		names := make([]string, 0, len(homes))
		now := time.Now()
		for _, st := range homes {
			why := st.WhyNot(now)
			if why == "" {
				why = string(st.HealthStatus())
			}
			names = append(names, fmt.Sprintf("%s (%s, %s)", st.Name(), st.Type(), why))
		}
		msg := fmt.Sprintf("model %q is served by %s, but none of them is available on /olla/%s/ right now; retry later",
			model, strings.Join(names, ", "), rt.prefix)
		return rejected(h.strategy.name, "model_unavailable", apiError{status: http.StatusServiceUnavailable,
			code: "model_unavailable", message: msg, retryAfter: retry})
	case pending:
		return rejected(h.strategy.name, "discovery_pending", apiError{status: http.StatusServiceUnavailable,
			code: "model_unavailable", retryAfter: retry,
			message: fmt.Sprintf("model %q is not known yet: model discovery has not finished for every %s endpoint; retry shortly", model, rt.label)})
	}
	var unlisted []string // down since start-up: their models are unknown
	for _, st := range typed {
		if !st.Discovered() {
			unlisted = append(unlisted, st.Name())
		}
	}
	note := ""
	if len(unlisted) > 0 {
		note = fmt.Sprintf(" (%s has not listed its models: down since start-up)", strings.Join(unlisted, ", "))
	}
	return rejected(h.strategy.name, "model_not_found", apiError{status: http.StatusNotFound, code: "model_not_found",
		message: fmt.Sprintf("model '%s' not found: no endpoint serves it%s; GET /olla/models lists the models available", model, note)})
}

func rejected(strategy, reason string, e apiError) decision {
	return decision{strategy: strategy, action: "rejected", reason: reason, err: &e}
}

// noneUp explains why no endpoint of the route can take a request.
func (h *Handler) noneUp(rt route, typed candidates) apiError {
	now := time.Now()
	reasons := make([]string, 0, len(typed))
	for _, st := range typed {
		why := st.WhyNot(now)
		if why == "" {
			why = "held back after recent failures"
		}
		reasons = append(reasons, st.Name()+" "+why)
	}
	return apiError{status: http.StatusServiceUnavailable, code: "no_healthy_endpoints", retryAfter: h.retryAfter(typed),
		message: fmt.Sprintf("no %s endpoint is available right now (%s); retry later", rt.label, strings.Join(reasons, "; "))}
}

// retryAfter suggests when to come back: the shortest check interval.
func (h *Handler) retryAfter(typed candidates) time.Duration {
	d := 30 * time.Second
	for _, st := range typed {
		d = min(d, st.Settings().CheckInterval)
	}
	return max(d, time.Second)
}

func (h *Handler) configuredTypes() []string {
	seen := map[string]bool{}
	var out []string
	for _, st := range h.states {
		if t := st.Type(); !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// aliasTargets returns the model names an alias stands for: the exact key
// first, then a case-insensitive match.
func (h *Handler) aliasTargets(model string) []string {
	if len(h.Aliases) == 0 && len(h.Fallbacks) == 0 {
		return nil
	}
	if t, ok := h.Aliases[model]; ok {
		return t
	}
	for k, t := range h.Aliases {
		if strings.EqualFold(k, model) {
			return t
		}
	}
	if c := h.fallbackChainFor(model); c != nil {
		return c.models // where chains do not apply, one alias
	}
	return nil
}

// missRefreshInterval is the least time between two model list fetches a
// miss makes on one endpoint: requests naming models nobody lists share the
// fetch in flight, and the ones after it, within this interval, do not
// fetch again.
const missRefreshInterval = 5 * time.Second

// refreshModels rediscovers the endpoints' models on a miss (the discovery
// strategy), waiting at most the strategy's discovery_timeout. Each
// endpoint fetches once at a time and at most once per missRefreshInterval;
// a fetch runs to its own timeout even when the request that started it
// ends, as others may be waiting on it.
func (h *Handler) refreshModels(ctx context.Context, eps candidates) {
	ctx, cancel := context.WithTimeout(ctx, h.strategy.refreshTimeout)
	defer cancel()
	now := time.Now()
	var wg sync.WaitGroup
	for _, st := range eps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.RefreshOnMiss(ctx, h.app.logger, now, missRefreshInterval, h.strategy.refreshTimeout)
		}()
	}
	wg.Wait()
}
