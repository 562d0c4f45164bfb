package chat

import (
	"bytes"
	"fmt"
	"io"
)

// MaxStreamLine caps one line of a backend's SSE stream; a longer line
// fails the stream rather than growing the buffer.
const MaxStreamLine = 1 << 20

// ErrLineTooLong is a backend stream line over MaxStreamLine.
var ErrLineTooLong = fmt.Errorf("backend stream line longer than %d bytes", MaxStreamLine)

// Lines cuts a backend's stream, fed in chunks split anywhere, into lines.
// The zero value is ready.
type Lines struct {
	pending []byte // a line not yet ended by '\n'
}

// Feed calls line with each line p completes, its '\n' cut off, while
// live reports true; when it turns false the rest of p is dropped. An
// unfinished last line waits for the next Feed. A line longer than
// MaxStreamLine is ErrLineTooLong, and nothing after it is read (or held).
func (l *Lines) Feed(p []byte, live func() bool, line func([]byte)) error {
	for len(p) > 0 && live() {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(l.pending)+len(p) > MaxStreamLine {
				return l.tooLong()
			}
			l.pending = append(l.pending, p...)
			return nil
		}
		if len(l.pending)+i > MaxStreamLine {
			return l.tooLong()
		}
		one := p[:i]
		if len(l.pending) > 0 {
			l.pending = append(l.pending, one...)
			one = l.pending
		}
		line(one)
		l.pending = l.pending[:0]
		if cap(l.pending) > 64<<10 {
			l.pending = nil // one long line should not pin its buffer for the whole stream
		}
		p = p[i+1:]
	}
	return nil
}

// tooLong lets go of the line's buffer: nothing more is read.
func (l *Lines) tooLong() error {
	l.pending = nil
	return ErrLineTooLong
}

// Rest hands over the unfinished last line (a stream whose last line has
// no newline) and forgets it; nil when there is none.
func (l *Lines) Rest() []byte {
	rest := l.pending
	l.pending = nil
	if len(rest) == 0 {
		return nil
	}
	return rest
}

// Buffered is the size of the buffer held for an unfinished line.
func (l *Lines) Buffered() int { return cap(l.pending) }

// LineKind is what a line of an OpenAI SSE stream is to a translator.
type LineKind int

const (
	// LineSkip has nothing to read: an event boundary, a comment, or an
	// event, id or retry field.
	LineSkip LineKind = iota
	// LineData is a data field: its value is a chunk or [DONE].
	LineData
	// LineNotSSE is any other line: a plain JSON error sent with a 200,
	// or garbage.
	LineNotSSE
)

// DataLine reads one line of a backend's SSE stream (its '\n' cut off): a
// data field's value, or why there is none.
func DataLine(line []byte) ([]byte, LineKind) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 || line[0] == ':' {
		return nil, LineSkip
	}
	field, value, _ := bytes.Cut(line, []byte(":"))
	switch string(field) {
	case "data":
		return bytes.TrimPrefix(value, []byte(" ")), LineData
	case "event", "id", "retry":
		return nil, LineSkip
	}
	return nil, LineNotSSE
}

// Done reports whether a data value is the stream's end, [DONE].
func Done(value []byte) bool { return bytes.Equal(value, []byte("[DONE]")) }

// Hooks are what a translator does with the stream a Reader feeds it.
type Hooks struct {
	Live   func() bool  // the answer is neither finished nor failed
	Data   func([]byte) // a data field's value: a chunk or [DONE]
	NotSSE func([]byte) // a line that is not SSE: fail the answer saying so
	Fail   func(error)  // end the answer with the API's error event
	End    func()       // the body ended cleanly, the answer unfinished: finish it or fail
}

// Reader feeds a translator a backend's chat-completions stream: bounded
// lines while the answer is live, then its ending; after each Write and at
// Close what the translator wrote to out goes to w at once.
type Reader struct {
	w     io.Writer
	out   *Out
	h     Hooks
	lines Lines
}

// NewReader reads for a translator that writes its events to out.
func NewReader(w io.Writer, out *Out, h Hooks) Reader { return Reader{w: w, out: out, h: h} }

// Write consumes backend bytes, in chunks split anywhere. It fails only
// when w does (the client is gone): what goes wrong with the stream is told
// in it.
func (r *Reader) Write(p []byte) (int, error) {
	if err := r.lines.Feed(p, r.h.Live, r.line); err != nil {
		r.h.Fail(err)
	}
	return len(p), r.out.Emit(r.w)
}

// Close ends the stream; streamErr is how the backend's body ended (nil
// for a clean end). A last line without its newline is read then; a body
// that broke fails the answer, one that ended cleanly leaves the ending to
// the translator.
func (r *Reader) Close(streamErr error) error {
	if rest := r.lines.Rest(); r.h.Live() && streamErr == nil && rest != nil {
		r.line(rest)
	}
	if r.h.Live() {
		if streamErr != nil {
			r.h.Fail(fmt.Errorf("backend stream broke: %v", streamErr))
		} else {
			r.h.End()
		}
	}
	return r.out.Emit(r.w)
}

// Buffered is the size of the buffer held for an unfinished line.
func (r *Reader) Buffered() int { return r.lines.Buffered() }

// line hands a line's data to the translator, skips what has none, and
// reports a line that is not SSE.
func (r *Reader) line(line []byte) {
	switch value, kind := DataLine(line); kind {
	case LineData:
		r.h.Data(value)
	case LineNotSSE:
		r.h.NotSSE(line)
	}
}
