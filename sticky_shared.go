package olla

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-olla/olla/sharedpins"
)

// sharedPins is sticky_sessions' storage redis: pins shared by every
// instance naming the same server (package sharedpins). The local pin
// store still holds this instance's pins; Redis adds the others'. A
// session's pin read from Redis wins over the local one (another instance
// may have moved it), and a Redis that cannot be read leaves the local
// pin (or the rendezvous home) to decide.
type sharedPins struct {
	store  *sharedpins.Store
	key    string // in pinStores
	reads  atomic.Int64
	found  atomic.Int64
	errors atomic.Int64
}

// pinStores holds one store per Redis address and idle TTL for the whole
// process, kept across reloads and closed when no config names it.
var pinStores = caddy.NewUsagePool()

type pooledPins struct{ *sharedpins.Store }

func (p pooledPins) Destruct() error { return p.Close() }

// share connects the policy's pins to Redis with storage redis.
func (p *stickyPolicy) share(ss *StickySessions) error {
	if p == nil || ss == nil || ss.Storage != storageRedis {
		return nil
	}
	addr, err := caddy.NewReplacer().ReplaceOrErr(ss.RedisAddress, true, true)
	if err != nil {
		return fmt.Errorf("sticky_sessions redis address: %v", err)
	}
	key := fmt.Sprintf("%s|%d", addr, p.pins.ttl)
	v, _, err := pinStores.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := sharedpins.New(addr, p.pins.ttl)
		if err != nil {
			return nil, err
		}
		return pooledPins{s}, nil
	})
	if err != nil {
		return fmt.Errorf("sticky_sessions: %v", err)
	}
	p.shared = &sharedPins{store: v.(pooledPins).Store, key: key}
	return nil
}

// release drops the policy's reference on its shared store.
func (p *stickyPolicy) release() {
	if p != nil && p.shared != nil {
		_, _ = pinStores.Delete(p.shared.key)
		p.shared = nil
	}
}

// get is the session's pin: Redis's when it has one, else local.
func (sp *sharedPins) get(ctx context.Context, key uint64, local string, now time.Time) string {
	if sp == nil {
		return local
	}
	sp.reads.Add(1)
	shared, err := sp.store.Get(ctx, key, now)
	switch {
	case err != nil:
		sp.errors.Add(1)
		return local
	case shared != "":
		sp.found.Add(1)
		return shared
	}
	return local
}

// put shares where the session went.
func (sp *sharedPins) put(key uint64, endpoint string, now time.Time) {
	if sp != nil {
		sp.store.Put(key, endpoint, now)
	}
}

// stats is /internal/stats/sticky: the local store, and the shared one's
// counts with storage redis.
func (p *stickyPolicy) stats() map[string]any {
	out := p.pins.stats()
	out["storage"] = storageMemory
	if sp := p.shared; sp != nil {
		out["storage"] = storageRedis
		out["shared"] = map[string]int64{"lookups": sp.reads.Load(), "found": sp.found.Load(), "errors": sp.errors.Load()}
	}
	return out
}
