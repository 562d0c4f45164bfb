package olla

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The /internal/ routes, the dashboard and /version show every endpoint's
// URL and the recent traffic, so by default they answer only local
// clients: internal_clients, 127.0.0.0/8 and ::1 unless configured. A
// client is local when the connection's peer address is in the list, and
// so is Caddy's idea of the client (the server's trusted_proxies decide
// which forwarded headers count), and, when the peer is a trusted proxy,
// every address its X-Forwarded-For names: a proxy on the same host that
// forwards public traffic makes nobody local, and a forwarded header from
// a client Caddy does not trust is never read. /internal/health (always
// "healthy", nothing else) answers everyone, for orchestrators' probes.

// internalAny opens the internal routes to every client.
const internalAny = "any"

var defaultInternalClients = []string{"127.0.0.0/8", "::1/128"}

// internalPolicy is a validated internal_clients list.
type internalPolicy struct {
	any      bool
	prefixes []netip.Prefix
}

// parseInternalClients checks and builds an internal_clients list: CIDRs
// or single addresses, or "any" alone.
func parseInternalClients(list []string) (*internalPolicy, error) {
	if len(list) == 0 {
		list = defaultInternalClients
	}
	p := &internalPolicy{}
	for _, v := range list {
		if v == internalAny {
			if len(list) > 1 {
				return nil, fmt.Errorf("internal_clients %q stands alone: it opens the internal routes to every client", internalAny)
			}
			p.any = true
			continue
		}
		pre, err := netip.ParsePrefix(v)
		if err != nil {
			addr, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return nil, fmt.Errorf("internal_clients %q is neither an address nor a CIDR (such as 10.0.0.0/8), nor %q", v, internalAny)
			}
			pre = netip.PrefixFrom(addr, addr.BitLen())
		}
		p.prefixes = append(p.prefixes, pre.Masked())
	}
	return p, nil
}

func (p *internalPolicy) contains(a netip.Addr) bool {
	for _, pre := range p.prefixes {
		if pre.Contains(a) {
			return true
		}
	}
	return false
}

func (p *internalPolicy) containsString(s string) bool {
	s = strings.TrimSpace(s)
	if host, _, found := strings.Cut(s, "%"); found {
		s = host
	}
	a, err := netip.ParseAddr(s)
	return err == nil && p.contains(a.Unmap())
}

// allows reports whether r comes from a client the internal routes answer.
func (p *internalPolicy) allows(r *http.Request) bool {
	if p.any {
		return true
	}
	peer, ok := remoteAddr(r)
	if !ok || !p.contains(peer) {
		return false
	}
	if ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ip != "" && !p.containsString(ip) {
		return false
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		for _, v := range r.Header.Values("X-Forwarded-For") {
			for _, a := range strings.Split(v, ",") {
				if !p.containsString(a) {
					return false
				}
			}
		}
	}
	return true
}

// refuseInternal answers a client the internal routes do not serve.
func (rq *request) refuseInternal() error {
	return rq.fail(apiError{status: http.StatusForbidden, code: "forbidden",
		message: "the /internal/ routes and /version answer local clients only (olla internal_clients); to open them, list the clients' addresses in internal_clients (or `any`) and put basic_auth in front"})
}
