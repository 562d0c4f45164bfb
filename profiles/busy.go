package profiles

import (
	"bytes"
	"net/http"
)

// busyAnswers are the error answers with which backends say "busy now, try
// again", as opposed to "broken": a request that gets one belongs on another
// endpoint or back in the queue, and the backend's health is not in doubt.
//   - Lemonade: 409 with error type "slots_pinned_error" when every slot is
//     pinned to a model in use.
//   - Ollama: 503 "server busy, please try again.  maximum pending requests
//     exceeded" (OLLAMA_MAX_QUEUE is full).
//   - llama-server: 503 when no slot is free and it may not queue (the
//     simulator's reject mode; real servers say "no slot available").
var busyAnswers = []struct {
	status int
	marker []byte
}{
	{http.StatusConflict, []byte("slots_pinned_error")},
	{http.StatusServiceUnavailable, []byte("server busy")},
	{http.StatusServiceUnavailable, []byte("no slot available")},
	{http.StatusServiceUnavailable, []byte("no free slot")},
}

// MaxBusyPeek is how much of an error body IsBusyAnswer needs: the markers
// sit in the first bytes of a short JSON error.
const MaxBusyPeek = 4 << 10

// MayBeBusy reports whether an answer with this status can be a busy answer,
// so that only those bodies are peeked at.
func MayBeBusy(status int) bool {
	return status == http.StatusConflict || status == http.StatusServiceUnavailable
}

// IsBusyAnswer reports whether a backend's answer (its status and the first
// bytes of its body, at most MaxBusyPeek) says the backend is busy rather
// than failing. The match is on the marker text, in any case.
func IsBusyAnswer(status int, body []byte) bool {
	if !MayBeBusy(status) {
		return false
	}
	if len(body) > MaxBusyPeek {
		body = body[:MaxBusyPeek]
	}
	lower := bytes.ToLower(body)
	for _, b := range busyAnswers {
		if b.status == status && bytes.Contains(lower, b.marker) {
			return true
		}
	}
	return false
}
