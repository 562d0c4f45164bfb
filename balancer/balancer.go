package balancer

import (
	"fmt"
	"strings"
)

// Candidates is the set a balancer chooses from, in a stable order (the
// caller's config order). Like sort.Interface it is an interface over the
// caller's own data, so no slice has to be built for every request.
type Candidates interface {
	// Len is the number of candidates.
	Len() int

	// Priority is candidate i's configured priority; higher is preferred.
	Priority(i int) int

	// InFlight is the number of attempts currently in flight to candidate i,
	// normally read from that endpoint's [Counter].
	InFlight(i int) int64
}

// Balancer picks one candidate for the next attempt.
type Balancer interface {
	// Select returns the index of the chosen candidate. Every candidate passed
	// in is routable, and the caller guarantees Len() > 0; should it be empty
	// anyway, Select returns -1 rather than panic on the request path.
	Select(c Candidates) int
}

// The strategy names accepted by [New]: the values of the `load_balancer`
// option, spelled as the standalone proxy spells them.
const (
	Priority         = "priority"
	RoundRobin       = "round-robin"
	LeastConnections = "least-connections"
)

// Names returns the valid strategy names, for help texts and error messages.
// The slice is new on every call, so callers may keep or modify it.
func Names() []string {
	return []string{Priority, RoundRobin, LeastConnections}
}

// New returns a fresh balancer for the named strategy. Each call returns its
// own state, so two sites (or a config reload) never share a rotation.
//
// Names are matched exactly: config validation should reject a misspelt
// strategy, not guess at it. An unknown name is an error that lists the valid
// ones, ready to be shown to whoever wrote the config.
func New(name string) (Balancer, error) {
	switch name {
	case Priority:
		return new(priorityBalancer), nil
	case RoundRobin:
		return new(roundRobinBalancer), nil
	case LeastConnections:
		return new(leastConnectionsBalancer), nil
	default:
		return nil, fmt.Errorf("unknown load balancer %q: valid names are %s",
			name, strings.Join(Names(), ", "))
	}
}
