package adapter

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// fmtDuration writes a duration the short way ("5m", "1h30m", "500ms")
// rather than time.Duration's "5m0s", so the JSON reads like the YAML.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// parseDuration reads a duration the way the standalone proxy does (Go
// syntax: "30s", "5m", "1h30m"). A bare number is refused: Go would read
// it as nanoseconds, which is never what was meant.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("%q has no unit: write it as a duration such as %ss or %sm", s, s, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 500ms, 30s, 5m, 1h)", s)
	}
	return d, nil
}

// sizeUnits are the suffixes the standalone proxy accepts for sizes. Its
// units are binary: 1KB is 1,024 bytes and 100MB is 104,857,600 bytes. The
// IEC spellings (KiB, MiB, ...) mean the same.
var sizeUnits = map[string]float64{
	"":    1,
	"b":   1,
	"k":   1 << 10,
	"kb":  1 << 10,
	"kib": 1 << 10,
	"m":   1 << 20,
	"mb":  1 << 20,
	"mib": 1 << 20,
	"g":   1 << 30,
	"gb":  1 << 30,
	"gib": 1 << 30,
	"t":   1 << 40,
	"tb":  1 << 40,
	"tib": 1 << 40,
}

// parseSize reads a byte count: a plain number of bytes, or a number with a
// binary unit ("100MB", "1.5GiB", "512 KB"), as the standalone proxy does.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !(unicode.IsDigit(r) || r == '.' || r == '-' || r == '+') })
	num, unit := t, ""
	if i >= 0 {
		num, unit = strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	}
	mult, ok := sizeUnits[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("%q is not a size (a number of bytes, or e.g. 512KB, 100MB, 1GB)", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a size (a number of bytes, or e.g. 512KB, 100MB, 1GB)", s)
	}
	v := f * mult
	if v > 1<<50 || v < -(1<<50) {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(v), nil
}

// escapeBraces makes literal text safe in a field that the handler runs
// through Caddy's replacer: `{` and `}` would otherwise start a placeholder.
func escapeBraces(s string) string {
	if !strings.ContainsAny(s, "{}") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r == '{' || r == '}' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// envRef is one ${VAR} or ${VAR:-default} found in a value.
type envRef struct {
	name       string
	def        string
	hasDefault bool
}

// splitEnv splits a value into literal text and ${...} references. It
// accepts ${NAME} and ${NAME:-default}; a `$` not followed by `{` is
// literal. Anything else inside ${...} is an error.
func splitEnv(s string) (parts []any, err error) {
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			if s != "" {
				parts = append(parts, s)
			}
			return parts, nil
		}
		if i > 0 {
			parts = append(parts, s[:i])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return nil, fmt.Errorf("unterminated ${ in %q", redact(s[i:]))
		}
		inner := s[i+2 : i+end]
		ref := envRef{name: inner}
		if name, def, ok := strings.Cut(inner, ":-"); ok {
			ref = envRef{name: name, def: def, hasDefault: true}
		}
		if !validEnvName(ref.name) {
			return nil, fmt.Errorf("${%s} is not a variable reference: use ${NAME} or ${NAME:-default}", redact(inner))
		}
		parts = append(parts, ref)
		s = s[i+end+1:]
	}
}

func validEnvName(n string) bool {
	if n == "" {
		return false
	}
	for i, r := range n {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// redact shortens text quoted in an error, so a secret written inline
// next to a typo is not echoed whole.
func redact(s string) string {
	if len(s) > 24 {
		return s[:12] + "..."
	}
	return s
}
