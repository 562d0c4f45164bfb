package olla

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/caddy-olla/olla/internal/jsonspace"
)

// errBodyNotObject and friends say what was wrong with a request body.
var (
	errEmptyBody     = errors.New("request body is empty: send a JSON object with a \"model\" field")
	errBodyNotObject = errors.New("request body must be a JSON object")
)

// maxJSONDepth bounds nesting, so a body of a million '[' cannot make the
// scanner (or the backend) work harder than its size.
const maxJSONDepth = 512

// modelFieldPaths are the API paths whose body names a model: a request on
// one of them must carry a valid JSON object.
var modelFieldPaths = map[string]bool{
	"/v1/chat/completions": true, "/v1/completions": true, "/v1/embeddings": true, "/v1/responses": true,
	"/v1/messages": true, "/api/chat": true, "/api/generate": true, "/api/embed": true,
	"/api/embeddings": true, "/api/show": true, "/chat/completions": true, "/completions": true,
	"/embeddings": true, "/completion": true,
}

// bodySpan locates the top-level "model" value inside a body, so an alias
// can be rewritten in place without re-encoding anything else.
type bodySpan struct{ start, end int }

// extractModel validates body as one JSON value and reads its top-level
// "model" string without decoding the rest. It returns the model ("" when
// absent), where its value sits in the body, and a client-facing error for
// a body that is not a JSON object, a "model" that is not a string, or a
// "model" given twice.
func extractModel(body []byte) (string, bodySpan, error) {
	if len(body) == 0 {
		return "", bodySpan{}, errEmptyBody
	}
	if !utf8.Valid(body) {
		return "", bodySpan{}, errors.New("request body is not valid UTF-8")
	}
	if !json.Valid(body) {
		return "", bodySpan{}, fmt.Errorf("request body is not valid JSON: %s", jsonSyntaxError(body))
	}
	s := scanner{b: body}
	s.skipSpace()
	if s.i >= len(body) || body[s.i] != '{' {
		return "", bodySpan{}, errBodyNotObject
	}
	s.i++
	var model string
	var span bodySpan
	var keys [maxNamedKeys][]byte // model keys as written, for the error
	nkeys, variant := 0, false
	for {
		s.skipSpace()
		if body[s.i] == '}' {
			break
		}
		if body[s.i] == ',' {
			s.i++
			s.skipSpace()
		}
		keyStart := s.i
		s.skipString()
		key := body[keyStart:s.i]
		s.skipSpace()
		s.i++ // ':'
		s.skipSpace()
		valStart := s.i
		if err := s.skipValue(); err != nil {
			return "", bodySpan{}, err
		}
		switch modelKeyKind(key) {
		case otherKey:
			continue
		case modelVariant:
			variant = true
		}
		if nkeys < maxNamedKeys {
			keys[nkeys] = key
		}
		nkeys++
		if nkeys > 1 || variant {
			continue // an error once the scan is done, naming every key
		}
		raw := body[valStart:s.i]
		if raw[0] != '"' {
			return "", bodySpan{}, fmt.Errorf(`"model" must be a string, got %s`, jsonKind(raw[0]))
		}
		m, err := strconv.Unquote(string(raw))
		if err != nil {
			var decoded string // apart from m, which would otherwise live on the heap
			if err := json.Unmarshal(raw, &decoded); err != nil {
				return "", bodySpan{}, fmt.Errorf(`"model" is not a valid string: %v`, err)
			}
			m = decoded
		}
		model, span = m, bodySpan{valStart, s.i}
	}
	if nkeys > 1 {
		return "", bodySpan{}, fmt.Errorf(`"model" is given more than once (keys %s): servers written in Go, such as Ollama, read a key in any case and run the last one; send one "model" key`, namedKeys(keys[:min(nkeys, maxNamedKeys)], nkeys))
	}
	if variant {
		return "", bodySpan{}, fmt.Errorf(`the model key is spelt %s: some backends read it as "model" and others ignore it; send it as "model"`, keys[0])
	}
	return model, span, nil
}

// maxNamedKeys bounds how many model keys an error names.
const maxNamedKeys = 4

func namedKeys(keys [][]byte, total int) string {
	var b bytes.Buffer
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.Write(k)
	}
	if total > len(keys) {
		fmt.Fprintf(&b, " and %d more", total-len(keys))
	}
	return b.String()
}

// The kinds of top-level key, as a backend may read them.
const (
	otherKey     = iota
	modelKey     // "model", also spelt with escapes
	modelVariant // another case of "model": Go's encoding/json reads it as "model"
)

// modelKeyKind classifies a raw JSON key (quotes included). Go's
// encoding/json matches keys to fields without regard to case (and no
// character outside ASCII folds to a letter of "model"), so a Go backend
// reads every case of "model" as the model.
func modelKeyKind(raw []byte) int {
	if len(raw) == 7 {
		switch {
		case string(raw) == `"model"`:
			return modelKey
		case foldsToModel(raw[1:6]):
			return modelVariant
		}
		return otherKey
	}
	// only an escaped spelling can still mean "model": at most five
	// \uXXXX escapes between the quotes
	if len(raw) < 8 || len(raw) > 2+5*6 || bytes.IndexByte(raw, '\\') < 0 {
		return otherKey
	}
	var k string
	if json.Unmarshal(raw, &k) != nil || len(k) != 5 {
		return otherKey
	}
	switch {
	case k == "model":
		return modelKey
	case foldsToModel([]byte(k)):
		return modelVariant
	}
	return otherKey
}

// foldsToModel reports whether five bytes spell "model" in some ASCII case.
func foldsToModel(k []byte) bool {
	const want = "model"
	for i := range 5 {
		if k[i]|0x20 != want[i] {
			return false
		}
	}
	return true
}

// rewriteModel returns body with the model value at span replaced by name.
func rewriteModel(body []byte, span bodySpan, name string) []byte {
	quoted, _ := json.Marshal(name)
	out := make([]byte, 0, len(body)-(span.end-span.start)+len(quoted))
	out = append(out, body[:span.start]...)
	out = append(out, quoted...)
	return append(out, body[span.end:]...)
}

func jsonKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// jsonSyntaxError describes where a body stops being JSON.
func jsonSyntaxError(body []byte) string {
	var v struct{}
	err := json.Unmarshal(body, &v)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", se.Error(), se.Offset)
	}
	if err != nil {
		return err.Error()
	}
	return "unexpected end of input"
}

// scanner walks a body already known to be valid JSON.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) skipSpace() { s.i = jsonspace.Skip(s.b, s.i) }

func (s *scanner) skipString() {
	s.i++ // opening quote
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case '\\':
			s.i += 2
		case '"':
			s.i++
			return
		default:
			s.i++
		}
	}
}

// skipValue moves past one value, tracking nesting depth.
func (s *scanner) skipValue() error {
	depth := 0
	for s.i < len(s.b) {
		switch c := s.b[s.i]; c {
		case '"':
			s.skipString()
			if depth == 0 {
				return nil
			}
			continue
		case '{', '[':
			depth++
			if depth > maxJSONDepth {
				return fmt.Errorf("request body is nested more than %d levels deep", maxJSONDepth)
			}
		case '}', ']':
			depth--
			if depth == 0 {
				s.i++
				return nil
			}
		case ',':
			if depth == 0 {
				return nil
			}
		default:
			if depth == 0 && jsonspace.Is(c) {
				return nil
			}
		}
		s.i++
		if depth == 0 && s.i < len(s.b) {
			// a scalar ends at the next delimiter
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return nil
			}
		}
	}
	return nil
}
