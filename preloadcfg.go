package olla

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-olla/olla/preload"
	"github.com/caddy-olla/olla/profiles"
)

// Preload is the site-wide preload setting: models kept loaded on every
// endpoint that lists them, and the bounds on loading for every endpoint's
// own preload list too.
type Preload struct {
	// Models are kept loaded on every endpoint of this site whose backend
	// lists them (an endpoint that does not list one skips it quietly).
	Models []string `json:"models,omitempty"`
	// Concurrency caps the load requests in flight across endpoints
	// (default 2; each endpoint loads one model at a time).
	Concurrency int `json:"concurrency,omitempty"`
	// Timeout bounds one load request (default 5m: a cold load of a large
	// model takes minutes).
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Retries is how many more times a load that failed transiently (no
	// answer, 5xx, busy) is tried, with backoff, before that model is given
	// up until the endpoint recovers (default 3; 0 tries once).
	Retries *int `json:"retries,omitempty"`
	// KeepAlive is the keep_alive Ollama gets with a load: "forever" (the
	// default: loaded until Ollama needs the memory or it is unloaded),
	// "default" (Ollama's own, OLLAMA_KEEP_ALIVE), or a duration.
	KeepAlive string `json:"keep_alive,omitempty"`
}

// Bounds on the preload settings.
const (
	maxPreloadConcurrency = 64
	maxPreloadTimeout     = time.Hour
	maxPreloadRetries     = 10
	maxPreloadModelName   = 256
)

// validatePreload checks the site-wide preload setting and every endpoint's
// list against it.
func (h *Handler) validatePreload() error {
	p := h.Preload
	var site []string
	if p != nil {
		if err := checkPreloadModels("preload", p.Models); err != nil {
			return err
		}
		site = p.Models
		if p.Concurrency < 0 || p.Concurrency > maxPreloadConcurrency {
			return fmt.Errorf("preload concurrency must be between 1 and %d (0 takes the default, %d), got %d",
				maxPreloadConcurrency, preload.DefaultConcurrency, p.Concurrency)
		}
		if p.Timeout < 0 || time.Duration(p.Timeout) > maxPreloadTimeout {
			return fmt.Errorf("preload timeout must be a positive duration of at most %s, got %s", maxPreloadTimeout, time.Duration(p.Timeout))
		}
		if p.Retries != nil && (*p.Retries < 0 || *p.Retries > maxPreloadRetries) {
			return fmt.Errorf("preload retries must be between 0 and %d, got %d", maxPreloadRetries, *p.Retries)
		}
		if _, err := parseKeepAlive(p.KeepAlive); err != nil {
			return err
		}
	}
	for _, ep := range h.Endpoints {
		if ep == nil || (len(ep.Preload) == 0 && len(site) == 0) {
			continue
		}
		errf := func(format string, args ...any) error {
			return fmt.Errorf("endpoint %q: "+format, append([]any{ep.Name}, args...)...)
		}
		if err := checkPreloadModels("preload", ep.Preload); err != nil {
			return errf("%v", err)
		}
		if n := len(mergePreload(ep.Preload, site)); n > preload.MaxModels {
			return errf("preload names %d models with the site-wide list, more than %d", n, preload.MaxModels)
		}
		prof, known := profiles.Lookup(ep.Type)
		canLoad := !known || prof.CanLoad() // type auto: decided when it answers
		if len(ep.Preload) > 0 && !canLoad {
			return errf("preload: %s has no route that loads a model (types that have one: %s); remove preload",
				prof.DisplayName, profiles.LoadTypes())
		}
		if ep.NoLoadPolling && canLoad && len(ep.Preload) > 0 {
			return errf("preload needs load polling to see which models are loaded; remove `load_interval off` (or the preload list)")
		}
	}
	return nil
}

// checkPreloadModels checks a preload list: names without spaces or
// control characters, each once.
func checkPreloadModels(name string, models []string) error {
	seen := make(map[string]bool, len(models))
	for _, m := range models {
		if m == "" || len(m) > maxPreloadModelName || strings.IndexFunc(m, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsControl(r)
		}) >= 0 {
			return fmt.Errorf("%s: %q is not a model name (1 to %d bytes, no spaces or control characters)", name, m, maxPreloadModelName)
		}
		if seen[strings.ToLower(m)] {
			return fmt.Errorf("%s names %q twice", name, m)
		}
		seen[strings.ToLower(m)] = true
	}
	if len(models) > preload.MaxModels {
		return fmt.Errorf("%s names %d models, more than %d", name, len(models), preload.MaxModels)
	}
	return nil
}

// mergePreload is an endpoint's wanted models: its own list, then the
// site-wide models it does not name itself.
func mergePreload(own, site []string) []preload.Want {
	out := make([]preload.Want, 0, len(own)+len(site))
	named := make(map[string]bool, len(own))
	for _, m := range own {
		out = append(out, preload.Want{Model: m})
		named[strings.ToLower(m)] = true
	}
	for _, m := range site {
		if !named[strings.ToLower(m)] {
			out = append(out, preload.Want{Model: m, Sitewide: true})
		}
	}
	return out
}

// parseKeepAlive reads keep_alive: "" or "forever" (-1: keep), "default"
// (0: Ollama's own), or a positive duration.
func parseKeepAlive(v string) (time.Duration, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "forever", "-1":
		return preload.DefaultKeepAlive, nil
	case "default":
		return 0, nil
	}
	d, err := caddy.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("preload keep_alive %q is not forever, default or a positive duration (e.g. 30m)", v)
	}
	return d, nil
}

// preloadOptions are the loading bounds a site's endpoints share.
func (h *Handler) preloadOptions() (preload.Options, int) {
	opts := preload.Options{Timeout: preload.DefaultTimeout, Retries: preload.DefaultRetries, KeepAlive: preload.DefaultKeepAlive}
	concurrency := preload.DefaultConcurrency
	if p := h.Preload; p != nil {
		if p.Timeout > 0 {
			opts.Timeout = time.Duration(p.Timeout)
		}
		if p.Retries != nil {
			opts.Retries = *p.Retries
		}
		opts.KeepAlive, _ = parseKeepAlive(p.KeepAlive) // Validate checked it
		if p.Concurrency > 0 {
			concurrency = p.Concurrency
		}
	}
	return opts, concurrency
}

// sitePreload is the site-wide model list for ep: none for an endpoint
// whose load polling is off, as nothing would show what it holds.
func (h *Handler) sitePreload(ep *Endpoint) []string {
	if h.Preload == nil || ep.NoLoadPolling {
		return nil
	}
	return h.Preload.Models
}

// parsePreload reads the site-wide `preload [<model>...] [{ ... }]`.
func (h *Handler) parsePreload(d *caddyfile.Dispenser) error {
	p := &Preload{Models: d.RemainingArgs()}
	h.Preload = p
	line, block := d.Line(), false
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		block = true
		name := d.Val()
		var err error
		switch name {
		case "concurrency":
			err = intArg(d, &p.Concurrency, 1)
		case "timeout":
			err = durationArg(d, &p.Timeout)
		case "retries":
			var n int
			if err = intArg(d, &n, 0); err == nil {
				p.Retries = &n
			}
		case "keep_alive":
			err = stringArg(d, &p.KeepAlive)
		case "models":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Err("preload models needs at least one model")
			}
			p.Models = append(p.Models, args...)
		default:
			return d.Errf("unrecognized preload subdirective %q: expected models, concurrency, timeout, retries or keep_alive", name)
		}
		if err != nil {
			return fmt.Errorf("preload: %w", err)
		}
	}
	if len(p.Models) == 0 && !block {
		return fmt.Errorf("preload needs model names or a block, at %s:%d", d.File(), line)
	}
	return nil
}

// parseEndpointPreload reads an endpoint's `preload <model>...`.
func parseEndpointPreload(d *caddyfile.Dispenser, ep *Endpoint) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("endpoint %q: preload needs at least one model name", ep.Name)
	}
	ep.Preload = append(ep.Preload, args...)
	return nil
}

// keepAliveString shows a keep_alive for status pages.
func keepAliveString(d time.Duration) string {
	switch {
	case d < 0:
		return "forever"
	case d == 0:
		return "default"
	}
	return strconv.Quote(d.String())
}
