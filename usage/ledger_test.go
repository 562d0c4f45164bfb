package usage

import (
	"fmt"
	"testing"
)

// TestLedgerBounded: 10,000 distinct keys keep MaxKeys rows; the rest are
// summed under OtherKey, nothing is lost, and labels stay bounded.
func TestLedgerBounded(t *testing.T) {
	l := Ledger{MaxKeys: 100}
	one := Counts{Input: 2, Output: 3}
	for i := range 10_000 {
		l.Observe(fmt.Sprint("k", i), "m", "e", one, 0.5)
	}
	rep := l.Snapshot(10)
	if rep.KeysTracked != 101 || len(rep.Keys) != 11 {
		t.Fatalf("tracked %d, listed %d", rep.KeysTracked, len(rep.Keys))
	}
	var requests, out int64
	for _, e := range rep.Keys {
		requests += e.Requests
		out += e.Output
	}
	if requests != 10_000 || out != 30_000 || rep.Models[0].Requests != 10_000 || rep.Endpoints[0].Cost != 5000 {
		t.Errorf("lost counts: %d requests, %d out, %+v", requests, out, rep.Models)
	}
	label := func(k string, n int) string { return LabelOf(k, l.Observe(k, "", "", Counts{}, 0), n) }
	if label("k5", 10) != "k5" || label("k50", 10) != OtherKey || label("k9999", 1000) != OtherKey || label(OtherKey, 1000) != OtherKey {
		t.Error("labels are not bounded to the first keys seen")
	}
}
