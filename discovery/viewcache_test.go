package discovery

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestViewCacheBuildsOncePerVersion: many callers asking for one value at
// once share one build; asking again costs nothing until the version moves.
func TestViewCacheBuildsOncePerVersion(t *testing.T) {
	var c ViewCache
	release := make(chan struct{})
	var builds atomic.Int64
	build := func() (any, int64) {
		builds.Add(1)
		<-release // hold every caller in the build
		return "v1", 10
	}
	var wg sync.WaitGroup
	got := make([]any, 20)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = c.Get(context.Background(), "ver1", "slot", "", build)
		}()
	}
	// wait until the first build has started, then let it finish
	deadline := time.Now().Add(10 * time.Second)
	for builds.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Fatalf("20 concurrent callers built %d times, want 1", n)
	}
	for i, v := range got {
		if v != "v1" {
			t.Fatalf("caller %d got %v", i, v)
		}
	}
	for range 10 {
		if v, _ := c.Get(context.Background(), "ver1", "slot", "", build); v != "v1" {
			t.Fatalf("cached value %v", v)
		}
	}
	if builds.Load() != 1 || c.Builds() != 1 {
		t.Fatalf("asking again rebuilt: %d builds", builds.Load())
	}
	v, _ := c.Get(context.Background(), "ver2", "slot", "", func() (any, int64) { return "v2", 10 })
	if v != "v2" || c.Builds() != 2 {
		t.Fatalf("a new version did not rebuild: %v, %d builds", v, c.Builds())
	}
}

func TestViewCacheStampReplaces(t *testing.T) {
	var c ViewCache
	get := func(stamp string) any {
		v, _ := c.Get(context.Background(), "ver", "status", stamp, func() (any, int64) { return stamp, 1 })
		return v
	}
	get("1")
	get("1")
	if get("2") != "2" || c.Builds() != 2 {
		t.Fatalf("another stamp did not rebuild: %d builds", c.Builds())
	}
	if len(c.items) != 1 {
		t.Fatalf("the old stamp's value is still kept: %d items", len(c.items))
	}
}

// TestViewCacheBudget: what is kept never exceeds the budget; the least
// recently used values go first, and one larger than the budget is handed
// out but not kept.
func TestViewCacheBudget(t *testing.T) {
	c := ViewCache{Budget: 100}
	get := func(slot string, size int64) any {
		v, err := c.Get(context.Background(), "ver", slot, "", func() (any, int64) { return slot, size })
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	get("a", 40)
	get("b", 40)
	get("a", 40) // a is now more recent than b
	get("c", 40) // over budget: b goes
	if c.used > c.Budget {
		t.Fatalf("keeps %d bytes, budget %d", c.used, c.Budget)
	}
	builds := c.Builds()
	get("a", 40)
	get("c", 40)
	if c.Builds() != builds {
		t.Fatal("evicted a recently used value")
	}
	get("b", 40)
	if c.Builds() != builds+1 {
		t.Fatal("the least recently used value was kept")
	}
	if v := get("huge", 1000); v != "huge" {
		t.Fatalf("an oversized value was not handed out: %v", v)
	}
	if _, kept := c.items["huge"]; kept || c.used > c.Budget {
		t.Fatalf("an oversized value was kept (used %d)", c.used)
	}
}

func TestViewCacheBuildPanicIsAnError(t *testing.T) {
	var c ViewCache
	_, err := c.Get(context.Background(), "ver", "slot", "", func() (any, int64) { panic("boom") })
	if err == nil {
		t.Fatal("a panicking build gave no error")
	}
	v, err := c.Get(context.Background(), "ver", "slot", "", func() (any, int64) { return "ok", 1 })
	if err != nil || v != "ok" {
		t.Fatalf("a failed build is not retried: %v %v", v, err)
	}
}

func TestViewCacheWaiterGivesUp(t *testing.T) {
	var c ViewCache
	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		_, _ = c.Get(context.Background(), "ver", "slot", "", func() (any, int64) {
			close(started)
			<-release
			return "v", 1
		})
	}()
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "ver", "slot", "", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiter whose context ended got %v", err)
	}
	close(release)
}
