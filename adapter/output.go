package adapter

// The Caddy JSON the adapter writes. The handler's field names mirror
// http.handlers.olla (see config.go and handler.go in the root package);
// durations are written as strings ("30s"), which caddy.Duration reads.
// The adapter's tests load the output into Caddy, so a name that drifts
// from the handler's fails there.

type caddyConfig struct {
	Admin *adminConfig `json:"admin,omitempty"`
	Apps  apps         `json:"apps"`
}

type adminConfig struct {
	Listen string `json:"listen"`
}

type apps struct {
	HTTP httpApp `json:"http"`
}

type httpApp struct {
	GracePeriod string             `json:"grace_period,omitempty"`
	Servers     map[string]*server `json:"servers"`
}

type server struct {
	Listen            []string        `json:"listen"`
	ReadTimeout       string          `json:"read_timeout,omitempty"`
	ReadHeaderTimeout string          `json:"read_header_timeout,omitempty"`
	WriteTimeout      string          `json:"write_timeout,omitempty"`
	IdleTimeout       string          `json:"idle_timeout,omitempty"`
	MaxHeaderBytes    int64           `json:"max_header_bytes,omitempty"`
	Routes            []route         `json:"routes"`
	AutomaticHTTPS    *autoHTTPS      `json:"automatic_https,omitempty"`
	TrustedProxies    *trustedProxies `json:"trusted_proxies,omitempty"`
	ClientIPHeaders   []string        `json:"client_ip_headers,omitempty"`
}

type autoHTTPS struct {
	Disable bool `json:"disable"`
}

type trustedProxies struct {
	Source string   `json:"source"`
	Ranges []string `json:"ranges"`
}

type route struct {
	Handle []any `json:"handle"`
}

// notFound answers every path the olla handler passes on, as the
// standalone proxy's mux does.
type staticResponse struct {
	Handler    string              `json:"handler"`
	StatusCode int                 `json:"status_code"`
	Headers    map[string][]string `json:"headers,omitempty"`
	Body       string              `json:"body,omitempty"`
}

type handler struct {
	Handler               string              `json:"handler"`
	Engine                string              `json:"engine,omitempty"`
	Profile               string              `json:"profile,omitempty"`
	LoadBalancer          string              `json:"load_balancer,omitempty"`
	ResponseHeaderTimeout string              `json:"response_header_timeout,omitempty"`
	StreamIdleTimeout     string              `json:"stream_idle_timeout,omitempty"`
	Endpoints             []*endpoint         `json:"endpoints"`
	Aliases               map[string][]string `json:"aliases,omitempty"`
	Retry                 *retry              `json:"retry,omitempty"`
	RequestLimits         *requestLimits      `json:"request_limits,omitempty"`
	RateLimits            *rateLimits         `json:"rate_limits,omitempty"`
	CORS                  *cors               `json:"cors,omitempty"`
	ModelRegistry         *modelRegistry      `json:"model_registry,omitempty"`
	ModelDiscovery        *modelDiscovery     `json:"model_discovery,omitempty"`
	StickySessions        *stickySessions     `json:"sticky_sessions,omitempty"`
	InternalClients       []string            `json:"internal_clients,omitempty"`
	Dashboard             string              `json:"dashboard,omitempty"`
}

type stickySessions struct {
	IdleTTL         string   `json:"idle_ttl,omitempty"`
	MaxSessions     int      `json:"max_sessions,omitempty"`
	KeySources      []string `json:"key_sources,omitempty"`
	PrefixHashBytes int      `json:"prefix_hash_bytes,omitempty"`
}

type endpoint struct {
	Name           string            `json:"name"`
	URL            string            `json:"url"`
	Type           string            `json:"type"`
	Priority       int               `json:"priority"`
	HealthCheckURL string            `json:"health_check_url,omitempty"`
	ModelURL       string            `json:"model_url,omitempty"`
	CheckInterval  string            `json:"check_interval"`
	CheckTimeout   string            `json:"check_timeout"`
	Auth           *auth             `json:"auth,omitempty"`
	Headers        map[string]string `json:"headers,omitempty"`
	ModelFilter    *modelFilter      `json:"model_filter,omitempty"`
}

type auth struct {
	Type     string `json:"type"`
	Token    string `json:"token,omitempty"`
	Header   string `json:"header,omitempty"`
	Value    string `json:"value,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

type modelFilter struct {
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
}

type retry struct {
	MaxAttempts int `json:"max_attempts"`
}

type requestLimits struct {
	MaxBodySize   int64 `json:"max_body_size"`
	MaxHeaderSize int64 `json:"max_header_size"`
}

type rateLimits struct {
	GlobalRequestsPerMinute int    `json:"global_requests_per_minute,omitempty"`
	PerIPRequestsPerMinute  int    `json:"per_ip_requests_per_minute"`
	BurstSize               int    `json:"burst_size,omitempty"`
	HealthRequestsPerMinute int    `json:"health_requests_per_minute,omitempty"`
	IdleTimeout             string `json:"idle_timeout,omitempty"`
}

type cors struct {
	AllowedOrigins   []string `json:"allowed_origins"`
	AllowedMethods   []string `json:"allowed_methods,omitempty"`
	AllowedHeaders   []string `json:"allowed_headers,omitempty"`
	ExposedHeaders   []string `json:"exposed_headers,omitempty"`
	AllowCredentials bool     `json:"allow_credentials,omitempty"`
	MaxAge           string   `json:"max_age,omitempty"`
}

type modelRegistry struct {
	RoutingStrategy        string `json:"routing_strategy"`
	FallbackBehavior       string `json:"fallback_behavior,omitempty"`
	DiscoveryTimeout       string `json:"discovery_timeout,omitempty"`
	DiscoveryRefreshOnMiss bool   `json:"discovery_refresh_on_miss,omitempty"`
}

type modelDiscovery struct {
	Interval string `json:"interval"`
	Timeout  string `json:"timeout"`
}
