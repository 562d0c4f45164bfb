package olla

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddy-olla/olla/balancer"
	"github.com/caddy-olla/olla/fleet"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("olla", parseCaddyfile)
	// olla answers its own paths and passes the rest on, so it sits just
	// before the responders (respond, reverse_proxy, file_server): a plain
	// site block needs no `order` option and a catch-all `respond` or
	// `file_server` still serves everything that is not ours.
	httpcaddyfile.RegisterDirectiveOrder("olla", httpcaddyfile.Before, "respond")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	olla {
//		engine           sherpa|olla
//		profile          auto|streaming|standard
//		load_balancer    priority|round-robin|least-connections|adaptive [{
//			<scorer> <weight>   # adaptive only: warm, load, affinity, ttft, priority, inflight
//		}]
//		internal         on|off
//		internal_clients <cidr>...|any   default 127.0.0.0/8 ::1/128
//		client_ipv6_prefix <bits>        default 64
//		stream_idle_timeout     <duration>
//		response_header_timeout <duration>
//		endpoint <name> {
//			url              <url>
//			type             <backend type>
//			priority         <n>
//			model_url        <path|url>
//			health_check_url <path|url>
//			check_interval   <duration>
//			check_timeout    <duration>
//			unhealthy_after  <n>
//			max_connections  <n>
//			max_concurrency  <n>
//			load_interval    <duration>|off
//			forward_client_auth
//			preload          <model>...   keep these loaded (see preload below)
//			auth bearer <token> | header <name> <value> | basic <user> <pass>
//			headers {
//				<name> <value>
//			}
//			tls {
//				ca <pem file>
//				insecure_skip_verify
//			}
//			model_filter {
//				include <glob>...
//				exclude <glob>...
//			}
//		}
//		preload [<model>...] {          site-wide: on every endpoint that lists them
//			models      <model>...
//			concurrency <n>             loads in flight across endpoints, default 2
//			timeout     <duration>      one load, default 5m
//			retries     <n>             after a transient failure, default 3
//			keep_alive  forever|default|<duration>   Ollama's, default forever
//		}
//		aliases {
//			<alias> <model>...
//			<alias> {
//				fallback <model> <model>...   # in order, on 429/503/full/missing
//			}
//		}
//		retry {
//			max_attempts <n>
//		}
//		rate_limits {
//			global_requests_per_minute       <n>
//			per_ip_requests_per_minute       <n>
//			burst_size                       <n>
//			health_requests_per_minute       <n>
//			health_burst_size                <n>
//			per_endpoint_requests_per_minute <n>
//			idle_timeout                     <duration>
//		}
//		key_limits {
//			key                 <placeholder>   e.g. {http.auth.user.id}
//			anonymous           shared|refuse
//			tokens_per_minute   <n>
//			requests_per_minute <n>
//			budget_day          <amount>
//			budget_month        <amount>
//			cost {
//				input  <price per token>
//				output <price per token>
//				cached <price per token>
//			}
//			model <name> {
//				tokens_per_minute | requests_per_minute | budget_day | budget_month <n>
//			}
//			shadow
//			on_storage_error    open|closed
//			storage             memory | redis <address>
//		}
//		cors {
//			allowed_origins   <origin>...|*
//			allowed_methods   <method>...
//			allowed_headers   <header>...
//			exposed_headers   <header>...
//			allow_credentials
//			max_age           <duration>
//		}
//		circuit_breaker {
//			failures <n>
//			open_for <duration>
//		}
//		request_limits {
//			max_body_size   <size>
//			max_header_size <size>
//			max_buffered_bytes <size>   process-wide, default 256MiB
//			max_response_header_size <size>   a backend's headers, default 64KiB
//			body_read_timeout <duration>      default 10s
//			min_body_rate     <size>          bytes per second after it, default 64KiB
//			max_messages <n>  max_content_blocks <n>  max_tools <n>  max_nesting <n>   /olla/anthropic/
//		}
//		model_registry {
//			routing_strategy  strict|optimistic|discovery
//			fallback_behavior compatible_only|all|none
//			discovery_timeout <duration>
//			discovery_refresh_on_miss
//		}
//		sticky_sessions {
//			idle_ttl          <duration>
//			max_sessions      <n>
//			max_sessions_per_client <n>
//			key_sources       session_header|prefix_hash|auth_header|ip...
//			prefix_hash_bytes <n>
//			storage           memory|redis <address>
//		}
//		queue {
//			max_size <n>
//			max_wait <duration>
//			priority <placeholder>
//			fair_by  <placeholder>
//		}
//		model_discovery {
//			interval <duration>
//			timeout  <duration>
//		}
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.Errf("olla takes no arguments on its first line, got %q; put settings in its block", d.Val())
	}
	seen := map[string]bool{}
	endpointLines := map[string]int{}
	ollaLine := d.Line()
	once := func(name string) error {
		if seen[name] {
			return d.Errf("%s is already set in this olla block", name)
		}
		seen[name] = true
		return nil
	}
	for d.NextBlock(0) {
		sub := d.Val()
		switch sub {
		case "load_balancer":
			if err := once(sub); err != nil {
				return err
			}
			if err := h.parseLoadBalancer(d); err != nil {
				return err
			}
		case "sticky_sessions":
			if err := once(sub); err != nil {
				return err
			}
			ss := &StickySessions{}
			h.StickySessions = ss
			if err := parseBlock(d, map[string]func() error{
				"idle_ttl":                func() error { return durationArg(d, &ss.IdleTTL) },
				"max_sessions":            func() error { return intArg(d, &ss.MaxSessions, 1) },
				"max_sessions_per_client": func() error { return intArg(d, &ss.MaxSessionsPerClient, 1) },
				"key_sources":             func() error { return listArg(d, &ss.KeySources) },
				"prefix_hash_bytes":       func() error { return intArg(d, &ss.PrefixHashBytes, 1) },
				"storage":                 func() error { return storageArg(d, &ss.Storage, &ss.RedisAddress) },
			}); err != nil {
				return err
			}
			if err := ss.validate(); err != nil {
				return d.Errf("%v", err)
			}
		case "prefix_affinity":
			if err := once(sub); err != nil {
				return err
			}
			if err := h.parsePrefixAffinity(d); err != nil {
				return err
			}
		case "engine", "profile", "internal", "dashboard":
			if err := once(sub); err != nil {
				return err
			}
			val, err := oneArg(d)
			if err != nil {
				return err
			}
			// Each value is checked here too, with Validate's rules, so
			// that the error names its line.
			switch sub {
			case "engine":
				h.Engine, err = val, checkEnum(sub, val, engineNames...)
			case "profile":
				h.Profile, err = val, checkEnum(sub, val, profileNames...)
			case "internal":
				h.Internal, err = val, checkEnum(sub, val, internalNames...)
			case "dashboard":
				h.Dashboard, err = val, checkEnum(sub, val, internalNames...)
			}
			if err != nil {
				return d.Errf("%v", err)
			}
		case "internal_clients":
			if err := once(sub); err != nil {
				return err
			}
			h.InternalClients = d.RemainingArgs()
			if len(h.InternalClients) == 0 {
				return d.Errf("internal_clients needs at least one address, CIDR or `any`")
			}
			if _, err := parseInternalClients(h.InternalClients); err != nil {
				return d.Errf("%v", err)
			}
		case "client_ipv6_prefix":
			if err := once(sub); err != nil {
				return err
			}
			if err := intArg(d, &h.ClientIPv6Prefix, 1); err != nil {
				return err
			}
			if h.ClientIPv6Prefix > 128 {
				return d.Errf("client_ipv6_prefix must be between 1 and 128, got %d", h.ClientIPv6Prefix)
			}
		case "stream_idle_timeout", "response_header_timeout":
			if err := once(sub); err != nil {
				return err
			}
			dst := &h.StreamIdleTimeout
			if sub == "response_header_timeout" {
				dst = &h.ResponseHeaderTimeout
			}
			if err := durationArg(d, dst); err != nil {
				return err
			}
		case "endpoint":
			line := d.Line()
			ep, err := parseEndpoint(d)
			if err != nil {
				return err
			}
			if first, dup := endpointLines[ep.Name]; dup {
				return fmt.Errorf("endpoint %q is already declared in this olla block at line %d, at %s:%d", ep.Name, first, d.File(), line)
			}
			endpointLines[ep.Name] = line
			h.Endpoints = append(h.Endpoints, ep)
		case "preload":
			if err := once(sub); err != nil {
				return err
			}
			if err := h.parsePreload(d); err != nil {
				return err
			}
		case "aliases":
			if err := once(sub); err != nil {
				return err
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			h.Aliases = map[string][]string{}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				name := d.Val()
				targets := d.RemainingArgs()
				_, dup := h.Aliases[name]
				if _, chained := h.Fallbacks[name]; dup || chained {
					return d.Errf("alias %q is already defined", name)
				}
				if len(targets) == 0 {
					// <alias> { fallback <model>... }: an ordered chain
					var models []string
					for inner := d.Nesting(); d.NextBlock(inner); {
						if d.Val() != "fallback" {
							return d.Errf("alias %q: unknown %q in its block: expected fallback <model>...", name, d.Val())
						}
						if models != nil {
							return d.Errf("alias %q: its block takes one fallback line", name)
						}
						if models = d.RemainingArgs(); len(models) < 2 {
							return d.Errf("alias %q: fallback needs at least two models, in order", name)
						}
					}
					if models != nil {
						if h.Fallbacks == nil {
							h.Fallbacks = map[string][]string{}
						}
						h.Fallbacks[name] = models
						continue
					}
				}
				if len(targets) == 0 {
					return d.Errf("alias %q needs at least one target model: %s <model>... or %s { fallback <model>... }", name, name, name)
				}
				h.Aliases[name] = targets
			}
		case "retry":
			if err := once(sub); err != nil {
				return err
			}
			h.Retry = &Retry{}
			if err := parseBlock(d, map[string]func() error{
				"max_attempts": func() error { return intArg(d, &h.Retry.MaxAttempts, 1) },
			}); err != nil {
				return err
			}
		case "rate_limits":
			if err := once(sub); err != nil {
				return err
			}
			rl := &RateLimits{}
			h.RateLimits = rl
			if err := parseBlock(d, map[string]func() error{
				"global_requests_per_minute":       func() error { return intArg(d, &rl.GlobalRequestsPerMinute, 0) },
				"per_ip_requests_per_minute":       func() error { return intArg(d, &rl.PerIPRequestsPerMinute, 0) },
				"burst_size":                       func() error { return intArg(d, &rl.BurstSize, 1) },
				"health_requests_per_minute":       func() error { return intArg(d, &rl.HealthRequestsPerMinute, 0) },
				"health_burst_size":                func() error { return intArg(d, &rl.HealthBurstSize, 1) },
				"per_endpoint_requests_per_minute": func() error { return intArg(d, &rl.PerEndpointRequestsPerMinute, 0) },
				"idle_timeout":                     func() error { return durationArg(d, &rl.IdleTimeout) },
			}); err != nil {
				return err
			}
		case "key_limits":
			if err := once(sub); err != nil {
				return err
			}
			kl, err := parseKeyLimits(d)
			if err != nil {
				return err
			}
			h.KeyLimits = kl
		case "cors":
			if err := once(sub); err != nil {
				return err
			}
			c := &CORS{}
			h.CORS = c
			if err := parseBlock(d, map[string]func() error{
				"allowed_origins":   func() error { return listArg(d, &c.AllowedOrigins) },
				"allowed_methods":   func() error { return listArg(d, &c.AllowedMethods) },
				"allowed_headers":   func() error { return listArg(d, &c.AllowedHeaders) },
				"exposed_headers":   func() error { return listArg(d, &c.ExposedHeaders) },
				"allow_credentials": func() error { return flagArg(d, &c.AllowCredentials) },
				"max_age":           func() error { return durationArg(d, &c.MaxAge) },
			}); err != nil {
				return err
			}
		case "queue":
			if err := once(sub); err != nil {
				return err
			}
			q := &Queue{}
			h.Queue = q
			if err := parseBlock(d, map[string]func() error{
				"max_size": func() error { return intArg(d, &q.MaxSize, 1) },
				"max_wait": func() error { return durationArg(d, &q.MaxWait) },
				"priority": func() error { return stringArg(d, &q.Priority) },
				"fair_by":  func() error { return stringArg(d, &q.FairBy) },
			}); err != nil {
				return err
			}
		case "circuit_breaker":
			if err := once(sub); err != nil {
				return err
			}
			cb := &CircuitBreaker{}
			h.CircuitBreaker = cb
			if err := parseBlock(d, map[string]func() error{
				"failures": func() error { return intArg(d, &cb.Failures, 1) },
				"open_for": func() error { return durationArg(d, &cb.OpenFor) },
			}); err != nil {
				return err
			}
		case "request_limits":
			if err := once(sub); err != nil {
				return err
			}
			h.RequestLimits = &RequestLimits{}
			if err := parseBlock(d, map[string]func() error{
				"max_body_size":            func() error { return sizeArg(d, &h.RequestLimits.MaxBodySize) },
				"max_header_size":          func() error { return sizeArg(d, &h.RequestLimits.MaxHeaderSize) },
				"max_buffered_bytes":       func() error { return sizeArg(d, &h.RequestLimits.MaxBufferedBytes) },
				"max_response_header_size": func() error { return sizeArg(d, &h.RequestLimits.MaxResponseHeaderSize) },
				"body_read_timeout":        func() error { return durationArg(d, &h.RequestLimits.BodyReadTimeout) },
				"min_body_rate":            func() error { return sizeArg(d, &h.RequestLimits.MinBodyRate) },
				"max_messages":             func() error { return intArg(d, &h.RequestLimits.MaxMessages, 1) },
				"max_content_blocks":       func() error { return intArg(d, &h.RequestLimits.MaxContentBlocks, 1) },
				"max_tools":                func() error { return intArg(d, &h.RequestLimits.MaxTools, 1) },
				"max_nesting":              func() error { return intArg(d, &h.RequestLimits.MaxNesting, 1) },
			}); err != nil {
				return err
			}
		case "model_registry":
			if err := once(sub); err != nil {
				return err
			}
			mr := &ModelRegistry{}
			h.ModelRegistry = mr
			if err := parseBlock(d, map[string]func() error{
				"routing_strategy": func() error {
					return enumArg(d, &mr.RoutingStrategy, strategyStrict, strategyOptimistic, strategyDiscovery)
				},
				"fallback_behavior": func() error {
					return enumArg(d, &mr.FallbackBehavior, fallbackCompatible, fallbackAll, fallbackNone)
				},
				"discovery_timeout":         func() error { return durationArg(d, &mr.DiscoveryTimeout) },
				"discovery_refresh_on_miss": func() error { return flagArg(d, &mr.DiscoveryRefreshOnMiss) },
			}); err != nil {
				return err
			}
		case "model_discovery":
			if err := once(sub); err != nil {
				return err
			}
			md := &ModelDiscovery{}
			h.ModelDiscovery = md
			if err := parseBlock(d, map[string]func() error{
				"interval": func() error { return durationArg(d, &md.Interval) },
				"timeout":  func() error { return durationArg(d, &md.Timeout) },
			}); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized olla subdirective %q: expected engine, profile, load_balancer, internal, endpoint, aliases, retry, circuit_breaker, rate_limits, key_limits, cors, request_limits, model_registry, model_discovery, preload, queue, sticky_sessions, prefix_affinity, internal_clients, client_ipv6_prefix, stream_idle_timeout or response_header_timeout", sub)
		}
	}
	if len(h.Endpoints) == 0 {
		return fmt.Errorf("olla needs at least one endpoint: endpoint <name> { url <url> type <type> }, at %s:%d", d.File(), ollaLine)
	}
	return nil
}

// parseEndpoint reads `endpoint <name> { ... }`.
func parseEndpoint(d *caddyfile.Dispenser) (*Endpoint, error) {
	if !d.NextArg() {
		return nil, d.Err("endpoint needs a name: endpoint <name> { url <url> type <type> }")
	}
	ep := &Endpoint{Name: d.Val()}
	declared := d.Line()
	if d.NextArg() {
		return nil, d.Errf("endpoint %q: unexpected %q after the name; put settings in its block", ep.Name, d.Val())
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return nil, d.Errf("endpoint %q: %s is already set", ep.Name, sub)
		}
		seen[sub] = true
		var err error
		switch sub {
		case "url":
			if err = stringArg(d, &ep.URL); err == nil && !hasPlaceholder(ep.URL) {
				_, err = parseEndpointURL(ep.URL)
				if err != nil {
					err = d.Errf("endpoint %q: %v", ep.Name, err)
				}
			}
		case "type":
			if err = stringArg(d, &ep.Type); err == nil {
				if err = checkType(ep.Type); err != nil {
					err = d.Errf("endpoint %q: %v", ep.Name, err)
				}
			}
		case "priority":
			var p int
			if err = intArg(d, &p, 0); err == nil {
				ep.Priority = &p
			}
		case "model_url", "health_check_url":
			dst := &ep.ModelURL
			if sub == "health_check_url" {
				dst = &ep.HealthCheckURL
			}
			if err = stringArg(d, dst); err == nil {
				if err = checkSubURL(*dst); err != nil {
					err = d.Errf("endpoint %q: %s %v", ep.Name, sub, err)
				}
			}
		case "check_interval":
			err = durationArg(d, &ep.CheckInterval)
		case "check_timeout":
			err = durationArg(d, &ep.CheckTimeout)
		case "unhealthy_after":
			err = intArg(d, &ep.UnhealthyAfter, 1)
		case "max_connections":
			err = intArg(d, &ep.MaxConnections, 0)
		case "max_concurrency":
			err = intArg(d, &ep.MaxConcurrency, 0)
			if err == nil && ep.MaxConcurrency > maxEndpointConcurrency {
				err = d.Errf("max_concurrency %d is more than %d", ep.MaxConcurrency, maxEndpointConcurrency)
			}
		case "load_interval":
			var v string
			if v, err = oneArg(d); err == nil {
				if v == "off" {
					ep.NoLoadPolling = true
				} else if dur, perr := caddy.ParseDuration(v); perr != nil || dur < fleet.MinLoadInterval {
					err = d.Errf("endpoint %q: load_interval %q is not off or a duration of at least %s", ep.Name, v, fleet.MinLoadInterval)
				} else {
					ep.LoadInterval = caddy.Duration(dur)
				}
			}
		case "forward_client_auth":
			err = flagArg(d, &ep.ForwardClientAuth)
		case "preload":
			err = parseEndpointPreload(d, ep)
		case "auth":
			ep.Auth, err = parseAuth(d)
		case "headers":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			ep.Headers = map[string]string{}
			for n := d.Nesting(); d.NextBlock(n); {
				name := d.Val()
				var value string
				if !d.NextArg() {
					return nil, d.Errf("endpoint %q: header %s needs a value", ep.Name, name)
				}
				value = d.Val()
				if d.NextArg() {
					return nil, d.Errf("header %s takes one value; quote values with spaces", name)
				}
				for prev := range ep.Headers {
					if strings.EqualFold(prev, name) {
						return nil, d.Errf("endpoint %q: header %s is set twice", ep.Name, name)
					}
				}
				ep.Headers[name] = value
			}
		case "tls":
			ep.TLS = &EndpointTLS{}
			err = parseBlock(d, map[string]func() error{
				"ca":                   func() error { return stringArg(d, &ep.TLS.CA) },
				"insecure_skip_verify": func() error { return flagArg(d, &ep.TLS.InsecureSkipVerify) },
			})
		case "model_filter":
			ep.ModelFilter = &ModelFilter{}
			err = parseBlock(d, map[string]func() error{
				"include": func() error { return listArg(d, &ep.ModelFilter.Include) },
				"exclude": func() error { return listArg(d, &ep.ModelFilter.Exclude) },
			})
		default:
			return nil, d.Errf("endpoint %q: unrecognized subdirective %q: expected url, type, priority, model_url, health_check_url, check_interval, check_timeout, unhealthy_after, max_connections, max_concurrency, load_interval, forward_client_auth, preload, auth, headers, tls or model_filter", ep.Name, sub)
		}
		if err != nil {
			if !strings.HasPrefix(err.Error(), "endpoint ") {
				err = fmt.Errorf("endpoint %q: %w", ep.Name, err)
			}
			return nil, err
		}
	}
	if ep.URL == "" {
		return nil, fmt.Errorf("endpoint %q: url is required, at %s:%d", ep.Name, d.File(), declared)
	}
	if ep.Type == "" {
		return nil, fmt.Errorf("endpoint %q: %v, at %s:%d", ep.Name, checkType(ep.Type), d.File(), declared)
	}
	return ep, nil
}

// parseAuth reads `auth bearer <token> | header <name> <value> | basic <user> <pass>`.
func parseAuth(d *caddyfile.Dispenser) (*EndpointAuth, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.Err("auth needs a kind: auth bearer <token> | header <name> <value> | basic <user> <pass>")
	}
	a := &EndpointAuth{Type: args[0]}
	switch {
	case a.Type == "bearer" && len(args) == 2:
		a.Token = args[1]
	case a.Type == "header" && len(args) == 3:
		a.Header, a.Value = args[1], args[2]
	case a.Type == "basic" && len(args) == 3:
		a.Username, a.Password = args[1], args[2]
	case a.Type == "bearer":
		return nil, d.Err("auth bearer takes one value: auth bearer <token>")
	case a.Type == "header":
		return nil, d.Err("auth header takes a name and a value: auth header <name> <value>")
	case a.Type == "basic":
		return nil, d.Err("auth basic takes a user and a password: auth basic <user> <pass>")
	default:
		return nil, d.Errf("unknown auth kind %q: expected bearer, header or basic", a.Type)
	}
	return a, nil
}

// repeatable subdirectives may be given more than once in their block.
var repeatable = map[string]bool{"include": true, "exclude": true, "model": true}

// parseBlock reads a block of subdirectives, each used once unless
// repeatable. Errors inside it name the block.
// parseLoadBalancer reads `load_balancer <name> [{ <scorer> <weight>... }]`.
func (h *Handler) parseLoadBalancer(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.Err("load_balancer needs a value: priority, round-robin, least-connections or adaptive")
	}
	h.LoadBalancer = d.Val()
	if d.NextArg() {
		return d.Errf("load_balancer takes one value and an optional block of weights, got %q", d.Val())
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		v, err := oneArg(d)
		if err != nil {
			return err
		}
		w, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return d.Errf("load_balancer weight of %s: %q is not a number", name, v)
		}
		if h.LoadBalancerWeights == nil {
			h.LoadBalancerWeights = map[string]float64{}
		}
		if _, dup := h.LoadBalancerWeights[name]; dup {
			return d.Errf("load_balancer weight of %s is already set", name)
		}
		h.LoadBalancerWeights[name] = w
	}
	if _, err := balancer.NewPipeline(balancer.Config{Strategy: h.LoadBalancer, Weights: h.LoadBalancerWeights}); err != nil {
		return d.Errf("%v", err)
	}
	return nil
}

// parsePrefixAffinity reads `prefix_affinity off` or its block:
//
//	prefix_affinity {
//		cache_blocks 65536
//		release_penalty 2
//	}
func (h *Handler) parsePrefixAffinity(d *caddyfile.Dispenser) error {
	pa := &PrefixAffinity{}
	h.PrefixAffinity = pa
	if args := d.RemainingArgs(); len(args) > 0 {
		if len(args) != 1 || args[0] != "off" {
			return d.Errf("prefix_affinity takes off or a block, got %q", strings.Join(args, " "))
		}
		pa.Off = true
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			return d.Errf("prefix_affinity off takes no block")
		}
		return nil
	}
	if err := parseBlock(d, map[string]func() error{
		"cache_blocks": func() error { return intArg(d, &pa.CacheBlocks, 1) },
		"release_penalty": func() error {
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if pa.ReleasePenalty, err = strconv.ParseFloat(v, 64); err != nil {
				return d.Errf("release_penalty: %q is not a number", v)
			}
			return nil
		},
	}); err != nil {
		return err
	}
	if err := pa.validate(); err != nil {
		return d.Errf("%v", err)
	}
	return nil
}

func parseBlock(d *caddyfile.Dispenser, subs map[string]func() error) error {
	block := d.Val()
	if d.NextArg() {
		return d.Errf("%s takes no arguments before its block, got %q", block, d.Val())
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		fn, ok := subs[name]
		if !ok {
			known := make([]string, 0, len(subs))
			for k := range subs {
				known = append(known, k)
			}
			sortStrings(known)
			return d.Errf("unrecognized %s subdirective %q: expected %s", block, name, strings.Join(known, ", "))
		}
		if seen[name] && !repeatable[name] {
			return d.Errf("%s %s is already set", block, name)
		}
		seen[name] = true
		if err := fn(); err != nil {
			return fmt.Errorf("%s: %w", block, err)
		}
	}
	return nil
}

func oneArg(d *caddyfile.Dispenser) (string, error) {
	name := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s needs a value", name)
	}
	v := d.Val()
	if d.NextArg() {
		if d.Val() == "{" {
			return "", d.Errf("%s takes a value, not a block", name)
		}
		return "", d.Errf("%s takes one value, got another: %q", name, d.Val())
	}
	return v, nil
}

func stringArg(d *caddyfile.Dispenser, dst *string) error {
	v, err := oneArg(d)
	*dst = v
	return err
}

func enumArg(d *caddyfile.Dispenser, dst *string, allowed ...string) error {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	for _, a := range allowed {
		if v == a {
			*dst = v
			return nil
		}
	}
	return d.Errf("%s: unknown value %q: expected %s", name, v, strings.Join(allowed, ", "))
}

func intArg(d *caddyfile.Dispenser, dst *int, minimum int) error {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < minimum {
		return d.Errf("%s: %q is not a whole number of at least %d", name, v, minimum)
	}
	*dst = n
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return d.Errf("%s: %q is not a positive duration (e.g. 5s, 2m)", name, v)
	}
	*dst = caddy.Duration(dur)
	return nil
}

func sizeArg(d *caddyfile.Dispenser, dst *int64) error {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 {
		return d.Errf("%s: %q is not a size (e.g. 100MiB, 4KB)", name, v)
	}
	if n > maxConfigSize {
		return d.Errf("%s: %s is more than the 1TiB this option allows", name, v)
	}
	*dst = int64(n)
	return nil
}

func flagArg(d *caddyfile.Dispenser, dst *bool) error {
	name := d.Val()
	if d.NextArg() {
		return d.Errf("%s is a flag and takes no value, got %q", name, d.Val())
	}
	*dst = true
	return nil
}

func listArg(d *caddyfile.Dispenser, dst *[]string) error {
	name := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("%s needs at least one pattern", name)
	}
	*dst = append(*dst, args...)
	return nil
}

var _ caddyfile.Unmarshaler = (*Handler)(nil)

func sortStrings(s []string) { sort.Strings(s) }

// parseKeyLimits reads the key_limits block.
func parseKeyLimits(d *caddyfile.Dispenser) (*KeyLimits, error) {
	kl := &KeyLimits{}
	limitSubs := func(m *ModelLimits) map[string]func() error {
		return map[string]func() error{
			"tokens_per_minute":   func() error { return int64Arg(d, &m.TokensPerMinute) },
			"requests_per_minute": func() error { return int64Arg(d, &m.RequestsPerMinute) },
			"budget_day":          func() error { return amountArg(d, &m.BudgetDay) },
			"budget_month":        func() error { return amountArg(d, &m.BudgetMonth) },
		}
	}
	var own ModelLimits
	subs := limitSubs(&own)
	subs["key"] = func() error { return stringArg(d, &kl.Key) }
	subs["anonymous"] = func() error { return enumArg(d, &kl.Anonymous, anonymousShared, anonymousRefuse) }
	subs["shadow"] = func() error { return flagArg(d, &kl.Shadow) }
	subs["on_storage_error"] = func() error { return enumArg(d, &kl.OnStorageError, storeFailOpen, storeFailClosed) }
	subs["storage"] = func() error { return storageArg(d, &kl.Storage, &kl.RedisAddress) }
	subs["cost"] = func() error {
		kl.Cost = &TokenCost{}
		return parseBlock(d, map[string]func() error{
			"input":  func() error { return amountArg(d, &kl.Cost.Input) },
			"output": func() error { return amountArg(d, &kl.Cost.Output) },
			"cached": func() error { return amountArg(d, &kl.Cost.Cached) },
		})
	}
	subs["model"] = func() error {
		if !d.NextArg() {
			return d.Err("model needs a name and a block: model <name> { tokens_per_minute <n> ... }")
		}
		name := d.Val()
		if _, dup := kl.Models[name]; dup {
			return d.Errf("model %q is already set", name)
		}
		m := &ModelLimits{}
		if kl.Models == nil {
			kl.Models = map[string]*ModelLimits{}
		}
		kl.Models[name] = m
		return parseBlock(d, limitSubs(m))
	}
	if err := parseBlock(d, subs); err != nil {
		return nil, err
	}
	kl.TokensPerMinute, kl.RequestsPerMinute, kl.BudgetDay, kl.BudgetMonth = own.TokensPerMinute, own.RequestsPerMinute, own.BudgetDay, own.BudgetMonth
	if err := kl.validate(); err != nil {
		return nil, d.Errf("%v", err)
	}
	return kl, nil
}

func int64Arg(d *caddyfile.Dispenser, dst *int64) error {
	var n int
	if err := intArg(d, &n, 0); err != nil {
		return err
	}
	*dst = int64(n)
	return nil
}

func amountArg(d *caddyfile.Dispenser, dst *float64) error {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return d.Errf("%s: %q is not a number of at least 0", name, v)
	}
	*dst = f
	return nil
}

// storageArg reads `storage memory` or `storage redis <address>`.
func storageArg(d *caddyfile.Dispenser, storage, addr *string) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == storageMemory:
	case len(args) == 2 && args[0] == storageRedis:
		*addr = args[1]
	default:
		return d.Err("storage takes memory, or redis <address>")
	}
	*storage = args[0]
	return nil
}
