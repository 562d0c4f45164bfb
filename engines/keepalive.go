package engines

import "net/http"

// Replayable lets the transport send a request again when a keep-alive
// connection it reused turns out closed by the backend before any byte of
// an answer: a backend may close an idle connection just as the transport
// takes it for the next request. Go's transport replays only idempotent
// requests then, and an inference request is a POST; a request carrying
// an Idempotency-Key header counts as idempotent, and with no value the
// header marks the request without going on the wire (net/http's
// Transport documents both). The transport also needs GetBody to replay
// a body, and gives up once the request's context has ended (the client
// left, or the header timeout fired). A backend that read the request and
// closed without answering on a fresh connection is not retried: that is
// the backend failing, and failover's business.
func Replayable(h http.Header) {
	if _, ok := h["Idempotency-Key"]; !ok {
		h["Idempotency-Key"] = nil
	}
}
