package olla

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// exposedOllaHeaders are what browsers may read by default: our own.
var exposedOllaHeaders = []string{"X-Olla-Request-Id", "X-Olla-Endpoint", "X-Olla-Backend-Type", "X-Olla-Model",
	"X-Olla-Response-Time", "X-Olla-Routing-Strategy", "X-Olla-Routing-Decision", "X-Olla-Routing-Reason",
	"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "Retry-After"}

// corsPolicy is a validated CORS block.
type corsPolicy struct {
	anyOrigin   bool
	origins     map[string]bool
	methods     string
	headers     string
	anyHeader   bool
	exposed     string
	credentials bool
	maxAge      string
}

func newCORSPolicy(c *CORS) *corsPolicy {
	if c == nil {
		return nil
	}
	p := &corsPolicy{origins: map[string]bool{}, credentials: c.AllowCredentials}
	for _, o := range c.AllowedOrigins {
		if o == "*" {
			p.anyOrigin = true
		} else {
			p.origins[strings.TrimSuffix(o, "/")] = true
		}
	}
	methods := c.AllowedMethods
	if len(methods) == 0 {
		methods = []string{"GET", "POST", "OPTIONS"}
	}
	p.methods = strings.Join(methods, ", ")
	headers := c.AllowedHeaders
	if len(headers) == 0 {
		headers = []string{"*"}
	}
	p.anyHeader = len(headers) == 1 && headers[0] == "*"
	p.headers = strings.Join(headers, ", ")
	exposed := c.ExposedHeaders
	if len(exposed) == 0 {
		exposed = exposedOllaHeaders
	}
	p.exposed = strings.Join(exposed, ", ")
	maxAge := 5 * time.Minute
	if c.MaxAge > 0 {
		maxAge = time.Duration(c.MaxAge)
	}
	p.maxAge = strconv.Itoa(int(maxAge / time.Second))
	return p
}

// apply sets the CORS headers for r. It reports true when it answered a
// preflight itself, so preflights never reach a rate limit or a backend.
func (p *corsPolicy) apply(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if !p.anyOrigin && !p.origins[origin] {
		return false // not allowed: no CORS headers, the browser refuses
	}
	if p.anyOrigin {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", p.methods)
		allowHeaders := p.headers
		if p.anyHeader {
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				allowHeaders = req
			}
		}
		h.Set("Access-Control-Allow-Headers", allowHeaders)
		h.Set("Access-Control-Max-Age", p.maxAge)
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	h.Set("Access-Control-Expose-Headers", p.exposed)
	return false
}
