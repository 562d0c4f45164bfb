package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Control routes (not counted in Stats, never faulted):
//
//	GET  /_sim/fault    the installed fault, {"mode":""} when none
//	POST /_sim/fault    install {"mode","status","retry_after","delay":"2s","after_chunks","path","times"};
//	                    an empty body or {} clears (so does DELETE)
//	GET  /_sim/stats    Stats as JSON; DELETE resets the counters
//	POST /_sim/reset    clear the fault and reset the counters
//	GET  /_sim/models   the served model names; POST ["a","b"] replaces them
//	GET  /_sim/timing   {"ttft":"100ms","tokens_per_second":50,"tokens":20}; POST the same to change it
//	GET  /_sim/last     the last recorded request (?path=/api/chat for the last one to a path)
//
// Answers are JSON; errors are 400/404/405 with {"error":"..."}.
func (s *Sim) serveControl(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/_sim/fault":
		switch r.Method {
		case http.MethodGet:
			controlJSON(w, http.StatusOK, s.Fault())
		case http.MethodPost, http.MethodPut, http.MethodDelete:
			var f Fault
			if r.Method != http.MethodDelete {
				body, err := readControlBody(r)
				if err != nil {
					controlError(w, http.StatusBadRequest, err.Error())
					return
				}
				if len(bytes.TrimSpace(body)) > 0 {
					if err := json.Unmarshal(body, &f); err != nil {
						controlError(w, http.StatusBadRequest, "invalid fault: "+err.Error())
						return
					}
				}
			}
			if err := f.Validate(); err != nil {
				controlError(w, http.StatusBadRequest, err.Error())
				return
			}
			s.SetFault(f)
			controlJSON(w, http.StatusOK, s.Fault())
		default:
			controlMethod(w, "GET, POST, PUT, DELETE")
		}
	case "/_sim/stats":
		switch r.Method {
		case http.MethodGet:
			controlJSON(w, http.StatusOK, s.Stats())
		case http.MethodDelete:
			s.ResetStats()
			controlJSON(w, http.StatusOK, s.Stats())
		default:
			controlMethod(w, "GET, DELETE")
		}
	case "/_sim/reset":
		if r.Method != http.MethodPost {
			controlMethod(w, "POST")
			return
		}
		s.ClearFault()
		s.ResetStats()
		controlJSON(w, http.StatusOK, s.Stats())
	case "/_sim/models":
		switch r.Method {
		case http.MethodGet:
			controlJSON(w, http.StatusOK, s.Models())
		case http.MethodPost, http.MethodPut:
			body, err := readControlBody(r)
			if err != nil {
				controlError(w, http.StatusBadRequest, err.Error())
				return
			}
			var models []string
			if err := json.Unmarshal(body, &models); err != nil {
				controlError(w, http.StatusBadRequest, `want a JSON array of model names, e.g. ["llama3.2:latest"]: `+err.Error())
				return
			}
			for _, m := range models {
				if strings.TrimSpace(m) == "" {
					controlError(w, http.StatusBadRequest, "empty model name")
					return
				}
			}
			s.SetModels(models)
			controlJSON(w, http.StatusOK, s.Models())
		default:
			controlMethod(w, "GET, POST, PUT")
		}
	case "/_sim/timing":
		switch r.Method {
		case http.MethodGet:
			controlJSON(w, http.StatusOK, s.timingJSON())
		case http.MethodPost, http.MethodPut:
			body, err := readControlBody(r)
			if err != nil {
				controlError(w, http.StatusBadRequest, err.Error())
				return
			}
			t := s.timingJSON()
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&t); err != nil {
				controlError(w, http.StatusBadRequest, "invalid timing: "+err.Error())
				return
			}
			ttft, err := time.ParseDuration(t.TTFT)
			if err != nil || ttft < 0 || t.TokensPerSecond < 0 || t.Tokens < 0 {
				controlError(w, http.StatusBadRequest, "invalid timing: want ttft as a duration (\"100ms\") and non-negative numbers")
				return
			}
			s.SetTiming(ttft, t.TokensPerSecond, t.Tokens)
			controlJSON(w, http.StatusOK, s.timingJSON())
		default:
			controlMethod(w, "GET, POST, PUT")
		}
	case "/_sim/last":
		if r.Method != http.MethodGet {
			controlMethod(w, "GET")
			return
		}
		var rec Recorded
		ok := true
		if p := r.URL.Query().Get("path"); p != "" {
			rec, ok = s.LastRequestTo(p)
		} else {
			rec = s.LastRequest()
			ok = rec.Method != ""
		}
		if !ok {
			controlError(w, http.StatusNotFound, "no request recorded")
			return
		}
		controlJSON(w, http.StatusOK, recordedJSON{Method: rec.Method, Path: rec.Path, RawQuery: rec.RawQuery,
			Header: rec.Header, Body: string(rec.Body), Time: rec.Time})
	default:
		controlError(w, http.StatusNotFound, "unknown control route "+r.URL.Path+
			" (have /_sim/fault, /_sim/stats, /_sim/reset, /_sim/models, /_sim/timing, /_sim/last)")
	}
}

type timingJSON struct {
	TTFT            string  `json:"ttft"`
	TokensPerSecond float64 `json:"tokens_per_second"`
	Tokens          int     `json:"tokens"`
}

func (s *Sim) timingJSON() timingJSON {
	ttft, tps, tokens := s.Timing()
	return timingJSON{TTFT: ttft.String(), TokensPerSecond: tps, Tokens: tokens}
}

type recordedJSON struct {
	Method   string      `json:"method"`
	Path     string      `json:"path"`
	RawQuery string      `json:"raw_query,omitempty"`
	Header   http.Header `json:"header"`
	Body     string      `json:"body"`
	Time     time.Time   `json:"time"`
}

func readControlBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("control body larger than 1 MiB")
	}
	return b, nil
}

func controlJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = ctJSON
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func controlError(w http.ResponseWriter, status int, msg string) {
	controlJSON(w, status, map[string]string{"error": msg})
}

func controlMethod(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	controlError(w, http.StatusMethodNotAllowed, "method not allowed; use "+allow)
}
