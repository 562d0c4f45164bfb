package profiles

import "strings"

// UpstreamPath is the path to send to a backend of this type for a request
// whose API path (the route prefix stripped, canonical: see
// CanonicalAPIPath) is apiPath. It is apiPath for every type but those that
// mount their APIs below the root: Docker Model Runner answers the OpenAI API
// at /engines/v1/... and the Anthropic API at /anthropic/v1/messages. A path
// that is not under /v1/ (a native route such as /engines/ps, or an
// Anthropic path already mapped) goes unchanged.
func (p *Profile) UpstreamPath(apiPath string) string {
	if p.upstreamPrefix == "" || !strings.HasPrefix(apiPath, "/v1/") {
		return apiPath
	}
	if p.AnthropicPath != "" && p.AnthropicPath != pathMessages &&
		(apiPath == pathMessages || strings.HasPrefix(apiPath, pathMessages+"/")) {
		return strings.TrimSuffix(p.AnthropicPath, pathMessages) + apiPath
	}
	return p.upstreamPrefix + apiPath
}

// MapsPaths reports whether UpstreamPath changes some paths, so callers can
// skip it for the many types that never do.
func (p *Profile) MapsPaths() bool { return p.upstreamPrefix != "" }

// CanonicalAPIPath maps a client's path in a backend's own mount to the
// plain API path every route and rule is written for: Docker Model Runner's
// /engines/v1/chat/completions and /engines/llama.cpp/v1/chat/completions
// become /v1/chat/completions, and /anthropic/v1/messages becomes
// /v1/messages, so a client configured with a Docker Model Runner base URL
// works through /olla/dmr/ and every rule applies to the path the backend
// sees. Other paths are returned unchanged. The backend segment of
// /engines/{backend}/v1/ is dropped: Docker Model Runner picks the engine by
// the model anyway.
func CanonicalAPIPath(path string) string {
	if rest, ok := strings.CutPrefix(path, "/engines/"); ok {
		if strings.HasPrefix(rest, "v1/") {
			return "/" + rest
		}
		if backend, after, ok := strings.Cut(rest, "/"); ok && isEngineName(backend) && strings.HasPrefix(after, "v1/") {
			return "/" + after
		}
		return path
	}
	if rest, ok := strings.CutPrefix(path, "/anthropic"); ok && (rest == pathMessages || strings.HasPrefix(rest, pathMessages+"/")) {
		return rest
	}
	return path
}

// isEngineName reports whether s can be an engine segment of
// /engines/{backend}/v1/ (llama.cpp, vllm, mlx, diffusers...): one segment,
// not a dot segment.
func isEngineName(s string) bool {
	return s != "" && s != "." && s != ".."
}
