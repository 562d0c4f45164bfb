package usage

import (
	"cmp"
	"slices"
	"sync"
)

// Totals are the counts of one key, model or endpoint.
type Totals struct {
	Requests int64   `json:"requests"`
	Input    int64   `json:"input_tokens"`
	Output   int64   `json:"output_tokens"`
	Cached   int64   `json:"cached_tokens"`
	Cost     float64 `json:"cost"`
	// Estimated counts requests whose tokens were (partly) estimated.
	Estimated int64 `json:"estimated_requests"`
	// Refused and Shadowed count requests a limit refused, or would have
	// (shadow mode).
	Refused  int64 `json:"refused,omitempty"`
	Shadowed int64 `json:"would_refuse,omitempty"`
}

func (t *Totals) add(c Counts, cost float64) {
	t.Requests++
	t.Input += c.Input
	t.Output += c.Output
	t.Cached += c.Cached
	t.Cost += cost
	if c.Estimated {
		t.Estimated++
	}
}

// Ledger keeps usage totals since the process started: per key, per model
// and per endpoint. At most MaxKeys keys are kept apart; the rest are
// summed as OtherKey, so client-chosen keys cannot grow it without bound.
// Model and endpoint names must come from a bounded set (the catalogue,
// the config).
type Ledger struct {
	MaxKeys int

	mu        sync.Mutex
	keys      map[string]*Totals
	order     map[string]int // the order keys were first seen
	models    map[string]*Totals
	endpoints map[string]*Totals
}

// OtherKey stands for every key past a Ledger's MaxKeys.
const OtherKey = "other"

// DefaultMaxKeys is a Ledger's bound when MaxKeys is 0.
const DefaultMaxKeys = 1000

func (l *Ledger) key(k string) *Totals {
	if l.keys == nil {
		l.keys, l.order = map[string]*Totals{}, map[string]int{}
		l.models, l.endpoints = map[string]*Totals{}, map[string]*Totals{}
	}
	if t, ok := l.keys[k]; ok {
		return t
	}
	limit := l.MaxKeys
	if limit <= 0 {
		limit = DefaultMaxKeys
	}
	if len(l.keys) >= limit {
		k = OtherKey
		if t, ok := l.keys[k]; ok {
			return t
		}
	}
	t := &Totals{}
	l.keys[k] = t
	l.order[k] = len(l.order)
	return t
}

// LabelOf is the name a key's metrics go under: the key itself when it was
// among the first n keys seen (its rank, from Observe, is below n), else
// OtherKey, so metric labels stay of bounded cardinality.
func LabelOf(key string, rank, n int) string {
	if rank >= 0 && rank < n {
		return key
	}
	return OtherKey
}

func named(m map[string]*Totals, name string) *Totals {
	t, ok := m[name]
	if !ok {
		t = &Totals{}
		m[name] = t
	}
	return t
}

// Observe adds one finished request. rank is the order the key was first
// seen in (0 for the first), or -1 when it is counted as OtherKey; see
// LabelOf. One call, one lock, for the counts and the label.
func (l *Ledger) Observe(key, model, endpoint string, c Counts, cost float64) (rank int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.key(key).add(c, cost)
	rank = -1
	if i, ok := l.order[key]; ok {
		rank = i
	}
	if model != "" {
		named(l.models, model).add(c, cost)
	}
	if endpoint != "" {
		named(l.endpoints, endpoint).add(c, cost)
	}
	return rank
}

// Refused counts a request a limit refused; Shadowed one it would have.
func (l *Ledger) Refused(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.key(key).Refused++
}

func (l *Ledger) Shadowed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.key(key).Shadowed++
}

// Entry is one named row of a Report.
type Entry struct {
	Name string `json:"name"`
	Totals
}

// Report is a Ledger's snapshot.
type Report struct {
	Keys      []Entry `json:"keys"`
	Models    []Entry `json:"models"`
	Endpoints []Entry `json:"endpoints"`
	// KeysTracked is how many keys the ledger keeps apart.
	KeysTracked int `json:"keys_tracked"`
}

// Snapshot reports the top n keys by tokens (the rest summed as OtherKey)
// and every model and endpoint, busiest first.
func (l *Ledger) Snapshot(n int) Report {
	l.mu.Lock()
	r := Report{Keys: entries(l.keys), Models: entries(l.models), Endpoints: entries(l.endpoints), KeysTracked: len(l.keys)}
	l.mu.Unlock()
	if len(r.Keys) > n {
		rest := Entry{Name: OtherKey}
		kept := r.Keys[:0:0]
		for _, e := range r.Keys {
			if len(kept) < n && e.Name != OtherKey {
				kept = append(kept, e)
				continue
			}
			rest.Requests += e.Requests
			rest.Input += e.Input
			rest.Output += e.Output
			rest.Cached += e.Cached
			rest.Cost += e.Cost
			rest.Estimated += e.Estimated
			rest.Refused += e.Refused
			rest.Shadowed += e.Shadowed
		}
		r.Keys = append(kept, rest)
	}
	return r
}

func entries(m map[string]*Totals) []Entry {
	out := make([]Entry, 0, len(m))
	for name, t := range m {
		out = append(out, Entry{Name: name, Totals: *t})
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := cmp.Compare(b.Input+b.Output, a.Input+a.Output); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Requests, a.Requests); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}
