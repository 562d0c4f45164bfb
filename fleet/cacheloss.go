package fleet

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/profiles"
)

// What the backend's prefix cache lost. The handlers' prefix indexes (the
// root's prefixroute.go) mirror what each backend has cached; when the
// backend restarts or unloads a model that mirror is wrong. The probe loop
// notes each loss here, and an index reads the log when it next matches or
// records on the endpoint: one atomic load per candidate when nothing was
// lost, no goroutine, and fleet never calls into the root. The signals:
//
//   - the endpoint comes back after an outage its probes saw as the
//     backend being gone (refused connection, a 503, an error status; not
//     timeouts, which a busy backend's health route also gives while its
//     process and cache live on): the whole cache;
//   - the backend states a new process start time (process_start_time_seconds
//     on vLLM's and SGLang's /metrics), a restart the probes may not have
//     seen: the whole cache;
//   - a model leaves the resident set the backend states (Ollama /api/ps,
//     LM Studio's state, llama.cpp router /models): that model's blocks.

// cacheLogSize is how many losses the log keeps; a reader further behind
// forgets everything the endpoint holds.
const cacheLogSize = 32

type cacheLog struct {
	seq  atomic.Uint64 // losses so far; the last one's seq
	mu   sync.Mutex
	ring [cacheLogSize]string // by seq: the model lost, "" for the whole cache

	restarts atomic.Int64 // whole-cache losses
	unloads  atomic.Int64 // model losses
	// gone: the current outage had the backend gone, not only slow; up:
	// it has been routable (before that it held nothing to lose)
	gone, up atomic.Bool
	// recovered: a restart was noted at a recovery and no poll has read a
	// process start time since; the new start time that poll reads is the
	// same restart, not another
	recovered atomic.Bool
	// resident is the last loaded set the backend stated (nil: none yet),
	// the set departures are judged against; startedAt is the last process
	// start time it stated (unix milliseconds, 0: none)
	resident  atomic.Pointer[profiles.Signals]
	startedAt atomic.Int64
	// tokens is the KV cache size the backend last stated (0: never)
	tokens atomic.Int64
}

// CacheTokens is the KV cache size in tokens the backend last stated
// (profiles.Signals.CacheTokens: vLLM's blocks × block size, llama.cpp's
// context over its slots), 0 when it never stated one. It is a setting of
// the backend's, so an old value stands while polls fail.
func (st *Endpoint) CacheTokens() int64 { return st.cache.tokens.Load() }

func (l *cacheLog) add(model string) {
	l.mu.Lock()
	n := l.seq.Load() + 1
	l.ring[n%cacheLogSize] = model
	l.seq.Store(n)
	l.mu.Unlock()
	if model == "" {
		l.restarts.Add(1)
	} else {
		l.unloads.Add(1)
	}
}

// CacheSeq counts what the backend's prefix cache is known to have lost;
// it changes with each loss, so a reader that kept the last value it read
// knows at the cost of one atomic load whether to call CacheLosses.
func (st *Endpoint) CacheSeq() uint64 { return st.cache.seq.Load() }

// CacheLosses calls lost for each loss after seq, in order: lost("") for
// the whole cache (the backend restarted, or more was lost than the log
// keeps), lost(model) for one model's blocks (lower-cased; an Ollama model
// also under its name without ":latest"). It returns the seq it read up to.
func (st *Endpoint) CacheLosses(seq uint64, lost func(model string)) uint64 {
	l := &st.cache
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.seq.Load()
	switch {
	case now == seq:
	case now < seq || now-seq > cacheLogSize:
		lost("")
	default:
		for n := seq + 1; n <= now; n++ {
			lost(l.ring[n%cacheLogSize])
		}
	}
	return now
}

// CacheLossCounts is how many whole-cache and single-model losses the
// endpoint has had.
func (st *Endpoint) CacheLossCounts() (restarts, unloads int64) {
	return st.cache.restarts.Load(), st.cache.unloads.Load()
}

// noteProbe reads a probe's verdict, cur, after prev: an outage in which
// the backend was gone (nothing listening, or its health route said it
// was not ready or failed outright) and that has now ended means its
// process most likely restarted. An outage of timeouts and resets alone
// is not one: a busy backend's health route gives those while its process
// and cache live on; nor is a 429 or a 401/403, which a running backend
// sent. A backend that was not up yet when the proxy started (refused,
// then up) lost nothing: it never held anything.
func (st *Endpoint) noteProbe(prev, cur *Health) {
	l := &st.cache
	switch {
	case !cur.Status.Routable():
		if (cur.Status == discovery.StatusOffline || cur.Status == discovery.StatusUnhealthy) && !cur.Transient && l.up.Load() {
			l.gone.Store(true)
		}
	case !prev.Status.Routable() && l.gone.Swap(false):
		l.add("")
		l.recovered.Store(true)
	default:
		l.up.Store(true)
	}
}

// maxStartSkew is how far after the poll a stated process start time may
// lie (clocks differ a little): further is not believed.
const maxStartSkew = time.Minute

// noteSignals compares a poll's signals with the last ones stated: a new
// process start time is a restart, a model gone from the resident set an
// unload. A poll that read nothing changes nothing.
func (st *Endpoint) noteSignals(sig *profiles.Signals) {
	if sig == nil {
		return
	}
	l := &st.cache
	if sig.CacheKnown {
		l.tokens.Store(sig.CacheTokens)
	}
	if sig.StartedKnown && sig.Started <= sig.At.Add(maxStartSkew).UnixMilli() {
		noted := l.recovered.Swap(false)
		if prev := l.startedAt.Swap(sig.Started); prev != 0 && prev != sig.Started {
			if !noted {
				l.add("")
			}
			l.resident.Store(sig)
			return // the whole cache went; no model needs naming
		}
	}
	if !sig.LoadedKnown || sig.ServesListed {
		return
	}
	prev := l.resident.Swap(sig)
	if prev == nil {
		return
	}
	// the loaded sets are bounded (profiles.maxLoadedModels); more losses
	// than the log keeps fold into one whole-cache loss for readers
	for _, name := range prev.LoadedModels() {
		if resident, _ := sig.Resident(name); !resident {
			l.add(name)
		}
	}
}
