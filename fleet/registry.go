package fleet

import (
	"sort"

	"github.com/caddyserver/caddy/v2"
)

// pool holds every endpoint's runtime state, keyed by identity (name, URL,
// type), reference-counted by the configs that declare it. A reload takes a
// second reference before the old config lets go of the first, so health,
// breaker, models, counters and connection pools carry over, and the state
// of an endpoint no config declares any more is destructed.
var pool = caddy.NewUsagePool()

// Register takes a reference on the pooled state of the endpoint s
// declares, creating it on first use; a kept endpoint takes s as its
// settings. Each Register is matched by one Release.
func Register(s *Settings) (*Endpoint, error) {
	v, loaded, err := pool.LoadOrNew(s.Identity(), func() (caddy.Destructor, error) {
		return newEndpoint(s), nil
	})
	if err != nil {
		return nil, err
	}
	st := v.(*Endpoint)
	if loaded {
		st.update(s)
	}
	return st, nil
}

// Release drops a reference Register took.
func Release(s *Settings) {
	_, _ = pool.Delete(s.Identity())
}

// All is every endpoint any loaded config declares, by name.
func All() []*Endpoint {
	var out []*Endpoint
	pool.Range(func(_, v any) bool {
		out = append(out, v.(*Endpoint))
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}
