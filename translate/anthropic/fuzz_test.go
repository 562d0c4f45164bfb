package anthropic

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/caddy-olla/olla/translate/chat"
)

// FuzzStreamTranslator: whatever the backend sends, however it is split, the
// translator never panics, its buffer stays bounded, the output is the same
// for every split, and it is a well-formed Anthropic stream that either ends
// with message_stop or carries an error event (never both, never neither).
func FuzzStreamTranslator(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "streams", "*.sse"))
	real, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "real", "*", "POST_v1_chat_completions_stream*.txt"))
	for _, p := range append(seeds, real...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if _, resp, ok := bytes.Cut(b, []byte("\n---\n")); ok {
			_, b, _ = bytes.Cut(resp, []byte("\n\n"))
		}
		f.Add(b, uint16(7), false)
	}
	f.Add([]byte("data: [DONE]"), uint16(3), false)
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n"), uint16(1), true)
	f.Fuzz(func(t *testing.T, in []byte, step uint16, broken bool) {
		fixedIDs(t)
		var whole bytes.Buffer
		a := NewStreamTranslator(&whole, goldenStreamOpts)
		a.Write(in)
		var streamErr error
		if broken {
			streamErr = io.ErrUnexpectedEOF
		}
		a.Close(streamErr)

		fixedIDs(t)
		var split bytes.Buffer
		b := NewStreamTranslator(&split, goldenStreamOpts)
		n := int(step%64) + 1
		for rest := in; len(rest) > 0; {
			k := min(n, len(rest))
			b.Write(rest[:k])
			if b.Buffered() > 2*chat.MaxStreamLine {
				t.Fatalf("line buffer grew to %d bytes", b.Buffered())
			}
			rest = rest[k:]
		}
		b.Close(streamErr)

		if !bytes.Equal(whole.Bytes(), split.Bytes()) {
			t.Fatalf("split input (step %d) changes the output:\n%s\nwhole:\n%s", n, split.Bytes(), whole.Bytes())
		}
		complete, err := validateStream(whole.Bytes())
		if err != nil {
			t.Fatalf("%v\ninput %q\noutput:\n%s", err, in, whole.Bytes())
		}
		if complete != a.Complete() || complete == (a.Err() != nil) {
			t.Fatalf("Complete() = %v, Err() = %v, output complete = %v", a.Complete(), a.Err(), complete)
		}
		if broken && complete && !bytes.Contains(in, []byte("[DONE]")) {
			t.Fatalf("a broken stream without [DONE] came out complete")
		}
		if whole.Len() > 64*len(in)+4096 {
			t.Fatalf("%d bytes in made %d bytes out", len(in), whole.Len())
		}
	})
}

// TestStreamLineCap: a line longer than chat.MaxStreamLine fails the stream
// without buffering it.
func TestStreamLineCap(t *testing.T) {
	var out bytes.Buffer
	st := NewStreamTranslator(&out, goldenStreamOpts)
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	st.Write([]byte("data: "))
	for i := 0; i < 40; i++ { // 2.5 MiB without a newline
		st.Write(chunk)
	}
	if st.Err() == nil || st.Buffered() > 2*chat.MaxStreamLine {
		t.Fatalf("Err() = %v, buffer cap %d", st.Err(), st.Buffered())
	}
	st.Write([]byte("\ndata: [DONE]\n\n")) // too late: the stream already failed
	st.Close(nil)
	checkEventOrder(t, out.Bytes(), true)
}

// TestStreamManyToolCalls: a backend opening tool calls without end is cut
// off at maxToolCalls.
func TestStreamManyToolCalls(t *testing.T) {
	fixedIDs(t)
	var in bytes.Buffer
	for i := 0; i <= maxToolCalls; i++ {
		in.WriteString(`data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":` + strconv.Itoa(i) + `,"function":{"name":"f"}}]}}]}` + "\n\n")
	}
	in.WriteString("data: [DONE]\n\n")
	var out bytes.Buffer
	st := NewStreamTranslator(&out, goldenStreamOpts)
	st.Write(in.Bytes())
	st.Close(nil)
	checkEventOrder(t, out.Bytes(), true)
	if !bytes.Contains(out.Bytes(), []byte("more than 1024 tool calls")) {
		t.Errorf("error does not say why: %s", out.Bytes()[out.Len()-200:])
	}
}

// TestStreamBrokenAndWriterErrors: a backend stream that breaks gets an error
// event; a client that is gone makes Write fail.
func TestStreamBrokenAndWriterErrors(t *testing.T) {
	var out bytes.Buffer
	st := NewStreamTranslator(&out, goldenStreamOpts)
	st.Write([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\n"))
	st.Close(io.ErrUnexpectedEOF) // broke before [DONE], even after finish_reason
	checkEventOrder(t, out.Bytes(), true)
	if !bytes.Contains(out.Bytes(), []byte("unexpected EOF")) {
		t.Errorf("error event does not carry the cause:\n%s", out.Bytes())
	}

	st = NewStreamTranslator(failingWriter{}, goldenStreamOpts)
	if _, err := st.Write([]byte("data: [DONE]\n\n")); err == nil {
		t.Error("Write did not report the client writer's error")
	}
	if err := st.Close(nil); err == nil {
		t.Error("Close did not report the client writer's error")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

// flushRecorder counts flushes, as an http.ResponseWriter would see them.
type flushRecorder struct {
	bytes.Buffer
	flushes int
}

func (f *flushRecorder) Flush() { f.flushes++ }

func TestStreamFlushesPerWrite(t *testing.T) {
	var w flushRecorder
	st := NewStreamTranslator(&w, goldenStreamOpts)
	st.Write([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n"))
	if w.flushes != 1 || w.Len() == 0 {
		t.Fatalf("after one event: %d flushes, %d bytes", w.flushes, w.Len())
	}
	st.Write([]byte("data: {\"choices\":[{\"index\":0,")) // half a line: nothing to send
	if w.flushes != 1 {
		t.Errorf("flushed with nothing new: %d", w.flushes)
	}
}

// BenchmarkStreamTranslator feeds a real llama.cpp stream one backend event per
// Write; allocs/chunk is the figure to watch.
func BenchmarkStreamTranslator(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "real", "llamacpp", "POST_v1_chat_completions_stream.txt"))
	if err != nil {
		b.Fatal(err)
	}
	_, resp, _ := bytes.Cut(raw, []byte("\n---\n"))
	_, body, _ := bytes.Cut(resp, []byte("\n\n"))
	chunks := bytes.SplitAfter(body, []byte("\n\n"))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		st := NewStreamTranslator(io.Discard, StreamOptions{Model: "tiny", MessageID: "msg_x"})
		for _, c := range chunks {
			st.Write(c)
		}
		st.Close(nil)
	}
	b.StopTimer()
	allocs := testing.AllocsPerRun(10, func() {
		st := NewStreamTranslator(io.Discard, StreamOptions{Model: "tiny", MessageID: "msg_x"})
		for _, c := range chunks {
			st.Write(c)
		}
		st.Close(nil)
	})
	b.ReportMetric(allocs/float64(len(chunks)), "allocs/chunk")
}
