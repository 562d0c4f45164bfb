// Package fleet holds the endpoints: each one's runtime state (Endpoint),
// pooled across configs and reloads in a process-wide registry (Register,
// Release, All) and reached from other packages only through methods, as
// Caddy's reverseproxy reaches its pooled Host; its resolved configuration
// (Settings, a plain value the olla handler builds); and what keeps the
// state fresh and uses it:
//
//   - Run, the endpoint's background loop, which the olla app owns: health
//     probes (discovery.Probe and Judge), the circuit breaker's half-open
//     trial, model discovery, load-signal and residency polls (profiles'
//     surfaces), and, for `type auto`, classifying what answers (autotype.go);
//   - the scheduler's view (SchedSignals): fresh signals, the slot count
//     learned from them, the concurrency cap and the TTFT table;
//   - an attempt's life: a slot (TryAcquire, or TryEnter/Leave as an
//     admission gate), Attempted, and Finish, which feeds the outcome to
//     passive health (breaker, Retry-After parking, serving evidence);
//   - Status, one reading of everything, for the status routes, metrics,
//     dashboard and admin API.
//
// fleet imports no root code. wall_test.go holds the wall: no state type
// here has an exported field, so Go itself keeps other packages to methods.
package fleet
