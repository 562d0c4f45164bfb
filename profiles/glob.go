package profiles

import "strings"

// GlobMatch reports whether name matches pattern, ignoring case. In the
// pattern, '*' matches any run of characters (including none) and may appear
// anywhere, any number of times ("qwen*coder*" matches "Qwen2.5-Coder-7B");
// '?' matches exactly one character. Every other character matches itself;
// there is no escape character. An empty pattern matches only an empty name.
func GlobMatch(pattern, name string) bool {
	p := []rune(strings.ToLower(pattern))
	s := []rune(strings.ToLower(name))
	pi, si := 0, 0
	star, mark := -1, 0 // position of the last '*' and where its run ends in s
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			// Let the last '*' swallow one more character and retry.
			mark++
			pi, si = star+1, mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// ModelFilter selects the models an endpoint contributes, by glob patterns
// (see GlobMatch) over model names.
type ModelFilter struct {
	// Include lists the patterns a name must match one of. An empty list (or
	// one of empty patterns only), or one that contains "*", includes every
	// name.
	Include []string `json:"include,omitempty"`
	// Exclude lists patterns that reject a name; exclusion wins over
	// inclusion.
	Exclude []string `json:"exclude,omitempty"`
}

// IsZero reports whether the filter lets every name through untested.
func (f ModelFilter) IsZero() bool {
	return len(f.Include) == 0 && len(f.Exclude) == 0
}

// Allows reports whether the filter lets the model name through. Empty
// patterns are ignored.
func (f ModelFilter) Allows(name string) bool {
	for _, pat := range f.Exclude {
		if pat != "" && GlobMatch(pat, name) {
			return false
		}
	}
	included, hasInclude := false, false
	for _, pat := range f.Include {
		if pat == "" {
			continue
		}
		hasInclude = true
		if pat == "*" || GlobMatch(pat, name) {
			included = true
			break
		}
	}
	return included || !hasInclude
}

// Apply returns the models the filter allows, in their order. It returns
// models itself when the filter is zero.
func (f ModelFilter) Apply(models []Model) []Model {
	if f.IsZero() {
		return models
	}
	out := make([]Model, 0, len(models))
	for _, m := range models {
		if f.Allows(m.Name) {
			out = append(out, m)
		}
	}
	return out
}
