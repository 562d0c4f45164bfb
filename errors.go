package olla

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-olla/olla/translate/anthropic"
)

// apiFormat is the error dialect of the API a path speaks.
type apiFormat uint8

const (
	formatOpenAI    apiFormat = iota // {"error":{"message","type","param","code"}}
	formatOllama                     // {"error":"..."}
	formatAnthropic                  // {"type":"error","error":{"type","message"}}
)

// formatFor picks the error format from the route prefix and API path:
// Ollama's native API under its prefix speaks Ollama, /v1/messages speaks
// Anthropic, everything else the OpenAI envelope.
func formatFor(prefix, apiPath string) apiFormat {
	switch {
	case prefix == anthropicPrefix || strings.HasPrefix(apiPath, "/v1/messages"):
		return formatAnthropic
	case (prefix == "ollama" || prefix == "proxy") && strings.HasPrefix(apiPath, "/api/"):
		return formatOllama
	}
	return formatOpenAI
}

// apiError is an answer we produce ourselves, in the client's own format.
type apiError struct {
	status     int
	message    string
	code       string        // machine-readable: model_not_found, ...
	retryAfter time.Duration // Retry-After on 429/503
}

// openAIType maps a status to the OpenAI envelope's error type.
func openAIType(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == http.StatusRequestEntityTooLarge, status == http.StatusRequestHeaderFieldsTooLarge, status < 500:
		return "invalid_request_error"
	}
	return "api_error"
}

// writeError answers with e in format f. The request ID header is already set.
func writeError(w http.ResponseWriter, f apiFormat, e apiError, requestID string) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	// official clients read the request ID of an error from X-Request-Id
	h.Set("X-Request-Id", requestID)
	if e.retryAfter > 0 {
		secs := int((e.retryAfter + time.Second - 1) / time.Second)
		h.Set("Retry-After", strconv.Itoa(secs))
	}
	var body any
	switch f {
	case formatOllama:
		body = struct {
			Error string `json:"error"`
		}{e.message}
	case formatAnthropic:
		h.Set("Request-Id", requestID)
		type inner struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		body = struct {
			Type      string `json:"type"`
			Error     inner  `json:"error"`
			RequestID string `json:"request_id,omitempty"`
		}{"error", inner{anthropic.ErrorType(e.status), e.message}, requestID}
	default:
		type inner struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		}
		var code *string
		if e.code != "" {
			code = &e.code
		}
		body = struct {
			Error inner `json:"error"`
		}{inner{e.message, openAIType(e.status), nil, code}}
	}
	buf, _ := json.Marshal(body)
	buf = append(buf, '\n')
	h.Set("Content-Length", strconv.Itoa(len(buf)))
	w.WriteHeader(e.status)
	_, _ = w.Write(buf)
}
