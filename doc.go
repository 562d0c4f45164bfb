// Package olla is the Olla LLM load balancer as a Caddy module.
//
// The root package is glue: Caddy modules (the olla app and the
// http.handlers.olla handler), the endpoint registry and request
// orchestration. Decisions live in leaf packages: profiles (backend types,
// model lists, load signals), balancer (the scheduling pipeline),
// admission (the queue), discovery (health), engines (proxying).
//
// A request on /olla/<provider>/<api path> goes through, in order:
//
//  1. handler.go ServeHTTP: CORS, rate limits, path normalisation, header
//     size; the body is read once (bounded) and its model extracted
//     (bodyscan.go). With key_limits (keylimits.go) the request's key is
//     read from its placeholder (hashed) and, once the model is known,
//     checked against the key's limits (package limits) before routing.
//  2. routing.go route: the endpoints of the route's types that are
//     routable and serve the model (aliases, fallbacks, panic routing).
//  3. sticky.go keyFor, with sticky_sessions: the session key (hashed)
//     and the endpoint it is pinned to.
//  4. picker.go Next, per attempt: choose asks the sticky pin (strategies
//     other than adaptive) or the balancer.Pipeline, which reads each
//     candidate through the candidates type: priority, our in-flight
//     count, and (signals.go) the backend's polled load signals with our
//     in-flight count when they were read, the slot count learned from
//     them, the concurrency cap and a TTFT average per endpoint and model. A
//     candidate without room is set aside; when all are full the request
//     waits in the admission queue (queue.go).
//  5. The engine (olla or sherpa) sends the attempt and fails over before
//     the first byte; picker.Done feeds the outcome to passive health and
//     the TTFT average, and record.go the metrics and the dashboard. Token
//     counts are read from the response's tail by package usage; with
//     key_limits they are charged to the key (estimated where absent).
//
// /olla/anthropic/ (anthropic.go) runs the same path with hooks: the
// Messages body is validated before routing, candidates whose server speaks
// the Messages API natively form a first tier (passthrough) and the others
// a second (translated by translate/anthropic through the Plan's Upstream
// and Response seams), and a non-stream answer's status is held until it is
// known to translate. /v1/responses (responses.go) narrows the candidates to
// the types that serve it.
//
// Each endpoint's state (endpointState, pooled across configs and
// reloads) is refreshed in the background by its watcher (watch.go:
// health and model discovery) and its load poller (signals.go).
package olla
