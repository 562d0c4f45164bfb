package olla

import (
	"context"
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-olla/olla/usage"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(new(App))
	caddy.RegisterModule(new(Handler))
}

// App is the `olla` app. It owns the background work: one watcher goroutine
// per endpoint declared in the current config, probing health and
// discovering models. The endpoints' state itself lives in a package-level
// UsagePool, so it outlives the app across reloads; the app only holds this
// config's view of it.
//
// Handlers register their endpoints while they are provisioned, through
// ctx.App("olla"), so the app needs no configuration of its own.
type App struct {
	ctx    caddy.Context
	logger *zap.Logger

	mu      sync.Mutex
	members map[string]*endpointState // identity -> state, this config's endpoints
	names   map[string]string         // endpoint name -> identity, to catch conflicts
	running bool
	cancel  context.CancelFunc
	loops   context.Context
	wg      sync.WaitGroup

	metrics  *ollaMetrics
	stats    *modelStatsStore
	activity *activity
	usage    *usage.Ledger        // per key, model and endpoint (key_limits)
	registry *prometheus.Registry // olla_* only, for /internal/metrics
	shared   bool                 // holds a reference on the shared pool entry
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "olla", New: func() caddy.Module { return new(App) }}
}

// Provision sets up the app. It does no I/O and starts nothing.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.members = make(map[string]*endpointState)
	a.names = make(map[string]string)

	v, _, err := shared.LoadOrNew(sharedKey, func() (caddy.Destructor, error) {
		return &sharedValues{metrics: newOllaMetrics(), stats: newModelStatsStore(), activity: new(activity), usage: new(usage.Ledger)}, nil
	})
	if err != nil {
		return err
	}
	a.shared = true
	sv := v.(*sharedValues)
	a.metrics, a.stats, a.activity, a.usage = sv.metrics, sv.stats, sv.activity, sv.usage
	cs := append(sv.metrics.collectors(), endpointCollector{a})
	a.registry = prometheus.NewRegistry()
	if err := register(a.registry, cs...); err != nil {
		return fmt.Errorf("registering olla metrics: %w", err)
	}
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if err := register(reg, cs...); err != nil {
			return fmt.Errorf("registering olla metrics with Caddy: %w", err)
		}
	}
	return nil
}

// Cleanup releases the app's reference on the shared metrics and stats.
func (a *App) Cleanup() error {
	if a.shared {
		a.shared = false
		_, _ = shared.Delete(sharedKey)
	}
	return nil
}

// Start runs the watchers: each endpoint is probed and its models
// discovered at once (unless another config's watcher just did), then on
// its own interval.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.loops, a.cancel = context.WithCancel(context.Background())
	a.running = true
	for _, st := range a.members {
		a.startWatcher(st)
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.kickQueue(a.loops)
	}()
	return nil
}

// Stop ends this config's watchers and waits for them. Endpoint state is
// untouched: a new config's watchers carry on from it.
func (a *App) Stop() error {
	a.mu.Lock()
	a.running = false
	if a.cancel != nil {
		a.cancel()
	}
	a.mu.Unlock()
	a.wg.Wait()
	return nil
}

// register adds an endpoint a handler declares and takes a reference on its
// pooled state, which the handler releases in its Cleanup. The same name
// declared with a different URL or type is an error naming both.
func (a *App) register(s *endpointSettings) (*endpointState, error) {
	id := s.identity()
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.names[s.name]; ok && prev != id {
		other := a.members[prev].settings.Load()
		return nil, fmt.Errorf("endpoint %q is declared twice with different settings: %s (%s) and %s (%s); give them different names",
			s.name, other.displayURL, other.typ, s.displayURL, s.typ)
	}
	v, loaded, err := endpoints.LoadOrNew(id, func() (caddy.Destructor, error) {
		return newEndpointState(s), nil
	})
	if err != nil {
		return nil, err
	}
	st := v.(*endpointState)
	if loaded {
		st.update(s)
	}
	if _, dup := a.members[id]; !dup {
		a.members[id] = st
		a.names[s.name] = id
		if a.running {
			a.startWatcher(st)
		}
	}
	return st, nil
}

// release drops a handler's reference on an endpoint's pooled state.
func release(s *endpointSettings) {
	_, _ = endpoints.Delete(s.identity())
}

// snapshot lists this config's endpoints, for status routes.
func (a *App) snapshot() []*endpointState {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*endpointState, 0, len(a.members))
	for _, st := range a.members {
		out = append(out, st)
	}
	return out
}

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
