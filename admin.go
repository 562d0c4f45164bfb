package olla

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-olla/olla/fleet"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is `admin.api.olla`: endpoint control through Caddy's admin API,
// with no config reload. Caddy loads every admin.api module by itself, and
// its admin endpoint listens on loopback unless configured otherwise.
//
//	GET  /olla/endpoints                    every endpoint's state
//	POST /olla/endpoints/{name}/drain       no new requests; running ones finish
//	POST /olla/endpoints/{name}/enable      take requests again
//	POST /olla/endpoints/{name}/rediscover  probe and fetch models now
//
// What it changes lives on the endpoint's pooled state, so it outlives
// reloads that keep the endpoint, and /internal/status shows it.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.olla", New: func() caddy.Module { return new(AdminAPI) }}
}

// Routes implements caddy.AdminRouter.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/olla/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// rediscoverWait bounds how long a rediscover call waits to report the new
// probe's verdict; the probe itself goes on if it takes longer.
const rediscoverWait = 30 * time.Second

func (a AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	rest, ok := strings.CutPrefix(r.URL.Path, "/olla/endpoints")
	if !ok {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("unknown olla admin route %q: use /olla/endpoints", r.URL.Path)}
	}
	if rest == "" || rest == "/" {
		if r.Method != http.MethodGet {
			return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed: use GET", r.Method)}
		}
		return writeAdminJSON(w, http.StatusOK, map[string]any{"endpoints": listEndpoints(time.Now())})
	}
	name, action, ok := strings.Cut(strings.TrimPrefix(rest, "/"), "/")
	if !ok || name == "" {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("use /olla/endpoints/{name}/drain, /enable or /rediscover")}
	}
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed: use POST", r.Method)}
	}
	states := statesNamed(name)
	if len(states) == 0 {
		return caddy.APIError{HTTPStatus: http.StatusNotFound,
			Err: fmt.Errorf("no endpoint named %q; known endpoints: %s", name, strings.Join(endpointNames(), ", "))}
	}
	var note string
	switch action {
	case "drain":
		for _, st := range states {
			st.SetDrained(true)
		}
		note = fmt.Sprintf("endpoint %q is drained: it takes no new requests; running ones finish", name)
		if typ := states[0].Type(); !anyRoutableOfType(typ, time.Now()) {
			note += fmt.Sprintf("; it was the last routable %s endpoint, so requests for that type now get 503 until one is enabled", typ)
		}
	case "enable":
		for _, st := range states {
			st.SetDrained(false)
		}
		note = fmt.Sprintf("endpoint %q takes requests again", name)
	case "rediscover":
		before := make([]time.Time, len(states))
		for i, st := range states {
			before[i] = st.Health().CheckedAt
			st.Rediscover() // its loop probes within a second
		}
		probed := waitProbed(r, states, before)
		switch why := states[0].WhyNot(time.Now()); {
		case !probed:
			note = fmt.Sprintf("endpoint %q is being probed; its models are fetched when it answers", name)
		case why != "":
			note = fmt.Sprintf("endpoint %q was probed and takes no requests: %s; its models are fetched when it answers", name, why)
		default:
			note = fmt.Sprintf("endpoint %q was probed (%s) and its models fetched", name, states[0].Health().Reason)
		}
	default:
		return caddy.APIError{HTTPStatus: http.StatusNotFound,
			Err: fmt.Errorf("unknown action %q: use drain, enable or rediscover", action)}
	}
	now := time.Now()
	out := make([]endpointStatus, 0, len(states))
	for _, st := range states {
		es, _ := describe(st, now)
		out = append(out, es)
	}
	return writeAdminJSON(w, http.StatusOK, map[string]any{"result": note, "endpoints": out})
}

// waitProbed waits until every state has a probe newer than before, the
// client leaves or rediscoverWait passes.
func waitProbed(r *http.Request, states []*fleet.Endpoint, before []time.Time) bool {
	deadline := time.NewTimer(rediscoverWait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		done := true
		for i, st := range states {
			if !st.Health().CheckedAt.After(before[i]) {
				done = false
			}
		}
		if done {
			return true
		}
		select {
		case <-r.Context().Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}

func statesNamed(name string) []*fleet.Endpoint {
	var out []*fleet.Endpoint
	for _, st := range fleet.All() {
		if st.Name() == name {
			out = append(out, st)
		}
	}
	return out
}

func endpointNames() []string {
	var names []string
	for _, st := range fleet.All() {
		if n := st.Name(); len(names) == 0 || names[len(names)-1] != n {
			names = append(names, n)
		}
	}
	return names
}

func anyRoutableOfType(typ string, now time.Time) bool {
	for _, st := range fleet.All() {
		if st.Type() == typ && st.Routable(now) {
			return true
		}
	}
	return false
}

func listEndpoints(now time.Time) []endpointStatus {
	out := []endpointStatus{}
	for _, st := range fleet.All() {
		es, _ := describe(st, now)
		out = append(out, es)
	}
	return out
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

var _ caddy.AdminRouter = AdminAPI{}
