// Package olla is the Olla LLM load balancer as a Caddy module.
//
// The root package is glue: Caddy modules (the olla app and the
// http.handlers.olla handler, admin.api.olla), routes and request
// orchestration. Decisions live in leaf packages: fleet (the endpoints:
// their pooled state, settings, registry and background loop), profiles
// (backend types, model lists, load signals), balancer (the scheduling
// pipeline), admission (the queue), discovery (health), engines
// (proxying).
//
// A request on /olla/<provider>/<api path> goes through, in order:
//
//  1. handler.go ServeHTTP: the client key (clientkey.go: Caddy's client
//     address, IPv6 grouped by /64), CORS, rate limits, path normalisation,
//     header size; /internal/ routes answer only internal_clients
//     (internalaccess.go); a method other than POST on an inference route
//     is a 405 in the route's format (methods.go); the body is read once
//     (bounded) and its model
//     extracted (bodyscan.go). With key_limits (keylimits.go) the request's
//     key is read from its placeholder (hashed) and, once the model is
//     known, checked against the key's limits (package limits: in memory,
//     or in Redis shared by every instance) before routing.
//  2. routing.go route: the endpoints of the route's types that are
//     routable and serve the model (aliases, fallbacks, panic routing);
//     none is a 503 naming each home and why (fleet.Endpoint.WhyNot).
//  3. sticky.go keyFor, with sticky_sessions: the session key (hashed)
//     and the endpoint it is pinned to (with storage redis, the pin any
//     instance wrote, through sticky_shared.go and package sharedpins;
//     placements are written back in batches). Without a session key, under
//     adaptive, prefixroute.go hashes the prompt (fleet/prefix Chain) and
//     each choice matches it against the handler's prefix Index, which a
//     2xx answer feeds (prefix affinity; the balancer's prefix stage in
//     balancer/prefix.go). Before it matches on an endpoint it forgets
//     what the endpoint's backend lost since it last looked (a restart, an
//     unloaded model: fleet's cache-loss log, fleet/cacheloss.go).
//  4. picker.go Next, per attempt: choose asks the balancer.Pipeline,
//     which places a request with a session key itself (its pin, else its
//     rendezvous home; adaptive weighs that as its affinity score) and
//     reads each candidate through the candidates type: priority, our
//     in-flight count, and the backend's polled load signals with our
//     in-flight count when they were read, the slot count learned from
//     them, the concurrency cap, a TTFT average, learned load and service
//     times per endpoint and model, and the backend's stated time per
//     output token, else ours measured from its streams (all kept by
//     fleet.Endpoint, read through SchedSignals; a slow decoder takes
//     nothing while a faster one has a slot free, a cold endpoint waits
//     while a warm queue is cheaper than its load, and while our load of
//     a model is under way requests ride on it rather than load it
//     elsewhere: fleet.Endpoint.ColdStart marks it). A
//     candidate without room is set aside; when all are full the request
//     waits in the admission queue (queue.go).
//  5. The engine (olla or sherpa) sends the attempt and fails over before
//     the first byte (a pooled connection the backend closed under the
//     request is replayed by the transport first, engines.Replayable).
//     Its copy of the body reports what it saw (engines.Stream: first and
//     last byte, events, the time spent writing to the client) to the
//     Plan's OnStreamEnd, before picker.Done feeds the outcome to passive
//     health (fleet.Endpoint.Finish), the TTFT average (a cold start also
//     the learned load time, a warm answer the service time to the
//     backend's last byte and, from a clean stream the client did not
//     hold back, the time per output token), and record.go the
//     metrics and the dashboard. Token counts are read from the response's
//     tail by package usage; with key_limits they are charged to the key
//     (estimated where absent; in Redis they travel with the next
//     admission, limits/batch.go). With Caddy's tracing directive on,
//     genaitrace.go hangs package genai's spans on the request: one for the
//     request (GenAI attributes, the routing decision), one per attempt
//     from picker.Next to Done, the first byte as an event.
//
// Every route runs the same path; what an API adds plugs in through
// routeHooks (hooks.go), which proxy calls on every request: check (the
// body, before routing), routed (narrow or order the candidates) and shape
// (the Plan's Upstream and Response seams: request transform, response
// transform, error envelope). A plain route only renames an alias's model.
// /olla/anthropic/ (anthropic.go) counts the Messages body in one pass
// against request_limits (count_tokens is estimated from that pass) and
// charges its decoded size to the body budget, validates it, offers the
// candidates whose server speaks Messages natively as a first tier
// (passthrough) and the others as a second (translated by
// translate/anthropic), and holds a non-stream answer's status until it is
// known to translate. POST /v1/responses (responses.go) does the same with
// the Responses API: the types that serve it natively first, the other
// OpenAI-compatible ones translated to chat completions by
// translate/responses (stateless: what needs a stored response is a 501).
// Both count what each request came to in the translator stats
// (translators.go).
//
// Each endpoint's state (fleet.Endpoint, pooled across configs and
// reloads) is refreshed in the background by its loop (fleet.Endpoint.Run,
// which the app owns: health probes, model discovery, load polls, and
// preloading: the endpoint's preload.Warmer loads its preload list when a
// model is missing, bounded by the process-wide preload.Gate). Outside
// fleet it is read only through methods; fleet.Status is the one reading
// the status routes, metrics, dashboard and admin API share.
//
// What is one for the whole process lives in pooled state too, so a reload
// carries it over: the endpoints in fleet's registry, and the rest in the
// app's shared values (metrics.go: metrics, model stats, the dashboard's
// activity, the waiting room, the body budget, the translator stats, the
// preload gate).
package olla
