package engines

import (
	"bytes"
	"net/http"
	"strings"
	"time"
)

// Stream is what one response body's copy came to, as the engine saw it.
// Both engines report the same facts (see Meter), so the handler can time
// the backend rather than the client: when its first and last body bytes
// were read, and how long the copy spent between reads, writing to the
// client. It is passed by value: the report costs no allocation.
type Stream struct {
	// FirstByte and LastByte are when the first and the last read that
	// brought body bytes returned (zero: no bytes).
	FirstByte, LastByte time.Time
	// Bytes is how many body bytes were read from the backend.
	Bytes int64
	// Reads is how many reads brought bytes.
	Reads int64
	// Events is how many stream events passed: SSE events (ended by a
	// blank line) or NDJSON lines. 0 for a body that is neither.
	Events int64
	// Blocked is the time the copy spent between one read's return and
	// the next read, from the first byte to the last: writing (and
	// flushing) to the client. A client that reads slowly makes it long.
	Blocked time.Duration
	// Tail holds the body's last bytes (for token counts; nil when there
	// were none). It is only valid during OnStreamEnd.
	Tail *Tail
}

// Meter takes a Stream's facts as a body is copied. Both engines drive it
// the same way: Start once with the backend's response header, BeforeRead
// before each read from the backend, Read after it. It reads the clock
// twice per read and never allocates.
type Meter struct {
	s        Stream
	sep      []byte    // the event separator; nil: events are not counted
	lastNL   bool      // the last byte read was a newline (an SSE event may end across reads)
	returned time.Time // when the last read returned (zero before the first)
	blocked  time.Duration
	stalled  bool // BeforeRead reported the client's stall
}

var (
	sseSeparator    = []byte("\n\n")
	ndjsonSeparator = []byte("\n")
)

// Start readies the meter for a body with header h.
func (m *Meter) Start(h http.Header, tail *Tail) {
	*m = Meter{}
	m.s.Tail = tail
	switch ct := h.Get("Content-Type"); {
	case strings.HasPrefix(ct, "text/event-stream"):
		m.sep = sseSeparator
	case strings.HasPrefix(ct, "application/x-ndjson"), strings.HasPrefix(ct, "application/stream+json"):
		m.sep = ndjsonSeparator
	}
}

// KeepTail has the meter keep the body's last bytes in tail from the next
// read on (an engine that takes a tail only once bytes come).
func (m *Meter) KeepTail(tail *Tail) { m.s.Tail = tail }

// BeforeRead notes that a read from the backend starts: the time since the
// last one returned was spent on the client. It reports, once per body,
// that the client held the copy back for clientStall or more: from then
// on the backend's bytes wait in the kernel's buffers, and the copy's end
// says little about when the backend's answer ended.
func (m *Meter) BeforeRead() (stalled bool) {
	if m.returned.IsZero() {
		return false
	}
	gap := time.Since(m.returned)
	m.blocked += gap
	if gap >= clientStall && !m.stalled {
		m.stalled = true
		return true
	}
	return false
}

// clientStall is how long one write to the client must take for the
// client to count as holding the copy back. A write to a reading client
// takes microseconds; a busy machine's moment takes milliseconds.
const clientStall = 100 * time.Millisecond

// Read notes a read from the backend that returned p. It reports whether p
// holds the body's first bytes.
func (m *Meter) Read(p []byte) (first bool) {
	now := time.Now()
	m.returned = now
	if len(p) == 0 {
		return false
	}
	if m.s.Bytes == 0 {
		m.s.FirstByte, m.blocked, first = now, 0, true
	}
	m.s.LastByte, m.s.Blocked = now, m.blocked
	m.s.Bytes += int64(len(p))
	m.s.Reads++
	if m.s.Tail != nil {
		m.s.Tail.Write(p)
	}
	if m.sep == nil {
		return first
	}
	m.s.Events += int64(bytes.Count(p, m.sep))
	if len(m.sep) == 2 && m.lastNL && p[0] == '\n' {
		m.s.Events++ // a blank line split across two reads
	}
	m.lastNL = p[len(p)-1] == '\n'
	return first
}

// Stream is the report so far.
func (m *Meter) Stream() Stream { return m.s }

// The rules a stream must meet to time the backend's decoding (see
// Stream.TimePerToken).
const (
	// MinDecodeTokens: an answer shorter than this says more about its
	// moment than about the box (and a client asking for a few tokens
	// must not be able to time a box with them)
	MinDecodeTokens = 8
	// maxBlockedShare: a copy that spent more than this share of the
	// stream writing to the client was held back by it; the backend's
	// bytes then waited in the kernel's buffers and were read late, in a
	// burst, so the times say nothing about the backend
	maxBlockedShare = 0.1
	// maxTokensPerEvent bounds the output tokens a backend may claim per
	// event it sent (vLLM sends several per event only when told to):
	// a count beyond it is not believed, and events are counted instead
	maxTokensPerEvent = 4
)

// TimePerToken is the backend's time per output token as this stream shows
// it: the time between its first and last bytes over the tokens between
// them. outputTokens is what the backend reported in its usage (0: none),
// believed only up to maxTokensPerEvent per event; without it the events
// are counted (one token each, as OpenAI-style and Ollama streams send
// them). ok is false when the stream cannot tell: not an event stream
// (a buffered answer), fewer than MinDecodeTokens, read in bursts (fewer
// reads than half its events: we read it late, not at the backend's pace),
// or held back by the client (see maxBlockedShare). A client's hang-up or
// a broken stream is the caller's to exclude: it has the error.
func (s Stream) TimePerToken(outputTokens int64) (time.Duration, bool) {
	if s.Events == 0 || s.Reads < 2 || 2*s.Reads < s.Events {
		return 0, false
	}
	n := s.Events
	if outputTokens > 0 && outputTokens <= maxTokensPerEvent*s.Events {
		n = outputTokens
	}
	span := s.LastByte.Sub(s.FirstByte)
	if n < MinDecodeTokens || span <= 0 || float64(s.Blocked) > maxBlockedShare*float64(span) {
		return 0, false
	}
	return max(span/time.Duration(n-1), 1), true
}

// BackendEnd is when the backend's answer ended, as best the copy can tell:
// its last byte's read, less the time the copy spent writing to the client
// (while the copy waits on the client the backend's bytes pile up in the
// kernel's buffers, and are read that much later). Zero without bytes.
func (s Stream) BackendEnd() time.Time {
	if s.LastByte.IsZero() {
		return time.Time{}
	}
	end := s.LastByte.Add(-s.Blocked)
	if end.Before(s.FirstByte) {
		end = s.FirstByte
	}
	return end
}
