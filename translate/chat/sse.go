package chat

import (
	"bytes"
	"fmt"
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
