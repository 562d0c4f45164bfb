package sim

import (
	"context"
	"hash/maphash"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Capacity is a simulated server's compute, for routing-quality and overload
// runs: how many requests it runs at once, what happens to the rest, what a
// prompt costs before the first token, and (Ollama) which models fit in
// memory. The zero value turns the model off: every request runs at once at
// the configured TTFT and token rate, as before.
type Capacity struct {
	// Slots is how many requests run at once (0 = no limit, model off).
	Slots int
	// QueueMax is how many requests may wait for a slot, in arrival order;
	// beyond it the server answers 503. Ignored when RejectWhenFull.
	QueueMax int
	// RejectWhenFull answers 503 at once when no slot is free, as
	// llama-server does with every slot busy.
	RejectWhenFull bool
	// PrefillPerToken is the time to process one prompt token that is not
	// in the prefix cache; it is added to the time to first token.
	PrefillPerToken time.Duration
	// CacheBlocks is the prefix cache's size in blocks (0 = no cache); the
	// least recently used block is evicted first.
	CacheBlocks int
	// BlockTokens is the tokens per cache block (default 16).
	BlockTokens int
	// DecodeSlowdown slows each running request's token rate by this
	// fraction per other request running beside it (batching costs).
	DecodeSlowdown float64
	// MaxLoaded is how many models fit in memory at once (0 = all); a
	// request for another one evicts the least recently used and pays
	// LoadTime first. /api/ps and LM Studio's state show what is resident.
	MaxLoaded int
	// LoadTime is the time to load a cold model.
	LoadTime time.Duration
}

func (c Capacity) enabled() bool { return c.Slots > 0 || c.MaxLoaded > 0 || c.CacheBlocks > 0 }

// CapacityStats are the capacity model's counters.
type CapacityStats struct {
	Running       int64 `json:"running"`
	Waiting       int64 `json:"waiting"`
	PeakRunning   int64 `json:"peak_running"`
	Rejected      int64 `json:"rejected"`       // 503s for want of a slot
	Loads         int64 `json:"loads"`          // cold model loads
	PromptTokens  int64 `json:"prompt_tokens"`  // prompt tokens seen
	CachedTokens  int64 `json:"cached_tokens"`  // of which served from the prefix cache
	CacheUsed     int   `json:"cache_used"`     // blocks in the cache now
	CacheActive   int   `json:"cache_active"`   // of which running requests hold
	CacheCapacity int   `json:"cache_capacity"` // blocks it holds
	// CacheEvictions counts cached blocks evicted for room.
	CacheEvictions int64 `json:"cache_evictions"`
	// DecodeTokens and DecodeSeconds are the running totals of output
	// tokens decoded and the time between them, as vLLM's inter-token
	// latency histogram (and llama.cpp's predicted-token counters) state
	// them; like Prometheus counters they are never reset.
	DecodeTokens  int64   `json:"decode_tokens"`
	DecodeSeconds float64 `json:"decode_seconds"`
}

// capacity is the live state behind Capacity.
type capacity struct {
	cfg Capacity

	mu       sync.Mutex
	running  int
	waiting  []chan struct{} // FIFO; a closed channel is a granted slot
	peak     int
	rejected int64
	loads    int64
	prompt   int64
	cached   int64
	// resident are the loaded models, most recently used last, each
	// with when its load ends
	resident []residentModel
	cache    blockLRU
	// active is the KV blocks the running requests hold: their prompts.
	// Cached blocks no request holds are free to evict, so (as in vLLM)
	// they do not count as usage.
	active int
	// the answers' output tokens and the time between them, totals
	decodeTokens int64
	decodeTime   time.Duration
}

func newCapacity(cfg Capacity) *capacity {
	if cfg.BlockTokens <= 0 {
		cfg.BlockTokens = 16
	}
	c := &capacity{cfg: cfg}
	c.cache.init(cfg.CacheBlocks)
	return c
}

var blockSeed = maphash.MakeSeed()

// admit holds a generation request until it may run, then sets how long its
// first token and each later token take. It returns a release func to call
// when the answer is done, or ok=false when it answered (503) or the client
// left.
func (s *Sim) admit(c *call, g *gen, model string, prompt []byte) (release func(), ok bool) {
	cp := s.cap
	if cp == nil {
		return noRelease, true
	}
	cfg := cp.cfg
	cp.mu.Lock()
	if cfg.Slots > 0 && cp.running >= cfg.Slots {
		if cfg.RejectWhenFull || len(cp.waiting) >= cfg.QueueMax {
			cp.rejected++
			cp.mu.Unlock()
			c.w.Header()["Retry-After"] = retryAfterStr[1]
			s.writeErr(c, errSpec{status: http.StatusServiceUnavailable, msg: "no free slot: the server is busy"})
			return nil, false
		}
		ch := make(chan struct{})
		cp.waiting = append(cp.waiting, ch)
		cp.mu.Unlock()
		if !waitSlot(c.r.Context(), cp, ch) {
			return nil, false
		}
		cp.mu.Lock() // the slot was counted for us when granted
	} else {
		cp.running++
	}
	cp.peak = max(cp.peak, cp.running)
	extra := time.Duration(0)
	if cfg.MaxLoaded > 0 {
		extra += cp.touchModel(model, time.Now())
	}
	tokens := g.prompt
	// the answer's blocks are held while it is decoded: room the cache
	// gives up first, then the prompt's blocks are held (pinned) too
	decode := (g.n + cfg.BlockTokens - 1) / cfg.BlockTokens
	cp.cache.reserve(decode)
	hit, pinned := cp.cache.touchPrefix(prompt, cfg.BlockTokens*4, true)
	cachedTokens := min(hit*cfg.BlockTokens, tokens)
	cp.prompt += int64(tokens)
	cp.cached += int64(cachedTokens)
	extra += time.Duration(tokens-cachedTokens) * cfg.PrefillPerToken
	others := cp.running - 1
	blocks := (tokens+cfg.BlockTokens-1)/cfg.BlockTokens + decode
	cp.active += blocks
	cp.mu.Unlock()

	// time spent waiting for the slot counts too: g.start is the arrival
	g.ttft = time.Since(g.start) + g.ttft + extra
	if cfg.DecodeSlowdown > 0 && others > 0 {
		g.every = time.Duration(float64(g.every) * (1 + cfg.DecodeSlowdown*float64(others)))
	}
	return func() {
		cp.mu.Lock()
		cp.active -= blocks
		cp.cache.unpin(pinned)
		cp.cache.reserve(-decode)
		cp.cacheAnswer(prompt, g, cfg.BlockTokens*4)
		cp.decodeTokens += int64(g.n)
		cp.decodeTime += time.Duration(g.n) * g.every
		cp.mu.Unlock()
		cp.release()
	}, true
}

// cacheAnswer caches the blocks of a chat conversation with its answer
// appended, as the client will send it on its next turn, so that turn finds
// the answer's tokens cached too (vLLM caches the blocks a request fills
// while decoding, not only its prompt's). The conversation is rendered the
// way a compact JSON client appends a message; the simulator's words need
// no escaping. Callers hold cp.mu.
func (cp *capacity) cacheAnswer(messages []byte, g *gen, blockBytes int) {
	if cp.cfg.CacheBlocks == 0 || len(messages) < 2 || messages[0] != '[' || messages[len(messages)-1] != ']' {
		return
	}
	b := make([]byte, 0, len(messages)+48+g.n*10)
	b = append(b, messages[:len(messages)-1]...)
	b = append(b, `,{"role":"assistant","content":"`...)
	for i := 0; i < g.n; i++ {
		b = append(b, g.word(i)...)
	}
	b = append(b, `"}`...)
	cp.cache.touchPrefix(b, blockBytes, false)
}

func noRelease() {}

// waitSlot waits for a granted slot; a client that leaves gives up its place
// (or, granted meanwhile, the slot).
func waitSlot(ctx context.Context, cp *capacity, ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-ctx.Done():
	}
	cp.mu.Lock()
	for i, w := range cp.waiting {
		if w == ch {
			cp.waiting = append(cp.waiting[:i], cp.waiting[i+1:]...)
			cp.mu.Unlock()
			return false
		}
	}
	cp.mu.Unlock()
	cp.release() // granted as we left: pass it on
	return false
}

// release ends a running request: the next waiter takes its slot.
func (cp *capacity) release() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if len(cp.waiting) > 0 {
		ch := cp.waiting[0]
		cp.waiting = cp.waiting[1:]
		close(ch) // the slot passes on; running stays the same
		return
	}
	cp.running--
}

// residentModel is a model in memory, and when its load is over (a model
// still loading is listed, as Ollama's /api/ps lists it, but cannot answer
// before then).
type residentModel struct {
	name  string
	ready time.Time
}

// touchModel marks model used and returns how long a request for it must
// wait for its load: LoadTime for a cold model (counted as a load, and the
// least recently used one evicted when memory is full), what is left of a
// load under way, else 0. A request that comes while another loads the
// model waits for that load, as Ollama's queued requests do, rather than
// answering at once. Callers hold cp.mu.
func (cp *capacity) touchModel(model string, now time.Time) time.Duration {
	for i, m := range cp.resident {
		if m.name == model {
			copy(cp.resident[i:], cp.resident[i+1:])
			cp.resident[len(cp.resident)-1] = m
			return max(m.ready.Sub(now), 0)
		}
	}
	if len(cp.resident) >= cp.cfg.MaxLoaded {
		cp.resident = cp.resident[1:]
	}
	cp.resident = append(cp.resident, residentModel{name: model, ready: now.Add(cp.cfg.LoadTime)})
	cp.loads++
	return cp.cfg.LoadTime
}

// unload takes model out of memory (a keep_alive of 0 that ran out); a
// nil capacity, or one without MaxLoaded, holds nothing to take out.
func (cp *capacity) unload(model string) {
	if cp == nil || cp.cfg.MaxLoaded == 0 {
		return
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for i, m := range cp.resident {
		if m.name == model {
			cp.resident = append(cp.resident[:i], cp.resident[i+1:]...)
			return
		}
	}
}

// residency returns the resident-model test when memory is limited, nil
// when every model counts as loaded the usual way.
func (cp *capacity) residency() func(string) bool {
	if cp == nil || cp.cfg.MaxLoaded == 0 {
		return nil
	}
	return cp.isResident
}

func (cp *capacity) isResident(model string) bool {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, m := range cp.resident {
		if m.name == model {
			return true
		}
	}
	return false
}

func (cp *capacity) stats() CapacityStats {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return CapacityStats{Running: int64(cp.running), Waiting: int64(len(cp.waiting)), PeakRunning: int64(cp.peak),
		Rejected: cp.rejected, Loads: cp.loads, PromptTokens: cp.prompt, CachedTokens: cp.cached,
		CacheUsed: cp.cache.used(), CacheActive: cp.active, CacheCapacity: cp.cfg.CacheBlocks, CacheEvictions: cp.cache.evictions,
		DecodeTokens: cp.decodeTokens, DecodeSeconds: cp.decodeTime.Seconds()}
}

func (cp *capacity) reset() {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.peak, cp.rejected, cp.loads, cp.prompt, cp.cached = cp.running, 0, 0, 0, 0
}

// blockLRU is the prefix cache: a set of chained block hashes (each block's
// hash covers everything before it, so a hit means the whole prefix up to
// that block matches), least recently used evicted first. It shares the KV
// memory with the running requests, as vLLM's block pool does: their
// prompts' blocks are pinned (not evictable) and their answers' blocks are
// reserved, so under load the cache holds less history (memory pressure).
// A prompt's head is touched last, so its tail is evicted first and a
// cached block keeps its prefix.
type blockLRU struct {
	cap        int
	reserved   int // blocks running requests hold outside the cache
	items      map[uint64]*cacheBlock
	head, tail *cacheBlock // most and least recently used
	evictions  int64
}

type cacheBlock struct {
	hash       uint64
	pins       int32 // running requests holding it
	prev, next *cacheBlock
}

func (l *blockLRU) init(n int) {
	l.cap = n
	if n > 0 {
		l.items = make(map[uint64]*cacheBlock, n)
	}
}

func (l *blockLRU) used() int { return len(l.items) }

// reserve takes (or, negative, gives back) n blocks for answers being
// decoded, evicting cached blocks no request holds to make room.
func (l *blockLRU) reserve(n int) {
	if l.cap == 0 {
		return
	}
	l.reserved += n
	l.makeRoom(0)
}

// makeRoom evicts unpinned blocks, least recently used first, until extra
// more fit beside the reserved ones. Pinned blocks stay even when that
// leaves the pool over its size (vLLM would preempt a request instead).
func (l *blockLRU) makeRoom(extra int) {
	for b := l.tail; b != nil && len(l.items)+l.reserved+extra > l.cap; {
		prev := b.prev
		if b.pins == 0 {
			l.unlink(b)
			delete(l.items, b.hash)
			l.evictions++
		}
		b = prev
	}
}

// touchPrefix counts how many leading blocks of prompt are cached, then
// caches all of its full blocks, pinning them when pin is set (unpin them
// when the request ends).
func (l *blockLRU) touchPrefix(prompt []byte, blockBytes int, pin bool) (hits int, pinned []*cacheBlock) {
	if l.cap == 0 || blockBytes <= 0 {
		return 0, nil
	}
	var mh maphash.Hash
	mh.SetSeed(blockSeed)
	hashes := make([]uint64, 0, len(prompt)/blockBytes)
	missed := false
	for off := 0; off+blockBytes <= len(prompt); off += blockBytes {
		// the running hash chains the blocks: each covers its whole prefix
		mh.Write(prompt[off : off+blockBytes])
		h := mh.Sum64()
		hashes = append(hashes, h)
		if _, ok := l.items[h]; ok && !missed {
			hits++
		} else {
			missed = true
		}
	}
	if pin {
		pinned = make([]*cacheBlock, 0, len(hashes))
	}
	for k := len(hashes) - 1; k >= 0; k-- {
		b, ok := l.items[hashes[k]]
		if ok {
			l.unlink(b)
		} else {
			l.makeRoom(1)
			b = &cacheBlock{hash: hashes[k]}
			l.items[b.hash] = b
		}
		l.pushFront(b)
		if pin {
			b.pins++
			pinned = append(pinned, b)
		}
	}
	return hits, pinned
}

// drop empties the cache but for the blocks running requests hold.
func (l *blockLRU) drop() {
	for b := l.tail; b != nil; {
		prev := b.prev
		if b.pins == 0 {
			l.unlink(b)
			delete(l.items, b.hash)
		}
		b = prev
	}
}

// unpin lets blocks a finished request held be evicted again.
func (l *blockLRU) unpin(bs []*cacheBlock) {
	for _, b := range bs {
		b.pins--
	}
	l.makeRoom(0)
}

func (l *blockLRU) unlink(b *cacheBlock) {
	if b.prev != nil {
		b.prev.next = b.next
	} else {
		l.head = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	} else {
		l.tail = b.prev
	}
	b.prev, b.next = nil, nil
}

func (l *blockLRU) pushFront(b *cacheBlock) {
	b.next = l.head
	if l.head != nil {
		l.head.prev = b
	}
	l.head = b
	if l.tail == nil {
		l.tail = b
	}
}

// ---- load surfaces ----

// loadGauges names a server's running, waiting and KV-usage gauges, each
// with its help text.
type loadGauges [3][2]string

var (
	vllmGauges = loadGauges{
		{"vllm:num_requests_running", "Number of requests in model execution batches."},
		{"vllm:num_requests_waiting", "Number of requests waiting to be processed."},
		{"vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."},
	}
	sglangGauges = loadGauges{
		{"sglang:num_running_reqs", "The number of running requests."},
		{"sglang:num_queue_reqs", "The number of requests in the waiting queue."},
		{"sglang:token_usage", "The token usage."},
	}
)

// appendLoadGauges appends the capacity model's running and waiting counts
// and its KV usage: the blocks running requests hold (cached free blocks
// are evictable, so they do not count).
func appendLoadGauges(b []byte, g *loadGauges, lbl string, st CapacityStats) []byte {
	usage := 0.0
	if st.CacheCapacity > 0 {
		usage = min(float64(st.CacheActive)/float64(st.CacheCapacity), 1)
	}
	b = appendGauge(b, g[0][0], g[0][1], lbl, float64(st.Running))
	b = appendGauge(b, g[1][0], g[1][1], lbl, float64(st.Waiting))
	return appendGauge(b, g[2][0], g[2][1], lbl, usage)
}

// handleVLLMMetrics is vLLM's Prometheus /metrics, the gauges a scheduler reads.
func (s *Sim) handleVLLMMetrics(c *call) {
	st := s.capacityStats()
	model := "tiny"
	if ms := s.models.Load(); ms != nil && len(ms.list) > 0 {
		model = ms.list[0].id
	}
	lbl := `{engine="0",model_name="` + model + `"}`
	b := appendLoadGauges(c.sc.buf[:0], &vllmGauges, lbl, st)
	b = append(b, "# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.\n# TYPE vllm:prefix_cache_queries_total counter\nvllm:prefix_cache_queries_total"...)
	b = strconv.AppendFloat(append(append(b, lbl...), ' '), float64(st.PromptTokens), 'f', -1, 64)
	b = append(b, "\n# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.\n# TYPE vllm:prefix_cache_hits_total counter\nvllm:prefix_cache_hits_total"...)
	b = strconv.AppendFloat(append(append(b, lbl...), ' '), float64(st.CachedTokens), 'f', -1, 64)
	b = append(b, '\n')
	b = s.appendProcessStart(b)
	b = appendDecodeHistogram(b, "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", lbl, st)
	// the KV cache's size, as vLLM states it: the capacity model's cache,
	// else a nominal 8192 blocks of 16 tokens
	blocks, size := 8192, 16
	if s.cap != nil && s.cap.cfg.CacheBlocks > 0 {
		blocks, size = s.cap.cfg.CacheBlocks, s.cap.cfg.BlockTokens
	}
	b = append(b, "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n# TYPE vllm:cache_config_info gauge\nvllm:cache_config_info{block_size=\""...)
	b = strconv.AppendInt(b, int64(size), 10)
	b = append(b, `",enable_prefix_caching="True",engine="0",num_gpu_blocks="`...)
	b = strconv.AppendInt(b, int64(blocks), 10)
	b = append(b, "\"} 1.0\n"...)
	c.sc.buf = b
	c.writeBody(http.StatusOK, ctPromText, b, true)
}

// handleLlamaSlots is llama-server's /slots: one entry per slot, busy ones
// processing.
func (s *Sim) handleLlamaSlots(c *call) {
	st := s.capacityStats()
	n := 4
	if s.cap != nil && s.cap.cfg.Slots > 0 {
		n = s.cap.cfg.Slots
	}
	b := append(c.sc.buf[:0], '[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"n_ctx":`...)
		b = strconv.AppendInt(b, int64(s.ctxLen), 10)
		b = append(b, `,"speculative":false,"is_processing":`...)
		b = strconv.AppendBool(b, int64(i) < st.Running)
		b = append(b, '}')
	}
	b = append(b, ']')
	c.sc.buf = b
	c.writeBody(http.StatusOK, ctJSONUTF8, b, true)
}

// handleLlamaMetrics is llama-server's /metrics (as with --metrics).
func (s *Sim) handleLlamaMetrics(c *call) {
	st := s.capacityStats()
	b := c.sc.buf[:0]
	b = appendGauge(b, "llamacpp:requests_processing", "Number of requests processing", "", float64(st.Running))
	b = appendGauge(b, "llamacpp:requests_deferred", "Number of requests deferred", "", float64(st.Waiting))
	b = appendCounter(b, "llamacpp:tokens_predicted_total", "Number of generation tokens processed.", float64(st.DecodeTokens))
	b = appendCounter(b, "llamacpp:tokens_predicted_seconds_total", "Predict process time", st.DecodeSeconds)
	c.sc.buf = b
	c.writeBody(http.StatusOK, ctPromText, b, true)
}

var ctPromText = []string{"text/plain; version=0.0.4"}

// appendProcessStart appends Python's prometheus_client process start time,
// which vLLM and SGLang expose.
func (s *Sim) appendProcessStart(b []byte) []byte {
	return appendGauge(b, "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "",
		float64(s.started.Load())/1000)
}

// appendDecodeHistogram appends the decode totals as an inter-token latency
// histogram: its one +Inf bucket, sum and count (a scheduler reads the sum
// and count).
func appendDecodeHistogram(b []byte, name, help, lbl string, st CapacityStats) []byte {
	b = appendMetricHeader(b, name, help, "histogram")
	inf := lbl[:len(lbl)-1] + `,le="+Inf"}`
	if lbl == "" {
		inf = `{le="+Inf"}`
	}
	b = append(append(append(b, name...), "_bucket"...), inf...)
	b = strconv.AppendInt(append(b, ' '), st.DecodeTokens, 10)
	b = append(append(append(append(b, '\n'), name...), "_sum"...), lbl...)
	b = strconv.AppendFloat(append(b, ' '), st.DecodeSeconds, 'f', -1, 64)
	b = append(append(append(append(b, '\n'), name...), "_count"...), lbl...)
	b = strconv.AppendInt(append(b, ' '), st.DecodeTokens, 10)
	return append(b, '\n')
}

func appendCounter(b []byte, name, help string, v float64) []byte {
	b = append(appendMetricHeader(b, name, help, "counter"), name...)
	b = strconv.AppendFloat(append(b, ' '), v, 'f', -1, 64)
	return append(b, '\n')
}

// appendMetricHeader appends a metric's # HELP and # TYPE lines.
func appendMetricHeader(b []byte, name, help, typ string) []byte {
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typ...)
	return append(b, '\n')
}

func appendGauge(b []byte, name, help, labels string, v float64) []byte {
	b = append(appendMetricHeader(b, name, help, "gauge"), name...)
	b = append(b, labels...)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, v, 'f', -1, 64)
	return append(b, '\n')
}

// capacityStats reads the counters, zero when the model is off.
func (s *Sim) capacityStats() CapacityStats {
	if s.cap == nil {
		return CapacityStats{}
	}
	return s.cap.stats()
}

// CapacityStats returns the capacity model's counters (zero when it is off).
func (s *Sim) CapacityStats() CapacityStats { return s.capacityStats() }
