package olla

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-olla/olla/usage"
	"go.uber.org/zap"

	"github.com/caddy-olla/olla/admission"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/preload"
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
	members map[string]*fleet.Endpoint // identity -> state, this config's endpoints
	names   map[string]string          // endpoint name -> identity, to catch conflicts
	running bool
	cancel  context.CancelFunc
	loops   context.Context
	wg      sync.WaitGroup

	metrics     *ollaMetrics
	stats       *modelStatsStore
	activity    *activity
	usage       *usage.Ledger        // per key, model and endpoint (key_limits)
	room        *admission.Queue     // the waiting room (queue.go)
	bodies      *bodyBudget          // the body budget (budget.go)
	translators *translators         // the Anthropic and Responses translators' counts
	preloads    *preload.Gate        // preload loads in flight across endpoints
	registry    *prometheus.Registry // olla_* only, for /internal/metrics
	shared      bool                 // holds a reference on the shared pool entry

	// the handlers' prefix indexes, for the metrics (prefixCollector)
	prefixMu sync.Mutex
	prefixes []*prefixRouting
}

// addPrefix lists a handler's prefix index for the metrics until dropPrefix.
func (a *App) addPrefix(pr *prefixRouting) {
	a.prefixMu.Lock()
	defer a.prefixMu.Unlock()
	a.prefixes = append(a.prefixes, pr)
}

func (a *App) dropPrefix(pr *prefixRouting) {
	a.prefixMu.Lock()
	defer a.prefixMu.Unlock()
	a.prefixes = slices.DeleteFunc(a.prefixes, func(p *prefixRouting) bool { return p == pr })
}

func (a *App) prefixRoutings() []*prefixRouting {
	a.prefixMu.Lock()
	defer a.prefixMu.Unlock()
	return slices.Clone(a.prefixes)
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "olla", New: func() caddy.Module { return new(App) }}
}

// Provision sets up the app. It does no I/O and starts nothing.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.members = make(map[string]*fleet.Endpoint)
	a.names = make(map[string]string)

	v, _, err := shared.LoadOrNew(sharedKey, func() (caddy.Destructor, error) {
		return newSharedValues(), nil
	})
	if err != nil {
		return err
	}
	a.shared = true
	sv := v.(*sharedValues)
	a.metrics, a.stats, a.activity, a.usage = sv.metrics, sv.stats, sv.activity, sv.usage
	a.room, a.bodies, a.translators, a.preloads = sv.room, sv.bodies, sv.translators, sv.preloads
	cs := append(sv.metrics.collectors(), endpointCollector{a}, prefixCollector{a})
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

// Start runs each endpoint's loop (fleet.Endpoint.Run): it is probed and
// its models discovered at once (unless another config's loop just did),
// then on its own interval.
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

// Stop ends this config's endpoint loops and waits for them. Endpoint state is
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
func (a *App) register(s *fleet.Settings) (*fleet.Endpoint, error) {
	id := s.Identity()
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.names[s.Name]; ok && prev != id {
		other := a.members[prev].Settings()
		return nil, fmt.Errorf("endpoint %q is declared twice with different settings: %s (%s) and %s (%s); give them different names",
			s.Name, other.DisplayURL, other.Type, s.DisplayURL, s.Type)
	}
	st, err := fleet.Register(s)
	if err != nil {
		return nil, err
	}
	if _, dup := a.members[id]; !dup {
		a.members[id] = st
		a.names[s.Name] = id
		if a.running {
			a.startWatcher(st)
		}
	}
	return st, nil
}

// snapshot lists this config's endpoints, for status routes.
func (a *App) snapshot() []*fleet.Endpoint {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*fleet.Endpoint, 0, len(a.members))
	for _, st := range a.members {
		out = append(out, st)
	}
	return out
}

// startWatcher runs st's loop until the app stops or the endpoint's state
// is destructed. The caller holds a.mu.
func (a *App) startWatcher(st *fleet.Endpoint) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		st.Run(a.loops, a.logger)
	}()
}

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
