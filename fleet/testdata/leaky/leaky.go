// Package leaky is a fixture for TestStateBehindMethods: a pooled type that
// exposes a field, which the wall check must report.
package leaky

import "sync/atomic"

// Endpoint is a state type with one exported field (a violation) and one
// unexported (fine).
type Endpoint struct {
	InFlight atomic.Int64
	requests atomic.Int64
}

// Settings is a value type the check allows to have exported fields.
type Settings struct{ Name string }

// nested states hide fields inside, exported or not; Exposed is a violation.
type nested struct {
	Exposed int
	embedded
}

type embedded struct{ kept int }

func (e *Endpoint) Requests() int64 { return e.requests.Load() }

var _ = nested{}
