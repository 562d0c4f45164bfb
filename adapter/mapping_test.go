package adapter_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/caddy-olla/olla/adapter"
)

// dig follows a path such as "apps.http.servers.olla.routes[0].handle[0]"
// through decoded JSON; nil when a step is missing.
func dig(t *testing.T, v any, path string) any {
	t.Helper()
	for _, step := range strings.Split(path, ".") {
		name, idx, hasIdx := step, "", false
		if i := strings.IndexByte(step, '['); i >= 0 {
			name, idx, hasIdx = step[:i], strings.TrimSuffix(step[i+1:], "]"), true
		}
		if name != "" {
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[name]
		}
		for hasIdx {
			list, ok := v.([]any)
			n, err := strconv.Atoi(strings.Split(idx, "]")[0])
			if !ok || err != nil || n >= len(list) {
				return nil
			}
			v = list[n]
			rest := strings.SplitN(idx, "[", 2)
			if len(rest) == 2 {
				idx = strings.TrimSuffix(rest[1], "]")
			} else {
				hasIdx = false
			}
		}
	}
	return v
}

type adapted struct {
	t        *testing.T
	root     map[string]any
	warnings []caddyconfig.Warning
}

func adaptYAML(t *testing.T, env map[string]string, yaml string) *adapted {
	t.Helper()
	out, warns, err := fixedAdapter(env).Adapt([]byte(yaml), map[string]any{"filename": "config.yaml"})
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	var root map[string]any
	if err := json.Unmarshal(out, &root); err != nil {
		t.Fatal(err)
	}
	return &adapted{t: t, root: root, warnings: warns}
}

const (
	srvPath = "apps.http.servers.olla"
	hPath   = srvPath + ".routes[0].handle[0]"
)

// get reads a path: "h." is the olla handler, "s." the Caddy server, "ep0."
// the first endpoint; anything else starts at the root.
func (a *adapted) get(path string) any {
	switch {
	case strings.HasPrefix(path, "h."):
		path = hPath + "." + path[2:]
	case strings.HasPrefix(path, "s."):
		path = srvPath + "." + path[2:]
	case strings.HasPrefix(path, "ep"):
		i := strings.IndexByte(path, '.')
		if i < 0 {
			i = len(path)
		}
		path = hPath + ".endpoints[" + path[2:i] + "]" + path[i:]
	}
	return dig(a.t, a.root, path)
}

// norm makes expected values comparable with decoded JSON.
func norm(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

const oneEndpoint = `
discovery:
  static:
    endpoints:
      - url: "http://localhost:11434"
        name: "local"
        type: "ollama"
`

func withEndpoint(ep string) string {
	return "discovery:\n  static:\n    endpoints:\n      - " + strings.ReplaceAll(strings.TrimSpace(ep), "\n", "\n        ") + "\n"
}

func TestMappings(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		yaml string
		want map[string]any // path -> value (nil = absent)
		warn []string       // directives warned about (in order)
	}{
		{
			name: "empty config takes the standalone defaults",
			yaml: "",
			want: map[string]any{
				"admin.listen":                           "localhost:2019",
				"s.listen":                               []string{"localhost:40114"},
				"s.automatic_https.disable":              true,
				"s.read_timeout":                         "30s",
				"s.read_header_timeout":                  "10s",
				"s.trusted_proxies":                      nil,
				"h.handler":                              "olla",
				"h.engine":                               "olla",
				"h.profile":                              "auto",
				"h.load_balancer":                        "least-connections",
				"h.response_header_timeout":              "30s",
				"h.stream_idle_timeout":                  "10m",
				"h.retry.max_attempts":                   1,
				"h.request_limits":                       map[string]any{"max_body_size": 104857600, "max_header_size": 1048576},
				"h.rate_limits":                          map[string]any{"global_requests_per_minute": 1000, "per_ip_requests_per_minute": 100, "burst_size": 50, "health_requests_per_minute": 1000, "idle_timeout": "10m"},
				"h.cors":                                 nil,
				"h.model_registry":                       map[string]any{"routing_strategy": "strict", "fallback_behavior": "compatible_only"},
				"h.model_discovery":                      map[string]any{"interval": "5m", "timeout": "30s"},
				"ep0":                                    map[string]any{"name": "localhost", "url": "http://localhost:11434", "type": "ollama", "priority": 100, "check_interval": "5s", "check_timeout": "2s"},
				srvPath + ".routes[0].handle[1].handler": "static_response",
				srvPath + ".routes[0].handle[1].status_code": 404,
			},
			warn: []string{"discovery.static.endpoints"},
		},
		{
			name: "host and port",
			yaml: "server: {host: 0.0.0.0, port: 8080}\n" + oneEndpoint,
			want: map[string]any{"s.listen": []string{"0.0.0.0:8080"}},
			warn: []string{"server.host"}, // the status routes stay loopback-only
		},
		{
			name: "the dashboard's allowed CIDRs gate every status route",
			yaml: "server: {host: 0.0.0.0}\ndashboard: {enabled: true, access_policy: {allowed_cidrs: [10.0.0.0/8, '::1/128'], allowed_hosts: [olla.lan]}}\n" + oneEndpoint,
			want: map[string]any{"h.internal_clients": []string{"10.0.0.0/8", "::1/128"}},
			warn: []string{"dashboard.access_policy.allowed_cidrs", "dashboard.access_policy.allowed_hosts"},
		},
		{
			name: "IPv6 host",
			yaml: "server: {host: '::1'}\n" + oneEndpoint,
			want: map[string]any{"s.listen": []string{"[::1]:40114"}},
		},
		{
			name: "empty host listens everywhere",
			yaml: "server: {host: ''}\n" + oneEndpoint,
			want: map[string]any{"s.listen": []string{":40114"}},
			warn: []string{"server.host"},
		},
		{
			name: "server timeouts",
			yaml: "server: {read_timeout: 1m, read_header_timeout: 0, write_timeout: 0s, idle_timeout: 90s, shutdown_timeout: 15s}\n" + oneEndpoint,
			want: map[string]any{"s.read_timeout": "1m", "s.read_header_timeout": "10s", "s.write_timeout": nil,
				"s.idle_timeout": "1m30s", "apps.http.grace_period": "15s"},
		},
		{
			name: "proxy engine, balancer, profile, timeouts",
			yaml: "proxy: {engine: sherpa, load_balancer: round-robin, profile: auto, response_header_timeout: 90s, read_timeout: 2m}\n" + oneEndpoint,
			want: map[string]any{"h.engine": "sherpa", "h.load_balancer": "round-robin", "h.profile": "auto",
				"h.response_header_timeout": "1m30s", "h.stream_idle_timeout": "2m"},
		},
		{
			name: "zero proxy timeouts mean the standalone fallbacks",
			yaml: "proxy: {response_header_timeout: 0s, read_timeout: 0s}\n" + oneEndpoint,
			want: map[string]any{"h.response_header_timeout": "30s", "h.stream_idle_timeout": "1m"},
		},
		{
			name: "a profile the standalone proxy ignored is applied, with a warning",
			yaml: "proxy: {profile: streaming}\n" + oneEndpoint,
			want: map[string]any{"h.profile": "streaming"},
			warn: []string{"proxy.profile"},
		},
		{
			name: "sizes: bytes, binary units",
			yaml: "server: {request_limits: {max_body_size: 100MB, max_header_size: 64KB}}\n" + oneEndpoint,
			want: map[string]any{"h.request_limits.max_body_size": 104857600, "h.request_limits.max_header_size": 65536,
				"s.max_header_bytes": 65536},
		},
		{
			name: "sizes: plain numbers and IEC units",
			yaml: "server: {request_limits: {max_body_size: 2048, max_header_size: '1.5 MiB'}}\n" + oneEndpoint,
			want: map[string]any{"h.request_limits.max_body_size": 2048, "h.request_limits.max_header_size": 1572864},
		},
		{
			name: "a body limit of 0 keeps the cap, with a warning",
			yaml: "server: {request_limits: {max_body_size: 0}}\n" + oneEndpoint,
			want: map[string]any{"h.request_limits.max_body_size": 104857600},
			warn: []string{"server.request_limits.max_body_size"},
		},
		{
			name: "rate limits given",
			yaml: "server: {rate_limits: {global_requests_per_minute: 0, per_ip_requests_per_minute: 30, burst_size: 5}}\n" + oneEndpoint,
			want: map[string]any{"h.rate_limits": map[string]any{"per_ip_requests_per_minute": 30, "burst_size": 5,
				"health_requests_per_minute": 1000, "idle_timeout": "10m"}},
		},
		{
			name: "per-IP limit 0 turns all limiting off",
			yaml: "server: {rate_limits: {per_ip_requests_per_minute: 0}}\n" + oneEndpoint,
			want: map[string]any{"h.rate_limits": nil},
		},
		{
			name: "trusted proxies with the default ranges",
			yaml: "server: {rate_limits: {trust_proxy_headers: true}}\n" + oneEndpoint,
			want: map[string]any{
				"s.trusted_proxies":   map[string]any{"source": "static", "ranges": []string{"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"}},
				"s.client_ip_headers": []string{"X-Forwarded-For", "X-Real-IP"},
			},
		},
		{
			name: "trusted ranges are not used unless proxy headers are trusted",
			yaml: "server: {rate_limits: {trust_proxy_headers: false, trusted_proxy_cidrs: [10.1.0.0/16]}}\n" + oneEndpoint,
			want: map[string]any{"s.trusted_proxies": nil, "s.client_ip_headers": nil},
		},
		{
			name: "CORS with defaults",
			yaml: "server: {cors: {enabled: true}}\n" + oneEndpoint,
			want: map[string]any{"h.cors": map[string]any{"allowed_origins": []string{"*"}, "allowed_methods": []string{"GET", "POST", "OPTIONS"},
				"allowed_headers": []string{"*"}, "max_age": "5m"}},
		},
		{
			name: "CORS off when not enabled",
			yaml: "server: {cors: {allowed_origins: ['https://a.example']}}\n" + oneEndpoint,
			want: map[string]any{"h.cors": nil},
		},
		{
			name: "endpoint defaults and canonical type",
			yaml: withEndpoint("url: http://10.0.0.5:1234\nname: lm\ntype: lmstudio"),
			want: map[string]any{"ep0": map[string]any{"name": "lm", "url": "http://10.0.0.5:1234", "type": "lm-studio",
				"priority": 100, "check_interval": "5s", "check_timeout": "2s"}},
		},
		{
			name: "endpoint settings",
			yaml: withEndpoint("url: http://h:11434/\nname: o\ntype: ollama\npriority: 0\ncheck_interval: 30s\ncheck_timeout: 5s\nhealth_check_url: /api/version\nmodel_url: http://other:9000/api/tags\nmodel_filter: {include: ['llama*'], exclude: ['*embed*']}"),
			want: map[string]any{"ep0": map[string]any{"name": "o", "url": "http://h:11434", "type": "ollama", "priority": 0,
				"check_interval": "30s", "check_timeout": "5s", "health_check_url": "/api/version", "model_url": "http://other:9000/api/tags",
				"model_filter": map[string]any{"include": []string{"llama*"}, "exclude": []string{"*embed*"}}}},
		},
		{
			name: "a base path without preserve_path is dropped, with a warning",
			yaml: withEndpoint("url: http://gpu:8000/v1\nname: v\ntype: vllm"),
			want: map[string]any{"ep0.url": "http://gpu:8000"},
			warn: []string{"discovery.static.endpoints[0].url"},
		},
		{
			name: "a base path with preserve_path is kept; a model path resolves as a reference",
			yaml: withEndpoint("url: https://openrouter.ai/api\nname: or\ntype: openai\npreserve_path: true\nmodel_url: /api/v1/models\nhealth_check_url: v1/models"),
			want: map[string]any{"ep0.url": "https://openrouter.ai/api", "ep0.type": "openai-compatible",
				"ep0.model_url": "https://openrouter.ai/api/v1/models", "ep0.health_check_url": "https://openrouter.ai/v1/models"},
		},
		{
			name: "openai-compatible /v1/models takes the profile default",
			yaml: withEndpoint("url: https://api.groq.com/openai\nname: g\ntype: openai-compatible\npreserve_path: true\nmodel_url: /v1/models"),
			want: map[string]any{"ep0.url": "https://api.groq.com/openai", "ep0.model_url": nil},
		},
		{
			name: "type auto, and no type (the standalone's auto), are typed by probing",
			yaml: "discovery:\n  static:\n    endpoints:\n      - {url: 'http://a:1', name: a, type: auto}\n      - {url: 'http://b:1', name: b}\n",
			want: map[string]any{"ep0.type": "auto", "ep1.type": "auto"},
		},
		{
			name: "the standalone's vllm-mlx, dmr and omlx map to their own profiles",
			yaml: "discovery:\n  static:\n    endpoints:\n      - {url: 'http://mac:8000', name: mlx, type: vllm-mlx}\n" +
				"      - {url: 'http://desk:12434', name: d, type: dmr}\n      - {url: 'http://mac:8001', name: o, type: omlx}\n" +
				"      - {url: 'http://desk:12435', name: d2, type: docker-model-runner}\n",
			want: map[string]any{"ep0.type": "vllm-mlx", "ep1.type": "docker-model-runner", "ep2.type": "omlx", "ep3.type": "docker-model-runner"},
		},
		{
			name: "the same URL twice: the last entry wins",
			yaml: "discovery:\n  static:\n    endpoints:\n      - {url: 'http://a:1', name: first, type: ollama}\n      - {url: 'http://b:1', name: other, type: ollama}\n      - {url: 'http://a:1', name: second, type: ollama}\n",
			want: map[string]any{"ep0.name": "other", "ep1.name": "second", "h.retry.max_attempts": 2},
			warn: []string{"discovery.static.endpoints[2]"},
		},
		{
			name: "a missing name is taken from the host",
			yaml: withEndpoint("url: http://box:11434\ntype: ollama"),
			want: map[string]any{"ep0.name": "box:11434"},
			warn: []string{"discovery.static.endpoints[0].name"},
		},
		{
			name: "bearer from the environment",
			env:  map[string]string{"KEY": "s"},
			yaml: withEndpoint("url: https://x\nname: x\ntype: openai\nauth: {type: bearer, token: '${KEY}'}"),
			want: map[string]any{"ep0.auth": map[string]any{"type": "bearer", "token": "{env.KEY}"}},
		},
		{
			name: "an unset variable is kept as a placeholder, with a warning",
			yaml: withEndpoint("url: https://x\nname: x\ntype: openai\nauth: {type: bearer, token: '${MISSING_KEY}'}"),
			want: map[string]any{"ep0.auth.token": "{env.MISSING_KEY}"},
			warn: []string{"discovery.static.endpoints[0].auth.token"},
		},
		{
			name: "a default is used only when the variable is unset",
			env:  map[string]string{"SET": "v"},
			yaml: withEndpoint("url: https://x\nname: x\ntype: openai\nheaders: {X-A: '${SET:-a}', X-B: 'pre-${UNSET:-b}-post', X-C: '{literal}'}"),
			want: map[string]any{"ep0.headers": map[string]any{"X-A": "{env.SET}", "X-B": "pre-b-post", "X-C": `\{literal\}`}},
			warn: []string{"discovery.static.endpoints[0].headers.X-B"},
		},
		{
			name: "api_key auth becomes a header credential",
			yaml: withEndpoint("url: https://x\nname: x\ntype: litellm\nauth: {type: api_key, key: k1}"),
			want: map[string]any{"ep0.auth": map[string]any{"type": "header", "header": "X-Api-Key", "value": "k1"}},
		},
		{
			name: "api_key auth with its own header",
			yaml: withEndpoint("url: https://x\nname: x\ntype: litellm\nauth: {type: api_key, header: Api-Key, key: k1}"),
			want: map[string]any{"ep0.auth": map[string]any{"type": "header", "header": "Api-Key", "value": "k1"}},
		},
		{
			name: "basic auth with files",
			yaml: withEndpoint("url: https://x\nname: x\ntype: vllm\nauth: {type: basic, username: u, password_file: testdata/secrets/vllm_password}"),
			want: map[string]any{"ep0.auth": map[string]any{"type": "basic", "username": "u", "password": "{file.testdata/secrets/vllm_password}"}},
		},
		{
			name: "a file that cannot be read now is a warning",
			yaml: withEndpoint("url: https://x\nname: x\ntype: vllm\nauth: {type: bearer, token_file: /nonexistent/olla/token}"),
			want: map[string]any{"ep0.auth.token": "{file./nonexistent/olla/token}"},
			warn: []string{"discovery.static.endpoints[0].auth.token_file"},
		},
		{
			name: "model discovery and registry",
			yaml: oneEndpoint + "  model_discovery: {interval: 10m, timeout: 15s}\nmodel_registry:\n  routing_strategy:\n    type: discovery\n    options: {fallback_behavior: none, discovery_timeout: 3s, discovery_refresh_on_miss: true}\n",
			want: map[string]any{"h.model_discovery": map[string]any{"interval": "10m", "timeout": "15s"},
				"h.model_registry": map[string]any{"routing_strategy": "discovery", "fallback_behavior": "none", "discovery_timeout": "3s", "discovery_refresh_on_miss": true}},
		},
		{
			name: "aliases keep order; duplicates dropped with a warning",
			yaml: oneEndpoint + "model_aliases:\n  big: [a, b, a]\n  Small: [c]\n",
			want: map[string]any{"h.aliases": map[string]any{"big": []string{"a", "b"}, "Small": []string{"c"}}},
			warn: []string{"model_aliases.big"},
		},
		{
			name: "sticky sessions map onto the handler's block",
			yaml: "proxy:\n  sticky_sessions: {enabled: true, idle_ttl_seconds: 120, max_sessions: 500, key_sources: [session_header, ip], prefix_hash_bytes: 256}\n" + oneEndpoint,
			want: map[string]any{"h.sticky_sessions": map[string]any{"idle_ttl": "2m", "max_sessions": 500, "key_sources": []string{"session_header", "ip"}, "prefix_hash_bytes": 256}},
		},
		{
			name: "sticky sessions with the standalone's defaults",
			yaml: "proxy:\n  sticky_sessions: {enabled: true}\n" + oneEndpoint,
			want: map[string]any{"h.sticky_sessions": map[string]any{"idle_ttl": "10m", "max_sessions": 10000, "prefix_hash_bytes": 512}},
		},
		{
			name: "sections that are switched off are not warned about",
			yaml: "translators: {anthropic: {enabled: false}}\nproxy: {sticky_sessions: {enabled: false}}\n" + oneEndpoint,
			want: map[string]any{"h.engine": "olla"},
		},
		{
			name: "a dashboard switched off is the module's dashboard off, without a warning",
			yaml: "dashboard: {enabled: false}\n" + oneEndpoint,
			want: map[string]any{"h.dashboard": "off"},
		},
		{
			name: "a dashboard switched on is the module's default",
			yaml: "dashboard: {enabled: true}\n" + oneEndpoint,
			want: map[string]any{"h.dashboard": nil},
		},
		{
			name: "YAML anchors and merge keys",
			yaml: "defaults: &d {type: ollama, check_interval: 10s}\ndiscovery:\n  static:\n    endpoints:\n      - {<<: *d, url: 'http://a:1', name: a}\n      - {<<: *d, url: 'http://b:1', name: b, check_interval: 20s}\n",
			want: map[string]any{"ep0.check_interval": "10s", "ep1.check_interval": "20s", "ep1.type": "ollama"},
			warn: []string{"defaults"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := adaptYAML(t, tt.env, tt.yaml)
			for path, want := range tt.want {
				got := a.get(path)
				if !reflect.DeepEqual(got, norm(want)) {
					gj, _ := json.Marshal(got)
					wj, _ := json.Marshal(want)
					t.Errorf("%s = %s, want %s", path, gj, wj)
				}
			}
			var dirs []string
			for _, w := range a.warnings {
				dirs = append(dirs, w.Directive)
			}
			if !reflect.DeepEqual(dirs, tt.warn) && !(len(dirs) == 0 && len(tt.warn) == 0) {
				t.Errorf("warnings about %q, want %q\n%s", dirs, tt.warn, formatWarnings(a.warnings))
			}
		})
	}
}

// TestErrors: invalid values are errors that name the file, line and key.
func TestErrors(t *testing.T) {
	ep := func(s string) string { return withEndpoint("url: http://h:1\nname: n\ntype: ollama\n" + s) }
	tests := []struct {
		name, yaml string
		line       int
		want       []string // substrings of the message
	}{
		{"malformed YAML", "server:\n  port: 40114\n   host: x\n", 3, []string{"yaml: line 3"}},
		{"tab indentation", "server:\n\tport: 1\n", 2, []string{"yaml: line 2"}},
		{"top level is not a mapping", "- a\n- b\n", 1, []string{"expected a mapping"}},
		{"port out of range", "server:\n  port: 70000\n" + oneEndpoint, 2, []string{"server.port", "70000 is not a port"}},
		{"port zero", "server:\n  port: 0\n" + oneEndpoint, 2, []string{"server.port"}},
		{"port not a number", "server:\n  port: http\n" + oneEndpoint, 2, []string{"server.port", "not a whole number"}},
		{"unknown engine", "proxy:\n  engine: turbo\n" + oneEndpoint, 2, []string{"proxy.engine", `"turbo"`, "olla, sherpa"}},
		{"unknown balancer", "proxy:\n  load_balancer: random\n" + oneEndpoint, 2, []string{"proxy.load_balancer", "least-connections"}},
		{"unknown sticky key source", "proxy:\n  sticky_sessions:\n    enabled: true\n    key_sources: [session_header, cookie]\n" + oneEndpoint, 4, []string{"key_sources[1]", `"cookie"`, "prefix_hash"}},
		{"negative sticky max_sessions", "proxy:\n  sticky_sessions: {enabled: true, max_sessions: -5}\n" + oneEndpoint, 2, []string{"max_sessions", "negative"}},
		{"unknown profile", "proxy:\n  profile: fast\n" + oneEndpoint, 2, []string{"proxy.profile"}},
		{"duration without unit", "proxy:\n  read_timeout: 30\n" + oneEndpoint, 2, []string{"proxy.read_timeout", "no unit"}},
		{"bad duration", "proxy:\n  read_timeout: soon\n" + oneEndpoint, 2, []string{"proxy.read_timeout", "not a duration"}},
		{"bad size", "server:\n  request_limits:\n    max_body_size: lots\n" + oneEndpoint, 3, []string{"server.request_limits.max_body_size", "not a size"}},
		{"negative rate", "server:\n  rate_limits:\n    burst_size: -1\n" + oneEndpoint, 3, []string{"server.rate_limits.burst_size", "negative"}},
		{"bad CIDR", "server:\n  rate_limits:\n    trust_proxy_headers: true\n    trusted_proxy_cidrs: [10.0.0.0/33]\n" + oneEndpoint, 4, []string{"trusted_proxy_cidrs", "10.0.0.0/33"}},
		{"CORS credentials with any origin", "server:\n  cors:\n    enabled: true\n    allow_credentials: true\n" + oneEndpoint, 4, []string{"server.cors.allow_credentials"}},
		{"CORS with no origins", "server:\n  cors:\n    enabled: true\n    allowed_origins: []\n" + oneEndpoint, 4, []string{"server.cors.allowed_origins"}},
		{"CORS negative max age", "server:\n  cors:\n    enabled: true\n    max_age: -5\n" + oneEndpoint, 4, []string{"server.cors.max_age"}},
		{"no endpoints", "discovery:\n  static:\n    endpoints: []\n", 3, []string{"discovery.static.endpoints", "no endpoints"}},
		{"endpoint without url", withEndpoint("name: n\ntype: ollama"), 4, []string{"discovery.static.endpoints[0]", "url is required"}},
		{"endpoint with a bad scheme", withEndpoint("url: ftp://h\nname: n\ntype: ollama"), 4, []string{"endpoints[0].url", "http or https"}},
		{"endpoint URL with credentials", withEndpoint("url: http://u:hunter2@h:1\nname: n\ntype: ollama"), 4, []string{"endpoints[0].url", "auth", "REDACTED"}},
		{"endpoint URL with credentials and no scheme", withEndpoint("url: u:hunter2@h:1\nname: n\ntype: ollama"), 4, []string{"endpoints[0].url", "REDACTED"}},
		{"endpoint URL with a slash in the password", withEndpoint("url: http://u:hunter2/x@h:1\nname: n\ntype: ollama"), 4, []string{"endpoints[0].url", "REDACTED"}},
		{"endpoint URL with a bad escape in the password", withEndpoint("url: http://u:hunter2%zz@h:1\nname: n\ntype: ollama"), 4, []string{"endpoints[0].url", "REDACTED"}},
		{"endpoint URL with a key in the query", withEndpoint("url: http://h:1/?key=hunter2\nname: n\ntype: ollama"), 4, []string{"endpoints[0].url", "REDACTED"}},
		{"endpoint with an unknown type", withEndpoint("url: http://h:1\nname: n\ntype: tgi"), 6, []string{"endpoints[0].type", `"tgi"`}},
		{"negative priority", ep("priority: -1"), 7, []string{"endpoints[0].priority", "0 or more"}},
		{"short check interval", ep("check_interval: 500ms"), 7, []string{"endpoints[0].check_interval", "at least 1s"}},
		{"check timeout above 30s", ep("check_interval: 1m\ncheck_timeout: 45s"), 8, []string{"endpoints[0].check_timeout", "at most 30s"}},
		{"zero check timeout", ep("check_timeout: 0s"), 7, []string{"endpoints[0].check_timeout", "above 0"}},
		{"duplicate endpoint names", "discovery:\n  static:\n    endpoints:\n      - {url: 'http://a:1', name: x, type: ollama}\n      - {url: 'http://b:1', name: x, type: ollama}\n", 5, []string{"endpoints[1]", `"x"`, "line 4"}},
		{"auth without type", ep("auth: {token: t}"), 7, []string{"endpoints[0].auth", "type is required"}},
		{"auth with an unknown type", ep("auth: {type: oauth}"), 7, []string{"endpoints[0].auth.type", "bearer, api_key or basic"}},
		{"bearer without a token", ep("auth: {type: bearer}"), 7, []string{"endpoints[0].auth", "needs token"}},
		{"token and token_file", ep("auth: {type: bearer, token: a, token_file: /f}"), 7, []string{"auth.token_file", "not both"}},
		{"a field of another auth type", ep("auth: {type: bearer, token: a, username: u}"), 7, []string{"auth.username", "does not apply"}},
		{"a bad variable reference", ep("auth:\n  type: bearer\n  token: '${BAD-NAME}'"), 9, []string{"auth.token", "${NAME}"}},
		{"an unterminated variable", ep("headers:\n  X-K: '${OOPS'"), 8, []string{"headers.X-K", "unterminated"}},
		{"a key set twice", "server:\n  port: 1\n  port: 2\n" + oneEndpoint, 3, []string{"server.port", "set twice", "line 2"}},
		{"a section that is not a mapping", "server: 8080\n" + oneEndpoint, 1, []string{"server", "expected a mapping"}},
		{"unknown routing strategy", oneEndpoint + "model_registry:\n  routing_strategy:\n    type: fastest\n", 10, []string{"model_registry.routing_strategy.type", "strict, optimistic, discovery"}},
		{"unknown fallback", oneEndpoint + "model_registry:\n  routing_strategy:\n    options:\n      fallback_behavior: some\n", 11, []string{"fallback_behavior"}},
		{"alias without models", oneEndpoint + "model_aliases:\n  fast: []\n", 9, []string{"model_aliases.fast", "at least one model"}},
		{"alias with an empty model", oneEndpoint + "model_aliases:\n  fast: ['']\n", 9, []string{"model_aliases.fast", "empty model name"}},
		{"zero discovery interval", oneEndpoint + "  model_discovery:\n    interval: 0s\n", 9, []string{"discovery.model_discovery.interval", "positive"}},
	}
	lineRE := regexp.MustCompile(`^config\.yaml:(\d+): `)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := fixedAdapter(nil).Adapt([]byte(tt.yaml), map[string]any{"filename": "config.yaml"})
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error %q shows the password", msg)
			}
			if tt.line == 0 {
				return
			}
			if strings.HasPrefix(msg, "config.yaml: yaml: line ") {
				if !strings.Contains(msg, "line "+strconv.Itoa(tt.line)+":") {
					t.Errorf("error %q is not on line %d", msg, tt.line)
				}
				return
			}
			m := lineRE.FindStringSubmatch(msg)
			if m == nil || m[1] != strconv.Itoa(tt.line) {
				t.Errorf("error %q should start with config.yaml:%d:", msg, tt.line)
			}
		})
	}
}

// TestWarnings: every key the module cannot honour is a warning naming the
// key and its line; unknown keys too.
func TestWarnings(t *testing.T) {
	yaml := `server:
  request_logging: true
  rate_limits:
    cleanup_interval: 5m
    per_endpoint: {default_requests_per_minute: 10}
  colour: blue
proxy:
  stream_buffer_size: 8192
  connection_timeout: 30s
  connection_keep_alive: 30s
  tls_handshake_timeout: 10s
  response_timeout: 15m
  max_retries: 3
  retry_backoff: 1s
  retry: {enabled: true}
  profile_filter: {include: [ollama]}
  sticky_sessions: {enabled: true, idle_ttl_seconds: 0}
discovery:
  type: consul
  refresh_interval: 30s
  health_check: {initial_delay: 1s}
  model_discovery:
    enabled: false
    concurrent_workers: 5
    retry_attempts: 3
    retry_backoff: 1s
  static:
    endpoints:
      - url: http://localhost:11434
        name: local
        type: ollama
        weight: 3
model_registry:
  type: redis
  enable_unifier: false
  unification: {enabled: true}
translators: {anthropic: {enabled: true}}
logging: {level: debug}
engineering: {show_nerdstats: true}
dashboard: {enabled: true}
extra: 1
`
	_, warns, err := fixedAdapter(nil).Adapt([]byte(yaml), map[string]any{"filename": "config.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		line int
		key  string
	}{
		{2, "server.request_logging"}, {4, "server.rate_limits.cleanup_interval"}, {5, "server.rate_limits.per_endpoint"},
		{6, "server.colour"}, {8, "proxy.stream_buffer_size"}, {9, "proxy.connection_timeout"},
		{10, "proxy.connection_keep_alive"}, {11, "proxy.tls_handshake_timeout"}, {12, "proxy.response_timeout"},
		{13, "proxy.max_retries"}, {14, "proxy.retry_backoff"}, {15, "proxy.retry"}, {16, "proxy.profile_filter"},
		{17, "proxy.sticky_sessions.idle_ttl_seconds"}, {19, "discovery.type"}, {20, "discovery.refresh_interval"},
		{21, "discovery.health_check"}, {23, "discovery.model_discovery.enabled"},
		{24, "discovery.model_discovery.concurrent_workers"}, {25, "discovery.model_discovery.retry_attempts"},
		{26, "discovery.model_discovery.retry_backoff"}, {32, "discovery.static.endpoints[0].weight"},
		{34, "model_registry.type"}, {35, "model_registry.enable_unifier"}, {36, "model_registry.unification"},
		{37, "translators"}, {38, "logging"}, {39, "engineering"}, {41, "extra"},
	}
	if len(warns) != len(want) {
		t.Errorf("%d warnings, want %d:\n%s", len(warns), len(want), formatWarnings(warns))
	}
	for i := 0; i < len(want) && i < len(warns); i++ {
		w := warns[i]
		if w.Line != want[i].line || w.Directive != want[i].key || w.File != "config.yaml" || w.Message == "" {
			t.Errorf("warning %d = %d %s (%s), want %d %s", i, w.Line, w.Directive, w.File, want[i].line, want[i].key)
		}
	}
	for _, w := range warns {
		if w.Directive == "logging" && !strings.Contains(w.Message, "Caddy's logging") {
			t.Errorf("logging warning should point at Caddy's logging: %q", w.Message)
		}
	}
}

// TestEnvironmentOverrides: OLLA_* overrides of the standalone proxy are
// not applied, and say so.
func TestEnvironmentOverrides(t *testing.T) {
	a := adapter.Adapter{
		LookupEnv: func(string) (string, bool) { return "", false },
		Environ: func() []string {
			return []string{"HOME=/root", "OLLA_SERVER_PORT=9000", "OLLA_CONFIG_FILE=x", "OLLA_PROXY_ENGINE=sherpa"}
		},
	}
	_, warns, err := a.Adapt([]byte(oneEndpoint), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range warns {
		got = append(got, w.Directive)
	}
	want := []string{"OLLA_PROXY_ENGINE", "OLLA_SERVER_PORT"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warned about %v, want %v", got, want)
	}
}

// TestSecretsStayOut: a secret from the environment or a file never
// appears in the JSON.
func TestSecretsStayOut(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secretFile, []byte("file-secret-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := withEndpoint("url: https://x\nname: x\ntype: openai\nauth: {type: bearer, token_file: '" + secretFile + "'}\nheaders: {X-K: '${ENV_SECRET}'}")
	out, _, err := fixedAdapter(map[string]string{"ENV_SECRET": "env-secret-456"}).Adapt([]byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"file-secret-123", "env-secret-456"} {
		if strings.Contains(string(out), s) {
			t.Errorf("the JSON contains the secret %q: %s", s, out)
		}
	}
}

func TestMalformedYAMLIsAnError(t *testing.T) {
	_, _, err := fixedAdapter(nil).Adapt([]byte("proxy:\n  engine: [olla\n"), map[string]any{"filename": "/etc/olla/config.yaml"})
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.HasPrefix(err.Error(), "/etc/olla/config.yaml: ") || !regexp.MustCompile(`line \d+`).MatchString(err.Error()) {
		t.Errorf("error %q should name the file and the line", err)
	}
}

// TestCheckTimeoutNotBelowInterval: a check_timeout that is not below the
// check_interval is accepted as the standalone proxy accepts it; the
// handler clamps it to the interval, and the adapter says so on its line.
func TestCheckTimeoutNotBelowInterval(t *testing.T) {
	for _, timeout := range []string{"2s", "5s"} {
		yaml := withEndpoint("url: http://h:1\nname: n\ntype: ollama\ncheck_interval: 2s\ncheck_timeout: " + timeout)
		out, warns, err := fixedAdapter(nil).Adapt([]byte(yaml), map[string]any{"filename": "config.yaml"})
		if err != nil {
			t.Fatalf("check_timeout %s: %v", timeout, err)
		}
		if !strings.Contains(string(out), `"check_interval":"2s","check_timeout":"`+timeout+`"`) {
			t.Errorf("check_timeout %s: not written as given: %s", timeout, out)
		}
		if len(warns) != 1 || warns[0].Line != 8 || warns[0].Directive != "discovery.static.endpoints[0].check_timeout" ||
			!strings.Contains(warns[0].Message, "clamps") {
			t.Errorf("check_timeout %s: want one warning on line 8 saying it is clamped, got:\n%s", timeout, formatWarnings(warns))
		}
	}
}
