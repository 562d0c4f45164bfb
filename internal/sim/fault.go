package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// Fault modes.
const (
	FaultNone            = ""                 // no fault
	FaultError           = "error"            // 500 with a JSON error body in the server's own format
	FaultStatus          = "status"           // Status (default 503) with a JSON error body
	FaultHang            = "hang"             // never send headers; hold the request until the client goes away
	FaultSlowHeaders     = "slow_headers"     // wait Delay, then answer normally
	FaultDropMidStream   = "drop_mid_stream"  // send AfterChunks events, then close the connection abruptly
	FaultMalformedModels = "malformed_models" // the model-list routes answer 200 with an HTML page
	FaultFailHealth      = "fail_health"      // the health route answers 503
	FaultStallMidStream  = "stall_mid_stream" // send AfterChunks events, then send nothing more until the client leaves
	FaultSlowHealth      = "slow_health"      // the health route waits Delay, then answers normally (a loaded backend)
	FaultBusy            = "busy"             // the kind's own busy answer (Ollama 503 "server busy", llama-server 503 no slot, Lemonade 409 slots_pinned_error)
)

// FaultModes lists every fault mode except FaultNone.
func FaultModes() []string {
	return []string{FaultError, FaultStatus, FaultHang, FaultSlowHeaders, FaultDropMidStream,
		FaultMalformedModels, FaultFailHealth, FaultStallMidStream, FaultSlowHealth, FaultBusy}
}

// Fault is an injected misbehaviour. The zero Fault means none.
//
// Which requests a fault hits: with Path set, every request to exactly that
// path, whatever its kind (a "status" fault on "/api/tags" makes discovery
// fail; "fail_health" on any path makes it answer 503). With Path empty,
// fail_health and slow_health hit only the kind's health route (for kinds
// whose health check is the model list, that list), malformed_models only its
// model-list routes, and every other mode only the inference routes (chat,
// generate, completions, embeddings), so health checks and discovery keep
// working while inference fails.
//
// drop_mid_stream and stall_mid_stream count stream events (NDJSON lines or
// SSE events, including the role, finish, usage and [DONE] events). If
// AfterChunks is not below the number of events the stream would have, the
// cut happens just before the last one, so the stream is always incomplete.
// On a non-stream answer, AfterChunks 0 sends nothing at all and any other
// value sends the headers and half of the body before the cut.
type Fault struct {
	Mode        string        // one of the Fault* constants
	Status      int           // for "status", e.g. 429, 502, 503 (default 503)
	RetryAfter  int           // seconds; when > 0 a Retry-After header is sent with "status"/"error"/"fail_health"
	Delay       time.Duration // for "slow_headers" and "slow_health"
	AfterChunks int           // for "drop_mid_stream" / "stall_mid_stream"
	Path        string        // only requests to this exact path; empty = the mode's default routes (see above)
	Times       int           // when > 0, the fault hits this many requests and then stops applying
}

// Validate reports whether f is a usable fault.
func (f Fault) Validate() error {
	switch f.Mode {
	case FaultNone, FaultError, FaultStatus, FaultHang, FaultSlowHeaders, FaultDropMidStream,
		FaultMalformedModels, FaultFailHealth, FaultStallMidStream, FaultSlowHealth, FaultBusy:
	default:
		return fmt.Errorf("unknown fault mode %q", f.Mode)
	}
	if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
		return fmt.Errorf("fault status %d out of range 100..599", f.Status)
	}
	if f.RetryAfter < 0 || f.Delay < 0 || f.AfterChunks < 0 || f.Times < 0 {
		return errors.New("fault retry_after, delay, after_chunks and times must not be negative")
	}
	if f.Path != "" && f.Path[0] != '/' {
		return fmt.Errorf("fault path %q must start with /", f.Path)
	}
	return nil
}

// faultJSON is the wire form used by POST /_sim/fault.
type faultJSON struct {
	Mode        string `json:"mode"`
	Status      int    `json:"status,omitempty"`
	RetryAfter  int    `json:"retry_after,omitempty"`
	Delay       string `json:"delay,omitempty"`
	AfterChunks int    `json:"after_chunks,omitempty"`
	Path        string `json:"path,omitempty"`
	Times       int    `json:"times,omitempty"`
}

// MarshalJSON encodes f as {"mode","status","retry_after","delay":"2s","after_chunks","path","times"}.
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{Mode: f.Mode, Status: f.Status, RetryAfter: f.RetryAfter,
		AfterChunks: f.AfterChunks, Path: f.Path, Times: f.Times}
	if f.Delay != 0 {
		j.Delay = f.Delay.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the form written by MarshalJSON. "delay" is a Go
// duration string ("250ms", "2s"). Unknown fields are rejected.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	var d time.Duration
	if j.Delay != "" {
		var err error
		if d, err = time.ParseDuration(j.Delay); err != nil {
			return fmt.Errorf("fault delay: %w", err)
		}
	}
	*f = Fault{Mode: j.Mode, Status: j.Status, RetryAfter: j.RetryAfter, Delay: d,
		AfterChunks: j.AfterChunks, Path: j.Path, Times: j.Times}
	return nil
}

type faultState struct {
	f    Fault
	left atomic.Int64 // remaining hits when f.Times > 0
}

// SetFault installs f (the zero Fault clears it). Safe at any time,
// concurrently with requests; requests already past the fault check keep
// their behaviour. An unknown mode is not rejected here: requests it hits
// are answered 500 with a message naming it (use Fault.Validate to check).
func (s *Sim) SetFault(f Fault) {
	if f.Mode == FaultNone {
		s.fault.Store(nil)
		return
	}
	fs := &faultState{f: f}
	fs.left.Store(int64(f.Times))
	s.fault.Store(fs)
}

// Fault returns the installed fault (zero when none). Times is the number
// of hits left for a counted fault.
func (s *Sim) Fault() Fault {
	fs := s.fault.Load()
	if fs == nil {
		return Fault{}
	}
	f := fs.f
	if f.Times > 0 {
		f.Times = int(max(fs.left.Load(), 0))
	}
	return f
}

// ClearFault removes any installed fault.
func (s *Sim) ClearFault() { s.fault.Store(nil) }

func (fs *faultState) matches(rt *route, path string) bool {
	if fs.f.Path != "" {
		return fs.f.Path == path
	}
	if rt == nil {
		return false
	}
	switch fs.f.Mode {
	case FaultFailHealth, FaultSlowHealth:
		return rt.class&classHealth != 0
	case FaultMalformedModels:
		return rt.class&classModels != 0
	}
	return rt.class&classInference != 0
}

// take consumes one hit of a counted fault.
func (fs *faultState) take() bool {
	if fs.f.Times <= 0 {
		return true
	}
	return fs.left.Add(-1) >= 0
}

// malformedModelsBody is what a misconfigured reverse proxy or captive
// portal might return instead of a model list.
var malformedModelsBody = []byte("<!DOCTYPE html>\n<html><head><title>Welcome</title></head>" +
	"<body><h1>It works!</h1><p>This is not the model list you are looking for.</p></body></html>\n")

// applyFault acts on a fault that hit c. It returns true when the request
// should then be handled normally (slow_headers after the delay, and the
// mid-stream faults, which act while the answer is written). slow_health
// is slow_headers aimed at the health route.
func (s *Sim) applyFault(c *call, f *Fault) bool {
	switch f.Mode {
	case FaultError:
		s.faultError(c, http.StatusInternalServerError, f.RetryAfter)
	case FaultStatus:
		st := f.Status
		if st == 0 {
			st = http.StatusServiceUnavailable
		}
		s.faultError(c, st, f.RetryAfter)
	case FaultFailHealth:
		s.faultError(c, http.StatusServiceUnavailable, f.RetryAfter)
	case FaultHang:
		<-c.r.Context().Done()
	case FaultSlowHeaders, FaultSlowHealth:
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-c.r.Context().Done():
				t.Stop()
				return false
			}
		}
		return true
	case FaultMalformedModels:
		c.writeBody(http.StatusOK, ctHTML, malformedModelsBody, true)
	case FaultDropMidStream, FaultStallMidStream:
		c.cut = f
		return true
	case FaultBusy:
		s.busyAnswer(c, f.RetryAfter)
	default:
		s.writeError(c, http.StatusInternalServerError, "sim: unknown fault mode "+f.Mode)
	}
	return false
}

func (s *Sim) faultError(c *call, status, retryAfter int) {
	if retryAfter > 0 {
		c.w.Header()["Retry-After"] = retryAfterValue(retryAfter)
	}
	msg := "sim: injected fault: " + http.StatusText(status)
	if s.kind == LlamaCpp && status == http.StatusServiceUnavailable {
		msg = "Loading model" // what llama-server says while it is not ready
	}
	s.writeError(c, status, msg)
}
