package olla

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
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
	found := false
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
		if isModelKey(key) {
			if found {
				return "", bodySpan{}, errors.New(`"model" is given more than once`)
			}
			found = true
			raw := body[valStart:s.i]
			if raw[0] != '"' {
				return "", bodySpan{}, fmt.Errorf(`"model" must be a string, got %s`, jsonKind(raw[0]))
			}
			m, err := strconv.Unquote(string(raw))
			if err != nil {
				if err := json.Unmarshal(raw, &m); err != nil {
					return "", bodySpan{}, fmt.Errorf(`"model" is not a valid string: %v`, err)
				}
			}
			model, span = m, bodySpan{valStart, s.i}
		}
	}
	return model, span, nil
}

// isModelKey matches the key "model", also when written with escapes.
func isModelKey(raw []byte) bool {
	if string(raw) == `"model"` {
		return true
	}
	// only an escaped spelling can still mean "model"
	if len(raw) > 7 && raw[0] == '"' && bytes.IndexByte(raw, '\\') >= 0 {
		var k string
		if json.Unmarshal(raw, &k) == nil {
			return k == "model"
		}
	}
	return false
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

func (s *scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

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
			if depth == 0 && (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
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
