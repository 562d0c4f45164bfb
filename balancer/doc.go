// Package balancer chooses which endpoint serves the next attempt.
//
// The caller (the olla app) has already narrowed the endpoints down to the
// routable ones that can serve the request; a balancer only decides among them.
// It sees them through the small [Candidates] interface rather than a slice of
// endpoint structs, so that this package knows nothing about endpoints, health
// or models, and so that selecting costs no allocation on the request path.
//
// Three strategies are provided, named as in the standalone Olla proxy's
// configuration so an existing config keeps its meaning:
//
//   - [Priority]: the highest priority tier present, least loaded within it.
//   - [RoundRobin]: a strict cycle in the caller's order.
//   - [LeastConnections]: the fewest attempts in flight, whatever the priority.
//
// Every balancer is lock-free and safe for concurrent use; its only state is
// an atomic cursor, created by [New], so separate balancers never share turns.
package balancer
