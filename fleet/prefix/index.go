package prefix

import (
	"errors"
	"math/bits"
	"strings"
	"sync"
)

const (
	// MaxEndpoints is how many endpoints one Index tracks: a block's
	// holders are one bit each in a word.
	MaxEndpoints = 64
	// DefaultBudget is an endpoint's block budget when the backend states
	// no cache size: 65,536 blocks of 256 bytes, about 4M tokens of prompt.
	DefaultBudget = 1 << 16
	// MaxBudget bounds any endpoint's budget (about 64M tokens).
	MaxBudget = 1 << 20
	// maxModels bounds the model names interned for ForgetModel; blocks of
	// models beyond it share one id, forgotten together.
	maxModels = 1024
	// BytesPerBlock bounds what one recorded block costs the index: its
	// node, its slot in the endpoint's map and in the shared owner map,
	// with the maps' spare room. TestIndexMemoryWithinBudget measures it.
	BytesPerBlock = 128
)

// ErrFull is returned by Add when MaxEndpoints endpoints are tracked.
var ErrFull = errors.New("prefix: the index tracks the most endpoints it can")

// BlocksForTokens converts a backend's stated cache size in tokens (vLLM's
// KV blocks times their size, llama.cpp's n_ctx times its slots) into a
// block budget, at about 4 bytes a token, within [1, MaxBudget].
func BlocksForTokens(tokens int64) int {
	b := tokens * 4 / BlockBytes
	return int(min(max(b, 1), MaxBudget))
}

// Slot is an endpoint's place in an Index.
type Slot int

// Index records which blocks each endpoint has cached: an approximate
// mirror of the backends' prefix caches, built from the requests each one
// served. It is safe for concurrent use; Match takes a read lock and does
// not allocate.
type Index struct {
	mu     sync.RWMutex
	owners map[uint64]uint64 // block hash -> bit per slot holding it
	eps    [MaxEndpoints]*endpoint
	byName map[string]Slot
	models map[string]uint32
}

// endpoint is one slot's blocks as an LRU list over a node array.
type endpoint struct {
	name       string
	bit        uint64
	budget     int
	nodes      []node
	head, tail int32 // most and least recently used, -1 when empty
	free       int32 // a chain of free nodes through next, -1 when none
	byKey      map[uint64]int32

	recorded, hits int64 // blocks recorded, and of them already cached
	evictions      int64
	forgets        int64 // Forget and ForgetModel calls that found the model
	forgotten      int64 // blocks they dropped
}

type node struct {
	key        uint64
	prev, next int32
	model      uint32
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{owners: make(map[uint64]uint64), byName: make(map[string]Slot), models: make(map[string]uint32)}
}

// Add tracks the endpoint name with a block budget (0: DefaultBudget), or
// changes the budget of one already tracked, evicting what no longer fits.
func (ix *Index) Add(name string, budget int) (Slot, error) {
	if budget <= 0 {
		budget = DefaultBudget
	}
	budget = min(budget, MaxBudget)
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if s, ok := ix.byName[name]; ok {
		ep := ix.eps[s]
		ep.budget = budget
		for len(ep.byKey) > budget {
			ix.evict(ep)
		}
		return s, nil
	}
	for s := range ix.eps {
		if ix.eps[s] == nil {
			ix.eps[s] = &endpoint{name: name, bit: 1 << s, budget: budget, head: -1, tail: -1, free: -1,
				byKey: make(map[uint64]int32)}
			ix.byName[name] = Slot(s)
			return Slot(s), nil
		}
	}
	return -1, ErrFull
}

// Remove stops tracking the endpoint in slot s; the slot may be reused.
func (ix *Index) Remove(s Slot) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ep := ix.ep(s); ep != nil {
		ix.forget(ep, nil)
		delete(ix.byName, ep.name)
		ix.eps[s] = nil
	}
}

// Forget drops everything slot s has cached: its backend restarted.
func (ix *Index) Forget(s Slot) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ep := ix.ep(s); ep != nil {
		ep.forgets++
		ix.forget(ep, nil)
	}
}

// ForgetModel drops what slot s has cached for model (compared without
// case, as backends state their loaded models): the backend unloaded it.
// A model the index never recorded costs nothing and is not remembered.
func (ix *Index) ForgetModel(s Slot, model string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ep := ix.ep(s)
	id, ok := ix.models[strings.ToLower(model)]
	if ep == nil || !ok {
		return
	}
	ep.forgets++
	ix.forget(ep, func(n *node) bool { return n.model == id })
}

func (ix *Index) ep(s Slot) *endpoint {
	if s < 0 || int(s) >= MaxEndpoints {
		return nil
	}
	return ix.eps[s]
}

// modelID interns model, lower-cased; callers hold the write lock.
func (ix *Index) modelID(model string) uint32 {
	model = strings.ToLower(model)
	if id, ok := ix.models[model]; ok {
		return id
	}
	if len(ix.models) >= maxModels {
		return 0
	}
	id := uint32(len(ix.models) + 1)
	ix.models[model] = id
	return id
}

// forget drops ep's nodes that match (all when match is nil).
func (ix *Index) forget(ep *endpoint, match func(*node) bool) {
	for i := ep.head; i >= 0; {
		n := &ep.nodes[i]
		next := n.next
		if match == nil || match(n) {
			ix.drop(ep, i)
			ep.forgotten++
		}
		i = next
	}
}

// Record notes that slot s served the chain for model: its backend now
// holds those blocks. The chain's head becomes the most recently used, so
// tails are evicted first and a cached block keeps its prefix. It returns
// how many leading blocks were already cached there.
func (ix *Index) Record(s Slot, model string, c *Chain) (cached int) {
	if len(c.Blocks) == 0 {
		return 0
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ep := ix.ep(s)
	if ep == nil {
		return 0
	}
	for cached < len(c.Blocks) {
		if _, ok := ep.byKey[c.Blocks[cached]]; !ok {
			break
		}
		cached++
	}
	id := ix.modelID(model)
	// a chain longer than the budget keeps its head
	for k := min(len(c.Blocks), ep.budget) - 1; k >= 0; k-- {
		ix.touch(ep, c.Blocks[k], id)
	}
	ep.recorded += int64(len(c.Blocks))
	ep.hits += int64(cached)
	return cached
}

// touch makes key ep's most recently used block, adding it if new.
func (ix *Index) touch(ep *endpoint, key uint64, model uint32) {
	if i, ok := ep.byKey[key]; ok {
		ep.unlink(i)
		ep.pushFront(i)
		return
	}
	if len(ep.byKey) >= ep.budget {
		ix.evict(ep)
	}
	var i int32
	if ep.free >= 0 {
		i = ep.free
		ep.free = ep.nodes[i].next
	} else {
		ep.nodes = append(ep.nodes, node{})
		i = int32(len(ep.nodes) - 1)
	}
	ep.nodes[i] = node{key: key, model: model}
	ep.pushFront(i)
	ep.byKey[key] = i
	ix.owners[key] |= ep.bit
}

func (ix *Index) evict(ep *endpoint) {
	if ep.tail >= 0 {
		ix.drop(ep, ep.tail)
		ep.evictions++
	}
}

// drop removes node i from ep and its bit from the owner map.
func (ix *Index) drop(ep *endpoint, i int32) {
	key := ep.nodes[i].key
	ep.unlink(i)
	delete(ep.byKey, key)
	if m := ix.owners[key] &^ ep.bit; m == 0 {
		delete(ix.owners, key)
	} else {
		ix.owners[key] = m
	}
	ep.nodes[i] = node{next: ep.free}
	ep.free = i
}

func (ep *endpoint) unlink(i int32) {
	n := &ep.nodes[i]
	if n.prev >= 0 {
		ep.nodes[n.prev].next = n.next
	} else {
		ep.head = n.next
	}
	if n.next >= 0 {
		ep.nodes[n.next].prev = n.prev
	} else {
		ep.tail = n.prev
	}
}

func (ep *endpoint) pushFront(i int32) {
	n := &ep.nodes[i]
	n.prev, n.next = -1, ep.head
	if ep.head >= 0 {
		ep.nodes[ep.head].prev = i
	}
	ep.head = i
	if ep.tail < 0 {
		ep.tail = i
	}
}

// Match sets out[i] to how many leading blocks of c slot slots[i] holds
// (out must be at least as long as slots), and returns the longest. It
// probes the shared owner map by binary search (a held block implies its
// prefix is held, tails being evicted first): about log2(len(c.Blocks))
// probes for the longest match, and as many again for each shorter length
// among the slots. It does not allocate.
func (ix *Index) Match(c *Chain, slots []Slot, out []int) int {
	var want uint64
	for i, s := range slots {
		out[i] = 0
		if s >= 0 && int(s) < MaxEndpoints {
			want |= 1 << s
		}
	}
	if len(c.Blocks) == 0 || want == 0 {
		return 0
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	best, hi := 0, len(c.Blocks)
	for want != 0 && hi > 0 {
		// the longest prefix, up to hi blocks, that any wanted slot holds
		lo, at := 0, uint64(0)
		for lo < hi {
			mid := (lo + hi + 1) / 2
			if m := ix.owners[c.Blocks[mid-1]] & want; m != 0 {
				lo, at = mid, m
			} else {
				hi = mid - 1
			}
		}
		if lo == 0 {
			break
		}
		if best == 0 {
			best = lo
		}
		for m := at; m != 0; m &= m - 1 {
			s := Slot(bits.TrailingZeros64(m))
			for i, t := range slots {
				if t == s {
					out[i] = lo
				}
			}
		}
		want &^= at
		hi = lo - 1
	}
	return best
}

// EndpointStats is one slot's index as the dashboard and metrics show it.
type EndpointStats struct {
	Blocks    int   `json:"blocks"`    // blocks held now
	Budget    int   `json:"budget"`    // the most it may hold
	Recorded  int64 `json:"recorded"`  // blocks of the requests it served
	Hits      int64 `json:"hits"`      // of which it held already
	Evictions int64 `json:"evictions"` // blocks evicted for room
	Forgets   int64 `json:"forgets"`   // times the backend lost its cache or a model's part
	Forgotten int64 `json:"forgotten"` // blocks dropped for that
}

// HitRatio is the share of the served requests' blocks the endpoint held
// already (0 before any).
func (s EndpointStats) HitRatio() float64 {
	if s.Recorded == 0 {
		return 0
	}
	return float64(s.Hits) / float64(s.Recorded)
}

// Stats returns slot s's figures.
func (ix *Index) Stats(s Slot) EndpointStats {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ep := ix.ep(s)
	if ep == nil {
		return EndpointStats{}
	}
	return EndpointStats{Blocks: len(ep.byKey), Budget: ep.budget, Recorded: ep.recorded, Hits: ep.hits, Evictions: ep.evictions,
		Forgets: ep.forgets, Forgotten: ep.forgotten}
}
