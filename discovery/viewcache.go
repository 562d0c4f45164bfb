package discovery

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// ViewCache keeps what is built from one version of the catalogue (merged
// entries, encoded listings), so that asking again costs nothing until the
// version changes. Each value is built once however many callers ask for
// it at the same time; the others wait for that build. What it holds is
// bounded by a byte budget: the least recently used values go first, and a
// value larger than the whole budget is handed out but not kept.
//
// The zero value is ready to use, with DefaultViewBudget.
type ViewCache struct {
	// Budget bounds the bytes kept; 0 means DefaultViewBudget.
	Budget int64

	mu      sync.Mutex
	version string
	items   map[string]*viewItem
	used    int64
	tick    uint64
	builds  atomic.Int64
}

// DefaultViewBudget is what a ViewCache keeps unless told otherwise: room
// for a few listings of a catalogue of 100,000 models.
const DefaultViewBudget = 256 << 20

type viewItem struct {
	stamp    string
	done     chan struct{}
	val      any
	err      error
	size     int64
	lastUsed uint64
	kept     bool // counted in used
}

// Used is roughly how many bytes the kept values hold.
func (c *ViewCache) Used() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// Builds counts the values built since the cache was made.
func (c *ViewCache) Builds() int64 { return c.builds.Load() }

// Get returns the value in slot for version, building it with build when it
// is missing, was built for another version, or carries another stamp (a
// slot whose value also depends on something besides the version, like the
// clock). build reports the value and roughly how many bytes it holds. A
// caller that waits for another's build gives up when ctx ends.
func (c *ViewCache) Get(ctx context.Context, version, slot, stamp string, build func() (any, int64)) (any, error) {
	c.mu.Lock()
	if c.items == nil || c.version != version {
		// a new version makes every value stale; builds in flight still
		// hand theirs to their waiters, but it is not kept
		c.items, c.used, c.version = map[string]*viewItem{}, 0, version
	}
	c.tick++
	it := c.items[slot]
	if it != nil && it.stamp != stamp {
		c.drop(slot, it)
		it = nil
	}
	if it != nil {
		it.lastUsed = c.tick
		c.mu.Unlock()
		select {
		case <-it.done:
			return it.val, it.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	it = &viewItem{stamp: stamp, done: make(chan struct{}), lastUsed: c.tick}
	c.items[slot] = it
	c.mu.Unlock()

	c.builds.Add(1)
	func() {
		defer func() {
			if p := recover(); p != nil {
				it.err = fmt.Errorf("building %s: %v", slot, p)
			}
		}()
		it.val, it.size = build()
	}()

	c.mu.Lock()
	if c.items[slot] == it {
		if it.err != nil || it.size > c.budget() {
			delete(c.items, slot) // try again next time; too big to keep
		} else {
			it.kept = true
			c.used += it.size
			c.evict(it)
		}
	}
	c.mu.Unlock()
	close(it.done)
	return it.val, it.err
}

func (c *ViewCache) budget() int64 {
	if c.Budget > 0 {
		return c.Budget
	}
	return DefaultViewBudget
}

func (c *ViewCache) drop(slot string, it *viewItem) {
	delete(c.items, slot)
	if it.kept {
		c.used -= it.size
	}
}

// evict drops the least recently used finished values until the budget
// holds, sparing keep.
func (c *ViewCache) evict(keep *viewItem) {
	for c.used > c.budget() {
		var victim *viewItem
		var victimSlot string
		for slot, it := range c.items {
			if it == keep || !it.kept {
				continue
			}
			if victim == nil || it.lastUsed < victim.lastUsed {
				victim, victimSlot = it, slot
			}
		}
		if victim == nil {
			return
		}
		c.drop(victimSlot, victim)
	}
}
