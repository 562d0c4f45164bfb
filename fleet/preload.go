package fleet

import (
	"context"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-olla/olla/preload"
	"github.com/caddy-olla/olla/profiles"
)

// preloadTick is how often the loop looks at the preload list: often enough
// that an eviction, a restart or a recovery is answered within a load poll
// or two, and cheap (nothing is sent while the list is warm).
const preloadTick = 500 * time.Millisecond

// preloadStep runs the endpoint's Warmer once (preload.Warmer.Step): it
// sends at most one load, bounded by the site's preload timeout.
func (st *Endpoint) preloadStep(ctx context.Context, log *zap.Logger, s *Settings) {
	gate := s.PreloadGate
	if gate == nil {
		gate = new(preload.Gate) // settings built without one (tests): bound this endpoint alone
	}
	st.warmer.Step(ctx, preloadTarget{st}, s.PreloadOptions, gate, log.With(zap.String("endpoint", s.Name)))
}

// preloadTarget is the endpoint as its Warmer sees it (preload.Target).
type preloadTarget struct{ st *Endpoint }

func (t preloadTarget) Routable() bool { return t.st.health.Load().Status.Routable() }

func (t preloadTarget) Listed(model string) (string, bool) {
	if ms := t.st.models.Load(); ms == nil || len(ms.models) == 0 {
		return "", false // no good list yet
	}
	name, _ := t.st.LookupModel(model)
	return name, true
}

func (t preloadTarget) Signals() *profiles.Signals { return t.st.FreshSignals(time.Now()) }

func (t preloadTarget) Profile() *profiles.Profile { return t.st.settings.Load().Profile }

func (t preloadTarget) Send(ctx context.Context, lr profiles.LoadRequest, limit int64) (int, http.Header, []byte, error) {
	s := t.st.settings.Load()
	return preload.SendHTTP(ctx, t.st.transport.Load(), s.URL.String(), s.Header, lr, limit)
}
