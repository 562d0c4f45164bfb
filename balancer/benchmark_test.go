package balancer

import (
	"strconv"
	"testing"
	"time"
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

// benchFleet is n warm candidates with every backend signal known, TTFTs
// and loads differing, as a busy adaptive site sees them.
func benchFleet(n int) *fleet {
	names := make([]string, n)
	for i := range names {
		names[i] = "endpoint-" + strconv.Itoa(i)
	}
	f := newFleet(names...)
	for i := range n {
		f.signals[i] = Signals{
			Warm: Warm, MaxConcurrency: 8,
			QueueKnown: true, Running: int64(i % 4), Waiting: int64(i % 2),
			SlotsKnown: true, Slots: 4, KVKnown: true, KVUsage: float64(i%10) / 10,
			TTFT: time.Duration(50+i) * time.Millisecond, At: time.Now(), MaxAge: 6 * time.Second,
		}
		f.hold(i, i%3)
	}
	return f
}

// BenchmarkAdaptive measures one adaptive selection with every signal known,
// with and without a session key (affinity adds a rendezvous pass), and with
// the reason value filled in.
func BenchmarkAdaptive(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		f := benchFleet(n)
		p := mustPipeline(b, Config{Strategy: Adaptive})
		b.Run(strconv.Itoa(n)+"/select", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Select(f)
			}
		})
		b.Run(strconv.Itoa(n)+"/session+reason", func(b *testing.B) {
			r := Request{Model: "llama3:8b", SessionKey: "0123456789abcdef0123456789abcdef"}
			b.ReportAllocs()
			for b.Loop() {
				p.Schedule(r, f)
			}
		})
	}
}

func BenchmarkAdaptiveParallel(b *testing.B) {
	f := benchFleet(10)
	p := mustPipeline(b, Config{Strategy: Adaptive})
	r := Request{Model: "llama3:8b", SessionKey: "0123456789abcdef"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p.Schedule(r, f)
		}
	})
}
