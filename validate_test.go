package olla_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-olla/olla"
)

// TestValidateJSON: every semantic check fires for a JSON config, which
// never passes the Caddyfile parser: through Handler.Validate on its own,
// and through a real Caddy load (caddy.Validate provisions every module,
// then validates it). One row per check.
func TestValidateJSON(t *testing.T) {
	const ep = `{"name":"a","url":"http://127.0.0.1:9","type":"ollama"}`
	// with puts fields beside one valid endpoint.
	with := func(fields string) string {
		if fields != "" {
			fields += ","
		}
		return `{"handler":"olla",` + fields + `"endpoints":[` + ep + `]}`
	}
	// endpoint is one endpoint with extra fields.
	endpoint := func(fields string) string {
		return `{"handler":"olla","endpoints":[{"name":"a","type":"ollama",` + fields + `}]}`
	}
	url := func(fields string) string { return endpoint(`"url":"http://127.0.0.1:9",` + fields) }
	tests := []struct {
		name, handler string
		want          []string // substrings of the error; none: it loads
		notWant       string
	}{
		{"control: a valid config loads", with(`"engine":"sherpa","load_balancer":"round-robin","aliases":{"fast":["m1","m2"]}`), nil, ""},
		{"control: check_timeout above check_interval is clamped, not refused", url(`"check_interval":"2s","check_timeout":"10s"`), nil, ""},

		{"unknown engine", with(`"engine":"nginx"`), []string{"engine", `"nginx"`}, ""},
		{"unknown profile", with(`"profile":"turbo"`), []string{"profile", `"turbo"`}, ""},
		{"unknown load balancer", with(`"load_balancer":"random"`), []string{"load balancer", `"random"`}, ""},
		{"internal neither on nor off", with(`"internal":"maybe"`), []string{"internal", `"maybe"`}, ""},
		{"negative stream_idle_timeout", with(`"stream_idle_timeout":"-5s"`), []string{"stream_idle_timeout", "negative"}, ""},
		{"negative response_header_timeout", with(`"response_header_timeout":"-1s"`), []string{"response_header_timeout", "negative"}, ""},
		{"negative retry max_attempts", with(`"retry":{"max_attempts":-1}`), []string{"max_attempts"}, ""},
		{"negative max_body_size", with(`"request_limits":{"max_body_size":-1}`), []string{"max_body_size", "negative"}, ""},
		{"max_header_size over 1TiB", with(`"request_limits":{"max_header_size":2199023255552}`), []string{"max_header_size", "1TiB"}, ""},
		{"negative burst_size", with(`"rate_limits":{"burst_size":-1}`), []string{"burst_size", "0 or more"}, ""},
		{"negative rate idle_timeout", with(`"rate_limits":{"idle_timeout":"-1m"}`), []string{"idle_timeout", "negative"}, ""},
		{"cors without origins", with(`"cors":{"allowed_methods":["GET"]}`), []string{"allowed_origins"}, ""},
		{"cors credentials with any origin", with(`"cors":{"allowed_origins":["*"],"allow_credentials":true}`), []string{"allow_credentials", `"*"`}, ""},
		{"cors negative max_age", with(`"cors":{"allowed_origins":["*"],"max_age":"-1s"}`), []string{"max_age", "negative"}, ""},
		{"negative breaker failures", with(`"circuit_breaker":{"failures":-1}`), []string{"failures"}, ""},
		{"negative breaker open_for", with(`"circuit_breaker":{"open_for":"-1s"}`), []string{"open_for", "negative"}, ""},
		{"control: key_limits load", with(`"key_limits":{"key":"{http.request.header.X-Team}","anonymous":"refuse","tokens_per_minute":1000,"budget_day":5,"cost":{"input":0.000001,"output":0.000002},"models":{"big":{"requests_per_minute":10}},"shadow":true}`), nil, ""},
		{"control: a fallback chain loads", with(`"aliases":{"fast":["m1"]},"fallbacks":{"smart":["m1","m2"]}`), nil, ""},
		{"fallback chain of one model", with(`"fallbacks":{"smart":["m1"]}`), []string{"fallback chain", "at least two"}, ""},
		{"fallback chain named like an alias", with(`"aliases":{"Smart":["m1"]},"fallbacks":{"smart":["m1","m2"]}`), []string{"name of an alias"}, ""},
		{"fallback chains nested", with(`"fallbacks":{"a":["m1","b"],"b":["m2","m3"]}`), []string{"do not nest"}, ""},
		{"fallback chain repeats a model", with(`"fallbacks":{"a":["m1","M1"]}`), []string{"listed twice"}, ""},
		{"control: preload loads", with(`"preload":{"models":["m"],"concurrency":2,"timeout":"5m","retries":0,"keep_alive":"forever"}`), nil, ""},
		{"control: an endpoint's preload loads", url(`"preload":["m1","m2"]`), nil, ""},
		{"control: site-wide preload beside a type without a load route", `{"handler":"olla","preload":{"models":["m"]},"endpoints":[{"name":"a","type":"vllm","url":"http://127.0.0.1:9"}]}`, nil, ""},
		{"preload names a model twice", url(`"preload":["m","M"]`), []string{`endpoint "a"`, "preload", "twice"}, ""},
		{"preload names an empty model", url(`"preload":[""]`), []string{"preload", "not a model name"}, ""},
		{"preload model with a space", with(`"preload":{"models":["a b"]}`), []string{"preload", "not a model name"}, ""},
		{"preload on a type without a load route", `{"handler":"olla","endpoints":[{"name":"a","type":"vllm","url":"http://127.0.0.1:9","preload":["m"]}]}`, []string{`endpoint "a"`, "vLLM has no route that loads a model", "ollama"}, ""},
		{"preload without load polling", url(`"no_load_polling":true,"preload":["m"]`), []string{`endpoint "a"`, "load polling"}, ""},
		{"control: site-wide preload beside an endpoint without load polling", `{"handler":"olla","preload":{"models":["m"]},"endpoints":[{"name":"a","type":"ollama","url":"http://127.0.0.1:9","no_load_polling":true}]}`, nil, ""},
		{"preload concurrency too high", with(`"preload":{"concurrency":1000}`), []string{"preload concurrency", "64"}, ""},
		{"preload negative retries", with(`"preload":{"retries":-1}`), []string{"preload retries"}, ""},
		{"preload timeout over an hour", with(`"preload":{"timeout":"2h"}`), []string{"preload timeout"}, ""},
		{"preload bad keep_alive", with(`"preload":{"keep_alive":"soon"}`), []string{"keep_alive", `"soon"`}, ""},
		{"preload lists too many models", url(`"preload":[` + manyModels(65) + `]`), []string{"preload", "more than 64"}, ""},
		{"key_limits redis without an address", with(`"key_limits":{"storage":"redis"}`), []string{"storage redis takes an address"}, ""},
		{"key_limits an address without redis", with(`"key_limits":{"redis_address":"127.0.0.1:6379"}`), []string{"storage redis takes an address"}, ""},
		{"key_limits unknown storage", with(`"key_limits":{"storage":"etcd"}`), []string{"storage", `"etcd"`}, ""},
		{"key_limits key not a placeholder", with(`"key_limits":{"key":"alice"}`), []string{"key_limits key", "placeholder"}, ""},
		{"key_limits refuse without a key", with(`"key_limits":{"anonymous":"refuse"}`), []string{"anonymous refuse", "placeholder"}, ""},
		{"key_limits unknown anonymous", with(`"key_limits":{"key":"{http.auth.user.id}","anonymous":"maybe"}`), []string{"anonymous", `"maybe"`}, ""},
		{"key_limits negative limit", with(`"key_limits":{"tokens_per_minute":-1}`), []string{"tokens_per_minute", "between 0"}, ""},
		{"key_limits huge budget", with(`"key_limits":{"budget_month":1e12}`), []string{"budget_month", "between 0"}, ""},
		{"key_limits negative cost", with(`"key_limits":{"cost":{"output":-1}}`), []string{"cost output", "between 0"}, ""},
		{"key_limits models differing in case", with(`"key_limits":{"models":{"Big":{"tokens_per_minute":1},"big":{"tokens_per_minute":2}}}`), []string{"differ only in case"}, ""},
		{"key_limits unknown on_storage_error", with(`"key_limits":{"on_storage_error":"sometimes"}`), []string{"on_storage_error", `"sometimes"`}, ""},
		{"unknown routing strategy", with(`"model_registry":{"routing_strategy":"fastest"}`), []string{"routing_strategy", `"fastest"`}, ""},
		{"unknown fallback", with(`"model_registry":{"fallback_behavior":"sometimes"}`), []string{"fallback_behavior", `"sometimes"`}, ""},
		{"negative discovery_timeout", with(`"model_registry":{"discovery_timeout":"-1s"}`), []string{"discovery_timeout", "negative"}, ""},
		{"model discovery interval too short", with(`"model_discovery":{"interval":"500ms"}`), []string{"model_discovery interval", "at least 1s"}, ""},
		{"model discovery timeout above interval", with(`"model_discovery":{"interval":"10s","timeout":"20s"}`), []string{"model_discovery timeout", "interval"}, ""},
		{"negative model discovery timeout", with(`"model_discovery":{"timeout":"-1s"}`), []string{"model_discovery", "negative"}, ""},
		{"alias with surrounding spaces", with(`"aliases":{" fast":["m"]}`), []string{`alias " fast"`, "surrounding spaces"}, ""},
		{"alias without targets", with(`"aliases":{"fast":[]}`), []string{`alias "fast"`, "at least one target"}, ""},
		{"alias with an empty target", with(`"aliases":{"fast":["m",""]}`), []string{`alias "fast"`, "empty target"}, ""},
		{"alias listing a target twice", with(`"aliases":{"fast":["m","m"]}`), []string{`alias "fast"`, `"m"`, "twice"}, ""},
		{"negative queue max_size", with(`"queue":{"max_size":-1}`), []string{"queue max_size"}, ""},
		{"huge queue max_size", with(`"queue":{"max_size":1000000000}`), []string{"queue max_size"}, ""},
		{"negative queue max_wait", with(`"queue":{"max_wait":"-1s"}`), []string{"queue max_wait"}, ""},
		{"control: adaptive with weights and sticky sessions", with(`"load_balancer":"adaptive","load_balancer_weights":{"warm":8,"ttft":0},"sticky_sessions":{"key_sources":["session_header","ip"],"max_sessions":5}`), nil, ""},
		{"weights without adaptive", with(`"load_balancer_weights":{"warm":2}`), []string{"takes no weights", "adaptive"}, ""},
		{"weights for round-robin", with(`"load_balancer":"round-robin","load_balancer_weights":{"warm":2}`), []string{"round-robin", "takes no weights"}, ""},
		{"unknown scorer", with(`"load_balancer":"adaptive","load_balancer_weights":{"vibes":2}`), []string{"unknown scorer", `"vibes"`, "warm"}, ""},
		{"negative weight", with(`"load_balancer":"adaptive","load_balancer_weights":{"warm":-1}`), []string{"warm", "between 0 and 1000"}, ""},
		{"huge weight", with(`"load_balancer":"adaptive","load_balancer_weights":{"load":1e9}`), []string{"load", "between 0 and 1000"}, ""},
		{"unknown sticky key source", with(`"sticky_sessions":{"key_sources":["cookie"]}`), []string{"key source", `"cookie"`, "session_header"}, ""},
		{"sticky key source twice", with(`"sticky_sessions":{"key_sources":["ip","ip"]}`), []string{"ip", "twice"}, ""},
		{"negative sticky max_sessions", with(`"sticky_sessions":{"max_sessions":-1}`), []string{"max_sessions"}, ""},
		{"huge sticky max_sessions", with(`"sticky_sessions":{"max_sessions":1000000000}`), []string{"max_sessions"}, ""},
		{"negative sticky idle_ttl", with(`"sticky_sessions":{"idle_ttl":"-1s"}`), []string{"idle_ttl", "negative"}, ""},
		{"huge prefix_hash_bytes", with(`"sticky_sessions":{"prefix_hash_bytes":100000000}`), []string{"prefix_hash_bytes"}, ""},
		{"sticky redis without an address", with(`"sticky_sessions":{"storage":"redis"}`), []string{"sticky_sessions", "storage redis takes an address"}, ""},
		{"sticky unknown storage", with(`"sticky_sessions":{"storage":"etcd"}`), []string{"sticky_sessions storage", `"etcd"`}, ""},
		{"control: sticky pins shared in redis", with(`"sticky_sessions":{"storage":"redis","redis_address":"127.0.0.1:1"}`), nil, ""},
		{"load_interval too short", url(`"load_interval":"10ms"`), []string{`endpoint "a"`, "load_interval", "too short"}, ""},
		{"control: load polling off", url(`"no_load_polling":true`), nil, ""},
		{"no endpoints", `{"handler":"olla"}`, []string{"no endpoints"}, ""},
		{"null endpoint", `{"handler":"olla","endpoints":[null]}`, []string{"endpoints[0]"}, ""},
		{"endpoint without a name", `{"handler":"olla","endpoints":[{"url":"http://127.0.0.1:9","type":"ollama"}]}`, []string{"without a name"}, ""},
		{"duplicate endpoint names", `{"handler":"olla","endpoints":[` + ep + `,` + ep + `]}`, []string{`endpoint "a"`, "twice"}, ""},
		{"endpoint without url", endpoint(`"priority":1`), []string{`endpoint "a"`, "url is required"}, ""},
		{"endpoint without type", `{"handler":"olla","endpoints":[{"name":"a","url":"http://127.0.0.1:9"}]}`, []string{`endpoint "a"`, "type is required"}, ""},
		{"endpoint with an unknown type", `{"handler":"olla","endpoints":[{"name":"a","url":"http://127.0.0.1:9","type":"tgi"}]}`, []string{`endpoint "a"`, `"tgi"`}, ""},
		{"url scheme not http", endpoint(`"url":"ftp://127.0.0.1:9"`), []string{`endpoint "a"`, "http or https"}, ""},
		{"url without host", endpoint(`"url":"http:///x"`), []string{`endpoint "a"`, "no host"}, ""},
		{"url with a query", endpoint(`"url":"http://127.0.0.1:9/?key=s3cret"`), []string{`endpoint "a"`, "query"}, "s3cret"},
		{"url with userinfo", endpoint(`"url":"http://admin:hunter2@127.0.0.1:9"`), []string{`endpoint "a"`, "credentials in the URL"}, "hunter2"},
		{"negative priority", url(`"priority":-1`), []string{`endpoint "a"`, "priority"}, ""},
		{"check_interval too short", url(`"check_interval":"10ms"`), []string{`endpoint "a"`, "check_interval", "too short"}, ""},
		{"negative check_timeout", url(`"check_timeout":"-1s"`), []string{`endpoint "a"`, "check_timeout", "negative"}, ""},
		{"model_url not a path", url(`"model_url":"api/tags"`), []string{`endpoint "a"`, "model_url", "path"}, ""},
		{"health_check_url with a bad scheme", url(`"health_check_url":"http://"`), []string{`endpoint "a"`, "health_check_url"}, ""},
		{"negative max_connections", url(`"max_connections":-1`), []string{`endpoint "a"`, "max_connections"}, ""},
		{"negative max_concurrency", url(`"max_concurrency":-2`), []string{`endpoint "a"`, "max_concurrency"}, ""},
		{"huge max_concurrency", url(`"max_concurrency":1000000000`), []string{`endpoint "a"`, "max_concurrency"}, ""},
		{"negative unhealthy_after", url(`"unhealthy_after":-1`), []string{`endpoint "a"`, "unhealthy_after must be 1 or more"}, ""},
		{"unknown auth type", url(`"auth":{"type":"digest"}`), []string{`endpoint "a"`, "auth", `"digest"`}, ""},
		{"bearer without token", url(`"auth":{"type":"bearer"}`), []string{`endpoint "a"`, "bearer auth needs token"}, ""},
		{"header auth without a name", url(`"auth":{"type":"header","value":"v"}`), []string{`endpoint "a"`, "header auth needs header"}, ""},
		{"a field of another auth type", url(`"auth":{"type":"bearer","token":"t","password":"pw"}`), []string{`endpoint "a"`, "password does not apply"}, ""},
		{"a header name that is not a token", url(`"headers":{"X Team":"a"}`), []string{`endpoint "a"`, `"X Team"`}, ""},
		{"one header twice in two cases", url(`"headers":{"X-Team":"a","x-team":"b"}`), []string{`endpoint "a"`, "same header"}, ""},
		{"tls on an http URL", url(`"tls":{"insecure_skip_verify":true}`), []string{`endpoint "a"`, "not https"}, ""},
		{"empty model filter pattern", url(`"model_filter":{"include":[""]}`), []string{`endpoint "a"`, "model_filter"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			check := func(how string, err error) {
				t.Helper()
				if len(tc.want) == 0 {
					if err != nil {
						t.Errorf("%s: expected no error, got: %v", how, err)
					}
					return
				}
				if err == nil {
					t.Errorf("%s: expected an error containing %q, got none", how, tc.want)
					return
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("%s: error does not contain %q:\n\t%v", how, w, err)
					}
				}
				if tc.notWant != "" && strings.Contains(err.Error(), tc.notWant) {
					t.Errorf("%s: error shows %q: %v", how, tc.notWant, err)
				}
			}

			var h olla.Handler
			if err := json.Unmarshal([]byte(tc.handler), &h); err != nil {
				t.Fatalf("test config: %v", err)
			}
			check("Validate", h.Validate())

			cfg := `{"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:0"],"routes":[{"handle":[` + tc.handler + `]}]}}}}}`
			var c caddy.Config
			if err := json.Unmarshal([]byte(cfg), &c); err != nil {
				t.Fatalf("test config: %v", err)
			}
			check("caddy.Validate", caddy.Validate(&c))
		})
	}
}

// manyModels is n quoted model names, for a preload list.
func manyModels(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = `"m` + strconv.Itoa(i) + `"`
	}
	return strings.Join(names, ",")
}
