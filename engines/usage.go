package engines

// tailSize is how much of a response's end is kept for accounting: the
// final Ollama line or the OpenAI usage chunk, with room to spare.
const tailSize = 4 << 10

// Tail keeps the last bytes of a response as they pass, so token counts can
// be read from its final event without buffering the stream.
type Tail struct {
	buf  [tailSize]byte
	n    int // bytes held, up to tailSize
	next int // where the next byte goes, once the buffer has wrapped
}

// Reset empties the tail for reuse.
func (t *Tail) Reset() { t.n, t.next = 0, 0 }

// Write keeps the end of p. It never fails.
func (t *Tail) Write(p []byte) {
	if len(p) >= tailSize {
		copy(t.buf[:], p[len(p)-tailSize:])
		t.n, t.next = tailSize, 0
		return
	}
	for len(p) > 0 {
		c := copy(t.buf[t.next:], p)
		t.next = (t.next + c) % tailSize
		p = p[c:]
		t.n = min(t.n+c, tailSize)
	}
}

// Bytes returns the kept bytes in order.
func (t *Tail) Bytes() []byte {
	if t.n < tailSize {
		return t.buf[:t.n]
	}
	out := make([]byte, 0, tailSize)
	out = append(out, t.buf[t.next:]...)
	return append(out, t.buf[:t.next]...)
}
