package sim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// psExpiry is model's expires_at in s's /api/ps, and whether it is listed.
func psExpiry(t *testing.T, s *Server, model string) (time.Time, bool) {
	t.Helper()
	_, b := get(t, s.URL+"/api/ps")
	var ps struct {
		Models []struct {
			Name      string `json:"name"`
			ExpiresAt string `json:"expires_at"`
		} `json:"models"`
	}
	if err := json.Unmarshal(b, &ps); err != nil {
		t.Fatalf("ps: %v: %s", err, b)
	}
	for _, m := range ps.Models {
		if m.Name == model {
			at, err := time.Parse(time.RFC3339Nano, m.ExpiresAt)
			if err != nil {
				t.Fatalf("expires_at %q: %v", m.ExpiresAt, err)
			}
			return at, true
		}
	}
	return time.Time{}, false
}

// TestOllamaKeepAlive: keep_alive as Ollama reads it on /api/chat,
// /api/generate and /api/embed: 0 unloads the model once it answered, a
// duration (Go string or seconds) sets the expiry after the answer, a
// negative value keeps it for good, and a request without one goes back
// to the 5 minute default. A value Ollama cannot read is a 400.
func TestOllamaKeepAlive(t *testing.T) {
	for _, capacity := range []Capacity{{}, {MaxLoaded: 2}} {
		s := startT(t, Config{Kind: Ollama, Models: []string{"m", "other"}, Tokens: 2, Capacity: capacity})
		chat := func(keep string) {
			t.Helper()
			body := `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]` + keep + `}`
			if res, b := post(t, s.URL+"/api/chat", body); res.StatusCode != http.StatusOK {
				t.Fatalf("chat%s: %d %s", keep, res.StatusCode, b)
			}
		}
		within := func(keep string, d time.Duration) {
			t.Helper()
			before := time.Now()
			chat(keep)
			after := time.Now()
			at, ok := psExpiry(t, s, "m:latest")
			if !ok || at.Before(before.Add(d)) || at.After(after.Add(d)) {
				t.Errorf("capacity %+v, keep_alive%s: expires %v (listed %v), want %v after the answer", capacity, keep, at, ok, d)
			}
		}
		within("", keepAlive)
		within(`,"keep_alive":"10m"`, 10*time.Minute)
		within(`,"keep_alive":3600`, time.Hour)
		within(`,"keep_alive":1.5`, 1500*time.Millisecond)
		chat(`,"keep_alive":-1`)
		if at, ok := psExpiry(t, s, "m:latest"); !ok || at.Before(time.Now().Add(100*365*24*time.Hour)) {
			t.Errorf("capacity %+v, keep_alive -1: expires %v (listed %v), want never", capacity, at, ok)
		}
		within(`,"keep_alive":null`, keepAlive) // the default again
		chat(`,"keep_alive":0`)
		if at, ok := psExpiry(t, s, "m:latest"); ok {
			t.Errorf("capacity %+v, keep_alive 0: still loaded, expires %v", capacity, at)
		}
		// the model loads again on use (an embed outside the capacity
		// model, whose residents only generation loads)
		if capacity.MaxLoaded == 0 {
			before := time.Now()
			if res, b := post(t, s.URL+"/api/embed", `{"model":"m","input":"x","keep_alive":"1h"}`); res.StatusCode != http.StatusOK {
				t.Fatalf("embed: %d %s", res.StatusCode, b)
			}
			if at, ok := psExpiry(t, s, "m:latest"); !ok || at.Before(before.Add(time.Hour)) {
				t.Errorf("after an embed with keep_alive 1h: expires %v (listed %v)", at, ok)
			}
		} else {
			within(`,"keep_alive":"1h"`, time.Hour)
		}
		// the empty generate that unloads, as `ollama stop` sends it
		res, b := post(t, s.URL+"/api/generate", `{"model":"m","keep_alive":0}`)
		if res.StatusCode != http.StatusOK || !strings.Contains(string(b), `"done_reason":"unload"`) {
			t.Errorf("unload request: %d %s", res.StatusCode, b)
		}
		if _, ok := psExpiry(t, s, "m:latest"); ok {
			t.Errorf("capacity %+v: still loaded after the unload request", capacity)
		}
		for _, bad := range []string{`"abc"`, `"10"`, `true`, `{}`} {
			res, b := post(t, s.URL+"/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}],"keep_alive":`+bad+`}`)
			if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"error"`) {
				t.Errorf("keep_alive %s: %d %s, want a 400", bad, res.StatusCode, b)
			}
		}
	}
}
