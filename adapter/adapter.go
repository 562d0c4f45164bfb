// Package adapter is the `olla` Caddy config adapter: it reads the
// standalone Olla proxy's config.yaml and writes the equivalent Caddy JSON,
// so an Olla user can switch with
//
//	caddy run --config config.yaml --adapter olla
//
// The result is one server named "olla" listening on server.host:port with
// the http.handlers.olla handler, then a 404 for every other path (as the
// standalone proxy answers). Where the standalone proxy's default differs
// from the handler's, the adapter writes the standalone default out, so the
// adapted config behaves as the YAML did: load_balancer least-connections,
// rate limits on (global 1000/min, per IP 100/min, burst 50, health
// 1000/min), response_header_timeout 30s, read_timeout (our
// stream_idle_timeout) 10m, and failover over every endpoint.
//
// Secrets: ${VAR} in an endpoint's auth or headers becomes the placeholder
// {env.VAR}, read when Caddy loads the config, so the secret never appears
// in the JSON. ${VAR:-default} becomes {env.VAR} when VAR is set at adapt
// time, and otherwise the default written as it stands (with a warning),
// since Caddy placeholders have no default syntax. A *_file credential
// becomes {file.PATH}, read when Caddy loads the config.
//
// Keys the module cannot honour, and unknown keys, are warnings naming the
// key and its line; values that are wrong (a bad port, an unknown engine)
// are errors naming the key and its line.
package adapter

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"go.yaml.in/yaml/v3"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/profiles"
)

func init() {
	caddyconfig.RegisterAdapter("olla", Adapter{})
}

// The standalone proxy's defaults (its config reference), written out
// wherever ours differ or the key is ours to fill.
const (
	defaultHost              = "localhost"
	defaultPort              = 40114
	defaultAdmin             = "localhost:2019"
	defaultEngine            = "olla"
	defaultLoadBalancer      = balancer.LeastConnections
	defaultProfile           = "auto"
	defaultReadTimeout       = 30 * time.Second
	defaultReadHeaderTimeout = 10 * time.Second
	defaultHeaderTimeout     = 30 * time.Second // proxy.response_header_timeout, also what 0 means
	defaultStreamIdle        = 10 * time.Minute // proxy.read_timeout
	zeroStreamIdle           = 60 * time.Second // what read_timeout 0 falls back to
	defaultPriority          = 100
	defaultCheckInterval     = 5 * time.Second
	defaultCheckTimeout      = 2 * time.Second
	maxCheckTimeout          = 30 * time.Second
	minCheckInterval         = time.Second
	defaultDiscoveryInterval = 5 * time.Minute
	defaultDiscoveryTimeout  = 30 * time.Second
	defaultMaxBodySize       = 100 << 20
	defaultMaxHeaderSize     = 1 << 20
	minMaxHeaderBytes        = 4 << 10
	defaultGlobalRPM         = 1000
	defaultPerIPRPM          = 100
	defaultBurst             = 50
	defaultHealthRPM         = 1000
	rateLimiterIdle          = 10 * time.Minute // the standalone proxy drops a client's limiter after this
	defaultCORSMaxAge        = 300              // seconds
)

var (
	defaultTrustedCIDRs = []string{"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}
	defaultCORSMethods  = []string{"GET", "POST", "OPTIONS"}
	// envOverrides are the standalone proxy's environment overrides, which
	// it applies over the YAML and the adapter does not.
	envOverrides = []string{"OLLA_SERVER_", "OLLA_PROXY_", "OLLA_LOGGING_", "OLLA_MODEL_REGISTRY_TYPE",
		"OLLA_MODEL_UNIFIER_ENABLED", "OLLA_TRANSLATORS_", "OLLA_SHOW_NERD_STATS"}
)

// Adapter adapts a standalone Olla config.yaml to Caddy JSON. The zero
// value reads the process environment and the file system; tests set the
// functions to fix them.
type Adapter struct {
	// LookupEnv reports an environment variable (default os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Environ lists the environment (default os.Environ).
	Environ func() []string
	// Readable reports whether a *_file credential can be read now
	// (default: open and close it).
	Readable func(path string) error
}

// Adapt turns config.yaml into Caddy JSON. The option "filename" names the
// file in warnings and errors.
func (a Adapter) Adapt(body []byte, options map[string]any) ([]byte, []caddyconfig.Warning, error) {
	file := "config.yaml"
	if fn, ok := options["filename"].(string); ok && fn != "" {
		file = fn
	}
	c := &conv{file: file, env: a.LookupEnv, readable: a.Readable}
	if c.env == nil {
		c.env = os.LookupEnv
	}
	if c.readable == nil {
		c.readable = fileReadable
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(body, &doc); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := c.checkAliases(&doc); err != nil {
		return nil, nil, err
	}
	root := &field{c: c, line: 1}
	if len(doc.Content) > 0 {
		root.node = doc.Content[0]
	}
	cfg, err := c.convert(root)
	if err != nil {
		return nil, c.warnings, err
	}
	environ := a.Environ
	if environ == nil {
		environ = os.Environ
	}
	c.warnEnvOverrides(environ())
	sort.SliceStable(c.warnings, func(i, j int) bool { return c.warnings[i].Line < c.warnings[j].Line })
	out, err := json.Marshal(cfg)
	if err != nil {
		return nil, c.warnings, err
	}
	return out, c.warnings, nil
}

func fileReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

func (c *conv) warnEnvOverrides(environ []string) {
	var set []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		for _, p := range envOverrides {
			if strings.HasPrefix(name, p) {
				set = append(set, name)
				break
			}
		}
	}
	sort.Strings(set)
	for _, name := range set {
		c.warn(0, name, "is set: the standalone proxy applies it over the YAML, the adapter does not; write the value into %s", c.file)
	}
}

// convert builds the whole Caddy config.
func (c *conv) convert(root *field) (*caddyConfig, error) {
	top, err := root.mapping()
	if err != nil {
		return nil, err
	}
	srv := &server{AutomaticHTTPS: &autoHTTPS{Disable: true}}
	app := &httpApp{Servers: map[string]*server{"olla": srv}}
	h := &handler{Handler: "olla"}

	sections := []struct {
		key string
		fn  func(*mapping) error
	}{
		{"server", func(m *mapping) error { return c.server(m, srv, app, h) }},
		{"proxy", func(m *mapping) error { return c.proxy(m, h) }},
		{"discovery", func(m *mapping) error { return c.discovery(m, h) }},
		{"model_registry", func(m *mapping) error { return c.modelRegistry(m, h) }},
	}
	for _, s := range sections {
		m, err := top.child(s.key)
		if err != nil {
			return nil, err
		}
		if err := s.fn(m); err != nil {
			return nil, err
		}
		m.done()
	}
	if f := top.get("model_aliases"); f != nil {
		if h.Aliases, err = c.aliases(f); err != nil {
			return nil, err
		}
	}
	if f := top.get("translators"); f != nil && enabledUnlessOff(f, "anthropic", "enabled") {
		f.warn("the Anthropic Messages API (/olla/anthropic/) is not available in the Caddy module yet; ignored")
	}
	top.ignore("logging", "use Caddy's logging instead: the \"logging\" section of the JSON config (or the `log` directive in a Caddyfile); ignored")
	top.ignore("engineering", "debugging options of the standalone proxy; ignored")
	dash, err := top.child("dashboard")
	if err != nil {
		return nil, err
	}
	if err := c.dashboard(dash, srv, h); err != nil {
		return nil, err
	}
	top.done()

	// The standalone proxy tries every candidate endpoint before it gives up.
	h.Retry = &retry{MaxAttempts: max(1, len(h.Endpoints))}

	notFound := staticResponse{
		Handler:    "static_response",
		StatusCode: 404,
		Headers:    map[string][]string{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:       "404 page not found\n",
	}
	srv.Routes = []route{{Handle: []any{h, notFound}}}
	return &caddyConfig{Admin: &adminConfig{Listen: defaultAdmin}, Apps: apps{HTTP: *app}}, nil
}

// enabledUnlessOff reports whether an ignored section is on: true unless
// the key at path says false (the standalone proxy's features default on).
func enabledUnlessOff(f *field, path ...string) bool {
	n := resolve(f.node)
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return true
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = resolve(n.Content[i+1])
			}
		}
		if next == nil {
			return true
		}
		n = next
	}
	var on bool
	if n.Kind != yaml.ScalarNode || n.Decode(&on) != nil {
		return true
	}
	return on
}

// optDuration reads an optional duration key.
func optDuration(m *mapping, key string, def time.Duration) (time.Duration, bool, error) {
	f := m.get(key)
	if f == nil {
		return def, false, nil
	}
	d, err := f.duration()
	return d, true, err
}

func optInt(m *mapping, key string, def int) (int, error) {
	f := m.get(key)
	if f == nil {
		return def, nil
	}
	n, err := f.integer()
	if err == nil && n < 0 {
		err = f.errorf("%d is negative", n)
	}
	return n, err
}

func optBool(m *mapping, key string, def bool) (bool, error) {
	f := m.get(key)
	if f == nil {
		return def, nil
	}
	return f.boolean()
}

func optString(m *mapping, key, def string) (string, *field, error) {
	f := m.get(key)
	if f == nil {
		return def, nil, nil
	}
	s, err := f.str()
	return strings.TrimSpace(s), f, err
}

func oneOf(f *field, v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return f.errorf("unknown value %q: expected %s", v, strings.Join(allowed, ", "))
}

// dashboard maps the dashboard section: enabled: false is `dashboard off`.
// The standalone proxy gates only its page by
// dashboard.access_policy.allowed_cidrs (loopback by default) and serves
// the status JSON to everyone; the module answers the page, the status JSON
// and /version alike to internal_clients only (loopback by default), so the
// allowed CIDRs become internal_clients.
func (c *conv) dashboard(m *mapping, srv *server, h *handler) error {
	if f := m.get("enabled"); f != nil {
		on, err := f.boolean()
		if err != nil {
			return err
		}
		if !on {
			h.Dashboard = "off"
		}
	}
	policy, err := m.child("access_policy")
	if err != nil {
		return err
	}
	if f := policy.get("allowed_cidrs"); f != nil {
		cidrs, err := f.strings()
		if err != nil {
			return err
		}
		for _, v := range cidrs {
			if _, perr := netip.ParsePrefix(v); perr != nil {
				if _, aerr := netip.ParseAddr(v); aerr != nil {
					return f.errorf("%q is not a CIDR such as 10.0.0.0/8", v)
				}
			}
		}
		if len(cidrs) > 0 {
			h.InternalClients = cidrs
			f.warn("written as internal_clients: in the module these clients see the status JSON and /version too, not only the dashboard; the rest get 403")
		}
	}
	policy.ignore("allowed_hosts", "the module does not check the Host header for the dashboard; use a Caddy host matcher on the site instead; ignored")
	policy.done()
	m.ignore("gate_internal_api", "the module gates every /internal/ route (except /internal/health) by internal_clients anyway; ignored")
	m.done()
	if h.InternalClients == nil && len(srv.Listen) > 0 {
		if host, _, err := net.SplitHostPort(srv.Listen[0]); err == nil {
			if a, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !a.IsLoopback()) {
				c.warn(c.hostLine, "server.host", "the standalone proxy serves /internal/status* to every client; the module answers them (and the dashboard) only to loopback clients: list the addresses that may see them in dashboard.access_policy.allowed_cidrs (written as internal_clients)")
			}
		}
	}
	return nil
}

// server maps the server section onto the Caddy server and the handler's
// limits.
func (c *conv) server(m *mapping, srv *server, app *httpApp, h *handler) error {
	host, _, err := optString(m, "host", defaultHost)
	if err != nil {
		return err
	}
	c.hostLine = m.line("host")
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	port := defaultPort
	if f := m.get("port"); f != nil {
		if port, err = f.integer(); err != nil {
			return err
		}
		if port < 1 || port > 65535 {
			return f.errorf("%d is not a port: expected 1 to 65535", port)
		}
	}
	srv.Listen = []string{net.JoinHostPort(host, strconv.Itoa(port))}

	rt, _, err := optDuration(m, "read_timeout", defaultReadTimeout)
	if err != nil {
		return err
	}
	if rt > 0 {
		srv.ReadTimeout = fmtDuration(rt)
	}
	rht, _, err := optDuration(m, "read_header_timeout", defaultReadHeaderTimeout)
	if err != nil {
		return err
	}
	if rht == 0 {
		rht = defaultReadHeaderTimeout
	}
	srv.ReadHeaderTimeout = fmtDuration(rht)
	if wt, _, err := optDuration(m, "write_timeout", 0); err != nil {
		return err
	} else if wt > 0 {
		srv.WriteTimeout = fmtDuration(wt)
	}
	if it, _, err := optDuration(m, "idle_timeout", 0); err != nil {
		return err
	} else if it > 0 {
		srv.IdleTimeout = fmtDuration(it)
	}
	// Caddy's grace period also bounds config reloads, not only shutdown.
	if st, set, err := optDuration(m, "shutdown_timeout", 0); err != nil {
		return err
	} else if set && st > 0 {
		app.GracePeriod = fmtDuration(st)
	}
	m.ignore("request_logging", "has no effect in the standalone proxy either; for access logs use Caddy's logging (the server's \"logs\", or `log` in a Caddyfile)")

	rl, err := m.child("request_limits")
	if err != nil {
		return err
	}
	if err := c.requestLimits(rl, srv, h); err != nil {
		return err
	}
	rl.done()

	rate, err := m.child("rate_limits")
	if err != nil {
		return err
	}
	if err := c.rateLimits(rate, srv, h); err != nil {
		return err
	}
	rate.done()

	cm, err := m.child("cors")
	if err != nil {
		return err
	}
	if err := c.cors(cm, h); err != nil {
		return err
	}
	cm.done()
	return nil
}

func (c *conv) requestLimits(m *mapping, srv *server, h *handler) error {
	lim := &requestLimits{MaxBodySize: defaultMaxBodySize, MaxHeaderSize: defaultMaxHeaderSize}
	if f := m.get("max_body_size"); f != nil {
		n, err := f.size()
		if err != nil {
			return err
		}
		if n <= 0 {
			f.warn("%d turns the body limit off in the standalone proxy; the Caddy module always reads bodies under a cap, so the default %d bytes (100 MiB) is kept: give a larger size if needed", n, defaultMaxBodySize)
		} else {
			lim.MaxBodySize = n
		}
	}
	if f := m.get("max_header_size"); f != nil {
		n, err := f.size()
		if err != nil {
			return err
		}
		if n > 0 {
			lim.MaxHeaderSize = n
			// Go's own header cap must admit what the handler admits.
			srv.MaxHeaderBytes = max(n, minMaxHeaderBytes)
		}
	}
	h.RequestLimits = lim
	return nil
}

// rateLimits writes the standalone proxy's limits, which are on by
// default; ours are off unless given.
func (c *conv) rateLimits(m *mapping, srv *server, h *handler) error {
	global, err := optInt(m, "global_requests_per_minute", defaultGlobalRPM)
	if err != nil {
		return err
	}
	perIP, err := optInt(m, "per_ip_requests_per_minute", defaultPerIPRPM)
	if err != nil {
		return err
	}
	burst, err := optInt(m, "burst_size", defaultBurst)
	if err != nil {
		return err
	}
	health, err := optInt(m, "health_requests_per_minute", defaultHealthRPM)
	if err != nil {
		return err
	}
	m.ignore("cleanup_interval", "not needed: an idle client's limiter is dropped after idle_timeout (written as %s, the standalone proxy's idle limit)", fmtDuration(rateLimiterIdle))
	m.ignore("per_endpoint", "ignored by the standalone proxy as well; ignored")
	if _, _, err := optDuration(m, "cleanup_interval", 0); err != nil {
		return err
	}

	trust, err := optBool(m, "trust_proxy_headers", false)
	if err != nil {
		return err
	}
	ranges := defaultTrustedCIDRs
	if f := m.get("trusted_proxy_cidrs"); f != nil {
		list, err := f.strings()
		if err != nil {
			return err
		}
		for i, r := range list {
			r = strings.TrimSpace(r)
			list[i] = r
			if _, err := netip.ParsePrefix(r); err != nil {
				if _, err := netip.ParseAddr(r); err != nil {
					return f.errorf("%q is not an IP range (CIDR such as 10.0.0.0/8) or address", r)
				}
			}
		}
		ranges = list
	}
	if trust && len(ranges) > 0 {
		srv.TrustedProxies = &trustedProxies{Source: "static", Ranges: ranges}
		srv.ClientIPHeaders = []string{"X-Forwarded-For", "X-Real-IP"}
	}

	if perIP == 0 {
		// In the standalone proxy a per-IP limit of 0 turns all limiting off.
		return nil
	}
	rl := &rateLimits{GlobalRequestsPerMinute: global, PerIPRequestsPerMinute: perIP, HealthRequestsPerMinute: health,
		BurstSize: burst, IdleTimeout: fmtDuration(rateLimiterIdle)}
	if burst == 0 {
		f := m.get("burst_size")
		f.warn("0 makes the standalone proxy's token buckets refuse every request; left out, so the handler's default burst applies")
	}
	h.RateLimits = rl
	return nil
}

func (c *conv) cors(m *mapping, h *handler) error {
	enabled, err := optBool(m, "enabled", false)
	if err != nil {
		return err
	}
	out := &cors{AllowedOrigins: []string{"*"}, AllowedMethods: defaultCORSMethods, AllowedHeaders: []string{"*"}}
	lists := []struct {
		key string
		dst *[]string
	}{
		{"allowed_origins", &out.AllowedOrigins},
		{"allowed_methods", &out.AllowedMethods},
		{"allowed_headers", &out.AllowedHeaders},
		{"exposed_headers", &out.ExposedHeaders},
	}
	for _, l := range lists {
		f := m.get(l.key)
		if f == nil {
			continue
		}
		v, err := f.strings()
		if err != nil {
			return err
		}
		*l.dst = v
	}
	if out.AllowCredentials, err = optBool(m, "allow_credentials", false); err != nil {
		return err
	}
	maxAge := time.Duration(defaultCORSMaxAge) * time.Second
	if f := m.get("max_age"); f != nil {
		s, err := f.scalar("a number of seconds")
		if err != nil {
			return err
		}
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			maxAge = time.Duration(n) * time.Second
		} else if maxAge, err = parseDuration(s); err != nil {
			return f.errorf("%q is not a number of seconds", s)
		}
		if maxAge < 0 {
			return f.errorf("must not be negative")
		}
	}
	if !enabled {
		return nil
	}
	if len(out.AllowedOrigins) == 0 {
		return c.errorf(m.line("allowed_origins"), "server.cors.allowed_origins", "CORS is enabled with no origins: list them, or [\"*\"] for any")
	}
	if out.AllowCredentials {
		for _, o := range out.AllowedOrigins {
			if o == "*" {
				return c.errorf(m.line("allow_credentials"), "server.cors.allow_credentials", "credentials cannot be allowed for every origin (\"*\"): list the origins")
			}
		}
	}
	if maxAge > 0 {
		out.MaxAge = fmtDuration(maxAge)
	}
	h.CORS = out
	return nil
}

func (c *conv) proxy(m *mapping, h *handler) error {
	var err error
	var f *field
	if h.Engine, f, err = optString(m, "engine", defaultEngine); err != nil {
		return err
	} else if f != nil {
		if err := oneOf(f, h.Engine, "olla", "sherpa"); err != nil {
			return err
		}
	}
	if h.LoadBalancer, f, err = optString(m, "load_balancer", defaultLoadBalancer); err != nil {
		return err
	} else if f != nil {
		if err := oneOf(f, h.LoadBalancer, balancer.Names()...); err != nil {
			return err
		}
	}
	if h.Profile, f, err = optString(m, "profile", defaultProfile); err != nil {
		return err
	} else if f != nil {
		if err := oneOf(f, h.Profile, "auto", "streaming", "standard"); err != nil {
			return err
		}
		if h.Profile != "auto" {
			f.warn("the standalone proxy parses this but always streams as auto; Caddy applies %q", h.Profile)
		}
	}
	rht, _, err := optDuration(m, "response_header_timeout", defaultHeaderTimeout)
	if err != nil {
		return err
	}
	if rht == 0 {
		rht = defaultHeaderTimeout
	}
	h.ResponseHeaderTimeout = fmtDuration(rht)
	idle, _, err := optDuration(m, "read_timeout", defaultStreamIdle)
	if err != nil {
		return err
	}
	if idle == 0 {
		idle = zeroStreamIdle
	}
	h.StreamIdleTimeout = fmtDuration(idle)

	m.ignore("stream_buffer_size", "the engine sizes its own buffers (pooled 64 KiB for olla); ignored")
	for _, k := range []string{"connection_timeout", "connection_keep_alive", "tls_handshake_timeout"} {
		m.ignore(k, "not configurable in the Caddy module: the engine's transport sets its own dial, keep-alive and TLS handshake timeouts; ignored")
	}
	m.ignore("response_timeout", "not enforced by the standalone proxy either; a response is bounded by read_timeout between reads (stream_idle_timeout); ignored")
	m.ignore("max_retries", "deprecated and unused in the standalone proxy; failover is retry.max_attempts (written as the number of endpoints); ignored")
	m.ignore("retry_backoff", "deprecated and unused in the standalone proxy; ignored")
	m.ignore("retry", "ignored by the standalone proxy (failover is built in); failover is retry.max_attempts (written as the number of endpoints); ignored")
	m.ignore("profile_filter", "not wired in the standalone proxy; ignored")
	if sf := m.get("sticky_sessions"); sf != nil {
		sm, err := sf.mapping()
		if err != nil {
			return err
		}
		on, err := optBool(sm, "enabled", false)
		if err != nil {
			return err
		}
		if on {
			if h.StickySessions, err = stickySessionsOf(sm); err != nil {
				return err
			}
		} else {
			for _, k := range []string{"idle_ttl_seconds", "max_sessions", "key_sources", "prefix_hash_bytes"} {
				sm.ignore(k, "sticky sessions are off (enabled: false); ignored")
			}
		}
		sm.done()
	}
	return nil
}

// stickySessionsOf maps proxy.sticky_sessions (enabled) onto the handler's
// sticky_sessions block; the keys and defaults are the same.
func stickySessionsOf(sm *mapping) (*stickySessions, error) {
	out := &stickySessions{}
	ttl, err := optInt(sm, "idle_ttl_seconds", 600)
	if err != nil {
		return nil, err
	}
	if ttl == 0 {
		// the standalone keeps pins forever (only max_sessions bounds them)
		ttl = noStickyTTL
		sm.entries["idle_ttl_seconds"].warn("0 (no idle expiry) is written as %s; max_sessions still bounds the pins", fmtDuration(time.Duration(noStickyTTL)*time.Second))
	}
	out.IdleTTL = fmtDuration(time.Duration(ttl) * time.Second)
	if out.MaxSessions, err = optInt(sm, "max_sessions", 10_000); err != nil {
		return nil, err
	}
	if out.PrefixHashBytes, err = optInt(sm, "prefix_hash_bytes", 512); err != nil {
		return nil, err
	}
	if f := sm.get("key_sources"); f != nil {
		list, err := f.list()
		if err != nil {
			return nil, err
		}
		for _, item := range list {
			src, err := item.str()
			if err != nil {
				return nil, err
			}
			if err := oneOf(item, src, "session_header", "prefix_hash", "auth_header", "ip"); err != nil {
				return nil, err
			}
			out.KeySources = append(out.KeySources, src)
		}
	}
	return out, nil
}

// noStickyTTL (seconds) stands for the standalone's "no idle expiry": a year.
const noStickyTTL = 365 * 24 * 3600

func (c *conv) discovery(m *mapping, h *handler) error {
	if t, f, err := optString(m, "type", "static"); err != nil {
		return err
	} else if t != "static" {
		f.warn("only static discovery exists; the endpoints under discovery.static are used")
	}
	m.ignore("refresh_interval", "unused by the standalone proxy; each endpoint's check_interval sets how often it is probed; ignored")
	m.ignore("health_check", "ignored by the standalone proxy as well; use each endpoint's check_interval and check_timeout")

	static, err := m.child("static")
	if err != nil {
		return err
	}
	if h.Endpoints, err = c.endpoints(static); err != nil {
		return err
	}
	static.done()

	md, err := m.child("model_discovery")
	if err != nil {
		return err
	}
	if on, err := optBool(md, "enabled", true); err != nil {
		return err
	} else if !on {
		md.entries["enabled"].warn("model discovery cannot be turned off in the Caddy module: it is how requests are routed by model; ignored")
	}
	out := &modelDiscovery{}
	for _, d := range []struct {
		key string
		def time.Duration
		dst *string
	}{{"interval", defaultDiscoveryInterval, &out.Interval}, {"timeout", defaultDiscoveryTimeout, &out.Timeout}} {
		v, set, err := optDuration(md, d.key, d.def)
		if err != nil {
			return err
		}
		if set && v <= 0 {
			return md.entries[d.key].errorf("must be positive")
		}
		*d.dst = fmtDuration(v)
	}
	md.ignore("concurrent_workers", "each endpoint is discovered by its own watcher; ignored")
	md.ignore("retry_attempts", "unused by the standalone proxy; a failed discovery is retried on the next interval; ignored")
	md.ignore("retry_backoff", "unused by the standalone proxy; ignored")
	md.done()
	h.ModelDiscovery = out
	return nil
}

func (c *conv) modelRegistry(m *mapping, h *handler) error {
	if t, f, err := optString(m, "type", "memory"); err != nil {
		return err
	} else if t != "memory" {
		f.warn("only the memory registry exists; ignored")
	}
	if on, err := optBool(m, "enable_unifier", true); err != nil {
		return err
	} else if !on {
		m.entries["enable_unifier"].warn("the Caddy module always unifies models across endpoints; ignored")
	}
	m.ignore("unification", "the Caddy module's unification has no settings; ignored")

	out := &modelRegistry{RoutingStrategy: "strict", FallbackBehavior: "compatible_only"}
	rs, err := m.child("routing_strategy")
	if err != nil {
		return err
	}
	if t, f, err := optString(rs, "type", "strict"); err != nil {
		return err
	} else if f != nil {
		if err := oneOf(f, t, "strict", "optimistic", "discovery"); err != nil {
			return err
		}
		out.RoutingStrategy = t
	}
	opts, err := rs.child("options")
	if err != nil {
		return err
	}
	if fb, f, err := optString(opts, "fallback_behavior", "compatible_only"); err != nil {
		return err
	} else if f != nil {
		if err := oneOf(f, fb, "compatible_only", "none", "all"); err != nil {
			return err
		}
		out.FallbackBehavior = fb
	}
	if d, set, err := optDuration(opts, "discovery_timeout", 0); err != nil {
		return err
	} else if set && d > 0 {
		out.DiscoveryTimeout = fmtDuration(d)
	}
	if out.DiscoveryRefreshOnMiss, err = optBool(opts, "discovery_refresh_on_miss", false); err != nil {
		return err
	}
	opts.done()
	rs.done()
	h.ModelRegistry = out
	return nil
}

func (c *conv) aliases(f *field) (map[string][]string, error) {
	m, err := f.mapping()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(m.keys))
	for _, name := range m.keys {
		af := m.entries[name]
		m.used[name] = true
		if strings.TrimSpace(name) == "" || strings.TrimSpace(name) != name {
			return nil, af.errorf("an alias name must be non-empty with no surrounding spaces")
		}
		if isNull(af.node) {
			return nil, af.errorf("alias %q needs a list of at least one model", name)
		}
		targets, err := af.strings()
		if err != nil {
			return nil, err
		}
		if len(targets) == 0 {
			return nil, af.errorf("alias %q needs a list of at least one model", name)
		}
		seen := map[string]bool{}
		var kept []string
		for _, t := range targets {
			t = strings.TrimSpace(t)
			if t == "" {
				return nil, af.errorf("alias %q has an empty model name", name)
			}
			if seen[t] {
				af.warn("alias %q lists %q twice; the second is dropped", name, t)
				continue
			}
			seen[t] = true
			kept = append(kept, t)
		}
		out[name] = kept
	}
	return out, nil
}

// endpoints reads discovery.static.endpoints.
func (c *conv) endpoints(static *mapping) ([]*endpoint, error) {
	if _, present := static.entries["endpoints"]; !present {
		// The standalone proxy's built-in endpoint stays when the YAML has none.
		c.warn(static.f.line, "discovery.static.endpoints", "no endpoints are configured; the standalone proxy's built-in default is used: localhost, http://localhost:11434, type ollama")
		return []*endpoint{{Name: "localhost", URL: "http://localhost:11434", Type: "ollama", Priority: defaultPriority,
			CheckInterval: fmtDuration(defaultCheckInterval), CheckTimeout: fmtDuration(defaultCheckTimeout)}}, nil
	}
	f := static.get("endpoints")
	if f == nil {
		return nil, c.errorf(static.line("endpoints"), "discovery.static.endpoints", "no endpoints: list at least one (url, name, type)")
	}
	items, err := f.list()
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, f.errorf("no endpoints: list at least one (url, name, type)")
	}
	var out []*endpoint
	byURL := map[string]int{}
	byName := map[string]*field{}
	for _, it := range items {
		ep, rawURL, err := c.endpoint(it)
		if err != nil {
			return nil, err
		}
		// Two entries with the same URL are one endpoint: the last wins.
		if i, dup := byURL[rawURL]; dup {
			it.warn("has the same url as an earlier endpoint (%q); as in the standalone proxy, this later entry replaces it", out[i].Name)
			delete(byName, out[i].Name)
			out = append(out[:i], out[i+1:]...)
			for u, j := range byURL {
				if j > i {
					byURL[u] = j - 1
				}
			}
		}
		if prev, dup := byName[ep.Name]; dup {
			return nil, it.errorf("name %q is already used by %s (line %d): endpoint names must be unique", ep.Name, prev.path, prev.line)
		}
		byName[ep.Name] = it
		byURL[rawURL] = len(out)
		out = append(out, ep)
	}
	return out, nil
}

// endpoint reads one endpoint; it also returns the URL as written, which
// identifies the endpoint in the standalone proxy.
func (c *conv) endpoint(it *field) (*endpoint, string, error) {
	m, err := it.mapping()
	if err != nil {
		return nil, "", err
	}
	ep := &endpoint{Priority: defaultPriority}

	uf := m.get("url")
	if uf == nil {
		return nil, "", it.errorf("url is required")
	}
	raw, err := uf.str()
	if err != nil {
		return nil, "", err
	}
	raw = strings.TrimSpace(raw)
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		return nil, "", uf.errorf("url is required")
	case err != nil:
		return nil, "", uf.errorf("%q is not a URL", redactURL(raw))
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "", uf.errorf("%q: the scheme must be http or https", redactURL(raw))
	case u.Host == "":
		return nil, "", uf.errorf("%q has no host", redactURL(raw))
	case u.User != nil:
		return nil, "", uf.errorf("%q: credentials in the URL are not allowed; move them to auth: {type: basic, username: ..., password: ...}", redactURL(raw))
	case u.RawQuery != "" || u.Fragment != "":
		return nil, "", uf.errorf("%q: a query or fragment is not supported in an endpoint URL", redactURL(raw))
	}
	preserve, err := optBool(m, "preserve_path", false)
	if err != nil {
		return nil, "", err
	}
	basePath := strings.TrimSuffix(u.EscapedPath(), "/")
	keptPath := ""
	ep.URL = u.Scheme + "://" + u.Host
	if basePath != "" {
		if preserve {
			keptPath = basePath
			ep.URL += basePath
		} else {
			uf.warn("the base path %s is replaced by the API path in the standalone proxy (preserve_path is false), while the Caddy module joins a base path in front of it; the URL is written as %s so requests go where they went. Set preserve_path: true if the backend serves its API under %s", basePath, ep.URL, basePath)
		}
	}
	ep.URL = escapeBraces(ep.URL)

	name, nf, err := optString(m, "name", "")
	if err != nil {
		return nil, "", err
	}
	if name == "" {
		name = u.Host
		line := it.line
		if nf != nil {
			line = nf.line
		}
		c.warn(line, it.path+".name", "no name given; named %q after its host", name)
	}
	ep.Name = name

	tf := m.get("type")
	typ := ""
	if tf != nil {
		if typ, err = tf.str(); err != nil {
			return nil, "", err
		}
		typ = strings.TrimSpace(typ)
	}
	switch lt := strings.ToLower(typ); {
	case lt == "" || lt == "auto":
		ep.Type = "auto" // the module probes for it, as the standalone does
	default:
		p, ok := profiles.Lookup(typ)
		if !ok {
			return nil, "", tf.errorf("unknown type %q: expected one of %s", typ, strings.Join(profiles.Types(), ", "))
		}
		ep.Type = p.Name
	}

	if f := m.get("priority"); f != nil {
		if ep.Priority, err = f.integer(); err != nil {
			return nil, "", err
		}
		if ep.Priority < 0 {
			return nil, "", f.errorf("must be 0 or more, got %d", ep.Priority)
		}
	}
	interval, _, err := optDuration(m, "check_interval", defaultCheckInterval)
	if err != nil {
		return nil, "", err
	}
	if interval < minCheckInterval {
		return nil, "", c.errorf(m.line("check_interval"), it.path+".check_interval", "%s is too short: at least 1s", interval)
	}
	timeout, _, err := optDuration(m, "check_timeout", defaultCheckTimeout)
	if err != nil {
		return nil, "", err
	}
	if timeout <= 0 || timeout > maxCheckTimeout {
		return nil, "", c.errorf(m.line("check_timeout"), it.path+".check_timeout", "%s must be above 0 and at most 30s", timeout)
	}
	if timeout >= interval {
		c.warn(m.line("check_timeout"), it.path+".check_timeout", "%s is not below check_interval (%s): the handler clamps it to the interval", timeout, interval)
	}
	ep.CheckInterval, ep.CheckTimeout = fmtDuration(interval), fmtDuration(timeout)

	sub := func(key string) (string, error) {
		f := m.get(key)
		if f == nil {
			return "", nil
		}
		v, err := f.str()
		if err != nil {
			return "", err
		}
		v = strings.TrimSpace(v)
		if v == "" {
			return "", nil
		}
		ref, err := url.Parse(v)
		if err != nil || ref.RawQuery != "" || ref.Fragment != "" || ref.User != nil {
			return "", f.errorf("%q is not a path or URL without a query", v)
		}
		if ref.IsAbs() {
			if ref.Scheme != "http" && ref.Scheme != "https" || ref.Host == "" {
				return "", f.errorf("%q: an absolute URL must be http or https with a host", v)
			}
			return v, nil
		}
		if ep.Type == "openai-compatible" && key == "model_url" && (v == "/v1/models" || v == "/models") {
			return "", nil // the standalone proxy takes the profile's default here
		}
		// The standalone proxy resolves the path against the endpoint URL
		// as a URL reference: a path starting with / replaces the base path.
		abs := u.ResolveReference(ref)
		if keptPath == "" {
			return abs.EscapedPath(), nil
		}
		return abs.String(), nil
	}
	if ep.HealthCheckURL, err = sub("health_check_url"); err != nil {
		return nil, "", err
	}
	if ep.ModelURL, err = sub("model_url"); err != nil {
		return nil, "", err
	}

	if f := m.get("model_filter"); f != nil {
		fm, err := f.mapping()
		if err != nil {
			return nil, "", err
		}
		mf := &modelFilter{}
		for _, l := range []struct {
			key string
			dst *[]string
		}{{"include", &mf.Include}, {"exclude", &mf.Exclude}} {
			if lf := fm.get(l.key); lf != nil {
				if *l.dst, err = lf.strings(); err != nil {
					return nil, "", err
				}
			}
		}
		fm.done()
		if len(mf.Include) > 0 || len(mf.Exclude) > 0 {
			ep.ModelFilter = mf
		}
	}
	if f := m.get("headers"); f != nil {
		hm, err := f.mapping()
		if err != nil {
			return nil, "", err
		}
		ep.Headers = map[string]string{}
		for _, k := range hm.keys {
			hf := hm.entries[k]
			hm.used[k] = true
			if strings.TrimSpace(k) == "" || strings.ContainsAny(k, " \t:") {
				return nil, "", hf.errorf("%q is not a header name", k)
			}
			v := ""
			if !isNull(hf.node) {
				if v, err = hf.secret(); err != nil {
					return nil, "", err
				}
			}
			ep.Headers[k] = v
		}
		if len(ep.Headers) == 0 {
			ep.Headers = nil
		}
	}
	if f := m.get("auth"); f != nil {
		if ep.Auth, err = c.auth(f); err != nil {
			return nil, "", err
		}
	}
	m.done()
	return ep, raw, nil
}

// authFields are the keys each auth type takes.
var authFields = map[string][]string{
	"bearer":  {"token", "token_file"},
	"api_key": {"key", "key_file", "header"},
	"basic":   {"username", "username_file", "password", "password_file"},
}

func (c *conv) auth(f *field) (*auth, error) {
	m, err := f.mapping()
	if err != nil {
		return nil, err
	}
	typ, tf, err := optString(m, "type", "")
	if err != nil {
		return nil, err
	}
	if tf == nil {
		return nil, f.errorf("type is required: bearer, api_key or basic")
	}
	allowed, ok := authFields[typ]
	if !ok {
		return nil, tf.errorf("unknown auth type %q: expected bearer, api_key or basic", typ)
	}
	for _, k := range m.keys {
		if k == "type" || contains(allowed, k) {
			continue
		}
		for _, fields := range authFields {
			if contains(fields, k) {
				return nil, m.entries[k].errorf("does not apply to auth type %s (it takes %s)", typ, strings.Join(allowed, ", "))
			}
		}
	}
	// value takes NAME or NAME_file, exactly one.
	value := func(name string) (string, error) {
		in, file := m.get(name), m.get(name+"_file")
		switch {
		case in != nil && file != nil:
			return "", file.errorf("set %s or %s_file, not both", name, name)
		case in != nil:
			v, err := in.secret()
			if err == nil && v == "" {
				err = in.errorf("is empty")
			}
			return v, err
		case file != nil:
			return file.fileRef()
		}
		return "", f.errorf("auth type %s needs %s (or %s_file)", typ, name, name)
	}
	out := &auth{}
	switch typ {
	case "bearer":
		out.Type = "bearer"
		out.Token, err = value("token")
	case "api_key":
		out.Type = "header"
		if out.Header, _, err = optString(m, "header", "X-Api-Key"); err != nil {
			return nil, err
		}
		if out.Header == "" {
			out.Header = "X-Api-Key"
		}
		out.Value, err = value("key")
	case "basic":
		out.Type = "basic"
		if out.Username, err = value("username"); err == nil {
			out.Password, err = value("password")
		}
	}
	if err != nil {
		return nil, err
	}
	m.done()
	return out, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// secret reads a value that may reference the environment: ${VAR} becomes
// the placeholder {env.VAR}; ${VAR:-default} becomes {env.VAR} when VAR is
// set now and the default otherwise; literal braces are escaped.
func (f *field) secret() (string, error) {
	s, err := f.str()
	if err != nil {
		return "", err
	}
	parts, err := splitEnv(s)
	if err != nil {
		return "", f.errorf("%v", err)
	}
	var b strings.Builder
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			b.WriteString(escapeBraces(p))
		case envRef:
			v, set := f.c.env(p.name)
			switch {
			case !p.hasDefault:
				b.WriteString("{env." + p.name + "}")
				if !set || v == "" {
					f.warn("the environment variable %s is not set now; Caddy will refuse to load this config unless it is set when Caddy starts", p.name)
				}
			case set && v != "":
				b.WriteString("{env." + p.name + "}")
			default:
				b.WriteString(escapeBraces(p.def))
				f.warn("%s is not set, so the default of ${%s:-...} was written into the config as it stands; set %s before adapting to have Caddy read the variable instead", p.name, p.name, p.name)
			}
		}
	}
	return b.String(), nil
}

// fileRef turns a *_file credential into a {file.PATH} placeholder, which
// Caddy reads (dropping one trailing newline) when it loads the config.
func (f *field) fileRef() (string, error) {
	p, err := f.str()
	if err != nil {
		return "", err
	}
	p = strings.TrimSpace(p)
	if p == "" {
		return "", f.errorf("is empty")
	}
	if strings.ContainsAny(p, "{}") {
		return "", f.errorf("a file path with { or } cannot be written as a Caddy placeholder")
	}
	if err := f.c.readable(p); err != nil {
		f.warn("cannot read %s now (%v); Caddy will refuse to load this config unless it can read it when Caddy starts", p, err)
	}
	return "{file." + p + "}", nil
}

// redactURL hides a password in a URL quoted in an error.
func redactURL(raw string) string {
	rest, query := raw, ""
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		rest, query = raw[:i], "?REDACTED"
	}
	// everything between the scheme (or the start) and the last '@', so a
	// password holding '/' or a bad escape, or a URL without a scheme,
	// still hides it
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		from := 0
		if i := strings.Index(rest[:at], "://"); i >= 0 {
			from = i + 3
		}
		rest = rest[:from] + "REDACTED" + rest[at:]
	}
	return rest + query
}
