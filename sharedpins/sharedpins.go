// Package sharedpins shares sticky-session pins between proxy instances
// through Redis (or Valkey), so a session placed by one instance is sent to
// the same endpoint by every other, even when it is not its rendezvous home
// (its home was down or full when it was placed, or it moved on a
// failover). Keys are the sessions' 64-bit hashes (never a raw session id,
// credential or prompt): "olla:pin:<16 hex digits>" holding the endpoint's
// name, with the sessions' idle TTL as expiry.
//
// Reads are cached for Fresh, so a busy session costs an instance one GET
// per Fresh at most, and none while it stays fresh; writes are buffered,
// one per session however often it is used, and sent together (one
// pipelined round trip) by a timer the Store owns, stopped by Close.
package sharedpins

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-olla/olla/limits"
)

// Tunables.
const (
	// Fresh is how long an instance trusts what it last read or wrote for
	// a session before it reads Redis again: another instance's repin is
	// followed within this.
	Fresh = 2 * time.Second
	// timeout bounds a read: a slow Redis costs a request this at most,
	// then the local pin (or the rendezvous home) decides.
	timeout = 200 * time.Millisecond
	// flushEvery spaces the batched writes.
	flushEvery = 100 * time.Millisecond
	// maxPending bounds the writes waiting for a flush, and maxCached the
	// sessions whose last read is remembered (the cache starts again when
	// full: a cost in reads, never a wrong answer past Fresh).
	maxPending = 4096
	maxCached  = 65536
	maxName    = 256 // an endpoint name longer than this is not a pin we wrote
)

// Store is one Redis server's pins as seen from this instance.
type Store struct {
	client *redis.Client
	ttl    time.Duration

	mu      sync.Mutex
	cache   map[uint64]cached
	pending map[uint64]string
	timer   *time.Timer
	armed   bool
	closed  bool
}

type cached struct {
	endpoint string // "" for none
	at       time.Time
}

// New connects (lazily) to addr, any address limits.NewRedis takes; pins
// expire after ttl without use.
func New(addr string, ttl time.Duration) (*Store, error) {
	c, err := limits.DialRedis(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &Store{client: c, ttl: ttl, cache: map[uint64]cached{}, pending: map[uint64]string{}}, nil
}

func redisKey(key uint64) string {
	var b [len("olla:pin:") + 16]byte
	n := copy(b[:], "olla:pin:")
	s := strconv.AppendUint(b[:n], key, 16)
	return string(s)
}

// Get is the endpoint key is pinned to across instances ("" for none),
// from the cache while fresh, else from Redis. An error means Redis could
// not be read: the caller goes on with what it knows itself.
func (s *Store) Get(ctx context.Context, key uint64, now time.Time) (string, error) {
	s.mu.Lock()
	if c, ok := s.cache[key]; ok && now.Sub(c.at) < Fresh {
		s.mu.Unlock()
		return c.endpoint, nil
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := s.client.Get(ctx, redisKey(key)).Result()
	switch {
	case err == redis.Nil:
		v = ""
	case err != nil:
		return "", err
	case len(v) > maxName:
		v = "" // not ours: ignored, and overwritten by the next placement
	}
	s.remember(key, v, now)
	return v, nil
}

func (s *Store) remember(key uint64, endpoint string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) >= maxCached {
		clear(s.cache)
	}
	s.cache[key] = cached{endpoint, now}
}

// Put pins key to endpoint for every instance: buffered, sent with the
// next flush (a session used again before then is written once).
func (s *Store) Put(key uint64, endpoint string, now time.Time) {
	s.remember(key, endpoint, now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if _, ok := s.pending[key]; !ok && len(s.pending) >= maxPending {
		return // a burst of new sessions beyond the bound: their pins stay local
	}
	s.pending[key] = endpoint
	if !s.armed {
		s.armed = true
		if s.timer == nil {
			s.timer = time.AfterFunc(flushEvery, s.flush)
		} else {
			s.timer.Reset(flushEvery)
		}
	}
}

// flush writes the buffered pins in one pipelined round trip. Pins that
// could not be written are dropped: each instance still has its own, and
// the session's next placement writes it again.
func (s *Store) flush() {
	s.mu.Lock()
	s.armed = false
	batch := s.pending
	s.pending = make(map[uint64]string, len(batch))
	s.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*timeout)
	defer cancel()
	pipe := s.client.Pipeline()
	for key, endpoint := range batch {
		pipe.Set(ctx, redisKey(key), endpoint, s.ttl)
	}
	_, _ = pipe.Exec(ctx)
}

// Close stops the timer, writes what is buffered and closes the client.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	s.flush()
	return s.client.Close()
}
