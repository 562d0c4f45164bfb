package olla

import (
	"fmt"
	"net/http"
	"strings"
)

// postOnly reports whether an API path takes only POST: the routes whose
// body names the model (modelFieldPaths). Another method there would reach
// a backend that answers it in plain text, or not at all.
func postOnly(apiPath string) bool { return modelFieldPaths[apiPath] }

// notAllowed answers 405 in the route's API format, with the Allow header;
// the first method allowed is the one the message names.
func (rq *request) notAllowed(allow ...string) error {
	rq.w.Header().Set("Allow", strings.Join(allow, ", "))
	return rq.fail(apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
		message: fmt.Sprintf("%s %s is not allowed: use %s", rq.r.Method, rq.r.URL.Path, allow[0])})
}
