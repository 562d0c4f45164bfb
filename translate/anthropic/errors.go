package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"
)

// maxErrorMessage caps a backend's error message copied into our answer.
const maxErrorMessage = 2048

// ErrorType maps an HTTP status to the Anthropic error type.
func ErrorType(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "invalid_request_error"
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	case http.StatusServiceUnavailable, 529:
		// Anthropic answers 529 when overloaded; a 503 from a local fleet
		// (no healthy backend, queue full) means the same to a client's retry
		// logic, and the SDKs retry overloaded_error.
		return "overloaded_error"
	}
	return "api_error"
}

type errorEnvelope struct {
	Type      string      `json:"type"`
	Error     errorDetail `json:"error"`
	RequestID string      `json:"request_id,omitempty"`
}

type errorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// ErrorBody is the Anthropic error envelope for status:
// {"type":"error","error":{"type":...,"message":...}}.
func ErrorBody(status int, message string) []byte {
	return ErrorBodyWithRequestID(status, message, "")
}

// ErrorBodyWithRequestID is ErrorBody plus the top-level request_id Anthropic
// puts in its envelopes (omitted when empty).
func ErrorBodyWithRequestID(status int, message, requestID string) []byte {
	return marshalError(ErrorType(status), message, requestID)
}

func marshalError(typ, message, requestID string) []byte {
	b, _ := json.Marshal(errorEnvelope{Type: "error", Error: errorDetail{Type: typ, Message: message}, RequestID: requestID})
	return b
}

// TranslateError turns a backend's error answer (OpenAI envelope, Ollama's
// {"error":"..."}, vLLM's {"object":"error","message":...}, an Anthropic
// envelope, or plain text) into the Anthropic envelope for status. The body
// should already be capped by the caller's read.
func TranslateError(status int, body []byte) []byte {
	return ErrorBody(status, BackendErrorMessage(status, body))
}

// BackendErrorMessage extracts the human message from a backend error body.
func BackendErrorMessage(status int, body []byte) string {
	if msg := jsonErrorMessage(body); msg != "" {
		return capMessage(msg)
	}
	text := strings.TrimSpace(string(bytes.ToValidUTF8(body, nil)))
	if text == "" || text[0] == '{' || text[0] == '[' {
		return fmt.Sprintf("backend error (HTTP %d)", status)
	}
	return capMessage(text)
}

// jsonErrorMessage finds the message in the error shapes backends use.
func jsonErrorMessage(body []byte) string {
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message *string         `json:"message"`
		Detail  *string         `json:"detail"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	if len(v.Error) > 0 {
		var s string
		if json.Unmarshal(v.Error, &s) == nil && s != "" {
			return s // Ollama native: {"error":"..."}
		}
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(v.Error, &e) == nil && e.Message != "" {
			return e.Message // OpenAI and Anthropic envelopes
		}
	}
	if v.Message != nil && *v.Message != "" {
		return *v.Message
	}
	if v.Detail != nil && *v.Detail != "" {
		return *v.Detail // FastAPI-based servers
	}
	return ""
}

func capMessage(s string) string {
	if len(s) <= maxErrorMessage {
		return s
	}
	cut := maxErrorMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
