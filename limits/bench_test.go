package limits

import (
	"context"
	"testing"

	"github.com/caddy-olla/olla/internal/redistest"
	"github.com/caddy-olla/olla/usage"
)

// benchRequest is what key_limits adds to one request: Admit before
// routing, Record after the response, with a key limit on each kind.
func benchRequest(b *testing.B, s Store) {
	l := New(Policy{Key: Rule{TokensPerMinute: 1 << 40, RequestsPerMinute: 1 << 40, BudgetDay: MaxBudget, BudgetMonth: MaxBudget}}, s)
	ctx := context.Background()
	c := usage.Counts{Input: 100, Output: 200}
	keys := []string{KeyID("a"), KeyID("b"), KeyID("c"), KeyID("d")}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		k := keys[i%len(keys)]
		if _, err := l.Admit(ctx, k, "m"); err != nil {
			b.Fatal(err)
		}
		if _, err := l.Record(ctx, k, "m", c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRequestMemory(b *testing.B) { benchRequest(b, NewMemory(0)) }

func BenchmarkRequestRedis(b *testing.B) {
	srv := redistest.Start(b)
	s, err := NewRedis(srv.Socket)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchRequest(b, s)
}
