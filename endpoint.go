package olla

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/profiles"
)

// Endpoint defaults.
const (
	defaultPriority      = 100
	defaultCheckInterval = 5 * time.Second
	defaultCheckTimeout  = 2 * time.Second
)

// endpointSettings is an Endpoint with placeholders resolved and defaults
// filled: what the running proxy uses. It is immutable once built; a reload
// swaps in a new one.
type endpointSettings struct {
	name          string
	typ           string
	profile       *profiles.Profile
	url           *url.URL
	displayURL    string // scheme://host/path, no userinfo, query or fragment
	healthURL     string
	modelsURL     string
	priority      int
	checkInterval time.Duration
	checkTimeout  time.Duration
	header        http.Header // configured headers, then auth (auth wins)
	filter        profiles.ModelFilter
	forwardAuth   bool
	transportKey  string // settings that need a new transport when changed
	tlsConfig     *tls.Config
	maxConns      int
	// maxResponseHeader bounds a backend's response header block
	// (request_limits max_response_header_size; part of transportKey)
	maxResponseHeader int64
	// maxConcurrency caps requests in flight (0 = no cap)
	maxConcurrency int

	// unhealthyAfter is how many transient probe failures in a row take
	// the endpoint out (discovery.Judge).
	unhealthyAfter int
	// load signals: the surfaces to poll in order of preference, every
	// loadInterval (0: off), each request bounded by loadTimeout
	loadSurfaces []loadSurface
	loadInterval time.Duration
	loadTimeout  time.Duration
	// slotCap makes the backend's slot count (llama.cpp /slots) the
	// concurrency cap when max_concurrency is unset (load_balancer adaptive)
	slotCap bool

	discoveryInterval time.Duration
	discoveryTimeout  time.Duration
	breaker           discovery.BreakerConfig

	// auto is the declaration of an endpoint with `type auto` (nil for the
	// others): its paths are resolved again once probing decides the type
	auto *Endpoint
}

// identity is what makes two declarations the same endpoint: the type as
// declared, so an endpoint typed by probing stays one endpoint.
func (s *endpointSettings) identity() string {
	typ := s.typ
	if s.auto != nil {
		typ = autoTypeName
	}
	return s.name + "\x00" + s.url.String() + "\x00" + typ
}

// resolve builds an Endpoint's settings from a config Validate accepts. repl
// resolves placeholders; a placeholder that resolves to nothing, or to a
// value Validate would refuse, is an error here, the first moment its value
// is known.
func (e *Endpoint) resolve(repl *caddy.Replacer, log *zap.Logger) (*endpointSettings, error) {
	errf := func(format string, args ...any) error {
		return fmt.Errorf("endpoint %q: "+format, append([]any{e.Name}, args...)...)
	}
	expand := func(field, v string) (string, error) {
		out, err := repl.ReplaceOrErr(v, true, true)
		if err != nil {
			return "", fmt.Errorf("%s: %v (is the environment variable set?)", field, err)
		}
		return out, nil
	}

	s := &endpointSettings{name: e.Name, priority: defaultPriority, checkInterval: defaultCheckInterval,
		checkTimeout: defaultCheckTimeout, discoveryInterval: defaultDiscoveryInterval, discoveryTimeout: defaultDiscoveryTimeout}
	p, ok := profiles.Lookup(e.Type)
	if isAutoType(e.Type) {
		// typed by probing (autotype.go); until then, the fallback
		p, ok, s.auto = autoFallback, true, e
	}
	if !ok {
		return nil, errf("unknown type %q", e.Type) // Validate refuses it first
	}
	s.profile, s.typ = p, p.Name

	raw, err := expand("url", e.URL)
	if err != nil {
		return nil, errf("%v", err)
	}
	u, err := parseEndpointURL(raw)
	if err != nil {
		return nil, errf("%v", err)
	}
	s.url = u
	s.displayURL = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()

	if e.Priority != nil {
		s.priority = *e.Priority
	}
	if e.CheckInterval != 0 {
		s.checkInterval = time.Duration(e.CheckInterval)
	}
	if e.CheckTimeout != 0 {
		s.checkTimeout = time.Duration(e.CheckTimeout)
	}
	if s.checkTimeout >= s.checkInterval {
		if e.CheckTimeout == 0 {
			s.checkTimeout = s.checkInterval / 2 // only the interval was set, and it is short
		} else {
			// The standalone Olla accepts it too; a probe simply may not
			// outlast the interval.
			log.Warn("check_timeout is not shorter than check_interval; clamped to the interval",
				zap.String("endpoint", e.Name), zap.Duration("check_timeout", s.checkTimeout), zap.Duration("check_interval", s.checkInterval))
			s.checkTimeout = s.checkInterval
		}
	}
	s.unhealthyAfter = discovery.DefaultUnhealthyAfter
	if e.UnhealthyAfter > 0 {
		s.unhealthyAfter = e.UnhealthyAfter
	}
	if s.healthURL, err = endpointSubURL(u, e.HealthCheckURL, p.HealthPath); err != nil {
		return nil, errf("health_check_url: %v", err)
	}
	if s.modelsURL, err = endpointSubURL(u, e.ModelURL, p.ModelsPath); err != nil {
		return nil, errf("model_url: %v", err)
	}

	s.header = make(http.Header)
	names := make([]string, 0, len(e.Headers))
	for k := range e.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v, err := expand("header "+k, e.Headers[k])
		if err != nil {
			return nil, errf("%v", err)
		}
		s.header.Set(k, v)
	}
	if e.Auth != nil {
		name, value, err := e.Auth.header(expand)
		if err != nil {
			return nil, errf("auth: %v", err)
		}
		s.header.Set(name, value)
	}
	if e.ModelFilter != nil {
		s.filter = profiles.ModelFilter{Include: e.ModelFilter.Include, Exclude: e.ModelFilter.Exclude}
	}
	if err := s.resolveLoad(e); err != nil {
		return nil, errf("%v", err)
	}
	s.forwardAuth = e.ForwardClientAuth
	s.maxConns = e.MaxConnections
	s.maxConcurrency = e.MaxConcurrency

	if e.TLS != nil {
		if u.Scheme != "https" { // a URL with a placeholder is only known now
			return nil, errf("tls is set but the URL is not https")
		}
		tc := &tls.Config{InsecureSkipVerify: e.TLS.InsecureSkipVerify} //nolint:gosec // the user asked for it
		if e.TLS.CA != "" {
			pem, err := os.ReadFile(e.TLS.CA)
			if err != nil {
				return nil, errf("tls ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, errf("tls ca %s: no PEM certificates found", e.TLS.CA)
			}
			tc.RootCAs = pool
		}
		s.tlsConfig = tc
		s.transportKey = fmt.Sprintf("tls ca=%s insecure=%t", e.TLS.CA, e.TLS.InsecureSkipVerify)
	}
	s.transportKey += fmt.Sprintf(" max_conns=%d", s.maxConns)
	return s, nil
}

// header turns the auth block into the one header it sends.
func (a *EndpointAuth) header(expand func(field, v string) (string, error)) (string, string, error) {
	switch a.Type {
	case "bearer":
		tok, err := expand("auth bearer", a.Token)
		if err != nil {
			return "", "", err
		}
		if tok == "" {
			return "", "", fmt.Errorf("bearer token is empty")
		}
		return "Authorization", "Bearer " + tok, nil
	case "header":
		if a.Header == "" {
			return "", "", fmt.Errorf("header auth needs a header name")
		}
		v, err := expand("auth header", a.Value)
		if err != nil {
			return "", "", err
		}
		if v == "" {
			return "", "", fmt.Errorf("header %s value is empty", a.Header)
		}
		return a.Header, v, nil
	case "basic":
		user, err := expand("auth basic user", a.Username)
		if err != nil {
			return "", "", err
		}
		pass, err := expand("auth basic password", a.Password)
		if err != nil {
			return "", "", err
		}
		if user == "" {
			return "", "", fmt.Errorf("basic auth user is empty")
		}
		return "Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)), nil
	}
	return "", "", fmt.Errorf("unknown auth type %q: expected bearer, header or basic", a.Type)
}

// parseEndpointURL accepts http and https URLs with a host, an optional base
// path, and no userinfo, query or fragment. Errors never carry a password:
// any '@' is taken for credentials and refused before parsing (a password
// may hold '/' or a bad escape, which would make the parser's own error
// quote it), and the URL is shown through redactURL.
func parseEndpointURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("url is required")
	}
	if strings.Contains(stripQuery(raw), "@") {
		return nil, fmt.Errorf("url %q: credentials in the URL are not allowed; use `auth basic <user> <pass>` instead", redactURL(raw))
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the whole URL
		}
		return nil, fmt.Errorf("url %q: %v", redactURL(raw), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url %q: scheme must be http or https", redactURL(raw))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("url %q: no host", redactURL(raw))
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, fmt.Errorf("url %q: a query or fragment is not allowed", redactURL(raw))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("url %q: port %s is not a port: expected 1 to 65535", redactURL(raw), p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, fmt.Errorf("url %q: an empty port after ':'", redactURL(raw))
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// stripQuery cuts a raw URL at its query or fragment.
func stripQuery(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		return raw[:i]
	}
	return raw
}

// redactURL hides userinfo and the query, so an error message never carries
// a password or a key: everything between the scheme (or the start) and the
// last '@' goes, however the password is written.
func redactURL(raw string) string {
	rest, redacted := stripQuery(raw), ""
	if len(rest) < len(raw) {
		redacted = "?REDACTED"
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		from := 0
		if i := strings.Index(rest[:at], "://"); i >= 0 {
			from = i + 3
		}
		rest = rest[:from] + "REDACTED" + rest[at:]
	}
	return rest + redacted
}

// endpointSubURL resolves a health or model path: an absolute URL is used
// as is, a path is joined to the endpoint's base URL, empty takes the
// profile's default.
func endpointSubURL(base *url.URL, override, def string) (string, error) {
	p := override
	if p == "" {
		p = def
	}
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		u, err := parseEndpointURL(p)
		if err != nil {
			return "", err
		}
		return u.String(), nil
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q must be a path starting with / or an absolute URL", p)
	}
	u := *base
	u.Path = strings.TrimSuffix(base.Path, "/") + p
	return u.String(), nil
}
