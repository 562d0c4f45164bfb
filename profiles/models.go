package profiles

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Model is one model as an endpoint reports it. Fields a backend does not
// report are left empty; values are as the backend wrote them (see the
// Normalize* helpers for comparable forms).
type Model struct {
	Name          string   `json:"name"`
	Digest        string   `json:"digest,omitempty"`
	Size          int64    `json:"size,omitempty"` // bytes on disk
	ModifiedAt    string   `json:"modified_at,omitempty"`
	Family        string   `json:"family,omitempty"`
	Families      []string `json:"families,omitempty"`
	Format        string   `json:"format,omitempty"` // gguf, mlx, safetensors...
	ParameterSize string   `json:"parameter_size,omitempty"`
	Quantization  string   `json:"quantization_level,omitempty"`
	Type          string   `json:"type,omitempty"`  // llm, vlm, embeddings (LM Studio)
	State         string   `json:"state,omitempty"` // loaded, not-loaded (LM Studio)
	Publisher     string   `json:"publisher,omitempty"`
	// MaxContextLength is the longest context the model supports (LM Studio
	// max_context_length, vLLM/SGLang max_model_len, llama.cpp n_ctx_train).
	MaxContextLength int64 `json:"max_context_length,omitempty"`
	// ContextLength is the context window the server currently gives one
	// request, when it says (llama.cpp per-slot n_ctx, Ollama /api/ps
	// context_length, LM Studio loaded_context_length).
	ContextLength int64 `json:"context_length,omitempty"`
	// Aliases are further names the server answers to for this model
	// (llama.cpp --alias), not including Name.
	Aliases []string `json:"aliases,omitempty"`
	// Root and Parent are vLLM/LMDeploy's served-model root and, for a LoRA
	// adapter, its base model.
	Root   string `json:"root,omitempty"`
	Parent string `json:"parent,omitempty"`
	// Checkpoint and Recipe are Lemonade's source checkpoint and runtime recipe.
	Checkpoint string `json:"checkpoint,omitempty"`
	Recipe     string `json:"recipe,omitempty"`
}

// ParseError is the error ParseModels returns. Its message is one line saying
// what was wrong, quoting at most a short piece of the body.
type ParseError struct {
	Format string // the format that was being parsed
	Msg    string
	Err    error // the underlying encoding/json error, if any
}

// Error returns the one-line message.
func (e *ParseError) Error() string { return e.Msg }

// Unwrap returns the underlying error, if any.
func (e *ParseError) Unwrap() error { return e.Err }

// snippetLen is how many bytes of a bad body an error message quotes.
const snippetLen = 40

// ParseModels reads a model-list body in the given format (one of the Format*
// constants; profile names such as "lm-studio" are accepted too, and an unknown
// or empty format is read as OpenAI). Entries with an empty name or id are
// skipped, as are repeats of a name already seen. A valid list with no models
// gives an empty, non-nil slice and a nil error. An empty body, a body that is
// not JSON (HTML, truncated JSON, trailing garbage), a JSON value that is not
// an object, an object without the format's list key, a list key that is not an
// array, or an entry that is not an object of the expected field types is an
// error (*ParseError); callers should keep their last good list.
func ParseModels(format string, body []byte) ([]Model, error) {
	format = canonicalFormat(format)
	body = bytes.TrimSpace(bytes.TrimPrefix(body, []byte("\xef\xbb\xbf")))
	switch format {
	case FormatOllama:
		return parseList(format, body, "models", convertOllama)
	case FormatLMStudio:
		return parseList(format, body, "data", convertLMStudio)
	case FormatLlamaCpp:
		return parseList(format, body, "data", convertLlamaCpp)
	default: // openai, vllm, sglang, lmdeploy, lemonade and unknown formats
		return parseList(format, body, "data", convertOpenAI)
	}
}

// canonicalFormat maps a format or profile name to the format it reads.
func canonicalFormat(format string) string {
	f := strings.ToLower(strings.TrimSpace(format))
	switch f {
	case FormatOllama, FormatLMStudio, FormatOpenAI, FormatVLLM, FormatSGLang,
		FormatLlamaCpp, FormatLemonade, FormatLMDeploy:
		return f
	}
	if p, ok := Lookup(f); ok {
		return p.ModelFormat
	}
	return FormatOpenAI
}

// envelope is the top level of every model list: the list under its key, and
// an error member some servers send instead (with a 200 or with an error
// status that a caller passed on anyway).
type envelope struct {
	Models json.RawMessage `json:"models"`
	Data   json.RawMessage `json:"data"`
	Error  json.RawMessage `json:"error"`
}

func parseList[E any](format string, body []byte, key string, convert func(*E) Model) ([]Model, error) {
	fail := func(err error, msg string, args ...any) error {
		return &ParseError{Format: format, Msg: fmt.Sprintf(msg, args...), Err: err}
	}
	if len(body) == 0 {
		return nil, fail(nil, "model list body is empty")
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, fail(err, "model list is not JSON: %v (got %s)", err, snippet(body))
		}
		if body[0] != '{' {
			return nil, fail(err, "model list is a JSON %s, not an object (got %s)", jsonKind(body), snippet(body))
		}
		return nil, fail(err, "model list is malformed: %v (got %s)", err, snippet(body))
	}
	if body[0] != '{' { // JSON null decodes into a struct without error
		return nil, fail(nil, "model list is a JSON %s, not an object (got %s)", jsonKind(body), snippet(body))
	}
	raw := env.Data
	if key == "models" {
		raw = env.Models
	}
	if len(raw) == 0 {
		if len(env.Error) > 0 {
			return nil, fail(nil, "model list is an error response: %s", errorMessage(env.Error))
		}
		return nil, fail(nil, "model list has no %q array (got %s)", key, snippet(body))
	}
	if raw[0] == 'n' { // null: some servers say so for "no models"
		return []Model{}, nil
	}
	if raw[0] != '[' {
		return nil, fail(nil, "model list %q is a JSON %s, not an array (got %s)", key, jsonKind(raw), snippet(raw))
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fail(err, "model list %q is malformed: %v", key, err)
	}
	out := make([]Model, 0, len(entries))
	seen := make(map[string]struct{}, len(entries))
	for i, er := range entries {
		if len(er) == 0 || er[0] != '{' {
			return nil, fail(nil, "model list %q entry %d is a JSON %s, not an object (got %s)", key, i, jsonKind(er), snippet(er))
		}
		var e E
		if err := json.Unmarshal(er, &e); err != nil {
			return nil, fail(err, "model list %q entry %d is malformed: %s", key, i, describeJSONError(err))
		}
		m := convert(&e)
		if strings.TrimSpace(m.Name) == "" {
			continue
		}
		if _, dup := seen[m.Name]; dup {
			continue
		}
		seen[m.Name] = struct{}{}
		out = append(out, m)
	}
	return out, nil
}

// snippet quotes at most snippetLen bytes of b, marking a cut with "...".
func snippet(b []byte) string {
	if len(b) <= snippetLen {
		return strconv.Quote(string(b))
	}
	return strconv.Quote(string(b[:snippetLen]) + "...")
}

// jsonKind names the JSON type of a valid value by its first byte.
func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// errorMessage extracts a server's error text from {"error":"..."} or
// {"error":{"message":"..."}}, quoted and cut short so it stays on one line.
func errorMessage(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		var obj struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(raw, &obj) == nil && obj.Message != "" {
			s = obj.Message
		} else {
			s = string(raw)
		}
	}
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}

// describeJSONError makes a decoding error readable without Go type names.
func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := "a different type"
		if te.Type != nil {
			switch te.Type.Kind() {
			case reflect.String:
				want = "a string"
			case reflect.Slice, reflect.Array:
				want = "an array"
			case reflect.Struct, reflect.Map:
				want = "an object"
			case reflect.Bool:
				want = "a boolean"
			default:
				want = "a number"
			}
		}
		field := te.Field
		if field == "" {
			field = "value"
		}
		return fmt.Sprintf("field %q is a JSON %s, want %s", field, te.Value, want)
	}
	return err.Error()
}

// flexInt is an integer that servers write as a number, a numeric string, ""
// or null (llama.cpp's Ollama-shaped list has "size":""). A string that is not
// a number reads as 0; a boolean, array or object is an error.
type flexInt int64

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexInt) UnmarshalJSON(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	switch b[0] {
	case 'n':
		*f = 0
		return nil
	case '"':
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		s = strings.TrimSpace(s)
	case 't', 'f', '[', '{':
		// encoding/json adds the field name to this error type.
		return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeFor[int64]()}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		*f = flexInt(n)
		return nil
	}
	if v, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(v) {
		switch {
		case v >= math.MaxInt64:
			*f = math.MaxInt64
		case v <= math.MinInt64:
			*f = math.MinInt64
		default:
			*f = flexInt(v)
		}
		return nil
	}
	*f = 0
	return nil
}

// unixTime renders a Unix-seconds timestamp as RFC 3339 UTC, or "" for none.
func unixTime(sec flexInt) string {
	if sec <= 0 || sec > 1<<40 {
		return ""
	}
	return time.Unix(int64(sec), 0).UTC().Format(time.RFC3339)
}

// nonEmpty returns ss without empty strings and without skip, or nil.
func nonEmpty(ss []string, skip string) []string {
	var out []string
	for _, s := range ss {
		if s != "" && s != skip {
			out = append(out, s)
		}
	}
	return out
}

// --- Ollama: GET /api/tags (and /api/ps) ---

type ollamaEntry struct {
	Name          string  `json:"name"`
	Model         string  `json:"model"`
	ModifiedAt    string  `json:"modified_at"`
	Size          flexInt `json:"size"`
	Digest        string  `json:"digest"`
	ContextLength flexInt `json:"context_length"` // /api/ps only
	Details       struct {
		ParentModel       string   `json:"parent_model"`
		Format            string   `json:"format"`
		Family            string   `json:"family"`
		Families          []string `json:"families"`
		ParameterSize     string   `json:"parameter_size"`
		QuantizationLevel string   `json:"quantization_level"`
	} `json:"details"`
}

func convertOllama(e *ollamaEntry) Model {
	name := e.Name
	if strings.TrimSpace(name) == "" {
		name = e.Model
	}
	return Model{
		Name:          name,
		Digest:        e.Digest,
		Size:          int64(e.Size),
		ModifiedAt:    e.ModifiedAt,
		Family:        e.Details.Family,
		Families:      nonEmpty(e.Details.Families, ""),
		Format:        e.Details.Format,
		ParameterSize: e.Details.ParameterSize,
		Quantization:  e.Details.QuantizationLevel,
		Parent:        e.Details.ParentModel,
		ContextLength: int64(e.ContextLength),
	}
}

// --- LM Studio: GET /api/v0/models ---

type lmstudioEntry struct {
	ID                  string  `json:"id"`
	Type                string  `json:"type"`
	Publisher           string  `json:"publisher"`
	Arch                string  `json:"arch"`
	CompatibilityType   string  `json:"compatibility_type"`
	Quantization        string  `json:"quantization"`
	State               string  `json:"state"`
	MaxContextLength    flexInt `json:"max_context_length"`
	LoadedContextLength flexInt `json:"loaded_context_length"`
}

func convertLMStudio(e *lmstudioEntry) Model {
	return Model{
		Name:             e.ID,
		Family:           e.Arch,
		Format:           e.CompatibilityType,
		Quantization:     e.Quantization,
		Type:             e.Type,
		State:            e.State,
		Publisher:        e.Publisher,
		MaxContextLength: int64(e.MaxContextLength),
		ContextLength:    int64(e.LoadedContextLength),
	}
}

// --- OpenAI and the OpenAI-shaped lists: vLLM, SGLang, LMDeploy, Lemonade ---

type openaiEntry struct {
	ID      string  `json:"id"`
	Created flexInt `json:"created"`
	OwnedBy string  `json:"owned_by"`
	// vLLM, SGLang
	MaxModelLen flexInt `json:"max_model_len"`
	// other servers that report a context length on an OpenAI-shaped entry
	MaxContextLength flexInt `json:"max_context_length"`
	ContextLength    flexInt `json:"context_length"`
	// vLLM, LMDeploy
	Root   string `json:"root"`
	Parent string `json:"parent"`
	// Lemonade
	Checkpoint string `json:"checkpoint"`
	Recipe     string `json:"recipe"`
}

func convertOpenAI(e *openaiEntry) Model {
	ctx := e.MaxModelLen
	if ctx == 0 {
		ctx = e.MaxContextLength
	}
	if ctx == 0 {
		ctx = e.ContextLength
	}
	return Model{
		Name:             e.ID,
		ModifiedAt:       unixTime(e.Created),
		Publisher:        e.OwnedBy,
		MaxContextLength: int64(ctx),
		Root:             e.Root,
		Parent:           e.Parent,
		Checkpoint:       e.Checkpoint,
		Recipe:           e.Recipe,
	}
}

// --- llama.cpp: GET /v1/models (= /models) ---

// llama-server answers with both an Ollama-shaped "models" array and an
// OpenAI-shaped "data" array. Only "data" is read: it carries the id the
// server routes on, the aliases and the meta block, while "models" writes
// numeric fields as "" and repeats less information.
type llamacppEntry struct {
	ID      string   `json:"id"`
	Aliases []string `json:"aliases"`
	Created flexInt  `json:"created"`
	OwnedBy string   `json:"owned_by"`
	Meta    struct {
		NCtxTrain flexInt `json:"n_ctx_train"`
		NCtx      flexInt `json:"n_ctx"`
		NParams   flexInt `json:"n_params"`
		Size      flexInt `json:"size"`
		Ftype     string  `json:"ftype"`
	} `json:"meta"`
}

func convertLlamaCpp(e *llamacppEntry) Model {
	return Model{
		Name:       e.ID,
		Size:       int64(e.Meta.Size),
		ModifiedAt: unixTime(e.Created),
		Format:     "gguf", // llama-server loads GGUF files only
		// Like Ollama's parameter_size: "189K", "7.6B".
		ParameterSize: formatParameterCount(int64(e.Meta.NParams)),
		Quantization:  llamaFtypeQuantization(e.Meta.Ftype),
		Publisher:     e.OwnedBy,
		// The model's own limit is n_ctx_train. meta.n_ctx is not: it is the
		// per-slot window (-c divided by -np, 1024 for -c 4096 -np 4), a
		// server setting that changes with its flags, so it goes to
		// ContextLength (what one request can use right now) instead.
		MaxContextLength: int64(e.Meta.NCtxTrain),
		ContextLength:    int64(e.Meta.NCtx),
		Aliases:          nonEmpty(e.Aliases, e.ID),
	}
}

// llamaFtypeQuantization turns llama.cpp's ftype description ("all F32",
// "Q4_K - Medium", "Q8_0") into a quantisation label like Ollama's ("F32",
// "Q4_K_M", "Q8_0").
func llamaFtypeQuantization(ftype string) string {
	s := strings.TrimSpace(ftype)
	s = strings.TrimSpace(strings.TrimPrefix(s, "all "))
	if s == "" {
		return ""
	}
	if base, size, ok := strings.Cut(s, " - "); ok {
		suffix := map[string]string{
			"small": "_S", "medium": "_M", "large": "_L",
			"extra small": "_XS", "extra extra small": "_XXS",
			"extra large": "_XL",
		}[strings.ToLower(strings.TrimSpace(size))]
		if suffix == "" {
			return s
		}
		return strings.TrimSpace(base) + suffix
	}
	return s
}
