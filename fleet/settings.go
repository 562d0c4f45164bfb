package fleet

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-olla/olla/discovery"
	"github.com/caddy-olla/olla/preload"
	"github.com/caddy-olla/olla/profiles"
)

// Defaults and bounds of an endpoint's background work.
const (
	DefaultPriority      = 100
	DefaultCheckInterval = 5 * time.Second
	DefaultCheckTimeout  = 2 * time.Second

	DefaultDiscoveryInterval = 5 * time.Minute
	DefaultDiscoveryTimeout  = 30 * time.Second
	// MaxModelListBytes caps a model list's body; a bigger one is refused.
	MaxModelListBytes = 10 << 20

	DefaultLoadInterval = 2 * time.Second
	MinLoadInterval     = 100 * time.Millisecond
	// maxLoadTimeout bounds one poll; a shorter interval bounds it further.
	maxLoadTimeout = 2 * time.Second
	// maxLoadBody caps a load surface's body; a bigger one is refused.
	maxLoadBody = 1 << 20
	// signalMaxAge is how many intervals a signal stays usable.
	signalMaxAge = 3
)

// Settings is an endpoint's configuration with placeholders resolved and
// defaults filled: what the running proxy uses. It is a plain value built
// by the handler's Provision and immutable once handed to Register; a
// reload swaps in a new one. The endpoint's runtime state is Endpoint.
type Settings struct {
	Name       string
	Type       string
	Profile    *profiles.Profile
	URL        *url.URL
	DisplayURL string // scheme://host/path, no userinfo, query or fragment
	HealthURL  string
	ModelsURL  string
	Priority   int

	CheckInterval time.Duration
	CheckTimeout  time.Duration
	// UnhealthyAfter is how many transient probe failures in a row take
	// the endpoint out (discovery.Judge).
	UnhealthyAfter int

	Header       http.Header // configured headers, then auth (auth wins)
	Filter       profiles.ModelFilter
	ForwardAuth  bool
	TransportKey string // settings that need a new transport when changed
	TLSConfig    *tls.Config
	MaxConns     int
	// MaxResponseHeader bounds a backend's response header block
	// (request_limits max_response_header_size; part of TransportKey)
	MaxResponseHeader int64
	// MaxConcurrency caps requests in flight (0 = no cap)
	MaxConcurrency int

	// load signals: the surfaces to poll in order of preference, every
	// LoadInterval (0: off), each request bounded by LoadTimeout (see
	// PollLoad)
	LoadSurfaces []LoadSurface
	LoadInterval time.Duration
	LoadTimeout  time.Duration
	// SlotCap makes the backend's slot count (llama.cpp /slots) the
	// concurrency cap when MaxConcurrency is unset (load_balancer adaptive)
	SlotCap bool

	DiscoveryInterval time.Duration
	DiscoveryTimeout  time.Duration
	Breaker           discovery.BreakerConfig

	// Retype is set for an endpoint declared `type auto` (nil for the
	// others): it gives the settings for a type that probing decided (see
	// autotype.go), the receiver itself when nothing changes.
	Retype func(s *Settings, typ string) *Settings

	// Preload is what the endpoint keeps loaded (its own list, then the
	// site's), within PreloadOptions, its loads through PreloadGate with
	// every other endpoint's (preload.go). Empty: nothing.
	Preload        []preload.Want
	PreloadOptions preload.Options
	PreloadGate    *preload.Gate
}

// LoadSurface is a profile's load surface resolved against the endpoint's URL.
type LoadSurface struct {
	URL     string
	Surface profiles.LoadSurface
}

// Identity is what makes two declarations the same endpoint: the type as
// declared, so an endpoint typed by probing stays one endpoint.
func (s *Settings) Identity() string {
	typ := s.Type
	if s.Retype != nil {
		typ = AutoType
	}
	return s.Name + "\x00" + s.URL.String() + "\x00" + typ
}

// PollLoad turns load-signal polling on every interval (0: the default)
// over the profile's load surfaces; a profile without one is not polled.
func (s *Settings) PollLoad(interval time.Duration) error {
	if len(s.Profile.LoadSurfaces) == 0 {
		return nil
	}
	s.LoadInterval = DefaultLoadInterval
	if interval > 0 {
		s.LoadInterval = interval
	}
	s.LoadTimeout = min(s.LoadInterval, maxLoadTimeout)
	s.LoadSurfaces = s.LoadSurfaces[:0]
	for _, ls := range s.Profile.LoadSurfaces {
		if !strings.HasPrefix(ls.Path, "/") {
			return fmt.Errorf("load surface %s: not a path", ls.Path)
		}
		u := *s.URL
		u.Path = strings.TrimSuffix(s.URL.Path, "/") + ls.Path
		s.LoadSurfaces = append(s.LoadSurfaces, LoadSurface{URL: u.String(), Surface: ls})
	}
	return nil
}

// NewTransport is the endpoint's tuned connection pool: no connection cap
// unless configured, many idle connections kept for bursts of streams, no
// response-header timeout (model loads take minutes), and compression left
// to the client and backend so bytes pass through untouched.
func NewTransport(s *Settings) *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:         dialer.DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 512,
		MaxConnsPerHost:     s.MaxConns,
		// a backend's headers are bounded like a client's: 1.2 MB of
		// them must not pass through to the client (Envoy caps at 60 KiB)
		MaxResponseHeaderBytes: s.MaxResponseHeader,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		ForceAttemptHTTP2:      s.URL.Scheme == "https",
		TLSClientConfig:        s.TLSConfig,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
	}
	return t
}
