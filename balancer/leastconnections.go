package balancer

// leastConnectionsBalancer picks the candidate with the fewest attempts in
// flight, regardless of priority. LLM requests vary from milliseconds to
// minutes, so the number of open attempts says more about an endpoint's
// remaining capacity than a fair share of request counts does. Equally loaded
// candidates are taken in turn.
type leastConnectionsBalancer struct {
	ties rotation
}

// Select implements [Balancer].
func (b *leastConnectionsBalancer) Select(c Candidates) int {
	return leastLoaded(c, &b.ties, false)
}

// Interface guard.
var _ Balancer = (*leastConnectionsBalancer)(nil)
