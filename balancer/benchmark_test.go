package balancer

import (
	"strconv"
	"testing"
)

// BenchmarkSelect measures one selection over idle candidates of equal
// priority: the worst case for the least-loaded strategies, since every
// candidate ties and both passes walk the whole set.
func BenchmarkSelect(b *testing.B) {
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			for _, n := range []int{3, 10, 100} {
				b.Run(strconv.Itoa(n), func(b *testing.B) {
					bal := mustNew(b, name)
					var c Candidates = equalEndpoints(n)
					b.ReportAllocs()
					for b.Loop() {
						bal.Select(c)
					}
				})
			}
		})
	}
}

// BenchmarkSelectParallel measures selection from all CPUs at once through
// one balancer, as on a busy site, where the shared cursor is contended.
func BenchmarkSelectParallel(b *testing.B) {
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			bal := mustNew(b, name)
			var c Candidates = equalEndpoints(10)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bal.Select(c)
				}
			})
		})
	}
}
