package balancer

// roundRobinBalancer cycles strictly through the candidates: with the same
// candidates in the same order, consecutive calls pick 0, 1, 2, 0, 1, 2, …
// It ignores priority and load, which makes it the predictable choice for
// identical backends. (The standalone proxy's candidate order came from a Go
// map, so its cycle was not strict; our callers pass config order.)
type roundRobinBalancer struct {
	next rotation
}

// Select implements [Balancer].
func (b *roundRobinBalancer) Select(c Candidates) int {
	n := c.Len()
	if n == 0 {
		return -1
	}
	return b.next.turn(n)
}

// Interface guard.
var _ Balancer = (*roundRobinBalancer)(nil)
