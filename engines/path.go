package engines

import (
	"errors"
	"strings"
)

// Why a request path is refused by NormalizeAPIPath.
var (
	// ErrPathEscapesRoute is a path whose ".." segments climb above the
	// route prefix: /olla/ollama/../openai/... must not become another route.
	ErrPathEscapesRoute = errors.New(`its ".." segments climb above the route`)
	// ErrPathEncodedDots is a path that needs normalising and also carries
	// a percent-encoded '.' or '/': what the escapes meant is ambiguous
	// (a literal dot or slash inside a segment, or a path separator), and
	// servers disagree on it.
	ErrPathEncodedDots = errors.New(`it has empty or dot segments together with a percent-encoded '.' or '/'`)
)

// NormalizeAPIPath is the API path the engines forward for a request, the
// one every path rule (guards, route narrowing, error format) must check:
// apiPath (decoded, as url.URL.Path holds it, below the route prefix) with
// empty and dot segments cleaned exactly as UpstreamURL cleans them. escaped
// is the request's whole escaped path (url.URL.EscapedPath). A path that
// climbs above the route, or that needs cleaning and also uses an encoded
// '.' or '/', is refused.
func NormalizeAPIPath(apiPath, escaped string) (string, error) {
	if !needsCleaning(apiPath) {
		return cleanPath(apiPath), nil
	}
	if hasEncodedDotOrSlash(escaped) {
		return "", ErrPathEncodedDots
	}
	depth := 0
	for _, seg := range strings.Split(apiPath, "/") {
		switch seg {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return "", ErrPathEscapesRoute
			}
		default:
			depth++
		}
	}
	return cleanPath(apiPath), nil
}

// needsCleaning reports whether p has an empty, "." or ".." segment (a
// trailing slash aside, which cleanPath keeps).
func needsCleaning(p string) bool {
	return cleanPath(p) != p
}

func hasEncodedDotOrSlash(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == '%' && s[i+1] == '2' {
			switch s[i+2] {
			case 'e', 'E', 'f', 'F':
				return true
			}
		}
	}
	return false
}
