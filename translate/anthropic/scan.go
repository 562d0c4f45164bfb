package anthropic

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/caddy-olla/olla/internal/jsonspace"
)

// Limits bound what one Messages request may hold once decoded. A body of
// a million one-letter text blocks is 29 MB on the wire and hundreds of MB
// as Go values, so the counts are checked by Scan, which builds nothing,
// before ParseRequest builds the tree.
type Limits struct {
	Messages int // entries of messages
	Blocks   int // content blocks: of system, every message, every tool_result
	Tools    int // entries of tools
	Depth    int // nesting of arrays and objects anywhere in the body
}

// DefaultLimits are generous for real conversations (a long agent session
// has a few thousand blocks) and keep a hostile body's tree small.
var DefaultLimits = Limits{Messages: 10_000, Blocks: 50_000, Tools: 1_000, Depth: 64}

// LimitError is a request over one of the Limits: 400 naming it.
type LimitError struct {
	Limit string // messages, content blocks, tools, nesting depth
	Max   int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("the request has more %s than the %d this proxy accepts", e.Limit, e.Max)
}

// Status is the HTTP status to answer with.
func (e *LimitError) Status() int { return http.StatusBadRequest }

// Shape is what one pass over a Messages body found: its counts, and what
// the token estimate and the decoded size are made of.
type Shape struct {
	Model    string
	Messages int
	Blocks   int
	Tools    int
	Depth    int
	chars    int // bytes of counted text: content strings, tool definitions
	images   int
	strings  int // bytes of every string value
	noModel  bool
	badModel bool
}

// EstimateTokens is the count_tokens estimate, as EstimateTokens counts it:
// about four characters per token over the system prompt, the messages and
// the tool definitions, plus a flat count per image; at least 1.
func (s *Shape) EstimateTokens() int {
	return max(1, (s.chars+3)/4+s.images*imageTokens)
}

// What ParseRequest allocates beyond the string bytes: it copies the raw
// JSON at each level it descends (the top object, the messages, each
// content array), about four times the body, plus per value a Block, a
// Message, a Tool with their raw parts (measured by TestDecodedSizeCovers
// with runtime.MemStats and rounded up with room: under -race and with
// slice growth the measure varies by a few per cent; garbage counts until
// collected).
const (
	rawCopies   = 4
	blockCost   = 1280
	messageCost = 1024
	toolCost    = 1024
)

// DecodedSize bounds what ParseRequest allocates for a body of n bytes
// with this shape (not counting the body itself). Charge it to the memory
// budget before parsing.
func (s *Shape) DecodedSize(n int) int64 {
	return rawCopies*int64(n) + int64(s.strings) + int64(s.Blocks)*blockCost + int64(s.Messages)*messageCost + int64(s.Tools)*toolCost
}

// maxDepth bounds the walk's recursion whatever the limits say.
const maxDepth = 10_000

// ErrNotObject is a body Scan cannot read as a JSON object.
var ErrNotObject = errors.New("request body is not a JSON object")

// Scan reads a Messages (or count_tokens) body once, without building
// anything: it counts messages, content blocks, tools and nesting (a
// *LimitError at the first one over lim), and the text the token estimate
// counts. It checks what count_tokens needs of the shape: a non-empty
// string model and a non-empty messages array; those errors are
// *RequestError naming the field, and ErrNotObject is a body that is not
// a JSON object. The rest of the validation is ParseRequest's.
func Scan(body []byte, lim Limits) (*Shape, error) {
	if !json.Valid(body) { // no allocation; the walk below may then trust the syntax
		return nil, ErrNotObject
	}
	if lim.Depth <= 0 || lim.Depth > maxDepth {
		lim.Depth = maxDepth // the walk recurses once per level
	}
	s := &scan{b: body, lim: lim, shape: &Shape{noModel: true}}
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return nil, ErrNotObject
	}
	if err := s.object(1, ctxTop); err != nil {
		return nil, err
	}
	s.space()
	if s.i != len(s.b) {
		return nil, ErrNotObject
	}
	sh := s.shape
	switch {
	case sh.noModel:
		return nil, fieldError("model", "field required")
	case sh.badModel:
		return nil, fieldError("model", "must be a string")
	case sh.Model == "":
		return nil, fieldError("model", "must not be empty")
	case !s.sawMessages:
		return nil, fieldError("messages", "field required: an array of messages")
	case sh.Messages == 0:
		return nil, fieldError("messages", "must contain at least one message")
	}
	return sh, nil
}

// Where a value sits, for what it counts as.
const (
	ctxOther     = iota
	ctxTop       // the request object
	ctxMessages  // the messages array
	ctxMessage   // one message
	ctxContent   // a content array (system, a message's, a tool_result's)
	ctxBlock     // one content block
	ctxTools     // the tools array
	ctxTool      // one tool definition
	ctxCounted   // anything inside a block or tool whose strings count as text
	ctxUncounted // inside a block, not text (an image's source)
)

type scan struct {
	b           []byte
	i           int
	lim         Limits
	shape       *Shape
	sawMessages bool
}

var errSyntax = ErrNotObject

func (s *scan) space() { s.i = jsonspace.Skip(s.b, s.i) }

func (s *scan) deeper(depth int) error {
	if depth > s.shape.Depth {
		s.shape.Depth = depth
	}
	if s.lim.Depth > 0 && depth > s.lim.Depth {
		return &LimitError{Limit: "nesting depth", Max: s.lim.Depth}
	}
	return nil
}

// str reads a string at s.i and returns its raw bytes between the quotes.
func (s *scan) str() ([]byte, error) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, errSyntax
	}
	start := s.i + 1
	for i := start; i < len(s.b); i++ {
		switch s.b[i] {
		case '\\':
			i++
		case '"':
			s.i = i + 1
			s.shape.strings += i - start
			return s.b[start:i], nil
		}
	}
	return nil, errSyntax
}

// value reads any value in context ctx at depth (its own depth when it is
// an array or object).
func (s *scan) value(depth, ctx int) error {
	s.space()
	if s.i >= len(s.b) {
		return errSyntax
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(depth, ctx)
	case c == '[':
		return s.array(depth, ctx)
	case c == '"':
		v, err := s.str()
		if err != nil {
			return err
		}
		switch ctx {
		case ctxContent, ctxCounted, ctxTool:
			// a string content is one text block; strings inside blocks
			// and tools are text
			s.shape.chars += len(v)
		}
		if ctx == ctxContent {
			return s.block() // a string content is one text block
		}
		return nil
	default:
		start := s.i
		for s.i < len(s.b) && (s.b[s.i] == '-' || s.b[s.i] == '+' || s.b[s.i] == '.' || s.b[s.i] >= '0' && s.b[s.i] <= '9' ||
			s.b[s.i] >= 'a' && s.b[s.i] <= 'z' || s.b[s.i] == 'E') {
			s.i++
		}
		if s.i == start {
			return errSyntax
		}
		return nil
	}
}

func (s *scan) block() error {
	s.shape.Blocks++
	if s.lim.Blocks > 0 && s.shape.Blocks > s.lim.Blocks {
		return &LimitError{Limit: "content blocks", Max: s.lim.Blocks}
	}
	return nil
}

func (s *scan) array(depth, ctx int) error {
	if err := s.deeper(depth); err != nil {
		return err
	}
	s.i++ // '['
	elem := ctxOther
	switch ctx {
	case ctxMessages:
		elem = ctxMessage
	case ctxContent:
		elem = ctxBlock
	case ctxTools:
		elem = ctxTool
	case ctxCounted, ctxUncounted:
		elem = ctx
	}
	s.space()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		switch ctx {
		case ctxMessages:
			s.shape.Messages++
			if s.lim.Messages > 0 && s.shape.Messages > s.lim.Messages {
				return &LimitError{Limit: "messages", Max: s.lim.Messages}
			}
		case ctxContent:
			if err := s.block(); err != nil {
				return err
			}
		case ctxTools:
			s.shape.Tools++
			if s.lim.Tools > 0 && s.shape.Tools > s.lim.Tools {
				return &LimitError{Limit: "tools", Max: s.lim.Tools}
			}
		}
		if err := s.value(depth+1, elem); err != nil {
			return err
		}
		if done, err := s.separator(']'); done || err != nil {
			return err
		}
	}
}

func (s *scan) object(depth, ctx int) error {
	if err := s.deeper(depth); err != nil {
		return err
	}
	s.i++ // '{'
	s.space()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.space()
		key, err := s.str()
		if err != nil {
			return err
		}
		s.shape.strings -= len(key) // keys are not decoded into strings
		s.space()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return errSyntax
		}
		s.i++
		s.space()
		if err := s.member(depth, ctx, string(key)); err != nil {
			return err
		}
		if done, err := s.separator('}'); done || err != nil {
			return err
		}
	}
}

// separator reads what follows a value inside an array or object: a comma
// (more to come) or the closing end byte (done).
func (s *scan) separator(end byte) (done bool, err error) {
	s.space()
	if s.i >= len(s.b) {
		return false, errSyntax
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		return false, nil
	case end:
		s.i++
		return true, nil
	}
	return false, errSyntax
}

// member reads the value of key in an object found in context ctx.
func (s *scan) member(depth, ctx int, key string) error {
	next := ctxOther
	switch ctx {
	case ctxTop:
		switch key {
		case "model":
			s.shape.noModel = false
			if s.i < len(s.b) && s.b[s.i] == '"' {
				v, err := s.str()
				if err != nil {
					return err
				}
				s.shape.Model = string(v) // escapes are the full parse's business
				s.shape.badModel = false
				return nil
			}
			if s.i+4 <= len(s.b) && string(s.b[s.i:s.i+4]) == "null" {
				s.shape.noModel = true
			} else {
				s.shape.badModel = true
			}
		case "messages":
			if s.i >= len(s.b) || s.b[s.i] != '[' {
				if s.i+4 <= len(s.b) && string(s.b[s.i:s.i+4]) == "null" {
					break
				}
				return fieldError("messages", "field required: an array of messages")
			}
			s.sawMessages = true
			next = ctxMessages
		case "system":
			next = ctxContent
		case "tools":
			next = ctxTools
		}
	case ctxMessage:
		if key == "content" {
			next = ctxContent
		}
	case ctxBlock:
		switch key {
		case "type", "id", "tool_use_id", "media_type", "cache_control", "citations", "signature":
			next = ctxOther
		case "source":
			next = ctxCounted // a document's text counts; an image's data is uncounted below
		case "content":
			next = ctxContent // a tool_result's blocks count as blocks
		default:
			next = ctxCounted
		}
		if key == "type" && s.i < len(s.b) && s.b[s.i] == '"' {
			v, err := s.str()
			if err != nil {
				return err
			}
			if string(v) == "image" {
				s.shape.images++
			}
			return nil
		}
	case ctxTool:
		next = ctxCounted
		if key == "type" || key == "cache_control" {
			next = ctxOther
		}
	case ctxCounted, ctxUncounted:
		next = ctx
		if key == "data" && ctx == ctxCounted && s.imageSource() {
			next = ctxUncounted
		}
	}
	return s.value(depth+1, next)
}

// imageSource is a guess cheap enough for one pass: base64 data counts as
// text only in a document, and images were counted flat; a block's data
// field is uncounted once an image was seen in the request.
func (s *scan) imageSource() bool { return s.shape.images > 0 }
