package olla

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddy-olla/olla/profiles"
)

// isResponsesPath reports whether an API path is OpenAI's Responses API
// (the create route or one of its stored-response routes).
func isResponsesPath(p string) bool {
	return p == profiles.PathResponses || strings.HasPrefix(p, profiles.PathResponses+"/")
}

// responsesRoute checks a Responses API request on rt before its body is
// read: 501 in OpenAI's format when no backend type of the route serves the
// path. Only creating a response is routed (by its model); a stored
// response's routes (/v1/responses/{id}...) name no model, so no balancer
// can find the backend that holds it. The candidates are narrowed after
// routing (responsesCandidates), so that a model served only by types
// without the API is told so, not "unavailable".
func responsesRoute(rt route, apiPath string) *apiError {
	if apiPath != profiles.PathResponses {
		return &apiError{status: http.StatusNotImplemented, code: "not_supported",
			message: fmt.Sprintf("%s is not supported through the load balancer: a stored response lives on one backend and the request names no model to find it; call that backend directly, or send the whole conversation to POST /v1/responses", apiPath)}
	}
	for _, p := range profiles.All() {
		if rt.allows(p.Name) && p.ServesPath(apiPath) {
			return nil
		}
	}
	return &apiError{status: http.StatusNotImplemented, code: "not_supported",
		message: fmt.Sprintf("the Responses API (POST /v1/responses) is not served by %s backends; use /v1/chat/completions, or a route whose backends serve it (%s)",
			rt.label, strings.Join(profiles.TypesForPath(apiPath), ", "))}
}

// responsesCandidates keeps the candidates whose type serves the Responses
// API; none left is a 501 naming the types that serve the model.
func responsesCandidates(d *decision, model string) *apiError {
	if d.err != nil {
		return nil
	}
	var kept candidates
	var types []string
	for _, st := range d.candidates {
		if p := st.settings.Load().profile; p != nil && p.ServesPath(profiles.PathResponses) {
			kept = append(kept, st)
		} else if !slices.Contains(types, st.Type()) {
			types = append(types, st.Type())
		}
	}
	if len(kept) == 0 {
		return &apiError{status: http.StatusNotImplemented, code: "not_supported",
			message: fmt.Sprintf("model '%s' is served here only by %s backends, which do not serve the Responses API (POST /v1/responses); use /v1/chat/completions for it",
				model, strings.Join(types, ", "))}
	}
	d.candidates = kept
	return nil
}
