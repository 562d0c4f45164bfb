package olla

import (
	"net"
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// defaultIPv6ClientPrefix groups IPv6 clients by /64: one subscriber or
// host is routinely given a whole /64, so counting its addresses apart
// would give it 2^64 rate-limit buckets, queue lanes and sticky keys.
const defaultIPv6ClientPrefix = 64

// clientKeyVar holds the request's client key once the handler has
// computed it with its own client_ipv6_prefix.
const clientKeyVar = "olla.client_key"

// clientIP is the key one client is counted under: per-IP rate limits,
// queue lanes, the sticky ip key and the pin store's per-client share all
// use it. It starts from Caddy's idea of the client (the server's
// trusted_proxies decide which forwarded headers count) and groups IPv6
// addresses by the handler's client_ipv6_prefix.
func clientIP(r *http.Request) string {
	if k, ok := caddyhttp.GetVar(r.Context(), clientKeyVar).(string); ok && k != "" {
		return k
	}
	return clientKeyFor(r, defaultIPv6ClientPrefix)
}

// clientKeyFor computes the client key with an IPv6 prefix length.
func clientKeyFor(r *http.Request, ipv6Prefix int) string {
	raw, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if raw == "" {
		raw = r.RemoteAddr
		if host, _, err := net.SplitHostPort(raw); err == nil {
			raw = host
		}
	}
	addr, err := netip.ParseAddr(raw)
	if err != nil {
		return raw
	}
	addr = addr.WithZone("").Unmap()
	if addr.Is6() && ipv6Prefix > 0 && ipv6Prefix < 128 {
		if p, err := addr.Prefix(ipv6Prefix); err == nil {
			return p.String()
		}
	}
	return addr.String()
}

// remoteAddr is the connection's peer address, without port or zone.
func remoteAddr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return addr.WithZone("").Unmap(), true
}
