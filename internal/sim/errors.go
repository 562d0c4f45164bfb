package sim

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
)

// errSpec describes an error answer; writeErr renders it in the simulated
// server's own format.
type errSpec struct {
	status int
	msg    string
	typ    string // "" = the kind's usual type for status
	code   string // OpenAI-style string code; "" = null
	param  string // OpenAI-style param; "" = null
	gin    bool   // Ollama /v1 error written by gin (charset, no trailing newline) instead of its JSON encoder
}

// writeError answers status with msg in the server's error format.
func (s *Sim) writeError(c *call, status int, msg string) {
	s.writeErr(c, errSpec{status: status, msg: msg})
}

func (s *Sim) writeErr(c *call, e errSpec) {
	b := c.sc.buf[:0]
	h := c.w.Header()
	if c.rt != nil && c.rt.api == apiAnthropic && s.kind != LlamaCpp {
		// llama.cpp answers its Messages route's errors in its own shape
		b = appendAnthropicError(b, e.status, e.msg)
		switch {
		case s.kind != Ollama:
			c.writeBody(e.status, ctJSON, b, true)
		case e.gin:
			c.writeBody(e.status, ctJSONUTF8, b, false)
		default:
			c.writeBody(e.status, ctJSON, append(b, '\n'), false)
		}
		c.sc.buf = b
		return
	}
	switch s.kind {
	case Ollama:
		if c.rt == nil || c.rt.api == apiNative {
			b = append(b, `{"error":`...)
			b = appendString(b, e.msg)
			b = append(b, '}')
			c.writeBody(e.status, ctJSONUTF8, b, false)
			break
		}
		typ := e.typ
		if typ == "" {
			typ = "api_error"
			if e.status == http.StatusBadRequest {
				typ = "invalid_request_error"
			}
		}
		b = appendOpenAIError(b, e.msg, typ, e.param, e.code)
		if e.gin {
			c.writeBody(e.status, ctJSONUTF8, b, false)
			break
		}
		b = append(b, '\n')
		c.writeBody(e.status, ctJSON, b, false)
	case LlamaCpp:
		typ := e.typ
		if typ == "" {
			typ = llamaErrType(e.status)
		}
		llamaHeaders(h, false)
		b = append(b, `{"error":{"code":`...)
		b = strconv.AppendInt(b, int64(e.status), 10)
		b = append(b, `,"message":`...)
		b = appendString(b, e.msg)
		b = append(b, `,"type":`...)
		b = appendString(b, typ)
		b = append(b, `}}`...)
		c.writeBody(e.status, ctJSONUTF8, b, true)
	case VLLM:
		typ := e.typ
		if typ == "" {
			typ = vllmErrType(e.status)
		}
		b = append(b, `{"error":{"message":`...)
		b = appendString(b, e.msg)
		b = append(b, `,"type":`...)
		b = appendString(b, typ)
		b = append(b, `,"param":`...)
		b = appendNullableString(b, e.param)
		b = append(b, `,"code":`...)
		b = strconv.AppendInt(b, int64(e.status), 10)
		b = append(b, `}}`...)
		c.writeBody(e.status, ctJSON, b, true)
	default: // OpenAI, LMStudio
		typ := e.typ
		if typ == "" {
			typ = openAIErrType(e.status)
		}
		b = appendOpenAIError(b, e.msg, typ, e.param, e.code)
		ct := ctJSON
		if s.kind == LMStudio {
			ct = ctJSONUTF8
		}
		c.writeBody(e.status, ct, b, true)
	}
	c.sc.buf = b
}

func appendOpenAIError(b []byte, msg, typ, param, code string) []byte {
	b = append(b, `{"error":{"message":`...)
	b = appendString(b, msg)
	b = append(b, `,"type":`...)
	b = appendString(b, typ)
	b = append(b, `,"param":`...)
	b = appendNullableString(b, param)
	b = append(b, `,"code":`...)
	b = appendNullableString(b, code)
	return append(b, `}}`...)
}

func appendNullableString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

func llamaErrType(status int) string {
	switch {
	case status == 400:
		return "invalid_request_error"
	case status == 401:
		return "authentication_error"
	case status == 403:
		return "permission_error"
	case status == 404:
		return "not_found_error"
	case status == 501:
		return "not_supported_error"
	case status == 503 || status == 429:
		return "unavailable_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

func vllmErrType(status int) string {
	switch status {
	case 400:
		return "BadRequestError"
	case 404:
		return "NotFoundError"
	case 429:
		return "TooManyRequestsError"
	case 500:
		return "InternalServerError"
	case 503:
		return "ServiceUnavailableError"
	}
	t := strings.ReplaceAll(http.StatusText(status), " ", "")
	if t == "" {
		t = "Unknown"
	}
	return t + "Error"
}

func openAIErrType(status int) string {
	switch {
	case status == 429:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// notFound answers a request for a path the server does not have.
func (s *Sim) notFound(c *call) {
	b := c.sc.buf[:0]
	switch s.kind {
	case Ollama:
		c.writeBody(http.StatusNotFound, ctTextPlain, append(b, "404 page not found"...), false)
	case LlamaCpp:
		llamaHeaders(c.w.Header(), false)
		c.writeBody(http.StatusNotFound, ctJSONUTF8,
			append(b, `{"error":{"message":"File Not Found","type":"not_found_error","code":404}}`...), true)
	case VLLM:
		c.writeBody(http.StatusNotFound, ctJSON, append(b, `{"detail":"Not Found"}`...), true)
	case LMStudio:
		b = append(b, `{"error":`...)
		b = appendString(b, "Unexpected endpoint or method. ("+c.r.Method+" "+c.r.URL.Path+")")
		b = append(b, '}')
		c.writeBody(http.StatusNotFound, ctJSONUTF8, b, true)
	default:
		b = appendOpenAIError(b, "Invalid URL ("+c.r.Method+" "+c.r.URL.Path+")", "invalid_request_error", "", "")
		c.writeBody(http.StatusNotFound, ctJSON, b, true)
	}
	c.sc.buf = b
}

// methodNotAllowed answers a known path requested with the wrong method.
func (s *Sim) methodNotAllowed(c *call) {
	b := c.sc.buf[:0]
	switch s.kind {
	case Ollama:
		c.w.Header()["Allow"] = c.rt.allow
		c.writeBody(http.StatusMethodNotAllowed, ctTextPlain, append(b, "405 method not allowed"...), false)
	case VLLM:
		c.w.Header()["Allow"] = c.rt.allow
		c.writeBody(http.StatusMethodNotAllowed, ctJSON, append(b, `{"detail":"Method Not Allowed"}`...), true)
	case OpenAI:
		c.w.Header()["Allow"] = c.rt.allow
		b = appendOpenAIError(b, "Method Not Allowed ("+c.r.Method+" "+c.r.URL.Path+")", "invalid_request_error", "", "")
		c.writeBody(http.StatusMethodNotAllowed, ctJSON, b, true)
	default: // llama.cpp and LM Studio answer as for an unknown path
		s.notFound(c)
		return
	}
	c.sc.buf = b
}

// invalidJSON answers a body that did not decode.
func (s *Sim) invalidJSON(c *call, err error) {
	msg := jsonErrorText(err)
	switch s.kind {
	case Ollama:
		if len(trimSpace(c.body)) == 0 && c.rt.api == apiNative {
			msg = "missing request body"
		}
		s.writeErr(c, errSpec{status: http.StatusBadRequest, msg: msg, gin: true})
	case LlamaCpp:
		col := len(c.body) + 1
		var se *json.SyntaxError
		if errors.As(err, &se) {
			col = int(se.Offset) + 1
		}
		s.writeError(c, http.StatusBadRequest, "[json.exception.parse_error.101] parse error at line 1, column "+
			strconv.Itoa(col)+": syntax error while parsing value - "+msg)
	default:
		s.writeError(c, http.StatusBadRequest, msg)
	}
}

// jsonErrorText turns a decoding error into the text a Go server using
// json.Decoder (Ollama) reports.
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) && se.Error() == "unexpected end of JSON input" {
		return "unexpected EOF"
	}
	if err == errEmptyBody {
		return "EOF"
	}
	return err.Error()
}

// modelNotFound answers a request for a model the server does not serve.
func (s *Sim) modelNotFound(c *call, model string) {
	switch s.kind {
	case Ollama:
		s.writeErr(c, errSpec{status: http.StatusNotFound, msg: "model '" + model + "' not found"})
	case VLLM:
		s.writeErr(c, errSpec{status: http.StatusNotFound, msg: "The model `" + model + "` does not exist.", param: "model"})
	case LMStudio:
		s.writeErr(c, errSpec{status: http.StatusNotFound, msg: "Model \"" + model + "\" not found. Please load the model or check the model identifier.",
			param: "model", code: "model_not_found"})
	default:
		s.writeErr(c, errSpec{status: http.StatusNotFound, msg: "The model `" + model + "` does not exist or you do not have access to it.",
			code: "model_not_found"})
	}
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
