package olla

import (
	"strings"
	"time"

	"github.com/caddy-olla/olla/fleet"
	"github.com/caddy-olla/olla/profiles"
)

// `type auto`: the endpoint's loop probes it and decides its type
// (fleet/autotype.go); the root resolves the declaration's paths for the
// decided type (retype).

// autoFallback is the profile of an undecided or ambiguous endpoint.
var autoFallback, _ = profiles.Lookup("openai-compatible")

func isAutoType(typ string) bool { return strings.EqualFold(strings.TrimSpace(typ), fleet.AutoType) }

// retype is s for a decided type: the profile, and the health, model and
// load paths resolved again from the declaration. It returns s when the type
// is the one in force, or when the paths do not resolve (they did for the
// fallback, so only a bad override can fail, and it fails for every type).
func (e *Endpoint) retype(s *fleet.Settings, typ string) *fleet.Settings {
	p, ok := profiles.Lookup(typ)
	if !ok || p == s.Profile {
		return s
	}
	n := *s
	n.Profile, n.Type = p, p.Name
	var err error
	if n.HealthURL, err = endpointSubURL(s.URL, e.HealthCheckURL, p.HealthPath); err != nil {
		return s
	}
	if n.ModelsURL, err = endpointSubURL(s.URL, e.ModelURL, p.ModelsPath); err != nil {
		return s
	}
	n.LoadSurfaces, n.LoadInterval, n.LoadTimeout = nil, 0, 0
	if !e.NoLoadPolling {
		if err := n.PollLoad(time.Duration(e.LoadInterval)); err != nil {
			return s
		}
	}
	return &n
}
