package olla

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/fleet"
)

// fallbackChain is an alias that names models in order: the request goes
// to the first model that can take it, and moves on to the next, before
// the first byte, when every endpoint of one answers 429 or 503, has no
// room, or none serves it.
type fallbackChain struct {
	name   string
	models []string
}

// fallbackChainFor is the chain model names (exact first, then in any
// case), nil for none.
func (h *Handler) fallbackChainFor(model string) *fallbackChain {
	if len(h.Fallbacks) == 0 || model == "" {
		return nil
	}
	if ms, ok := h.Fallbacks[model]; ok {
		return &fallbackChain{name: model, models: ms}
	}
	for k, ms := range h.Fallbacks {
		if strings.EqualFold(k, model) {
			return &fallbackChain{name: k, models: ms}
		}
	}
	return nil
}

// chainTier is one model of a chain as routed for this request.
type chainTier struct {
	model    string
	decision decision
}

// routeChain routes each model of the chain and returns the first one
// that has candidates; the others wait in rq.tiers. When none has, the
// first model's refusal stands, its reason naming the chain.
func (rq *request) routeChain(rt route, chain *fallbackChain) decision {
	now := time.Now()
	var first *decision
	var skipped []string
	for _, m := range chain.models {
		d := rq.h.route(rq.r.Context(), rt, m, now)
		if first == nil {
			first = &d
		}
		if d.err != nil || len(d.candidates) == 0 {
			skipped = append(skipped, fmt.Sprintf("%s: %s", m, d.reason))
			continue
		}
		rq.tiers = append(rq.tiers, chainTier{model: m, decision: d})
	}
	if len(rq.tiers) == 0 {
		d := *first
		d.reason = fmt.Sprintf("fallback chain %q: no model can take the request (%s)", chain.name, strings.Join(skipped, "; "))
		return d
	}
	d := rq.tiers[0].decision
	d.strategy, d.action = "fallback_chain", "routed"
	if len(skipped) > 0 {
		d.action = "fallback"
	}
	d.reason = chainReason(chain, rq.tiers[0], skipped)
	rq.chainSkipped = skipped
	return d
}

func chainReason(chain *fallbackChain, t chainTier, skipped []string) string {
	why := ""
	if len(skipped) > 0 {
		why = " after " + strings.Join(skipped, "; ")
	}
	return fmt.Sprintf("fallback chain %q: %s%s; %s", chain.name, t.model, why, t.decision.reason)
}

// chainPicker offers the first tier's endpoints, then the next tier's
// once those are spent, and so on. Only the last tier may wait in the
// queue: while a later model may have room, a full one is passed over.
type chainPicker struct {
	rq    *request
	chain *fallbackChain
	tiers []*picker
	i     int
}

// chainPlan makes plan try the chain's tiers in order, first is the first
// tier's picker. It returns how to read the refusal of the tier that
// gave up last.
func (rq *request) chainPlan(plan *engines.Plan, chain *fallbackChain, first *picker, rw *rewriter) func() *apiError {
	cp := &chainPicker{rq: rq, chain: chain, tiers: []*picker{first}}
	for _, t := range rq.tiers[1:] {
		cp.tiers = append(cp.tiers, rq.newPicker(t.decision, t.model))
	}
	for _, pk := range cp.tiers[:len(cp.tiers)-1] {
		pk.queue = nil
	}
	plan.Picker = cp
	plan.MaxAttempts = rq.h.maxAttempts * len(cp.tiers)
	plan.Upstream = func(t engines.Target) (string, []byte) {
		tier := rq.tiers[cp.i]
		name, ok := tier.decision.rewrite[t.(*fleet.Endpoint)]
		if !ok {
			name = tier.model
		}
		return rq.apiPath, rw.bodyFor(name, chain.name)
	}
	return func() *apiError { return cp.tiers[cp.i].refusal }
}

// Next implements engines.Picker.
func (c *chainPicker) Next() (engines.Target, bool) {
	for {
		if t, ok := c.tiers[c.i].Next(); ok {
			return t, true
		}
		if c.i+1 >= len(c.tiers) {
			return nil, false
		}
		c.i++
		c.moved()
	}
}

// moved says in the response headers which model now serves, and why.
func (c *chainPicker) moved() {
	prev := c.rq.tiers[c.i-1]
	c.rq.chainSkipped = append(c.rq.chainSkipped, prev.model+": every endpoint refused or was full")
	t := c.rq.tiers[c.i]
	hdr := c.rq.w.Header()
	hdr.Set("X-Olla-Model", t.model)
	hdr.Set("X-Olla-Routing-Decision", "fallback")
	reason := chainReason(c.chain, t, c.rq.chainSkipped)
	hdr.Set("X-Olla-Routing-Reason", reason)
	c.rq.rec.reason = reason
	if c.rq.h.LoadBalancer == "adaptive" {
		c.tiers[c.i].reasonPrefix = reason + "; "
	}
}

// Remaining implements engines.Picker.
func (c *chainPicker) Remaining() bool {
	if c.tiers[c.i].Remaining() {
		return true
	}
	for _, pk := range c.tiers[c.i+1:] {
		if len(pk.remaining) > 0 {
			return true
		}
	}
	return false
}

// Done implements engines.Picker.
func (c *chainPicker) Done(t engines.Target, out engines.Outcome) { c.tiers[c.i].Done(t, out) }

var _ engines.Picker = (*chainPicker)(nil)

// validateFallbacks: every chain has a clean name, two or more models
// named once, no name shared with an alias, and no chain inside a chain.
func validateFallbacks(chains map[string][]string, aliases map[string][]string) error {
	for name, models := range chains {
		if name == "" || strings.TrimSpace(name) != name {
			return fmt.Errorf("fallback chain %q: the name must be non-empty with no surrounding spaces", name)
		}
		for a := range aliases {
			if strings.EqualFold(a, name) {
				return fmt.Errorf("fallback chain %q has the name of an alias", name)
			}
		}
		if len(models) < 2 {
			return fmt.Errorf("fallback chain %q: give at least two models, in order", name)
		}
		seen := map[string]bool{}
		for _, m := range models {
			if m == "" || strings.TrimSpace(m) != m {
				return fmt.Errorf("fallback chain %q: empty model name", name)
			}
			if seen[strings.ToLower(m)] {
				return fmt.Errorf("fallback chain %q: model %q is listed twice", name, m)
			}
			seen[strings.ToLower(m)] = true
			for other := range chains {
				if strings.EqualFold(other, m) {
					return fmt.Errorf("fallback chain %q names the chain %q: chains do not nest", name, m)
				}
			}
		}
	}
	return nil
}
