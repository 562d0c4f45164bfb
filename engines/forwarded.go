package engines

import (
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// SetForwarded sets X-Forwarded-For, -Proto and -Host on an outbound
// request's header h (a copy of the client's) the way Caddy's reverse_proxy
// does. The client's own values are kept, and its address appended to
// X-Forwarded-For, only when the immediate peer is a trusted proxy (the
// server's trusted_proxies, as Caddy decided for this request); otherwise
// they are replaced, so a client cannot make a backend log or trust an
// address it made up. A header set to nil by an earlier handler is omitted.
func SetForwarded(h http.Header, r *http.Request) {
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)

	var clientIP string
	if r.RemoteAddr == "@" { // a unix socket: no peer address to add
		if !trusted {
			dropForwarded(h)
			return
		}
	} else {
		ip, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			dropForwarded(h)
			return
		}
		// a zone (IPv6) is not part of the address; reverse_proxy would
		// also match its own trusted_proxies here, which olla has none of
		clientIP, _, _ = strings.Cut(ip, "%")
	}

	// the new For and Host values share one array
	var fresh [2]string
	if prior, ok := h["X-Forwarded-For"]; !ok || prior != nil {
		joined := ""
		if trusted && len(prior) > 0 {
			joined = strings.Join(prior, ", ")
		}
		switch {
		case joined != "" && clientIP != "":
			fresh[0] = joined + ", " + clientIP
		case joined != "":
			fresh[0] = joined
		case clientIP != "":
			fresh[0] = clientIP
		}
		if fresh[0] != "" {
			h["X-Forwarded-For"] = fresh[0:1:1]
		}
	}

	proto := protoHTTP
	if r.TLS != nil {
		proto = protoHTTPS
	}
	if prior, ok := h["X-Forwarded-Proto"]; !ok || prior != nil {
		if !trusted || len(prior) == 0 || prior[len(prior)-1] == "" {
			h["X-Forwarded-Proto"] = proto
		} else {
			h["X-Forwarded-Proto"] = prior[len(prior)-1:]
		}
	}
	if prior, ok := h["X-Forwarded-Host"]; !ok || prior != nil {
		if !trusted || len(prior) == 0 || prior[len(prior)-1] == "" {
			fresh[1] = r.Host
			h["X-Forwarded-Host"] = fresh[1:2:2]
		} else {
			h["X-Forwarded-Host"] = prior[len(prior)-1:]
		}
	}
}

func dropForwarded(h http.Header) {
	delete(h, "X-Forwarded-For")
	delete(h, "X-Forwarded-Proto")
	delete(h, "X-Forwarded-Host")
}

// Constant header values, shared: net/http never writes into a value
// slice, and append on a full slice copies it.
var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
	via10      = []string{"1.0 Caddy"}
	via11      = []string{"1.1 Caddy"}
	via20      = []string{"2.0 Caddy"}
	via30      = []string{"3.0 Caddy"}
)

// AddVia appends this hop to a Via header as reverse_proxy does ("1.1
// Caddy"). proto is the message's protocol name; a non-HTTP one (QUIC/1,
// say) prefixes the version.
func AddVia(h http.Header, proto string, major, minor int) {
	var v []string
	isHTTP := proto == "" || strings.HasPrefix(strings.ToUpper(proto), "HTTP/")
	switch {
	case !isHTTP:
	case major == 1 && minor == 1:
		v = via11
	case major == 2 && minor == 0:
		v = via20
	case major == 1 && minor == 0:
		v = via10
	case major == 3 && minor == 0:
		v = via30
	}
	if v == nil {
		prefix := ""
		if i := strings.Index(proto, "/"); !isHTTP && i >= 0 {
			prefix = proto[:i+1]
		}
		v = []string{prefix + strconv.Itoa(major) + "." + strconv.Itoa(minor) + " Caddy"}
	}
	if prev := h["Via"]; len(prev) > 0 {
		h["Via"] = append(prev[:len(prev):len(prev)], v...)
	} else {
		h["Via"] = v
	}
}

// ReplaceServerHeader drops the Server header our own server set on the
// response (Caddy's "Server: Caddy"), as reverse_proxy does: the backend's
// Server, copied after this, is the only one the client sees, and Via
// names this hop instead.
func ReplaceServerHeader(responseHeader http.Header) {
	delete(responseHeader, "Server")
}
