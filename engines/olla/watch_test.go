package olla

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// closeCounter is a response body that counts its closes.
type closeCounter struct{ closed atomic.Int32 }

func (c *closeCounter) Close() error { c.closed.Add(1); return nil }

// TestWatchStaleFiringIgnored: the header-flush timer fires while the first
// read is returning, and its callback waits on the watch's lock while the
// copy stops the watch and arms it for the next read. The late callback
// must see that it is stale and leave the stream alone; it used to take
// itself for the idle timeout and close the body, which cut one Docker
// Model Runner stream in five through the proxy (TestOllaBench).
func TestWatchStaleFiringIgnored(t *testing.T) {
	var e Engine
	rec := httptest.NewRecorder()
	body := new(closeCounter)
	w := e.watch(time.Hour, body, http.NewResponseController(rec))

	// hold the lock across the header timer's firing: its callback waits
	w.mu.Lock()
	time.Sleep(10 * headerFlushDelay)
	// the first read returned (stop) and the next is armed (arm), before
	// the waiting callback gets the lock: stop's and arm's steps, in order
	w.live, w.rc = false, nil
	w.live = true
	w.due = time.Now().Add(time.Hour)
	w.timer.Reset(time.Hour)
	w.mu.Unlock()

	// the callback has run once it has marked the watch fired
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		w.mu.Lock()
		fired := w.fired
		w.mu.Unlock()
		if fired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the header timer never fired")
		}
	}
	if n := body.closed.Load(); n != 0 {
		t.Fatalf("a stale firing closed the body %d time(s): the stream would be cut", n)
	}
	if w.stop() {
		t.Fatal("the watch says the read idled out")
	}
	e.release(w)
}
