package fleet

import (
	"time"

	"github.com/caddy-olla/olla/profiles"
)

// New makes an endpoint's state outside the registry: for tests and
// benchmarks of the packages that use endpoints. Destruct it when done.
func New(s *Settings) *Endpoint { return newEndpoint(s) }

// SetModelsForTest stores models as if discovered now (tests only).
func (st *Endpoint) SetModelsForTest(models []profiles.Model) {
	st.models.Store(newModelSnapshot(models, time.Now()))
}

// SetHealthForTest stores a probe verdict (tests only).
func (st *Endpoint) SetHealthForTest(h Health) { st.health.Store(&h) }

// SetSignalsForTest stores load signals as if polled (tests only): what
// they state of the backend's cache (its size, a restart, an unloaded
// model) is noted as a poll notes it.
func (st *Endpoint) SetSignalsForTest(sig *profiles.Signals) {
	st.sched.signals.Store(sig)
	st.noteSignals(sig)
}
