// Package balancer chooses which endpoint serves the next attempt.
//
// The caller (the olla app) has already narrowed the endpoints down to the
// routable ones that can serve the request; a balancer only decides among them.
// It sees them through the small [Candidates] interface rather than a slice of
// endpoint structs, so that this package knows nothing about endpoints, health
// or models, and so that selecting costs no allocation on the request path.
// Candidates that also implement [SignalSource] report each endpoint's name and
// backend [Signals] (model residency, queue, slots, KV cache, TTFT), which the
// adaptive strategy uses; without it every such signal is unknown.
//
// Every strategy is a [Pipeline]: [Filter]s drop candidates (never all of
// them), weighted [Scorer]s rate the rest in [0,1], and the [Picker] takes the
// highest total, equal totals in turn. Scorers are registered by name
// ([RegisterScorer]), so a config can weight them and a new one needs no
// change to any caller. [Pipeline.Schedule] also returns a [Reason], whose
// text (for X-Olla-Routing-Reason) is built only when asked for.
//
// The strategies, the first three named as in the standalone Olla proxy's
// configuration so an existing config keeps its meaning:
//
//   - [Priority]: the highest priority tier present, least loaded within it.
//   - [RoundRobin]: a strict cycle in the caller's order.
//   - [LeastConnections]: the fewest attempts in flight, whatever the priority.
//   - [Adaptive]: model resident, backend load and our in-flight count,
//     observed TTFT, session affinity and priority, weighted
//     ([AdaptiveWeights]); endpoints at their max_concurrency are skipped
//     while others have room.
//
// Load is demand over capacity ([Candidate.Demand], [Candidate.Capacity]):
// our live in-flight count plus other clients' work at the backend's last
// reading, against the stated, learned or assumed slot count. It costs
// little while a slot is free and much once the request would queue.
//
// Affinity uses rendezvous hashing with a load bound ([Rendezvous]): the hash
// has no seed, so proxies with one config place a key alike without sharing
// state. A new key's home has a free slot if any candidate has one, and is
// never far slower than the fastest. A pin is only a score: the others can
// outweigh it, and one rule drops it: a box that decodes more than twice as
// slowly per token as the fastest, by the backend's own stated totals or,
// where it states none, our timing of the streams it sent ([Signals.TPOT],
// which no client's prompt or slow read sways), holds no
// pin, home or cached prompt while a faster candidate has room. TTFT and
// load move with the very sessions affinity places, so no rule reads them. [EWMA] keeps a
// lock-free moving average for TTFT, quick to follow a faster sample and
// slow to follow a slower one (it measures the box, not its queue), and
// forgotten after EWMAMaxAge without a sample, so a box judged slow is
// measured again by one request.
//
// Every pipeline is safe for concurrent use. Its state is an atomic cursor and
// a few scratch slots, created by [New] or [NewPipeline], so separate
// balancers never share turns.
package balancer
