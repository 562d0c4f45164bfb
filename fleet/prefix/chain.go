package prefix

import (
	"bytes"
	"encoding/binary"
	"errors"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/cespare/xxhash/v2"
)

const (
	// BlockBytes is the canonical prompt bytes per block: about 64 tokens,
	// four of vLLM's 16-token KV blocks.
	BlockBytes = 256
	// MaxBlocks bounds the blocks hashed per prompt (1 MiB of canonical
	// prompt): a longer prompt is matched on its first MaxBlocks blocks,
	// which tell conversations apart long before, and the rest is not read.
	MaxBlocks = 4096
	// maxDepth bounds the nesting canonicalised; deeper values are hashed as
	// sent, so a deeply nested body costs its size and no more.
	maxDepth = 64
	// maxSortedKeys bounds the members of one object put in key order; a
	// larger object is hashed in the order sent.
	maxSortedKeys = 32
)

// ErrNotObject is returned for a body that is not a JSON object.
var ErrNotObject = errors.New("prefix: request body is not a JSON object")

// errSyntax is returned for a body that is not valid JSON where Parse needed
// to read it. The proxy validates bodies before, so it only guards Parse.
var errSyntax = errors.New("prefix: request body is not valid JSON")

// Chain is a prompt as chained block hashes.
type Chain struct {
	// Blocks[k] hashes the canonical prompt's bytes [0, (k+1)*BlockBytes):
	// equal hashes mean an equal prefix. A trailing partial block is not
	// hashed.
	Blocks []uint64
	// Shared is how many leading blocks hold only what conversations share:
	// system text and tools, before the first message that is the
	// conversation's own.
	Shared int
	// Anchor hashes the canonical prompt through the end of its first
	// conversation-specific message (a user message, a completion prompt);
	// 0 when there is none. Every turn of one conversation has the same
	// anchor, and two conversations that share only a system prompt do not.
	Anchor uint64
	// Bytes is how many canonical bytes were hashed.
	Bytes int
	// Truncated reports that the prompt was longer than MaxBlocks blocks.
	Truncated bool

	// scratch holds the members of the objects being sorted, a stack
	// shared by the nested calls, kept across Parse calls.
	scratch []member
}

// Useful reports whether the chain has a block beyond its shared head: a
// match on it says something about this conversation.
func (c *Chain) Useful() bool { return len(c.Blocks) > c.Shared }

// Parse reads body (a JSON request object) into c, reusing c's storage: the
// prompt as the backend will tokenise it, hashed with model as the seed.
// It reads the top level once to find the prompt's fields, then each of
// their bytes once more to hash them, in the backend's order whatever order
// the client sent them in.
func (c *Chain) Parse(body []byte, model string) error {
	c.Blocks, c.Shared, c.Anchor, c.Bytes, c.Truncated, c.scratch = c.Blocks[:0], 0, 0, 0, false, c.scratch[:0]
	p := parser{b: body, c: c, next: BlockBytes}
	p.d.ResetWithSeed(xxhash.Sum64String(model))
	var f topFields
	if err := p.topLevel(&f); err != nil {
		return err
	}
	// the shared head: system text and tools, in the order chat templates
	// render them
	for _, v := range [...]span{f[fSystem], f[fInstructions]} {
		if v.ok() {
			p.tag('S')
			p.content(v, 0)
		}
	}
	for _, v := range [...]span{f[fTools], f[fFunctions]} {
		if v.ok() {
			p.tag('X')
			p.canon(v, 0)
		}
	}
	if f[fMessages].ok() {
		if err := p.messages(f[fMessages]); err != nil {
			return err
		}
	}
	if f[fInput].ok() { // Responses: a string is one user message
		if p.b[f[fInput].s] == '"' {
			p.specific()
			// as message() hashes {"role":"user","content":input}
			p.tag('M')
			p.tag('s')
			p.write(roleUser)
			p.tag(byte(len(roleUser)))
			p.tag(0x1e)
			p.text('T', f[fInput])
			p.tag(0x1f)
			p.anchor()
		} else if err := p.messages(f[fInput]); err != nil {
			return err
		}
	}
	if f[fContext].ok() || f[fPrompt].ok() { // Ollama's context tokens come before the prompt
		p.specific()
		if f[fContext].ok() {
			p.tag('C')
			p.canon(f[fContext], 0)
		}
		if f[fPrompt].ok() {
			p.tag('P')
			p.content(f[fPrompt], 0)
		}
		p.anchor()
	}
	if !p.specificSeen {
		c.Shared = len(c.Blocks)
	}
	c.Bytes = p.n
	return nil
}

var roleUser = []byte("user")

// span is a JSON value's bytes [s, e) in the body; e == 0 means absent.
type span struct{ s, e int }

func (v span) ok() bool { return v.e > v.s }

// topFields are the top-level values that make up a prompt, by topNames.
type topFields [8]span

const (
	fSystem = iota
	fInstructions
	fTools
	fFunctions
	fMessages
	fInput
	fContext
	fPrompt
)

var topNames = [...]string{fSystem: "system", fInstructions: "instructions", fTools: "tools", fFunctions: "functions",
	fMessages: "messages", fInput: "input", fContext: "context", fPrompt: "prompt"}

type parser struct {
	b    []byte
	c    *Chain
	d    xxhash.Digest
	n    int // canonical bytes hashed
	next int // where the next block ends
	full bool

	specificSeen  bool // the first conversation-specific record has begun
	anchorPending bool
}

// write hashes p into the chain, closing a block at every boundary.
func (p *parser) write(b []byte) {
	for len(b) > 0 && !p.full {
		room := p.next - p.n
		if len(b) < room {
			_, _ = p.d.Write(b)
			p.n += len(b)
			return
		}
		_, _ = p.d.Write(b[:room])
		p.n += room
		b = b[room:]
		p.c.Blocks = append(p.c.Blocks, p.d.Sum64())
		p.next += BlockBytes
		if len(p.c.Blocks) >= MaxBlocks {
			p.full, p.c.Truncated = true, true
		}
	}
}

// tags are the one-byte markers between records, as slices of one array.
var tags = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
	}
	return t
}()

func (p *parser) tag(t byte) { p.write(tags[t : int(t)+1]) }

// text hashes a JSON string's decoded content under tag t, followed by its
// length, so that no two different sequences of strings hash alike.
func (p *parser) text(t byte, v span) {
	p.tag(t)
	n := p.stringBody(p.b[v.s+1 : v.e-1])
	var lb [binary.MaxVarintLen64 + 1]byte
	l := binary.PutUvarint(lb[:], uint64(n))
	p.write(lb[:l])
}

// stringBody hashes a JSON string's content (without its quotes) decoded,
// and returns the decoded length. An invalid escape is hashed as sent.
func (p *parser) stringBody(raw []byte) int {
	n := 0
	for len(raw) > 0 {
		k := bytes.IndexByte(raw, '\\')
		if k < 0 {
			p.write(raw)
			return n + len(raw)
		}
		p.write(raw[:k])
		n += k
		raw = raw[k:]
		var out [8]byte
		m, used := decodeEscape(raw, out[:])
		p.write(out[:m])
		n += m
		raw = raw[used:]
	}
	return n
}

// decodeEscape decodes the escape at the start of raw (raw[0] == '\\')
// into out, returning the bytes written and the bytes of raw consumed.
func decodeEscape(raw []byte, out []byte) (int, int) {
	if len(raw) < 2 {
		return copy(out, raw), len(raw)
	}
	switch c := raw[1]; c {
	case 'n':
		out[0] = '\n'
	case 't':
		out[0] = '\t'
	case 'r':
		out[0] = '\r'
	case 'b':
		out[0] = '\b'
	case 'f':
		out[0] = '\f'
	case 'u':
		r, ok := hex4(raw[2:])
		if !ok {
			return copy(out, raw[:2]), 2
		}
		used := 6
		if utf16.IsSurrogate(r) {
			if len(raw) >= 12 && raw[6] == '\\' && raw[7] == 'u' {
				if r2, ok := hex4(raw[8:]); ok {
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						return utf8.EncodeRune(out, d), 12
					}
				}
			}
			r = utf8.RuneError
		}
		return utf8.EncodeRune(out, r), used
	default: // '"', '\\', '/' and anything invalid: the character itself
		out[0] = c
	}
	return 1, 2
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// specific marks the start of the first conversation-specific record: the
// blocks closed so far are the shared head.
func (p *parser) specific() {
	if !p.specificSeen {
		p.specificSeen, p.anchorPending = true, true
		p.c.Shared = len(p.c.Blocks)
	}
}

// anchor ends the first conversation-specific record.
func (p *parser) anchor() {
	if p.anchorPending {
		p.anchorPending = false
		if p.c.Anchor = p.d.Sum64(); p.c.Anchor == 0 {
			p.c.Anchor = 1
		}
	}
}

// ---- JSON scanning (the body is valid JSON; every step still checks) ----

func (p *parser) ws(i int) int {
	for i < len(p.b) {
		switch p.b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// strEnd returns the index after the string starting at i.
func (p *parser) strEnd(i int) (int, error) {
	j := i + 1
	for j <= len(p.b) {
		k := bytes.IndexByte(p.b[j:], '"')
		if k < 0 {
			break
		}
		j += k
		bs := 0
		for m := j - 1; m > i && p.b[m] == '\\'; m-- {
			bs++
		}
		if bs%2 == 0 {
			return j + 1, nil
		}
		j++
	}
	return 0, errSyntax
}

// valEnd returns the index after the value starting at i.
func (p *parser) valEnd(i int) (int, error) {
	if i >= len(p.b) {
		return 0, errSyntax
	}
	switch p.b[i] {
	case '"':
		return p.strEnd(i)
	case '{', '[':
		depth := 0
		for j := i; j < len(p.b); j++ {
			switch p.b[j] {
			case '"':
				e, err := p.strEnd(j)
				if err != nil {
					return 0, err
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errSyntax
	}
	j := i
	for j < len(p.b) {
		switch p.b[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			if j == i {
				return 0, errSyntax
			}
			return j, nil
		}
		j++
	}
	if j == i {
		return 0, errSyntax
	}
	return j, nil
}

// member is one object member: its key (quotes included) and value.
type member struct{ k, v span }

// members reads the object starting at i, calling fn for each member in
// the order sent; fn returning false stops early. It returns the index
// after the object (0 when stopped early).
func (p *parser) members(i int, fn func(m member) bool) (int, error) {
	if i >= len(p.b) || p.b[i] != '{' {
		return 0, errSyntax
	}
	i = p.ws(i + 1)
	if i < len(p.b) && p.b[i] == '}' {
		return i + 1, nil
	}
	for i < len(p.b) {
		if p.b[i] != '"' {
			return 0, errSyntax
		}
		ke, err := p.strEnd(i)
		if err != nil {
			return 0, err
		}
		j := p.ws(ke)
		if j >= len(p.b) || p.b[j] != ':' {
			return 0, errSyntax
		}
		vs := p.ws(j + 1)
		ve, err := p.valEnd(vs)
		if err != nil {
			return 0, err
		}
		if !fn(member{span{i, ke}, span{vs, ve}}) {
			return 0, nil
		}
		j = p.ws(ve)
		if j >= len(p.b) {
			return 0, errSyntax
		}
		switch p.b[j] {
		case '}':
			return j + 1, nil
		case ',':
			i = p.ws(j + 1)
		default:
			return 0, errSyntax
		}
	}
	return 0, errSyntax
}

// elements reads the array starting at i, calling fn with where each
// element starts; fn returns where it ends (having read it), or false to
// stop.
func (p *parser) elements(i int, fn func(vs int) (ve int, ok bool, err error)) error {
	if i >= len(p.b) || p.b[i] != '[' {
		return errSyntax
	}
	i = p.ws(i + 1)
	if i < len(p.b) && p.b[i] == ']' {
		return nil
	}
	for i < len(p.b) {
		ve, ok, err := fn(i)
		if err != nil || !ok {
			return err
		}
		j := p.ws(ve)
		if j >= len(p.b) {
			return errSyntax
		}
		switch p.b[j] {
		case ']':
			return nil
		case ',':
			i = p.ws(j + 1)
		default:
			return errSyntax
		}
	}
	return errSyntax
}

// each is elements for a caller that wants each element's span.
func (p *parser) each(i int, fn func(v span) bool) error {
	return p.elements(i, func(vs int) (int, bool, error) {
		ve, err := p.valEnd(vs)
		if err != nil {
			return 0, false, err
		}
		return ve, fn(span{vs, ve}), nil
	})
}

// keyIs reports whether the key k (quotes included) is name, escapes
// decoded.
func (p *parser) keyIs(k span, name string) bool {
	raw := p.b[k.s+1 : k.e-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw) == name
	}
	if len(raw) > 6*len(name) {
		return false
	}
	var buf [64]byte
	out := buf[:0]
	for len(raw) > 0 && len(out) <= len(name) {
		if raw[0] != '\\' {
			out = append(out, raw[0])
			raw = raw[1:]
			continue
		}
		var e [8]byte
		m, used := decodeEscape(raw, e[:])
		out = append(out, e[:m]...)
		raw = raw[used:]
	}
	return len(raw) == 0 && string(out) == name
}

func (p *parser) isNull(v span) bool { return p.b[v.s] == 'n' }

// topLevel finds the prompt's fields; a repeated key counts once, the last
// as most servers read it.
func (p *parser) topLevel(f *topFields) error {
	i := p.ws(0)
	if i >= len(p.b) || p.b[i] != '{' {
		return ErrNotObject
	}
	_, err := p.members(i, func(m member) bool {
		if p.isNull(m.v) {
			return true
		}
		for k, name := range topNames {
			if p.keyIs(m.k, name) {
				f[k] = m.v
				break
			}
		}
		return true
	})
	return err
}

// messages hashes a messages array (or a Responses input array) in order.
// Leading system messages belong to the shared head.
func (p *parser) messages(v span) error {
	if p.b[v.s] != '[' {
		p.specific()
		p.canon(v, 0)
		p.anchor()
		return nil
	}
	return p.elements(v.s, func(vs int) (int, bool, error) {
		if p.full {
			return 0, false, nil
		}
		ve, err := p.message(vs)
		return ve, err == nil, err
	})
}

// message hashes the message starting at vs: its role, its content as
// text, then its other members in key order (cache_control dropped). It
// returns where the message ends.
func (p *parser) message(vs int) (int, error) {
	if vs >= len(p.b) || p.b[vs] != '{' {
		ve, err := p.valEnd(vs)
		if err != nil {
			return 0, err
		}
		p.specific()
		p.canon(span{vs, ve}, 1)
		p.anchor()
		return ve, nil
	}
	base := len(p.c.scratch)
	defer func() { p.c.scratch = p.c.scratch[:base] }()
	over := false
	role, content := span{}, span{}
	ve, err := p.members(vs, func(m member) bool {
		switch {
		case p.keyIs(m.k, "role"):
			role = m.v
		case p.keyIs(m.k, "content"):
			content = m.v
		case p.keyIs(m.k, "cache_control"):
		default:
			if len(p.c.scratch)-base == maxSortedKeys {
				over = true
				return false
			}
			p.c.scratch = append(p.c.scratch, m)
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	if over {
		if ve, err = p.valEnd(vs); err != nil {
			return 0, err
		}
		p.specific()
		p.canon(span{vs, ve}, 1)
		p.anchor()
		return ve, nil
	}
	system := role.ok() && p.b[role.s] == '"' && (p.stringIs(role, "system") || p.stringIs(role, "developer"))
	if !system {
		p.specific()
	}
	p.tag('M')
	if role.ok() {
		p.canon(role, 1)
	}
	p.tag(0x1e)
	if content.ok() {
		p.content(content, 1)
	}
	ms := p.c.scratch[base:]
	p.sortMembers(ms)
	for _, m := range ms {
		p.tag(0x1d)
		p.text('k', m.k)
		p.canon(m.v, 1)
	}
	p.tag(0x1f)
	if !system {
		p.anchor()
	}
	return ve, nil
}

func (p *parser) stringIs(v span, s string) bool {
	return v.e-v.s == len(s)+2 && string(p.b[v.s+1:v.e-1]) == s
}

// content hashes a message's content: a string, or an array of parts whose
// text parts count as their text (so a string and one text part hash
// alike), others as canonical JSON.
func (p *parser) content(v span, depth int) {
	switch p.b[v.s] {
	case '"':
		p.text('T', v)
	case '[':
		_ = p.each(v.s, func(e span) bool {
			if t, ok := p.textPart(e); ok {
				p.text('T', t)
			} else {
				p.canon(e, depth+1)
			}
			return !p.full
		})
	case 'n':
	default:
		p.canon(v, depth)
	}
}

// textPart returns a content part's text when it is a text part: type
// text, input_text or output_text, a string text, and nothing else but
// cache_control.
func (p *parser) textPart(v span) (span, bool) {
	if p.b[v.s] == '"' {
		return v, true // a prompt array's string
	}
	if p.b[v.s] != '{' {
		return span{}, false
	}
	text, isText, other := span{}, false, false
	_, _ = p.members(v.s, func(m member) bool {
		switch {
		case p.keyIs(m.k, "type"):
			isText = p.stringIs(m.v, "text") || p.stringIs(m.v, "input_text") || p.stringIs(m.v, "output_text")
		case p.keyIs(m.k, "text"):
			text = m.v
		case p.keyIs(m.k, "cache_control"):
		default:
			other = true
		}
		return !other
	})
	if isText && !other && text.ok() && p.b[text.s] == '"' {
		return text, true
	}
	return span{}, false
}

// canon hashes any JSON value canonically: strings decoded, objects in key
// order (cache_control dropped), whitespace ignored.
func (p *parser) canon(v span, depth int) {
	if p.full {
		return
	}
	switch p.b[v.s] {
	case '"':
		p.text('s', v)
	case '{':
		if depth >= maxDepth {
			p.tag('r')
			p.write(p.b[v.s:v.e])
			return
		}
		base := len(p.c.scratch)
		defer func() { p.c.scratch = p.c.scratch[:base] }()
		over := false
		_, _ = p.members(v.s, func(m member) bool {
			if len(p.c.scratch)-base == maxSortedKeys {
				over = true
				return false
			}
			p.c.scratch = append(p.c.scratch, m)
			return true
		})
		if over { // too many keys to sort: hash as sent
			p.tag('r')
			p.write(p.b[v.s:v.e])
			return
		}
		ms := p.c.scratch[base:]
		p.sortMembers(ms)
		p.tag('{')
		for _, m := range ms {
			if p.keyIs(m.k, "cache_control") {
				continue
			}
			p.text('k', m.k)
			p.canon(m.v, depth+1)
		}
		p.tag('}')
	case '[':
		if depth >= maxDepth {
			p.tag('r')
			p.write(p.b[v.s:v.e])
			return
		}
		p.tag('[')
		_ = p.each(v.s, func(e span) bool {
			p.canon(e, depth+1)
			return !p.full
		})
		p.tag(']')
	default:
		p.tag('n')
		p.write(p.b[v.s:v.e])
	}
}

// sortMembers puts members in the order of their keys as sent (an
// insertion sort: objects are small).
func (p *parser) sortMembers(ms []member) {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && bytes.Compare(p.b[ms[j].k.s:ms[j].k.e], p.b[ms[j-1].k.s:ms[j-1].k.e]) < 0; j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
}
