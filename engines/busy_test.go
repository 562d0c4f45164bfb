package engines

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestPeekBusy: a busy answer is told apart by its body, and the body a
// client may still get is whole, whatever its length or ending.
func TestPeekBusy(t *testing.T) {
	long := `{"error":"x"}` + strings.Repeat("y", 10000)
	for _, tt := range []struct {
		status int
		body   string
		busy   bool
	}{
		{409, `{"error":{"type":"slots_pinned_error"}}`, true},
		{503, `{"error":"server busy, please try again."}`, true},
		{503, long, false},
		{409, `{}`, false},
		{200, `{"error":{"type":"slots_pinned_error"}}`, false},
	} {
		res := &http.Response{StatusCode: tt.status, Body: io.NopCloser(strings.NewReader(tt.body)), ContentLength: int64(len(tt.body))}
		if got := PeekBusy(res); got != tt.busy {
			t.Errorf("PeekBusy(%d) = %v, want %v", tt.status, got, tt.busy)
		}
		b, err := io.ReadAll(res.Body)
		if err != nil || string(b) != tt.body {
			t.Errorf("body after the peek: %d bytes, %v; want %d bytes", len(b), err, len(tt.body))
		}
	}
	// a body that fails mid-way keeps what was read and the error
	boom := errors.New("reset")
	res := &http.Response{StatusCode: 503, Body: io.NopCloser(io.MultiReader(strings.NewReader("server"), failing{boom})), ContentLength: 100}
	if PeekBusy(res) {
		t.Error("a broken body read as busy")
	}
	if b, err := io.ReadAll(res.Body); string(b) != "server" || !errors.Is(err, boom) {
		t.Errorf("broken body after the peek: %q, %v", b, err)
	}
	// a body of unknown length (a stream) is never read here
	stream := &http.Response{StatusCode: 503, Body: io.NopCloser(failing{errors.New("must not be read")}), ContentLength: -1}
	if PeekBusy(stream) {
		t.Error("a stream was peeked at")
	}
}

type failing struct{ err error }

func (f failing) Read([]byte) (int, error) { return 0, f.err }
