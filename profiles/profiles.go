// Package profiles describes every backend type the load balancer can talk to:
// its route prefixes under /olla/, its default health and model-list paths, the
// API paths it serves, its default port and the parser that reads its model
// list. Profiles are plain data in one Go table (see table.go); adding a backend
// type means adding one entry there.
//
// Profiles returned by this package are shared and must be treated as
// read-only.
package profiles

import (
	"fmt"
	"sort"
	"strings"
)

// Profile describes one backend type.
type Profile struct {
	// Name is the canonical type name, as written in a config's `type`.
	Name string
	// DisplayName is the human name of the backend, for logs and status pages.
	DisplayName string
	// Prefixes are the route prefixes under /olla/ that reach endpoints of this
	// type only, e.g. "lmstudio" for /olla/lmstudio/....
	Prefixes []string
	// Aliases are further names accepted by Lookup for a config's `type`; they
	// are not route prefixes.
	Aliases []string
	// OpenAICompatible says the backend speaks the OpenAI API, so it is
	// eligible for the cross-type /olla/openai/ route.
	OpenAICompatible bool
	// HealthPath is the default health-check path.
	HealthPath string
	// ModelsPath is the default model-discovery path.
	ModelsPath string
	// ModelFormat names the parser that reads the body of ModelsPath; one of
	// the Format* constants.
	ModelFormat string
	// AnthropicPath is the path of the backend's native Anthropic Messages API,
	// or "" when it has none: requests for such backends are passed through
	// unchanged, the others are translated to OpenAI chat completions.
	AnthropicPath string
	// AnthropicCountTokens says the native Messages API also answers
	// <AnthropicPath>/count_tokens; otherwise count_tokens is estimated.
	AnthropicCountTokens bool
	// Paths are the API paths this backend serves, used to narrow
	// /olla/proxy/ by path. An entry may hold a segment pattern: "{name}"
	// matches exactly one non-empty segment, and a final "{name...}" matches
	// the rest of the path (one or more segments, so model ids such as
	// "Qwen/Qwen2.5-7B" fit).
	Paths []string
	// DefaultPort is the port the backend listens on out of the box, or 0 when
	// the type has no conventional port.
	DefaultPort int
	// LoadSurfaces are the paths that tell how busy the backend is (the
	// default `load_url`), in order of preference: poll the first, and fall
	// back to the next when it is missing (not 200). Empty for types that
	// expose nothing; see ParseSignals for the formats.
	LoadSurfaces []LoadSurface
	// ServesListed says the backend serves every model it lists without
	// loading it first, so each listed model counts as resident.
	ServesListed bool
	// upstreamPrefix is put before the OpenAI paths (/v1/...) on the way to
	// the backend, for servers that mount the OpenAI API below the root
	// (Docker Model Runner's /engines); see UpstreamPath.
	upstreamPrefix string
}

// ParseSignals reads the body of one of the profile's load surfaces. A vLLM,
// SGLang or llama.cpp backend's signals are marked ServesListed unless the
// surface read the loaded set itself (llama.cpp in router mode).
func (p *Profile) ParseSignals(surface LoadSurface, body []byte) (Signals, error) {
	s, err := ParseSignals(surface.Format, body)
	// a surface that read the loaded set itself (llama.cpp's router mode)
	// says more than the type's rule
	if err == nil && p.ServesListed && !s.LoadedKnown {
		s.ServesListed = true
	}
	return s, err
}

var (
	byName   = map[string]*Profile{} // canonical name, prefix or alias, lower-case
	byPrefix = map[string]*Profile{} // route prefix, lower-case
	prefixes []string                // sorted
	types    []string                // sorted
)

func init() {
	for _, p := range table {
		if err := register(p); err != nil {
			panic("profiles: " + err.Error())
		}
	}
	sort.Strings(prefixes)
	sort.Strings(types)
}

// register indexes one profile; a clash is a bug in the table.
func register(p *Profile) error {
	if p.Name == "" || p.Name != strings.ToLower(p.Name) {
		return fmt.Errorf("profile name %q must be non-empty lower-case", p.Name)
	}
	if _, dup := byName[p.Name]; dup {
		return fmt.Errorf("profile %q: name already registered", p.Name)
	}
	byName[p.Name] = p
	types = append(types, p.Name)
	for _, pre := range p.Prefixes {
		if pre == "" || pre != strings.ToLower(pre) || strings.Contains(pre, "/") {
			return fmt.Errorf("profile %q: bad prefix %q", p.Name, pre)
		}
		if pre == crossTypePrefix || pre == "proxy" || pre == "models" || pre == "anthropic" {
			return fmt.Errorf("profile %q: prefix %q is reserved for another route", p.Name, pre)
		}
		if q, dup := byPrefix[pre]; dup {
			return fmt.Errorf("profile %q: prefix %q already used by %q", p.Name, pre, q.Name)
		}
		byPrefix[pre] = p
		prefixes = append(prefixes, pre)
		if q, dup := byName[pre]; dup && q != p {
			return fmt.Errorf("profile %q: prefix %q already names %q", p.Name, pre, q.Name)
		}
		byName[pre] = p
	}
	for _, a := range p.Aliases {
		a = strings.ToLower(a)
		if q, dup := byName[a]; dup && q != p {
			return fmt.Errorf("profile %q: alias %q already names %q", p.Name, a, q.Name)
		}
		byName[a] = p
	}
	for _, path := range p.Paths {
		if !strings.HasPrefix(path, "/") {
			return fmt.Errorf("profile %q: path %q must start with /", p.Name, path)
		}
	}
	return nil
}

// crossTypePrefix is the /olla/openai/ route, which spans every
// OpenAI-compatible type and so belongs to no single profile.
const crossTypePrefix = "openai"

// All returns every profile in a stable order (the order of the table). The
// slice is new on each call; the profiles are shared and read-only.
func All() []*Profile {
	out := make([]*Profile, len(table))
	copy(out, table)
	return out
}

// Lookup finds a profile by canonical name, route prefix or alias,
// case-insensitively and ignoring surrounding spaces: "lmstudio", "LM_Studio"
// and "lm-studio" all give lm-studio, and "openai" gives openai-compatible.
func Lookup(typ string) (*Profile, bool) {
	p, ok := byName[strings.ToLower(strings.TrimSpace(typ))]
	return p, ok
}

// ByPrefix finds the profile that owns a route prefix under /olla/. The match is
// exact and case-sensitive on the lower-case prefix. "openai" is not a profile
// prefix (it is the cross-type route), so ByPrefix("openai") reports false.
func ByPrefix(prefix string) (*Profile, bool) {
	p, ok := byPrefix[prefix]
	return p, ok
}

// Prefixes returns every registered route prefix, sorted, e.g. for an error
// message listing the valid providers.
func Prefixes() []string {
	return append([]string(nil), prefixes...)
}

// Types returns the canonical type names, sorted.
func Types() []string {
	return append([]string(nil), types...)
}

// ServesPath reports whether the backend serves the API path: an exact match of
// one of its Paths, or a match of a pattern entry (see Profile.Paths). A query
// string and a trailing slash are ignored, and the path is read canonical
// (CanonicalAPIPath: /engines/v1/models is /v1/models). "/api/chat" is served by ollama but
// not by vllm; "/v1/chat/completions" by every OpenAI-compatible type.
func (p *Profile) ServesPath(path string) bool {
	path = CanonicalAPIPath(cleanPath(path))
	if path == "" {
		return false
	}
	for _, pat := range p.Paths {
		if pat == path {
			return true
		}
		if strings.IndexByte(pat, '{') >= 0 && matchPathPattern(pat, path) {
			return true
		}
	}
	return false
}

// TypesForPath returns the canonical types, sorted, whose Paths serve path. It
// returns nil for a path no profile knows, in which case callers should not
// narrow by type.
func TypesForPath(path string) []string {
	var out []string
	for _, name := range types {
		if byName[name].ServesPath(path) {
			out = append(out, name)
		}
	}
	return out
}

// ParseModels reads a model-list body in the profile's ModelFormat.
func (p *Profile) ParseModels(body []byte) ([]Model, error) {
	return ParseModels(p.ModelFormat, body)
}

// cleanPath drops a query string and a trailing slash (but keeps "/").
func cleanPath(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if path == "" || path[0] != '/' {
		return ""
	}
	for len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	return path
}

// matchPathPattern matches a path against a pattern whose segments may be
// "{name}" (one non-empty segment) or, last, "{name...}" (the non-empty rest).
func matchPathPattern(pattern, path string) bool {
	pat := strings.Split(pattern[1:], "/")
	segs := strings.Split(path[1:], "/")
	for i, ps := range pat {
		wild := len(ps) >= 2 && ps[0] == '{' && ps[len(ps)-1] == '}'
		if wild && strings.HasSuffix(ps, "...}") && i == len(pat)-1 {
			if i >= len(segs) {
				return false
			}
			for _, s := range segs[i:] {
				if s == "" {
					return false
				}
			}
			return true
		}
		if i >= len(segs) {
			return false
		}
		if wild {
			if segs[i] == "" {
				return false
			}
			continue
		}
		if ps != segs[i] {
			return false
		}
	}
	return len(pat) == len(segs)
}
