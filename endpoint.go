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
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/profiles"
)

// resolve builds an Endpoint's settings from a config Validate accepts. repl
// resolves placeholders; a placeholder that resolves to nothing, or to a
// value Validate would refuse, is an error here, the first moment its value
// is known.
func (e *Endpoint) resolve(repl *caddy.Replacer, log *zap.Logger) (*fleet.Settings, error) {
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

	s := &fleet.Settings{Name: e.Name, Priority: fleet.DefaultPriority, CheckInterval: fleet.DefaultCheckInterval,
		CheckTimeout: fleet.DefaultCheckTimeout, DiscoveryInterval: fleet.DefaultDiscoveryInterval, DiscoveryTimeout: fleet.DefaultDiscoveryTimeout}
	p, ok := profiles.Lookup(e.Type)
	if isAutoType(e.Type) {
		// typed by probing (fleet/autotype.go); until then, the fallback
		p, ok, s.Retype = autoFallback, true, e.retype
	}
	if !ok {
		return nil, errf("unknown type %q", e.Type) // Validate refuses it first
	}
	s.Profile, s.Type = p, p.Name

	raw, err := expand("url", e.URL)
	if err != nil {
		return nil, errf("%v", err)
	}
	u, err := parseEndpointURL(raw)
	if err != nil {
		return nil, errf("%v", err)
	}
	s.URL = u
	s.DisplayURL = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()

	if e.Priority != nil {
		s.Priority = *e.Priority
	}
	if e.CheckInterval != 0 {
		s.CheckInterval = time.Duration(e.CheckInterval)
	}
	if e.CheckTimeout != 0 {
		s.CheckTimeout = time.Duration(e.CheckTimeout)
	}
	if s.CheckTimeout >= s.CheckInterval {
		if e.CheckTimeout == 0 {
			s.CheckTimeout = s.CheckInterval / 2 // only the interval was set, and it is short
		} else {
			// The standalone Olla accepts it too; a probe simply may not
			// outlast the interval.
			log.Warn("check_timeout is not shorter than check_interval; clamped to the interval",
				zap.String("endpoint", e.Name), zap.Duration("check_timeout", s.CheckTimeout), zap.Duration("check_interval", s.CheckInterval))
			s.CheckTimeout = s.CheckInterval
		}
	}
	s.UnhealthyAfter = discovery.DefaultUnhealthyAfter
	if e.UnhealthyAfter > 0 {
		s.UnhealthyAfter = e.UnhealthyAfter
	}
	if s.HealthURL, err = endpointSubURL(u, e.HealthCheckURL, p.HealthPath); err != nil {
		return nil, errf("health_check_url: %v", err)
	}
	if s.ModelsURL, err = endpointSubURL(u, e.ModelURL, p.ModelsPath); err != nil {
		return nil, errf("model_url: %v", err)
	}

	s.Header = make(http.Header)
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
		s.Header.Set(k, v)
	}
	if e.Auth != nil {
		name, value, err := e.Auth.header(expand)
		if err != nil {
			return nil, errf("auth: %v", err)
		}
		s.Header.Set(name, value)
	}
	if e.ModelFilter != nil {
		s.Filter = profiles.ModelFilter{Include: e.ModelFilter.Include, Exclude: e.ModelFilter.Exclude}
	}
	if !e.NoLoadPolling {
		if err := s.PollLoad(time.Duration(e.LoadInterval)); err != nil {
			return nil, errf("%v", err)
		}
	}
	s.ForwardAuth = e.ForwardClientAuth
	s.MaxConns = e.MaxConnections
	s.MaxConcurrency = e.MaxConcurrency

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
		s.TLSConfig = tc
		s.TransportKey = fmt.Sprintf("tls ca=%s insecure=%t", e.TLS.CA, e.TLS.InsecureSkipVerify)
	}
	s.TransportKey += fmt.Sprintf(" max_conns=%d", s.MaxConns)
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
