package chat

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestLines: the same lines however the input is cut, the unfinished last
// one left for Rest, reading stopped when asked, and a line over
// MaxStreamLine refused without being held.
func TestLines(t *testing.T) {
	in := []byte("data: a\r\n\n: note\ndata: [DONE]\nlast")
	for cut := 0; cut <= len(in); cut++ {
		var l Lines
		var got []string
		read := func(line []byte) { got = append(got, string(line)) }
		if l.Feed(in[:cut], always, read) != nil || l.Feed(in[cut:], always, read) != nil {
			t.Fatal("Feed failed")
		}
		if strings.Join(got, "|") != "data: a\r||: note|data: [DONE]" || string(l.Rest()) != "last" || l.Rest() != nil {
			t.Fatalf("cut at %d: %q", cut, got)
		}
	}

	var l Lines
	n := 0
	if l.Feed([]byte("a\nb\nc\n"), func() bool { return n < 2 }, func([]byte) { n++ }); n != 2 {
		t.Errorf("read %d lines after being told to stop at 2", n)
	}

	long := bytes.Repeat([]byte("x"), MaxStreamLine/4)
	var err error
	for range 5 {
		if err = l.Feed(long, always, func([]byte) {}); err != nil {
			break
		}
	}
	if !errors.Is(err, ErrLineTooLong) || l.Buffered() != 0 {
		t.Errorf("a long line: %v, %d bytes held", err, l.Buffered())
	}
}

func always() bool { return true }

// TestDataLine: data values, what is skipped, and what is not SSE.
func TestDataLine(t *testing.T) {
	for line, want := range map[string]string{
		"data: {}": "data {}", "data:{}\r": "data {}", "data: [DONE]": "data [DONE]",
		"": "skip", "\r": "skip", ": keep-alive": "skip", "event: x": "skip", "id: 1": "skip", "retry: 5": "skip",
		`{"error":"boom"}`: "not", "garbage": "not",
	} {
		value, kind := DataLine([]byte(line))
		got := map[LineKind]string{LineSkip: "skip", LineData: "data " + string(value), LineNotSSE: "not"}[kind]
		if got != want {
			t.Errorf("%q: %s, want %s", line, got, want)
		}
	}
	if !Done([]byte("[DONE]")) || Done([]byte("[DONE] ")) {
		t.Error("Done")
	}
}
