package balancer

// priorityBalancer sends traffic to the highest priority tier among the
// candidates: the endpoints the operator prefers, such as a local GPU before
// a shared server. Lower tiers are used only when the caller passes no
// candidate of a higher one, i.e. when none of them is routable.
//
// Within the tier it picks the least loaded endpoint, taking equally loaded
// ones in turn. (The standalone proxy picks at random, weighted by status;
// since every candidate here is routable, the weights would all be equal, and
// load plus rotation spreads traffic evenly rather than only on average.)
type priorityBalancer struct {
	ties rotation
}

// Select implements [Balancer].
func (b *priorityBalancer) Select(c Candidates) int {
	return leastLoaded(c, &b.ties, true)
}

// Interface guard.
var _ Balancer = (*priorityBalancer)(nil)
