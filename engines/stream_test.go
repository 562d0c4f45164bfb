package engines_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-olla/olla/engines"
	"github.com/caddy-olla/olla/internal/slowclient"
)

// What both engines report of a body's copy (engines.Stream), through real
// HTTP on both sides, and what it lets the handler time: a paced event
// stream gives the backend's pace, a buffered answer gives nothing, and a
// client that reads slowly gives nothing either (the copy waited on it, so
// the backend's bytes were read late, in bursts).

// pacedEvents sends n events of the given content type, one every gap.
func pacedEvents(contentType string, n int, gap time.Duration) backend {
	return backend{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		rc := http.NewResponseController(w)
		for i := range n {
			if i > 0 {
				time.Sleep(gap)
			}
			if contentType == "text/event-stream" {
				fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"tok%d \"}}]}\n\n", i)
			} else {
				fmt.Fprintf(w, "{\"message\":{\"content\":\"tok%d \"},\"done\":false}\n", i)
			}
			rc.Flush()
		}
	}}
}

// oneStream returns the single stream report of r.
func oneStream(t *testing.T, r *run) engines.Stream {
	t.Helper()
	if len(r.streams) != 1 || r.streamEnd[0] != nil {
		t.Fatalf("stream reports %+v, errors %v; want one clean one", r.streams, r.streamEnd)
	}
	return r.streams[0]
}

func TestStreamTiming(t *testing.T) {
	const events, gap = 12, 40 * time.Millisecond
	paced := func(contentType string) func(t *testing.T, r *run) {
		return func(t *testing.T, r *run) {
			s := oneStream(t, r)
			if s.Events != events || s.Reads < 2 || s.Bytes != int64(len(r.body)) {
				t.Fatalf("events %d, reads %d, bytes %d (client got %d); want %d events", s.Events, s.Reads, s.Bytes, len(r.body), events)
			}
			// a lower bound only: the backend spaced its events by gap,
			// so no reading of them can be faster (a busy machine can
			// only make it slower)
			if span := s.LastByte.Sub(s.FirstByte); span < (events-1)*gap {
				t.Errorf("first to last byte %v, want at least %v", span, (events-1)*gap)
			}
			d, ok := s.TimePerToken(0)
			if !ok || d < gap {
				t.Errorf("time per token %v, %v; want at least %v from a fast client's copy (blocked %v, reads %d)", d, ok, gap, s.Blocked, s.Reads)
			}
			// the backend's usage, when believable, counts the tokens
			if d2, ok := s.TimePerToken(2 * events); !ok || d2 >= d {
				t.Errorf("with 2 tokens an event: %v, %v; want under %v", d2, ok, d)
			}
			if end := s.BackendEnd(); end.After(s.LastByte) || end.Before(s.FirstByte) {
				t.Errorf("backend end %v outside first %v .. last %v", end, s.FirstByte, s.LastByte)
			}
		}
	}
	cases := []conformanceCase{
		{name: "SSE stream is timed", backends: []backend{pacedEvents("text/event-stream", events, gap)}, check: paced("text/event-stream")},
		{name: "NDJSON stream is timed", backends: []backend{pacedEvents("application/x-ndjson", events, gap)}, check: paced("application/x-ndjson")},
		{name: "a buffered answer gives no time per token", backends: []backend{ok("a")},
			check: func(t *testing.T, r *run) {
				s := oneStream(t, r)
				if _, ok := s.TimePerToken(100); ok || s.Events != 0 || s.Bytes == 0 {
					t.Errorf("JSON answer: events %d, bytes %d, timed %v; want bytes, no events, no time", s.Events, s.Bytes, ok)
				}
			}},
		{name: "a slow reader's stream gives no time per token", backends: []backend{bigFastStream()},
			client: slowReader,
			check: func(t *testing.T, r *run) {
				if len(r.streams) != 1 {
					t.Fatalf("stream reports %+v", r.streams)
				}
				s := r.streams[0]
				if s.Events != bigEvents {
					t.Fatalf("events %d, want %d (err %v)", s.Events, bigEvents, r.streamEnd)
				}
				if s.Blocked <= 0 || !s.BackendEnd().Before(s.LastByte) {
					t.Errorf("blocked %v, backend end %v, last byte %v: the copy's wait on the client is not seen", s.Blocked, s.BackendEnd(), s.LastByte)
				}
				for _, usage := range []int64{0, bigEvents} {
					if d, ok := s.TimePerToken(usage); ok {
						t.Errorf("usage %d: timed at %v per token (blocked %v of %v); want the sample discarded",
							usage, d, s.Blocked, s.LastByte.Sub(s.FirstByte))
					}
				}
			}},
	}
	for _, eng := range enginesUnderTest(t) {
		t.Run(eng.name, func(t *testing.T) {
			for _, tc := range cases {
				// a watching picker hears of the first byte once, before
				// the stream's end, and of a client's stall once, when the
				// client holds the copy back
				w := &watchingPicker{}
				tc.plan = func(p *engines.Plan, _ []*target) {
					w.Picker = p.Picker
					p.Picker = w
					end := p.OnStreamEnd
					p.OnStreamEnd = func(t engines.Target, s engines.Stream, err error) {
						w.firstsAtEnd = w.firsts
						end(t, s, err)
					}
				}
				check, slow := tc.check, tc.client != nil
				tc.check = func(t *testing.T, r *run) {
					if w.firsts != 1 || w.firstsAtEnd != 1 {
						t.Errorf("FirstByte called %d times, %d before the stream's end; want once, before", w.firsts, w.firstsAtEnd)
					}
					if slow && w.stalls != 1 {
						t.Errorf("ClientStall called %d times for a client that read nothing for a while, want once", w.stalls)
					}
					check(t, r)
				}
				t.Run(tc.name, func(t *testing.T) { runCase(t, eng.e, tc) })
			}
		})
	}
}

// watchingPicker is a Picker that counts what engines.StreamWatcher hears.
type watchingPicker struct {
	engines.Picker
	firsts, firstsAtEnd, stalls int
}

func (w *watchingPicker) FirstByte(engines.Target)   { w.firsts++ }
func (w *watchingPicker) ClientStall(engines.Target) { w.stalls++ }

// bigEvents events of bigEvent bytes: far more than the socket buffers
// between the proxy and a client that does not read hold, sent at once.
const (
	bigEvents = 128
	bigEvent  = 64 << 10
)

func bigFastStream() backend {
	return backend{handler: func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		payload := strings.Repeat("x", bigEvent-len("data: \n\n"))
		for range bigEvents {
			if _, err := io.WriteString(w, "data: "+payload+"\n\n"); err != nil {
				return
			}
			rc.Flush()
		}
	}}
}

// slowReader sends a streamed request on a connection with a small receive
// buffer and reads nothing of the answer for a while, then all of it.
func slowReader(t *testing.T, front string) {
	// the proxy's writes fill the buffers and block while it waits
	status, n, _, err := slowclient.Post(strings.TrimPrefix(front, "http://"), "/proxy/v1/chat/completions", chatBody, 1500*time.Millisecond, deadline)
	if want := int64(bigEvents * bigEvent); status != http.StatusOK || n != want || err != nil {
		t.Errorf("client: status %d, read %d bytes, %v; want 200, %d bytes", status, n, err, want)
	}
}

// The rules of TimePerToken on reports a backend (or a client) could
// shape: each is a stream a client or a backend made, and the verdict.
func TestTimePerTokenRules(t *testing.T) {
	t0 := time.Unix(1000, 0)
	clean := engines.Stream{FirstByte: t0, LastByte: t0.Add(990 * time.Millisecond), Events: 100, Reads: 100, Bytes: 10000}
	with := func(f func(s *engines.Stream)) engines.Stream { s := clean; f(&s); return s }
	cases := []struct {
		name  string
		s     engines.Stream
		usage int64
		want  time.Duration // 0: no sample
	}{
		{"clean, counted by events", clean, 0, 10 * time.Millisecond},
		{"clean, counted by usage", clean, 199, 5 * time.Millisecond},
		{"usage of 0 is not a count", clean, 0, 10 * time.Millisecond},
		{"usage of 1e18 is not believed", clean, 1e18, 10 * time.Millisecond},
		{"usage past 4 a event is not believed", clean, 401, 10 * time.Millisecond},
		{"negative usage is not a count", clean, -5, 10 * time.Millisecond},
		{"a tiny answer", with(func(s *engines.Stream) { s.Events, s.Reads = engines.MinDecodeTokens-1, engines.MinDecodeTokens-1 }), 0, 0},
		{"a tiny answer claiming many tokens", with(func(s *engines.Stream) { s.Events, s.Reads = 2, 2 }), 9, 0},
		{"a buffered answer", with(func(s *engines.Stream) { s.Events = 0; s.Reads = 1 }), 500, 0},
		{"a stream read in one go", with(func(s *engines.Stream) { s.Reads = 1 }), 0, 0},
		{"a stream read in bursts", with(func(s *engines.Stream) { s.Reads = 40 }), 0, 0},
		{"held back by the client", with(func(s *engines.Stream) { s.Blocked = 200 * time.Millisecond }), 0, 0},
		{"a little time on the client", with(func(s *engines.Stream) { s.Blocked = 20 * time.Millisecond }), 0, 10 * time.Millisecond},
		{"no span", with(func(s *engines.Stream) { s.LastByte = s.FirstByte }), 0, 0},
	}
	for _, tc := range cases {
		d, ok := tc.s.TimePerToken(tc.usage)
		if ok != (tc.want > 0) || d != tc.want {
			t.Errorf("%s: %v, %v; want %v", tc.name, d, ok, tc.want)
		}
	}
}
