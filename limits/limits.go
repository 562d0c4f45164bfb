// Package limits enforces per-key token and request limits and budgets:
// tokens and requests per minute, and a cost budget per day and per month,
// for each key and for each key with a named model. Counters live in a
// Store (this process's memory, or Redis shared by every instance).
//
// A request is admitted while every counter it touches is under its limit;
// its request counts are taken then, atomically with the check. Its tokens
// and cost are added when its response has ended, so a response that
// crosses a limit finishes and the next request is refused.
package limits

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddy-olla/olla/usage"
)

// Rule is one set of limits; a zero field is no limit.
type Rule struct {
	TokensPerMinute   int64
	RequestsPerMinute int64
	// BudgetDay and BudgetMonth are in cost units (see Costs), per UTC
	// day and calendar month.
	BudgetDay   float64
	BudgetMonth float64
}

func (r Rule) on() bool {
	return r.TokensPerMinute > 0 || r.RequestsPerMinute > 0 || r.BudgetDay > 0 || r.BudgetMonth > 0
}

// Costs prices tokens for budgets. With every price zero each token costs
// 1, so a budget counts tokens.
type Costs struct {
	Input  float64 // per prompt token not read from cache
	Output float64 // per generated token
	Cached float64 // per prompt token read from cache (default: Input)
}

// Of is what counts c cost.
func (p Costs) Of(c usage.Counts) float64 {
	if p.Input == 0 && p.Output == 0 && p.Cached == 0 {
		return float64(c.Input + c.Output)
	}
	cached := p.Cached
	if cached == 0 {
		cached = p.Input
	}
	fresh := max(c.Input-c.Cached, 0)
	return float64(fresh)*p.Input + float64(c.Cached)*cached + float64(c.Output)*p.Output
}

// MaxBudget bounds a budget so that its count in nano-units fits a counter.
const MaxBudget = 1e9

// nano is a cost in the counters' fixed-point unit.
func nano(cost float64) int64 {
	if !(cost > 0) { // NaN too
		return 0
	}
	return int64(math.Min(math.Round(cost*1e9), 1<<62))
}

// Policy is the limits every key gets.
type Policy struct {
	// Key applies to each key over all models.
	Key Rule
	// Models apply to each key for one model, by name (any case).
	Models map[string]Rule
	Costs  Costs
	// Shadow counts and reports but refuses nothing.
	Shadow bool
}

// Limiter checks and counts requests against a Policy in a Store.
type Limiter struct {
	policy Policy
	models map[string]string // lower-cased name -> the name as configured
	store  Store
	// Now is the clock; tests replace it.
	Now func() time.Time
}

// New makes a limiter.
func New(p Policy, s Store) *Limiter {
	l := &Limiter{policy: p, store: s, Now: time.Now, models: map[string]string{}}
	for name := range p.Models {
		l.models[strings.ToLower(name)] = name
	}
	return l
}

// Store is the limiter's store.
func (l *Limiter) Store() Store { return l.store }

// Costs are the limiter's prices.
func (l *Limiter) Costs() Costs { return l.policy.Costs }

// KeyID is the form a key is kept and shown in: a hash, so stores, stats
// and logs never hold a credential, and a long key costs no more than a
// short one.
func KeyID(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	var b [2 + 16]byte
	b[0], b[1] = 'k', ':'
	hex.Encode(b[2:], sum[:8])
	return string(b[:])
}

// Decision is what Admit says of a request.
type Decision struct {
	// Allowed is false when a limit refuses the request.
	Allowed bool
	// Shadowed: a limit would have refused it, but the policy is shadow.
	Shadowed bool
	// Limit names the limit at fault ("tokens_per_minute"), Model the
	// model of a per-model limit ("" for the key's own).
	Limit string
	Model string
	// Max and Used are the limit and what its window had counted (costs
	// in cost units).
	Max, Used float64
	// RetryAfter is when the limit's window ends.
	RetryAfter time.Duration
}

// Describe says which limit refused and by how much, for an error message.
func (d Decision) Describe() string {
	scope := "the key's"
	if d.Model != "" {
		scope = fmt.Sprintf("the key's %q", d.Model)
	}
	return fmt.Sprintf("%s %s limit of %s is reached (used %s)", scope, d.Limit, num(d.Max), num(d.Used))
}

func num(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.6g", v)
}

// kind is one limit of a Rule.
type kind struct {
	name   string
	window Window
	limit  func(Rule) int64
	cost   bool // counted in nano-units
}

// kinds are the limits of a Rule; requestsKind is the one counted at
// admission.
const requestsKind = 0

var kinds = [...]kind{
	{"requests_per_minute", Minute, func(r Rule) int64 { return r.RequestsPerMinute }, false},
	{"tokens_per_minute", Minute, func(r Rule) int64 { return r.TokensPerMinute }, false},
	{"budget_day", Day, func(r Rule) int64 { return nano(r.BudgetDay) }, true},
	{"budget_month", Month, func(r Rule) int64 { return nano(r.BudgetMonth) }, true},
}

// counter is one counter of a key (and model).
func counter(keyID, model string, k kind) Counter {
	return Counter{Key: keyID, Model: model, Kind: k.name, Window: k.window}
}

// requestCounters is one request's counters: a key's and a model's of
// each kind. Pooled: a slice handed to a Store escapes, and a request
// should not allocate for its counting.
type requestCounters [2 * len(kinds)]Counter

var counterPool = sync.Pool{New: func() any { return new(requestCounters) }}

// rules are the rules that apply to model: the key's, and the model's if
// one is configured. The model comes back as configured ("" for none).
func (l *Limiter) rules(model string) (Rule, string, Rule) {
	name, ok := l.models[strings.ToLower(model)]
	if !ok {
		return l.policy.Key, "", Rule{}
	}
	return l.policy.Key, name, l.policy.Models[name]
}

// Admit checks the request against every limit that applies to key and
// model and counts it. A store error is returned with an allowing
// decision; the caller decides whether to fail open or closed.
func (l *Limiter) Admit(ctx context.Context, keyID, model string) (Decision, error) {
	keyRule, mname, modelRule := l.rules(model)
	// which counter is which limit, for the refusal: on the stack
	type slot struct {
		kind  uint8
		model bool
	}
	var meta [2 * len(kinds)]slot
	buf := counterPool.Get().(*requestCounters)
	defer counterPool.Put(buf)
	cs := buf[:0]
	add := func(r Rule, m string) {
		for i, k := range kinds {
			limit := k.limit(r)
			if limit <= 0 {
				continue
			}
			c := counter(keyID, m, k)
			c.Limit = limit
			if i == requestsKind {
				c.N = 1
			}
			meta[len(cs)] = slot{uint8(i), m != ""}
			cs = append(cs, c)
		}
	}
	add(keyRule, "")
	if mname != "" {
		add(modelRule, mname)
	}
	if len(cs) == 0 {
		return Decision{Allowed: true}, nil
	}
	now := l.Now()
	res, err := l.store.Take(ctx, now, cs, l.policy.Shadow)
	if err != nil || res.Over < 0 {
		return Decision{Allowed: true}, err
	}
	m := meta[res.Over]
	k := kinds[m.kind]
	d := Decision{Limit: k.name, Max: float64(cs[res.Over].Limit), Used: float64(res.Used)}
	if m.model {
		d.Model = mname
	}
	if k.cost {
		d.Max, d.Used = d.Max/1e9, d.Used/1e9
	}
	_, end := k.window.bounds(now)
	d.RetryAfter = max(end.Sub(now), time.Second)
	if l.policy.Shadow {
		d.Allowed, d.Shadowed = true, true
	}
	return d, nil
}

// Record adds a finished request's tokens and cost to its key's (and
// model's) counters, and returns the cost.
func (l *Limiter) Record(ctx context.Context, keyID, model string, c usage.Counts) (float64, error) {
	cost := l.policy.Costs.Of(c)
	keyRule, mname, modelRule := l.rules(model)
	tokens := max(c.Input, 0) + max(c.Output, 0)
	buf := counterPool.Get().(*requestCounters)
	defer counterPool.Put(buf)
	cs := buf[:0]
	add := func(r Rule, m string) {
		for i, k := range kinds {
			if i == requestsKind || k.limit(r) <= 0 {
				continue
			}
			c := counter(keyID, m, k)
			c.N = tokens
			if k.cost {
				c.N = nano(cost)
			}
			if c.N > 0 {
				cs = append(cs, c)
			}
		}
	}
	add(keyRule, "")
	if mname != "" {
		add(modelRule, mname)
	}
	if len(cs) == 0 {
		return cost, nil
	}
	return cost, l.store.Add(ctx, l.Now(), cs)
}

// WindowState is one limit's state in its current window, for the stats page.
type WindowState struct {
	Limit  string  `json:"limit"`
	Model  string  `json:"model,omitempty"`
	Window string  `json:"window"`
	Used   float64 `json:"used"`
	Max    float64 `json:"max"`
}

// Windows reads a key's limits in their current windows (one store round
// trip).
func (l *Limiter) Windows(ctx context.Context, keyID string) ([]WindowState, error) {
	var cs []Counter
	var out []WindowState
	add := func(r Rule, m string) {
		for _, k := range kinds {
			limit := k.limit(r)
			if limit <= 0 {
				continue
			}
			cs = append(cs, counter(keyID, m, k))
			ws := WindowState{Limit: k.name, Model: m, Window: k.window.String(), Max: float64(limit)}
			if k.cost {
				ws.Max /= 1e9
			}
			out = append(out, ws)
		}
	}
	add(l.policy.Key, "")
	names := make([]string, 0, len(l.policy.Models))
	for name := range l.policy.Models {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		add(l.policy.Models[name], name)
	}
	if len(cs) == 0 {
		return nil, nil
	}
	used, err := l.store.Peek(ctx, l.Now(), cs)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Used = float64(used[i])
		if kinds[kindIndex(out[i].Limit)].cost {
			out[i].Used /= 1e9
		}
	}
	return out, nil
}

func kindIndex(name string) int {
	for i, k := range kinds {
		if k.name == name {
			return i
		}
	}
	return 0
}

// On says whether the policy limits anything.
func (p Policy) On() bool {
	if p.Key.on() {
		return true
	}
	for _, r := range p.Models {
		if r.on() {
			return true
		}
	}
	return false
}
