package olla

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// onlyReader hides bytes.Reader's other methods, so a body has no length
// the server could know: it is sent chunked.
type onlyReader struct{ io.Reader }

// TestReadBodyBuffer: the buffer holds exactly the declared length (no
// doubling past it), a body of unknown length grows to at most the limit,
// and every byte held is reserved from the process-wide budget and given
// back when the request ends.
func TestReadBodyBuffer(t *testing.T) {
	h := &Handler{maxBody: 8 << 20, maxBuffered: 16 << 20, app: &App{bodies: new(bodyBudget)}}
	for _, tc := range []struct {
		name     string
		size     int
		chunked  bool
		wantCap  int
		wantCode int // 0 = read
	}{
		{"declared 3 MiB", 3 << 20, false, 3 << 20, 0},
		{"declared 1 byte", 1, false, 1, 0},
		{"declared just under 1 MiB", 1<<20 - 1, false, 1<<20 - 1, 0},
		{"chunked 100 KiB", 100 << 10, true, 128 << 10, 0},
		{"chunked 5 MiB", 5 << 20, true, 8 << 20, 0},
		{"chunked exactly the limit", 8 << 20, true, 8 << 20, 0},
		{"chunked one byte over", 8<<20 + 1, true, 0, http.StatusRequestEntityTooLarge},
		{"declared one byte over", 8<<20 + 1, false, 0, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := bytes.Repeat([]byte("x"), tc.size)
			var body io.Reader = bytes.NewReader(payload)
			if tc.chunked {
				body = onlyReader{body}
			}
			r := httptest.NewRequest(http.MethodPost, "/olla/ollama/api/chat", body)
			rq := &request{h: h, r: r, w: httptest.NewRecorder()}
			buf, aerr := rq.readBody()
			switch {
			case tc.wantCode != 0:
				if aerr == nil || aerr.status != tc.wantCode {
					t.Fatalf("got %v, want status %d", aerr, tc.wantCode)
				}
			case aerr != nil:
				t.Fatalf("refused: %+v", aerr)
			case len(buf) != tc.size || cap(buf) != tc.wantCap:
				t.Fatalf("len %d cap %d, want len %d cap %d", len(buf), cap(buf), tc.size, tc.wantCap)
			case rq.reserved != int64(cap(buf)) || h.app.bodies.used.Load() != int64(cap(buf)):
				t.Fatalf("reserved %d (process %d) for a %d-byte buffer", rq.reserved, h.app.bodies.used.Load(), cap(buf))
			}
			rq.releaseBody()
			if n := h.app.bodies.used.Load(); n != 0 {
				t.Fatalf("%d bytes still reserved after the request ended", n)
			}
		})
	}
}

// TestReadBodyBudget: a body that does not fit beside what others hold is
// refused as busy before a byte of it is read.
func TestReadBodyBudget(t *testing.T) {
	h := &Handler{maxBody: 1 << 20, maxBuffered: 1 << 20, app: &App{bodies: new(bodyBudget)}}
	holder := &request{h: h}
	if !holder.reserve(900 << 10) {
		t.Fatal("an empty budget refused 900 KiB")
	}
	defer holder.releaseBody()
	body := strings.NewReader(strings.Repeat("x", 200<<10))
	r := httptest.NewRequest(http.MethodPost, "/olla/ollama/api/chat", body)
	w := httptest.NewRecorder()
	rq := &request{h: h, r: r, w: w}
	_, aerr := rq.readBody()
	if aerr == nil || aerr.status != http.StatusServiceUnavailable || aerr.retryAfter <= 0 || !strings.Contains(aerr.message, "max_buffered_bytes") {
		t.Fatalf("got %+v, want 503 busy with a Retry-After", aerr)
	}
	if body.Len() != 200<<10 {
		t.Errorf("%d bytes of the refused body were read", 200<<10-body.Len())
	}
	if w.Header().Get("Connection") != "close" {
		t.Errorf("the connection stays open with the body unread on it")
	}
	if rq.reserved != 0 || h.app.bodies.used.Load() != 900<<10 {
		t.Errorf("the refused request holds %d (process %d)", rq.reserved, h.app.bodies.used.Load())
	}
}
