package olla

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/profiles"
)

// Limits Validate enforces.
const (
	minCheckInterval     = 100 * time.Millisecond
	minDiscoveryInterval = time.Second
	maxConfigSize        = 1 << 40 // request_limits sizes: 1 TiB
)

// The values the enumerated settings take ("" takes the default).
var (
	engineNames   = []string{"sherpa", "olla"}
	profileNames  = []string{"auto", "streaming", "standard"}
	internalNames = []string{"on", "off"}
)

// Validate checks the whole configuration (caddy.Validator). Every semantic
// rule lives here, so a JSON config gets the same checks as a Caddyfile
// (whose parser only checks syntax and, for a line number, single values
// with the same helpers). It reads only the config, not the environment:
// values with placeholders are checked once Provision resolves them.
// Provision calls it first, since Caddy validates after provisioning and
// nothing should be built from a config that is refused.
func (h *Handler) Validate() error {
	for _, c := range []struct {
		name, value string
		allowed     []string
	}{
		{"engine", h.Engine, engineNames},
		{"profile", h.Profile, profileNames},
		{"internal", h.Internal, internalNames},
		{"dashboard", h.Dashboard, internalNames},
	} {
		if err := checkEnum(c.name, c.value, c.allowed...); err != nil {
			return err
		}
	}
	if err := h.PrefixAffinity.validate(); err != nil {
		return err
	}
	if h.LoadBalancer != "" || len(h.LoadBalancerWeights) > 0 {
		if _, err := balancer.NewPipeline(h.balancerConfig()); err != nil {
			return err
		}
	}
	if err := h.StickySessions.validate(); err != nil {
		return err
	}
	if err := checkDurations(map[string]caddy.Duration{
		"stream_idle_timeout":     h.StreamIdleTimeout,
		"response_header_timeout": h.ResponseHeaderTimeout,
	}); err != nil {
		return err
	}
	if _, err := parseInternalClients(h.InternalClients); err != nil {
		return err
	}
	if h.ClientIPv6Prefix < 0 || h.ClientIPv6Prefix > 128 {
		return fmt.Errorf("client_ipv6_prefix must be between 1 and 128 (0 for the default %d), got %d", defaultIPv6ClientPrefix, h.ClientIPv6Prefix)
	}
	if h.Retry != nil && h.Retry.MaxAttempts < 0 {
		return fmt.Errorf("retry max_attempts must be 1 or more, got %d", h.Retry.MaxAttempts)
	}
	if err := h.RequestLimits.validate(); err != nil {
		return err
	}
	if err := h.RateLimits.validate(); err != nil {
		return err
	}
	if err := h.KeyLimits.validate(); err != nil {
		return err
	}
	if err := h.CORS.validate(); err != nil {
		return err
	}
	if err := h.Queue.validate(); err != nil {
		return err
	}
	if err := h.CircuitBreaker.validate(); err != nil {
		return err
	}
	if err := h.ModelRegistry.validate(); err != nil {
		return err
	}
	if err := h.ModelDiscovery.validate(); err != nil {
		return err
	}
	if err := validateAliases(h.Aliases); err != nil {
		return err
	}
	if err := validateFallbacks(h.Fallbacks, h.Aliases); err != nil {
		return err
	}
	if len(h.Endpoints) == 0 {
		return fmt.Errorf("no endpoints: declare at least one `endpoint NAME { url ... type ... }`")
	}
	seen := make(map[string]bool, len(h.Endpoints))
	for i, ep := range h.Endpoints {
		if ep == nil {
			return fmt.Errorf("endpoints[%d] is null", i)
		}
		if err := ep.validate(); err != nil {
			return err
		}
		if seen[ep.Name] {
			return fmt.Errorf("endpoint %q is declared twice in one olla block", ep.Name)
		}
		seen[ep.Name] = true
	}
	return h.validatePreload()
}

// checkEnum accepts "" (the default) or one of allowed.
func checkEnum(name, v string, allowed ...string) error {
	if v == "" {
		return nil
	}
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("unknown %s %q: expected %s", name, v, orList(allowed))
}

// orList writes a, b or c.
func orList(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// checkDurations refuses negative durations; 0 takes the default.
func checkDurations(ds map[string]caddy.Duration) error {
	names := make([]string, 0, len(ds))
	for n := range ds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if ds[n] < 0 {
			return fmt.Errorf("%s %s is negative", n, time.Duration(ds[n]))
		}
	}
	return nil
}

func checkCounts(block string, cs map[string]int) error {
	names := make([]string, 0, len(cs))
	for n := range cs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if cs[n] < 0 {
			return fmt.Errorf("%s %s must be 0 or more, got %d", block, n, cs[n])
		}
	}
	return nil
}

func (rl *RequestLimits) validate() error {
	if rl == nil {
		return nil
	}
	for _, s := range []struct {
		name string
		v    int64
	}{{"max_body_size", rl.MaxBodySize}, {"max_header_size", rl.MaxHeaderSize}, {"max_buffered_bytes", rl.MaxBufferedBytes}, {"max_response_header_size", rl.MaxResponseHeaderSize}} {
		if err := checkSize(s.name, s.v); err != nil {
			return fmt.Errorf("request_limits %w", err)
		}
	}
	if err := checkDurations(map[string]caddy.Duration{"request_limits body_read_timeout": rl.BodyReadTimeout}); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"max_messages", rl.MaxMessages}, {"max_content_blocks", rl.MaxContentBlocks}, {"max_tools", rl.MaxTools}, {"max_nesting", rl.MaxNesting}} {
		if c.v < 0 || c.v > 10_000_000 {
			return fmt.Errorf("request_limits %s must be between 1 and 10000000 (0 for the default), got %d", c.name, c.v)
		}
	}
	if rl.MaxNesting > 10_000 {
		return fmt.Errorf("request_limits max_nesting must be at most 10000, got %d", rl.MaxNesting)
	}
	if rl.MinBodyRate != 0 && rl.MinBodyRate < 1024 {
		return fmt.Errorf("request_limits min_body_rate %d is below 1KiB per second", rl.MinBodyRate)
	}
	return nil
}

// checkSize accepts 0 (the default) up to 1 TiB.
func checkSize(name string, v int64) error {
	if v < 0 {
		return fmt.Errorf("%s %d is negative", name, v)
	}
	if v > maxConfigSize {
		return fmt.Errorf("%s %d is more than the 1TiB this option allows", name, v)
	}
	return nil
}

func (rl *RateLimits) validate() error {
	if rl == nil {
		return nil
	}
	if err := checkCounts("rate_limits", map[string]int{
		"global_requests_per_minute": rl.GlobalRequestsPerMinute, "per_ip_requests_per_minute": rl.PerIPRequestsPerMinute,
		"health_requests_per_minute": rl.HealthRequestsPerMinute, "per_endpoint_requests_per_minute": rl.PerEndpointRequestsPerMinute,
		"burst_size": rl.BurstSize, "health_burst_size": rl.HealthBurstSize,
	}); err != nil {
		return err
	}
	if rl.IdleTimeout < 0 {
		return fmt.Errorf("rate_limits idle_timeout %s is negative", time.Duration(rl.IdleTimeout))
	}
	return nil
}

func (c *CORS) validate() error {
	if c == nil {
		return nil
	}
	if len(c.AllowedOrigins) == 0 {
		return fmt.Errorf(`cors needs allowed_origins (use "*" to allow every origin)`)
	}
	if c.MaxAge < 0 {
		return fmt.Errorf("cors max_age must not be negative")
	}
	for _, o := range c.AllowedOrigins {
		if o == "*" && c.AllowCredentials {
			return fmt.Errorf(`cors allow_credentials cannot be used with origin "*": list the origins`)
		}
		if strings.TrimSpace(o) == "" {
			return fmt.Errorf("cors allowed_origins has an empty origin")
		}
	}
	return nil
}

func (cb *CircuitBreaker) validate() error {
	if cb == nil {
		return nil
	}
	if cb.Failures < 0 {
		return fmt.Errorf("circuit_breaker failures must be 1 or more, got %d", cb.Failures)
	}
	if cb.OpenFor < 0 {
		return fmt.Errorf("circuit_breaker open_for %s is negative", time.Duration(cb.OpenFor))
	}
	return nil
}

func (mr *ModelRegistry) validate() error {
	if mr == nil {
		return nil
	}
	if err := checkEnum("routing_strategy", mr.RoutingStrategy, strategyStrict, strategyOptimistic, strategyDiscovery); err != nil {
		return err
	}
	if err := checkEnum("fallback_behavior", mr.FallbackBehavior, fallbackCompatible, fallbackAll, fallbackNone); err != nil {
		return err
	}
	if mr.DiscoveryTimeout < 0 {
		return fmt.Errorf("model_registry discovery_timeout %s is negative", time.Duration(mr.DiscoveryTimeout))
	}
	return nil
}

func (md *ModelDiscovery) validate() error {
	if md == nil {
		return nil
	}
	interval, timeout := time.Duration(md.Interval), time.Duration(md.Timeout)
	switch {
	case interval < 0 || timeout < 0:
		return fmt.Errorf("model_discovery interval and timeout must not be negative")
	case interval != 0 && interval < minDiscoveryInterval:
		return fmt.Errorf("model_discovery interval %s is too short: at least %s", interval, minDiscoveryInterval)
	case interval != 0 && timeout > interval:
		return fmt.Errorf("model_discovery timeout %s must not be longer than its interval %s", timeout, interval)
	}
	return nil
}

// validateAliases: every alias has a clean name and at least one target,
// each named once.
func validateAliases(aliases map[string][]string) error {
	names := make([]string, 0, len(aliases))
	for n := range aliases {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		targets := aliases[name]
		if strings.TrimSpace(name) == "" || strings.TrimSpace(name) != name {
			return fmt.Errorf("alias %q: the name must be non-empty with no surrounding spaces", name)
		}
		if len(targets) == 0 {
			return fmt.Errorf("alias %q: give at least one target model", name)
		}
		seen := make(map[string]bool, len(targets))
		for _, t := range targets {
			if strings.TrimSpace(t) == "" {
				return fmt.Errorf("alias %q: empty target model", name)
			}
			if seen[t] {
				return fmt.Errorf("alias %q: target %q is listed twice", name, t)
			}
			seen[t] = true
		}
	}
	return nil
}

// validate checks one endpoint's settings on their own. A value with a
// placeholder is checked by resolve, once the placeholder has a value.
func (e *Endpoint) validate() error {
	if e.Name == "" {
		return fmt.Errorf("endpoint without a name")
	}
	errf := func(format string, args ...any) error {
		return fmt.Errorf("endpoint %q: "+format, append([]any{e.Name}, args...)...)
	}
	if e.URL == "" {
		return errf("url is required")
	}
	if err := checkType(e.Type); err != nil {
		return errf("%v", err)
	}
	var static *url.URL
	if !hasPlaceholder(e.URL) {
		u, err := parseEndpointURL(e.URL)
		if err != nil {
			return errf("%v", err)
		}
		static = u
	}
	if e.Priority != nil && *e.Priority < 0 {
		return errf("priority must be 0 or more, got %d", *e.Priority)
	}
	if e.CheckInterval < 0 || e.CheckTimeout < 0 {
		return errf("check_interval and check_timeout must not be negative")
	}
	if e.CheckInterval != 0 && time.Duration(e.CheckInterval) < minCheckInterval {
		return errf("check_interval %s is too short (at least %s)", time.Duration(e.CheckInterval), minCheckInterval)
	}
	for _, sub := range []struct{ name, v string }{{"model_url", e.ModelURL}, {"health_check_url", e.HealthCheckURL}} {
		if err := checkSubURL(sub.v); err != nil {
			return errf("%s %v", sub.name, err)
		}
	}
	if e.LoadInterval < 0 || e.LoadInterval != 0 && time.Duration(e.LoadInterval) < fleet.MinLoadInterval {
		return errf("load_interval %s is too short (at least %s; `load_interval off` turns polling off)", time.Duration(e.LoadInterval), fleet.MinLoadInterval)
	}
	if e.MaxConcurrency < 0 || e.MaxConcurrency > maxEndpointConcurrency {
		return errf("max_concurrency must be between 0 (no cap) and %d, got %d", maxEndpointConcurrency, e.MaxConcurrency)
	}
	if e.MaxConnections < 0 {
		return errf("max_connections must be 0 (no cap) or more")
	}
	if e.UnhealthyAfter < 0 {
		return errf("unhealthy_after must be 1 or more (0 takes the default, 3), got %d", e.UnhealthyAfter)
	}
	if err := e.Auth.validate(); err != nil {
		return errf("auth: %v", err)
	}
	if err := checkHeaderNames(e.Headers); err != nil {
		return errf("%v", err)
	}
	if e.TLS != nil && static != nil && static.Scheme != "https" {
		return errf("tls is set but the URL is not https")
	}
	if f := e.ModelFilter; f != nil {
		for _, p := range append(append([]string{}, f.Include...), f.Exclude...) {
			if strings.TrimSpace(p) == "" {
				return errf("model_filter has an empty pattern")
			}
		}
	}
	return nil
}

// hasPlaceholder reports whether v holds a Caddy placeholder, resolved only
// at provision.
func hasPlaceholder(v string) bool { return strings.Contains(v, "{") }

// checkType names a known backend type.
func checkType(typ string) error {
	if typ == "" {
		return fmt.Errorf("type is required (one of %s)", strings.Join(profiles.Types(), ", "))
	}
	if _, ok := profiles.Lookup(typ); !ok && !isAutoType(typ) {
		return fmt.Errorf("unknown type %q: expected one of auto, %s", typ, strings.Join(profiles.Types(), ", "))
	}
	return nil
}

// checkSubURL checks a model_url or health_check_url: empty (the
// profile's), a path, or an absolute http(s) URL.
func checkSubURL(v string) error {
	switch {
	case v == "" || hasPlaceholder(v):
		return nil
	case strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://"):
		_, err := parseEndpointURL(v)
		return err
	case !strings.HasPrefix(v, "/"):
		return fmt.Errorf("%q must be a path starting with / or an absolute http(s) URL", v)
	}
	return nil
}

// checkHeaderNames: each name is an HTTP token, and no two differ only in
// case (they would be one header).
func checkHeaderNames(headers map[string]string) error {
	seen := make(map[string]string, len(headers))
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !isToken(k) {
			return fmt.Errorf("header %q is not a header name", k)
		}
		canon := http.CanonicalHeaderKey(k)
		if prev, dup := seen[canon]; dup {
			return fmt.Errorf("headers %s and %s are the same header", prev, k)
		}
		seen[canon] = k
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token, what a header name is.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validate checks the auth block's shape; values that are placeholders are
// checked again once resolved.
func (a *EndpointAuth) validate() error {
	if a == nil {
		return nil
	}
	fields := map[string]string{"token": a.Token, "header": a.Header, "value": a.Value, "username": a.Username, "password": a.Password}
	var need, allowed []string
	switch a.Type {
	case "bearer":
		need, allowed = []string{"token"}, []string{"token"}
	case "header":
		need, allowed = []string{"header", "value"}, []string{"header", "value"}
		if a.Header != "" && !isToken(a.Header) {
			return fmt.Errorf("header auth: %q is not a header name", a.Header)
		}
	case "basic":
		need, allowed = []string{"username"}, []string{"username", "password"}
	default:
		return fmt.Errorf("unknown auth type %q: expected bearer, header or basic", a.Type)
	}
	for _, f := range need {
		if fields[f] == "" {
			return fmt.Errorf("%s auth needs %s", a.Type, f)
		}
	}
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		if fields[f] != "" && !slices.Contains(allowed, f) {
			return fmt.Errorf("%s does not apply to %s auth (it takes %s)", f, a.Type, strings.Join(allowed, ", "))
		}
	}
	return nil
}
