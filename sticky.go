package olla

import (
	"container/list"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/fleet/prefix"
)

// StickySessions is the `sticky_sessions` block: requests of one session go
// to the endpoint that served it before, so the backend's prompt cache is
// reused. The keys and headers are the standalone Olla proxy's
// (proxy.sticky_sessions). A key seen for the first time goes to its
// rendezvous home among the candidates (skipping any loaded above 1.25 x
// the mean), so two proxies with one config place a new session alike
// without sharing state; a local pin store keeps it there.
//
// The prefix_hash source is the conversation, not the prompt's first bytes
// (which every conversation with one system prompt shares): under the
// adaptive balancer it is served by the prefix index (prefixroute.go) and
// gives no key; under the others it is the conversation's anchor (its
// prompt through its first message of its own, see fleet/prefix). No
// response says whether a prefix was seen before: X-Olla-Sticky-Session
// reports hit or miss only for keys that name the client itself.
type StickySessions struct {
	// IdleTTL forgets a session unused for this long (default 10m).
	IdleTTL caddy.Duration `json:"idle_ttl,omitempty"`
	// MaxSessions bounds the pin store; the least recently used pin goes
	// first (default 10000).
	MaxSessions int `json:"max_sessions,omitempty"`
	// MaxSessionsPerClient bounds the pins one client (its address, IPv6
	// grouped by client_ipv6_prefix) holds; a client at its share replaces
	// its own least recently used pin, never another's. Default a tenth of
	// max_sessions (at least 1).
	MaxSessionsPerClient int `json:"max_sessions_per_client,omitempty"`
	// KeySources are tried in order, the first that gives a key wins:
	// session_header (X-Olla-Session-ID), prefix_hash (the conversation
	// its prompt names; with adaptive, the prefix index instead of a pin),
	// auth_header (Authorization) and ip (the client's address). Default
	// session_header alone: an Authorization many clients share (a dummy
	// key) or a system prompt would pin everyone's conversations together.
	KeySources []string `json:"key_sources,omitempty"`
	// PrefixHashBytes is accepted for old configs and ignored: prefix_hash
	// now reads the conversation's canonical prompt.
	PrefixHashBytes int `json:"prefix_hash_bytes,omitempty"`
	// Storage is where pins are shared: memory (default: each instance
	// keeps its own) or redis, shared by every instance that names the
	// same server (sticky_shared.go), so a session placed by one goes to
	// the same endpoint through every other.
	Storage string `json:"storage,omitempty"`
	// RedisAddress is the Redis (or Valkey) server with storage redis, as
	// key_limits takes it (placeholders allowed; never logged).
	RedisAddress string `json:"redis_address,omitempty"`
}

// Sticky-session defaults and bounds.
const (
	defaultStickyTTL         = 10 * time.Minute
	defaultStickySessions    = 10_000
	maxStickySessions        = 1_000_000
	defaultPrefixHashBytes   = 512
	maxPrefixHashBytes       = 1 << 20
	sessionHeader            = "X-Olla-Session-ID"
	maxEchoedSessionIDLength = 256

	keySession = "session_header"
	keyPrefix  = "prefix_hash"
	keyAuth    = "auth_header"
	keyIP      = "ip"
)

var stickyKeySources = []string{keySession, keyPrefix, keyAuth, keyIP}

func (ss *StickySessions) validate() error {
	if ss == nil {
		return nil
	}
	if ss.IdleTTL < 0 {
		return fmt.Errorf("sticky_sessions idle_ttl must not be negative")
	}
	if ss.MaxSessions < 0 || ss.MaxSessions > maxStickySessions {
		return fmt.Errorf("sticky_sessions max_sessions must be between 1 and %d (0 for the default %d), got %d", maxStickySessions, defaultStickySessions, ss.MaxSessions)
	}
	if ss.MaxSessionsPerClient < 0 || ss.MaxSessionsPerClient > maxStickySessions {
		return fmt.Errorf("sticky_sessions max_sessions_per_client must be between 1 and %d (0 for a tenth of max_sessions), got %d", maxStickySessions, ss.MaxSessionsPerClient)
	}
	if ss.PrefixHashBytes < 0 || ss.PrefixHashBytes > maxPrefixHashBytes {
		return fmt.Errorf("sticky_sessions prefix_hash_bytes must be between 1 and %d (0 for the default %d), got %d", maxPrefixHashBytes, defaultPrefixHashBytes, ss.PrefixHashBytes)
	}
	if err := checkStorage("sticky_sessions", ss.Storage, ss.RedisAddress); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, src := range ss.KeySources {
		if err := checkEnum("sticky_sessions key source", src, stickyKeySources...); err != nil || src == "" {
			return fmt.Errorf("unknown sticky_sessions key source %q: expected %s", src, orList(stickyKeySources))
		}
		if seen[src] {
			return fmt.Errorf("sticky_sessions key source %q is listed twice", src)
		}
		seen[src] = true
	}
	return nil
}

// stickyPolicy is a validated StickySessions with its pin store.
type stickyPolicy struct {
	sources []string
	// byIndex: prefix_hash gives no key, the prefix index places the
	// conversation (adaptive)
	byIndex bool
	pins    *pinStore
	shared  *sharedPins // with storage redis
}

func newStickyPolicy(ss *StickySessions, byIndex bool) *stickyPolicy {
	if ss == nil {
		return nil
	}
	p := &stickyPolicy{sources: ss.KeySources, byIndex: byIndex}
	if len(p.sources) == 0 {
		p.sources = []string{keySession}
	}
	ttl, size := defaultStickyTTL, defaultStickySessions
	if ss.IdleTTL > 0 {
		ttl = time.Duration(ss.IdleTTL)
	}
	if ss.MaxSessions > 0 {
		size = ss.MaxSessions
	}
	perClient := max(1, size/10)
	if ss.MaxSessionsPerClient > 0 {
		perClient = min(ss.MaxSessionsPerClient, size)
	}
	p.pins = newPinStore(size, perClient, ttl)
	return p
}

// stickyRequest is one request's session: its hashed key, where it was
// pinned, and (once an endpoint is chosen) the outcome.
type stickyRequest struct {
	policy  *stickyPolicy
	client  string // who asked, for the pin store's per-client share
	key     uint64 // 0: no key
	source  string
	pinned  string // endpoint name the key was pinned to ("" none)
	outcome string
}

// keyFor computes the request's session key from the first source that
// gives one. Every key is hashed with the model: the same conversation
// with another model is another session. Nothing of the request is kept.
func (p *stickyPolicy) keyFor(r *http.Request, body []byte, model string) *stickyRequest {
	sr := &stickyRequest{policy: p, client: clientIP(r)}
	for _, src := range p.sources {
		var material []byte
		switch src {
		case keySession:
			if v := r.Header.Get(sessionHeader); v != "" {
				material = []byte(v)
			}
		case keyPrefix:
			if !p.byIndex {
				material = conversationKey(body, model)
			}
		case keyAuth:
			if v := r.Header.Get("Authorization"); v != "" {
				material = []byte(v)
			}
		case keyIP:
			material = []byte(sr.client)
		}
		if len(material) == 0 {
			continue
		}
		sr.source = src
		sr.key = balancer.SessionKey(src, material, model)
		break
	}
	if sr.key != 0 {
		now := time.Now()
		sr.pinned = p.shared.get(r.Context(), sr.key, p.pins.get(sr.key, now), now)
	}
	return sr
}

// conversationKey is the conversation the body's prompt names: the hash of
// its canonical prompt through its first message of its own, the same for
// every turn, in any JSON spelling; nil when the prompt has none (a system
// prompt alone names no conversation).
func conversationKey(body []byte, model string) []byte {
	var c prefix.Chain
	if c.Parse(body, model) != nil || c.Anchor == 0 {
		return nil
	}
	return binary.LittleEndian.AppendUint64(nil, c.Anchor)
}

// placed records where the request went and sets its headers.
func (sr *stickyRequest) placed(st *fleet.Endpoint, h http.Header) {
	if sr == nil || sr.key == 0 {
		return
	}
	name := st.Name()
	switch {
	case sr.pinned == name:
		sr.outcome = "hit"
	case sr.pinned != "":
		sr.outcome = "repin"
	default:
		sr.outcome = "miss"
	}
	now := time.Now()
	sr.policy.pins.put(sr.key, name, sr.outcome, sr.client, now)
	sr.policy.shared.put(sr.key, name, now)
	// a prefix key is shared by whoever sends the same prompt: saying hit
	// would tell a client that someone else sent it
	if h != nil && sr.source != keyPrefix {
		h.Set("X-Olla-Sticky-Session", sr.outcome)
	}
}

// setHeaders announces the key source before an endpoint is chosen (a
// request refused later still says how it was keyed).
func (sr *stickyRequest) setHeaders(r *http.Request, h http.Header) {
	if sr.key == 0 {
		h.Set("X-Olla-Sticky-Session", "disabled")
		return
	}
	h.Set("X-Olla-Sticky-Key-Source", sr.source)
	if sr.source == keySession {
		if v := r.Header.Get(sessionHeader); len(v) <= maxEchoedSessionIDLength && !strings.ContainsAny(v, "\r\n") {
			h.Set(sessionHeader, v)
		}
	}
}

// pinStore maps hashed session keys to endpoint names: an LRU bounded by
// max, whose entries also expire after idle. It never holds a raw key. No
// client holds more than perClient pins: one that mints session ids by the
// thousand only ever replaces its own.
type pinStore struct {
	mu        sync.Mutex
	max       int
	perClient int
	ttl       time.Duration
	order     *list.List // of *pin, most recently used first
	byKey     map[uint64]*list.Element
	byClient  map[string]*list.List // each client's pins (of *list.Element in order), most recent first

	insertions, hits, misses, repins, evictions, expirations int64
}

type pin struct {
	key      uint64
	endpoint string // the endpoint's own name string, shared
	last     time.Time
	client   string
	mine     *list.Element // this pin in its client's list
}

func newPinStore(max, perClient int, ttl time.Duration) *pinStore {
	return &pinStore{max: max, perClient: perClient, ttl: ttl, order: list.New(),
		byKey: make(map[uint64]*list.Element, min(max, 1024)), byClient: map[string]*list.List{}}
}

// get returns key's endpoint, or "" when it has none or it expired.
func (ps *pinStore) get(key uint64, now time.Time) string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	e, ok := ps.byKey[key]
	if !ok {
		return ""
	}
	p := e.Value.(*pin)
	if now.Sub(p.last) > ps.ttl {
		ps.remove(e)
		ps.expirations++
		return ""
	}
	return p.endpoint
}

// put pins key to endpoint for client and counts the outcome.
func (ps *pinStore) put(key uint64, endpoint, outcome, client string, now time.Time) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch outcome {
	case "hit":
		ps.hits++
	case "repin":
		ps.repins++
	default:
		ps.misses++
	}
	if e, ok := ps.byKey[key]; ok {
		p := e.Value.(*pin)
		p.endpoint, p.last = endpoint, now
		ps.order.MoveToFront(e)
		ps.byClient[p.client].MoveToFront(p.mine)
		return
	}
	// expired pins sit at the back: drop them first; then a client at its
	// share gives up its own least recently used pin, and a full store
	// its least recently used one
	for back := ps.order.Back(); back != nil && now.Sub(back.Value.(*pin).last) > ps.ttl; back = ps.order.Back() {
		ps.remove(back)
		ps.expirations++
	}
	mine := ps.byClient[client]
	if mine != nil && mine.Len() >= ps.perClient {
		ps.remove(mine.Back().Value.(*list.Element))
		ps.evictions++
	}
	for ps.order.Len() >= ps.max {
		ps.remove(ps.order.Back())
		ps.evictions++
	}
	if mine = ps.byClient[client]; mine == nil {
		mine = list.New()
		ps.byClient[client] = mine
	}
	p := &pin{key: key, endpoint: endpoint, last: now, client: client}
	e := ps.order.PushFront(p)
	p.mine = mine.PushFront(e)
	ps.byKey[key] = e
	ps.insertions++
}

func (ps *pinStore) remove(e *list.Element) {
	p := e.Value.(*pin)
	delete(ps.byKey, p.key)
	ps.order.Remove(e)
	if mine := ps.byClient[p.client]; mine != nil {
		mine.Remove(p.mine)
		if mine.Len() == 0 {
			delete(ps.byClient, p.client)
		}
	}
}

// stats is the store as /internal/stats/sticky shows it.
func (ps *pinStore) stats() map[string]any {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return map[string]any{"enabled": true, "active_sessions": ps.order.Len(), "insertions": ps.insertions,
		"hits": ps.hits, "misses": ps.misses, "repins": ps.repins, "evictions": ps.evictions,
		"expirations": ps.expirations, "max_sessions": ps.max, "max_sessions_per_client": ps.perClient, "idle_ttl_seconds": int64(ps.ttl / time.Second)}
}

// serveStickyStats answers /internal/stats/sticky.
func (rq *request) serveStickyStats() error {
	if rq.h.sticky == nil {
		return rq.writeJSON(http.StatusOK, map[string]any{"enabled": false})
	}
	return rq.writeJSON(http.StatusOK, rq.h.sticky.stats())
}
