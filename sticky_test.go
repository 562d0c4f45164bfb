package olla

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// TestPinStoreBounded: 100,000 distinct session keys leave at most
// max_sessions pins, and the store's heap stays that of max_sessions small
// entries although every key it ends up holding came as a 10 KB session
// header: the keys are hashed, never kept. (One key in 100 before those is
// 10 KB too; hashing all 100,000 at 10 KB takes a minute under -race.)
func TestPinStoreBounded(t *testing.T) {
	const keys, maxSessions = 100_000, 1000
	p := newStickyPolicy(&StickySessions{MaxSessions: maxSessions}, false)
	pad := strings.Repeat("x", 10<<10)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range keys {
		r := httptest.NewRequest(http.MethodPost, "/olla/ollama/api/chat", nil)
		id := strconv.Itoa(i)
		if i%100 == 0 || i >= keys-maxSessions {
			id = pad + id
		}
		r.Header.Set(sessionHeader, id)
		sr := p.keyFor(r, nil, "m")
		if sr.key == 0 || sr.source != keySession || sr.pinned != "" {
			t.Fatalf("key %d: %+v", i, sr)
		}
		p.pins.put(sr.key, "ep", "miss", "client"+strconv.Itoa(i%10), time.Now()) // ten clients, each at its share
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := p.pins.stats()
	if n := st["active_sessions"].(int); n != maxSessions {
		t.Errorf("%d sessions kept, want %d", n, maxSessions)
	}
	if ev := st["evictions"].(int64); ev != keys-maxSessions {
		t.Errorf("%d evictions, want %d", ev, keys-maxSessions)
	}
	if len(p.pins.byKey) != maxSessions {
		t.Errorf("index holds %d keys", len(p.pins.byKey))
	}
	// 1000 pins of ~150 bytes; 10 KB keys kept would be 10 MB
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 2<<20 {
		t.Errorf("heap grew by %d bytes for %d pins", grew, maxSessions)
	}
	runtime.KeepAlive(p)
}

// TestPinStoreLRUAndIdle: the least recently used pin goes first, and a pin
// idle past idle_ttl is forgotten (a new placement, not a repin).
func TestPinStoreLRUAndIdle(t *testing.T) {
	ps := newPinStore(2, 2, time.Minute)
	now := time.Now()
	ps.put(1, "a", "miss", "c", now)
	ps.put(2, "b", "miss", "c", now)
	if ps.get(1, now) != "a" { // 1 is now the most recent
		t.Fatal("pin 1 lost")
	}
	ps.put(1, "a", "hit", "c", now)
	ps.put(3, "c", "miss", "c", now)
	if ps.get(2, now) != "" || ps.get(1, now) != "a" || ps.get(3, now) != "c" {
		t.Errorf("LRU evicted the wrong pin: 1=%q 2=%q 3=%q", ps.get(1, now), ps.get(2, now), ps.get(3, now))
	}
	if got := ps.get(3, now.Add(2*time.Minute)); got != "" {
		t.Errorf("a pin idle for 2m with idle_ttl 1m is still %q", got)
	}
}

// TestPinStoreClientShare: a client at its share replaces its own least
// recently used pin; other clients' pins stay, and removal keeps the
// per-client lists consistent.
func TestPinStoreClientShare(t *testing.T) {
	ps := newPinStore(10, 3, time.Minute)
	now := time.Now()
	for k := uint64(1); k <= 5; k++ {
		ps.put(k, "a", "miss", "victim", now)
	}
	for k := uint64(100); k < 1100; k++ {
		ps.put(k, "b", "miss", "minter", now)
	}
	kept := 0
	for k := uint64(1); k <= 5; k++ {
		if ps.get(k, now) == "a" {
			kept++
		}
	}
	if kept != 3 { // the victim's own share: 3 of its 5
		t.Errorf("the victim kept %d pins, want 3", kept)
	}
	if n := ps.byClient["minter"].Len(); n != 3 {
		t.Errorf("the minter holds %d pins, want its share of 3", n)
	}
	if ps.order.Len() != 6 || len(ps.byKey) != 6 {
		t.Errorf("store holds %d/%d pins, want 6", ps.order.Len(), len(ps.byKey))
	}
	if ps.get(1099, now.Add(2*time.Minute)) != "" || ps.byClient["minter"].Len() != 2 {
		t.Errorf("an expired pin was not dropped from its client's list")
	}
}

// TestStickyKeys: the standalone's key sources in their configured order,
// each key bound to the model; the prefix key is the conversation (its
// canonical prompt through its first message of its own), not the
// prompt's first bytes, which every conversation with one system prompt
// shares.
func TestStickyKeys(t *testing.T) {
	p := newStickyPolicy(&StickySessions{IdleTTL: caddy.Duration(time.Minute), KeySources: []string{keySession, keyPrefix, keyAuth, keyIP}, PrefixHashBytes: 16}, false)
	req := func(h ...string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/olla/openai/v1/chat/completions", nil)
		for i := 0; i+1 < len(h); i += 2 {
			r.Header.Set(h[i], h[i+1])
		}
		return r
	}
	body := []byte(`{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant"},{"role":"user","content":"hello"}]}`)
	nextTurn := []byte(`{"messages": [{"content":"You are a helpful assistant","role":"system"}, {"role":"user","content":"hello"},
		{"role":"assistant","content":"hi"},{"role":"user","content":"how are you?"}], "model": "m"}`)
	otherConversation := []byte(`{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant"},{"role":"user","content":"goodbye"}]}`)
	systemOnly := []byte(`{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant"}]}`)
	tests := []struct {
		name   string
		r      *http.Request
		body   []byte
		model  string
		source string
	}{
		{"session header first", req(sessionHeader, "s1", "Authorization", "Bearer k"), body, "m", keySession},
		{"prefix without a session", req("Authorization", "Bearer k"), body, "m", keyPrefix},
		{"auth without a body", req("Authorization", "Bearer k"), nil, "m", keyAuth},
		{"ip last", req(), nil, "m", keyIP},
		{"prompt when there are no messages", req(), []byte(`{"model":"m","prompt":"Once upon a time"}`), "m", keyPrefix},
		{"null messages fall to prompt", req(), []byte(`{"model":"m","messages":null,"prompt":"p"}`), "m", keyPrefix},
		{"a system prompt alone names no conversation", req("Authorization", "Bearer k"), systemOnly, "m", keyAuth},
	}
	for _, tc := range tests {
		sr := p.keyFor(tc.r, tc.body, tc.model)
		if sr.source != tc.source || sr.key == 0 {
			t.Errorf("%s: source %q key %x, want %s", tc.name, sr.source, sr.key, tc.source)
		}
	}
	a := p.keyFor(req(), body, "m").key
	if b := p.keyFor(req(), nextTurn, "m").key; a != b {
		t.Error("a conversation's next turn, spelt otherwise, got another prefix key")
	}
	if b := p.keyFor(req(), otherConversation, "m").key; a == b {
		t.Error("two conversations that share only a system prompt got one prefix key")
	}
	if b := p.keyFor(req(), body, "other").key; a == b {
		t.Error("the same prefix with another model got the same key")
	}
	if s, ip := p.keyFor(req(sessionHeader, "x"), nil, "m").key, p.keyFor(req(), nil, "m").key; s == ip {
		t.Error("keys of different sources collide")
	}
	none := newStickyPolicy(&StickySessions{KeySources: []string{keySession}}, false)
	if sr := none.keyFor(req(), body, "m"); sr.key != 0 {
		t.Errorf("no session header gave a key from %q", sr.source)
	}
	// under adaptive the prefix index places the conversation: no pin
	byIndex := newStickyPolicy(&StickySessions{KeySources: []string{keyPrefix}}, true)
	if sr := byIndex.keyFor(req(), body, "m"); sr.key != 0 {
		t.Errorf("prefix_hash served by the index still gave a key from %q", sr.source)
	}
	// the default is the session header alone
	if def := newStickyPolicy(&StickySessions{}, false); !slices.Equal(def.sources, []string{keySession}) {
		t.Errorf("default key sources %v", def.sources)
	}
}
