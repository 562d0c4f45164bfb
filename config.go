package olla

import (
	"github.com/caddyserver/caddy/v2"
)

// Endpoint is one backend LLM server, as configured.
type Endpoint struct {
	// Name identifies the endpoint in headers, logs and status. Together with
	// URL and Type it is the endpoint's identity: identical declarations in
	// several sites share one state across the config and across reloads.
	Name string `json:"name"`
	// URL is the server's base URL. A path is a base path joined in front of
	// every API path (https://host/api + /v1/models). Placeholders such as
	// {env.KEY} are allowed. URL userinfo is rejected: use auth.
	URL string `json:"url"`
	// Type is the backend type: ollama, lm-studio, vllm, sglang, llamacpp,
	// lemonade, lmdeploy, litellm, vllm-mlx, docker-model-runner, omlx or
	// openai-compatible (aliases such as lmstudio, dmr and openai are
	// accepted).
	Type string `json:"type"`
	// Priority orders endpoints for the priority balancer: higher first.
	// Default 100.
	Priority *int `json:"priority,omitempty"`
	// ModelURL overrides the profile's model-list path (or an absolute URL).
	ModelURL string `json:"model_url,omitempty"`
	// HealthCheckURL overrides the profile's health path (or an absolute URL).
	HealthCheckURL string `json:"health_check_url,omitempty"`
	// CheckInterval is how often the endpoint is probed. Default 5s.
	CheckInterval caddy.Duration `json:"check_interval,omitempty"`
	// CheckTimeout bounds one probe. Default 2s; one not below CheckInterval
	// is clamped to it, with a warning.
	CheckTimeout caddy.Duration `json:"check_timeout,omitempty"`
	// UnhealthyAfter is how many probes in a row must fail transiently (no
	// answer within check_timeout, a reset, a 5xx other than 503) before
	// the endpoint is taken out. Default 3. A refused connection, a 503,
	// 401/403, 429 or another 4xx takes it out at once, and transient
	// failures while it answers proxied requests successfully do not
	// count.
	UnhealthyAfter int `json:"unhealthy_after,omitempty"`
	// Auth is the credential sent to this endpoint (requests, probes and
	// discovery). It is never logged or shown.
	Auth *EndpointAuth `json:"auth,omitempty"`
	// Headers are added to every request sent to this endpoint.
	Headers map[string]string `json:"headers,omitempty"`
	// TLS configures https endpoints.
	TLS *EndpointTLS `json:"tls,omitempty"`
	// ModelFilter narrows the discovered models (a paid API lists hundreds).
	ModelFilter *ModelFilter `json:"model_filter,omitempty"`
	// MaxConnections caps connections to this endpoint (0 = no cap).
	MaxConnections int `json:"max_connections,omitempty"`
	// MaxConcurrency caps the requests in flight to this endpoint (0 = no
	// cap), counted across every site and config that declares it. Set it
	// to what the server runs at once (OLLAMA_NUM_PARALLEL, llama-server's
	// -np) and add a `queue` block: requests beyond it then wait for a slot
	// instead of piling up inside the server.
	MaxConcurrency int `json:"max_concurrency,omitempty"`
	// LoadInterval is how often the endpoint's load surface (Ollama
	// /api/ps, LM Studio /api/v0/models, vLLM and SGLang /metrics,
	// llama.cpp /slots) is polled for the adaptive balancer and the status
	// pages. Default 2s; at least 100ms.
	LoadInterval caddy.Duration `json:"load_interval,omitempty"`
	// NoLoadPolling turns that polling off (Caddyfile `load_interval off`):
	// the endpoint's backend signals stay unknown and score neutral.
	NoLoadPolling bool `json:"no_load_polling,omitempty"`
	// ForwardClientAuth lets the client's credential headers through to
	// this endpoint: Authorization, Cookie, X-Api-Key, Api-Key,
	// X-Goog-Api-Key, X-Auth-Token and any header whose name contains
	// "key", "token" or "secret" (not Idempotency-Key, which always goes
	// through). Off by default.
	ForwardClientAuth bool `json:"forward_client_auth,omitempty"`
	// Preload names models to keep loaded on this endpoint: loaded at
	// start, after the endpoint recovers and after the backend evicts them
	// (Ollama, llama.cpp in router mode, LM Studio, oMLX, Docker Model
	// Runner, Lemonade). The site's `preload` block bounds the loading.
	Preload []string `json:"preload,omitempty"`
}

// EndpointAuth is an endpoint's credential. Values may be placeholders.
type EndpointAuth struct {
	// Type is bearer, header or basic.
	Type string `json:"type"`
	// Token is the bearer token.
	Token string `json:"token,omitempty"`
	// Header and Value form a custom header credential (e.g. X-Api-Key).
	Header string `json:"header,omitempty"`
	Value  string `json:"value,omitempty"`
	// Username and Password form basic auth.
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// EndpointTLS configures TLS to an https endpoint.
type EndpointTLS struct {
	// CA is a PEM file of certificate authorities to trust for this endpoint.
	CA string `json:"ca,omitempty"`
	// InsecureSkipVerify turns off certificate verification. Testing only.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// ModelFilter keeps or drops discovered models by glob (`*` and `?`,
// case-insensitive). Exclude wins over include; an empty include keeps all.
type ModelFilter struct {
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
}

// Retry bounds failover.
type Retry struct {
	// MaxAttempts is how many endpoints one request may try. Default 3.
	MaxAttempts int `json:"max_attempts,omitempty"`
}

// RequestLimits bounds what a client may send.
type RequestLimits struct {
	// MaxBodySize is the largest request body accepted (default 100 MiB).
	MaxBodySize int64 `json:"max_body_size,omitempty"`
	// MaxHeaderSize is the largest request header block accepted (default
	// 1 MiB).
	MaxHeaderSize int64 `json:"max_header_size,omitempty"`
	// MaxBufferedBytes bounds the request bodies buffered at once by every
	// olla handler in the process together (default 256 MiB): a request
	// whose body would take the total past it gets 503 with Retry-After,
	// and a body larger than it 413. A body reserves as its bytes arrive,
	// so one that declares a length and stalls holds only what it sent.
	// Decoded Anthropic requests and translated copies count too.
	MaxBufferedBytes int64 `json:"max_buffered_bytes,omitempty"`
	// BodyReadTimeout is how long a request body may take to start and
	// keep arriving (default 10s); with MinBodyRate, each MinBodyRate
	// bytes that arrive earn one more second. Past it: 408.
	BodyReadTimeout caddy.Duration `json:"body_read_timeout,omitempty"`
	// MinBodyRate is the slowest average a body may arrive at after
	// BodyReadTimeout, in bytes per second (default 64 KiB).
	MinBodyRate int64 `json:"min_body_rate,omitempty"`
	// MaxMessages, MaxContentBlocks, MaxTools and MaxNesting bound one
	// request on /olla/anthropic/ before it is decoded (defaults 10000,
	// 50000, 1000 and 64): past one, 400 naming it. Content blocks count
	// those of system, every message and every tool_result; nesting counts
	// arrays and objects anywhere in the body.
	MaxMessages      int `json:"max_messages,omitempty"`
	MaxContentBlocks int `json:"max_content_blocks,omitempty"`
	MaxTools         int `json:"max_tools,omitempty"`
	MaxNesting       int `json:"max_nesting,omitempty"`
	// MaxResponseHeaderSize bounds the header block a backend may answer
	// with (default 64 KiB); past it the attempt fails as the backend's
	// fault and the next endpoint is tried.
	MaxResponseHeaderSize int64 `json:"max_response_header_size,omitempty"`
}

// ModelRegistry is how requests are routed by model.
type ModelRegistry struct {
	// RoutingStrategy is strict (default), optimistic or discovery.
	RoutingStrategy string `json:"routing_strategy,omitempty"`
	// FallbackBehavior is what optimistic and discovery do when no candidate
	// has the model: compatible_only (default), all or none.
	FallbackBehavior string `json:"fallback_behavior,omitempty"`
	// DiscoveryTimeout bounds the discovery strategy's refresh on a miss.
	DiscoveryTimeout caddy.Duration `json:"discovery_timeout,omitempty"`
	// DiscoveryRefreshOnMiss makes the discovery strategy rediscover the
	// candidates' models once before it rejects a request.
	DiscoveryRefreshOnMiss bool `json:"discovery_refresh_on_miss,omitempty"`
}

// ModelDiscovery controls how often model lists are refreshed.
type ModelDiscovery struct {
	// Interval between model-list refreshes of a healthy endpoint. Default 5m.
	Interval caddy.Duration `json:"interval,omitempty"`
	// Timeout bounds one model-list request. Default 30s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// RateLimits are token buckets in front of the /olla/ routes (off unless
// given). The client IP is Caddy's: the server's trusted_proxies decides
// which forwarded headers count.
type RateLimits struct {
	// GlobalRequestsPerMinute limits all clients together (0 = no limit).
	GlobalRequestsPerMinute int `json:"global_requests_per_minute,omitempty"`
	// PerIPRequestsPerMinute limits each client IP (0 = no limit).
	PerIPRequestsPerMinute int `json:"per_ip_requests_per_minute,omitempty"`
	// BurstSize is how many requests a bucket holds at once (default 10).
	BurstSize int `json:"burst_size,omitempty"`
	// HealthRequestsPerMinute limits each client IP on /internal/ and
	// /version, in a bucket of their own (0 = no limit).
	HealthRequestsPerMinute int `json:"health_requests_per_minute,omitempty"`
	// HealthBurstSize is the health bucket's burst (default BurstSize).
	HealthBurstSize int `json:"health_burst_size,omitempty"`
	// PerEndpointRequestsPerMinute limits requests sent to each endpoint
	// (0 = no limit); a full endpoint is skipped like a busy one.
	PerEndpointRequestsPerMinute int `json:"per_endpoint_requests_per_minute,omitempty"`
	// IdleTimeout evicts a client's bucket after this long unused
	// (default 10m), so memory stays bounded under many client IPs.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
}

// CORS answers browsers' cross-origin checks (off unless given).
type CORS struct {
	// AllowedOrigins are origins allowed, or ["*"].
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	// AllowedMethods default to GET, POST, OPTIONS.
	AllowedMethods []string `json:"allowed_methods,omitempty"`
	// AllowedHeaders default to ["*"].
	AllowedHeaders []string `json:"allowed_headers,omitempty"`
	// ExposedHeaders default to the X-Olla-* response headers.
	ExposedHeaders []string `json:"exposed_headers,omitempty"`
	// AllowCredentials lets browsers send cookies; not with origin "*".
	AllowCredentials bool `json:"allow_credentials,omitempty"`
	// MaxAge is how long a preflight answer may be cached.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
}

// CircuitBreaker tunes the per-endpoint circuit breakers, fed by request
// failures (no answer, or a 5xx) and by health probes.
type CircuitBreaker struct {
	// Failures is how many consecutive failures open the breaker (default 5).
	Failures int `json:"failures,omitempty"`
	// OpenFor is how long an open breaker keeps requests away before the
	// next health probe may close it (default 30s).
	OpenFor caddy.Duration `json:"open_for,omitempty"`
}
