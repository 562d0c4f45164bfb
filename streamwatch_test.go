package olla

import (
	"testing"

	"github.com/caddy-olla/olla/admission"
	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/profiles"
)

// TestStalledStreamStopsCounting: an attempt counts as running on its
// endpoint from its first byte until it is done, or until its client
// stalls the copy (engines.StreamWatcher): a held stream's backend may be
// done, so slow readers cannot make a box look as if it ran more at once
// than it does (the slots learned for servers that state none).
func TestStalledStreamStopsCounting(t *testing.T) {
	st := testEndpoint(t, "a", "lm-studio", []profiles.Model{{Name: "m"}})
	seen := func() int64 {
		var sig balancer.Signals
		st.SchedSignals("m", &sig)
		return sig.SeenSlots
	}
	pipe, err := balancer.NewPipeline(balancer.Config{Strategy: balancer.LeastConnections})
	if err != nil {
		t.Fatal(err)
	}
	attempt := func() *picker {
		p := &picker{remaining: candidates{st}, balancer: pipe, room: admission.New(), maxAttempts: 1, model: "m", sched: balancer.Request{Model: "m"}}
		if got, ok := p.Next(); !ok || got != engines.Target(st) {
			t.Fatalf("Next: %v, %v", got, ok)
		}
		return p
	}
	held := attempt()
	held.FirstByte(st)
	held.FirstByte(st) // once per attempt
	held.ClientStall(st)
	other := attempt()
	other.FirstByte(st)
	if got := seen(); got != 1 {
		t.Fatalf("one stream held back by its client and one running: seen %d at once, want 1", got)
	}
	third := attempt()
	third.FirstByte(st)
	if got := seen(); got != 2 {
		t.Fatalf("two running: seen %d at once, want 2", got)
	}
	for _, p := range []*picker{held, other, third} {
		p.Done(st, engines.Outcome{Status: 200})
	}
	fourth := attempt()
	fourth.FirstByte(st)
	fourth.Done(st, engines.Outcome{Status: 200})
	if got := seen(); got != 2 {
		t.Fatalf("after they ended, one more: seen %d, want still 2", got)
	}
}
