package proxy

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"
)

// Canonical header keys, so that map accesses need no canonicalisation.
const (
	hdrRequestID      = "X-Request-Id"
	hdrForwardedFor   = "X-Forwarded-For"
	hdrForwardedHost  = "X-Forwarded-Host"
	hdrForwardedProto = "X-Forwarded-Proto"
	hdrForwarded      = "Forwarded"
	hdrUpgrade        = "Upgrade"
	hdrConnection     = "Connection"
	hdrHTTP2Settings  = "Http2-Settings"
	hdrContentType    = "Content-Type"
	hdrContentLength  = "Content-Length"
)

// maxRequestIDLen is the longest client X-Request-ID kept (spec section 4).
const maxRequestIDLen = 128

// saneRequestID reports whether a client's X-Request-ID is kept: 1 to 128
// characters of [A-Za-z0-9._-] (spec section 4).
func saneRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// idGenerator makes request IDs: a random 64-bit prefix fixed at start-up
// and a counter, as 32 lowercase hex digits. They are unique per process
// and, with overwhelming probability, across processes.
type idGenerator struct {
	prefix [16]byte
	n      atomic.Uint64
}

const hexDigits = "0123456789abcdef"

func newIDGenerator(seed uint64) *idGenerator {
	g := &idGenerator{}
	for i := 15; i >= 0; i-- {
		g.prefix[i] = hexDigits[seed&0xf]
		seed >>= 4
	}
	return g
}

func (g *idGenerator) next() string {
	var b [32]byte
	copy(b[:16], g.prefix[:])
	n := g.n.Add(1)
	for i := 31; i >= 16; i-- {
		b[i] = hexDigits[n&0xf]
		n >>= 4
	}
	return string(b[:])
}

// stripH2CUpgrade removes a client's `Upgrade: h2c` offer (RFC 7540 section
// 3.2) from r: a worker behind a proxy must not be asked to switch the
// client's connection to HTTP/2 (uvicorn answers such a request with 400),
// and obsproxy answers in HTTP/1.1, which the offer allows.
func stripH2CUpgrade(h http.Header) {
	up := h[hdrUpgrade]
	if len(up) == 0 || !httpguts.HeaderValuesContainsToken(up, "h2c") {
		return
	}
	delete(h, hdrUpgrade)
	delete(h, hdrHTTP2Settings)
}

// isUpgrade reports whether r asks to switch protocols (Connection: Upgrade
// with an Upgrade header), as a WebSocket handshake does (RFC 6455 section 4).
func isUpgrade(h http.Header) bool {
	return len(h[hdrUpgrade]) > 0 && httpguts.HeaderValuesContainsToken(h[hdrConnection], "Upgrade")
}

// trusted reports whether the peer address remoteAddr (ip:port) is inside
// one of the trusted proxy prefixes.
func trusted(prefixes []netip.Prefix, remoteAddr string) bool {
	if len(prefixes) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// setForwarded sets Forwarded (RFC 7239) and X-Forwarded-For, -Host and
// -Proto on the outbound request (spec section 4). httputil.ReverseProxy has
// already removed the client's copies of all four from pr.Out; they are
// restored and extended only when the peer is a trusted proxy
// (OBSPROXY_TRUSTED_PROXIES), else obsproxy's own values replace them:
// X-Forwarded-For is the peer address, Forwarded is obsproxy's element alone
// (forwardedElement). A trusted peer's Forwarded gets obsproxy's element
// appended, as RFC 7239 section 4 has every proxy do.
func setForwarded(pr *httputil.ProxyRequest, trustedProxies []netip.Prefix) {
	in, out := pr.In, pr.Out
	peer, _, err := net.SplitHostPort(in.RemoteAddr)
	if err != nil {
		peer = in.RemoteAddr
	}
	if trusted(trustedProxies, in.RemoteAddr) {
		if prior := in.Header[hdrForwardedFor]; len(prior) > 0 {
			out.Header[hdrForwardedFor] = []string{strings.Join(prior, ", ") + ", " + peer}
		} else {
			out.Header[hdrForwardedFor] = []string{peer}
		}
		if v := in.Header[hdrForwardedHost]; len(v) > 0 {
			out.Header[hdrForwardedHost] = v
		} else {
			out.Header[hdrForwardedHost] = []string{in.Host}
		}
		if v := in.Header[hdrForwardedProto]; len(v) > 0 {
			out.Header[hdrForwardedProto] = v
		} else {
			out.Header[hdrForwardedProto] = protoOf(in)
		}
		elem := forwardedElement(peer, in.Host, in.TLS != nil)
		if prior := in.Header[hdrForwarded]; len(prior) > 0 {
			elem = strings.Join(prior, ", ") + ", " + elem
		}
		out.Header[hdrForwarded] = []string{elem}
		return
	}
	// One allocation for the three values: each header gets a
	// one-element, full-capacity slice of it, so an append elsewhere
	// cannot reach another's element.
	vals := [3]string{peer, in.Host, forwardedElement(peer, in.Host, in.TLS != nil)}
	all := vals[:]
	out.Header[hdrForwardedFor] = all[0:1:1]
	out.Header[hdrForwardedHost] = all[1:2:2]
	out.Header[hdrForwarded] = all[2:3:3]
	out.Header[hdrForwardedProto] = protoOf(in)
}

// forwardedElement returns obsproxy's forwarded-element (RFC 7239 section
// 4) for a request from peer, an IP address without its port (or whatever
// the server gave as the remote address when it has none), to host, the
// request's Host: "for=<peer>;host=<host>;proto=http" (proto=https when the
// request came over TLS, spec section 11). The port is left out,
// as in X-Forwarded-For: it names a client's ephemeral port, which no worker
// acts on. An IPv6 address is bracketed and quoted (section 6: for="[::1]");
// any other value that is not a token (a host with a port, say) is a quoted
// string (RFC 9110 section 5.6.4); an empty peer (a unix socket client) is
// the "unknown" of section 6.3. It costs one allocation.
func forwardedElement(peer, host string, tls bool) string {
	var buf [128]byte
	b := append(buf[:0], "for="...)
	switch {
	case peer == "":
		b = append(b, "unknown"...)
	case strings.IndexByte(peer, ':') >= 0:
		b = append(b, `"[`...)
		b = appendQuotedText(b, peer)
		b = append(b, `]"`...)
	default:
		b = appendValue(b, peer)
	}
	b = append(b, ";host="...)
	b = appendValue(b, host)
	b = append(b, ";proto=http"...)
	if tls {
		b = append(b, 's')
	}
	return string(b)
}

// appendValue appends v as a token when it is one, else as a quoted string
// (RFC 7239 section 4, RFC 9110 section 5.6.4).
func appendValue(b []byte, v string) []byte {
	if v != "" && isToken(v) {
		return append(b, v...)
	}
	b = append(b, '"')
	b = appendQuotedText(b, v)
	return append(b, '"')
}

// appendQuotedText appends v for the inside of a quoted string, escaping
// '"' and the backslash.
func appendQuotedText(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '"' || c == '\\' {
			b = append(b, '\\', c)
		} else {
			b = append(b, c)
		}
	}
	return b
}

// isToken reports whether v is made of tchar only (RFC 9110 section 5.6.2).
func isToken(v string) bool {
	for i := 0; i < len(v); i++ {
		if !httpguts.IsTokenRune(rune(v[i])) {
			return false
		}
	}
	return true
}

// protoHTTP and protoHTTPS are shared by every request: header values are
// never modified in place, so sharing the slices is safe.
var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

// protoOf is the X-Forwarded-Proto of a request that reached the public
// listener directly: https when it came over TLS (spec section 11).
func protoOf(r *http.Request) []string {
	if r.TLS != nil {
		return protoHTTPS
	}
	return protoHTTP
}
