package admin

import (
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Access is one access rule of the admin listener: a bearer token, an IP
// allowlist, or both (either admits). The admin routes use one Access
// (OBSPROXY_ADMIN_TOKEN, OBSPROXY_ADMIN_IP_ALLOWLIST) and /diag another
// (OBSPROXY_DIAG_AUTH_TOKEN, OBSPROXY_DIAG_IP_ALLOWLIST,
// OBSPROXY_DIAG_TRUST_FORWARDED_FOR); spec section 5, after seed 000.
type Access struct {
	// Token, when non-empty, admits a request whose Authorization header
	// carries it: `Bearer <Token>` (RFC 6750 section 2.1), or Basic
	// credentials (RFC 7617) whose password is Token, whatever the user
	// name, so that a browser can open the dashboard. Compared in constant
	// time.
	Token string
	// Allow admits a request whose client IP is inside one of the
	// prefixes. nil admits nobody by address.
	Allow []netip.Prefix
	// TrustForwardedFor takes the client IP from the left-most
	// X-Forwarded-For element instead of the TCP peer, for a listener
	// that only a trusted proxy can reach. False by default: the header
	// is spoofable by anyone who can connect.
	TrustForwardedFor bool
}

// Configured reports whether the rule has a token or an allowlist.
func (a Access) Configured() bool { return a.Token != "" || len(a.Allow) > 0 }

// Admits reports whether r passes the rule: its client IP (see ClientIP) is
// allowlisted, or it carries the token. A rule with neither admits nobody.
func (a Access) Admits(r *http.Request) bool {
	if len(a.Allow) > 0 {
		if ip, ok := ClientIP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), a.TrustForwardedFor); ok && Contains(a.Allow, ip) {
			return true
		}
	}
	return a.Token != "" && CredentialsMatch(r.Header.Get("Authorization"), a.Token)
}

// CredentialsMatch reports whether an Authorization header value carries
// token, as `Bearer <token>` (RFC 6750 section 2.1) or as Basic credentials
// (RFC 7617) with token as the password and any user name. Scheme names are
// case-insensitive; the token is compared in constant time. An empty token
// never matches.
func CredentialsMatch(authorization, token string) bool {
	if token == "" {
		return false
	}
	scheme, rest, _ := strings.Cut(strings.TrimSpace(authorization), " ")
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return subtle.ConstantTimeCompare([]byte(rest), []byte(token)) == 1
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return false
		}
		_, password, ok := strings.Cut(string(raw), ":")
		return ok && subtle.ConstantTimeCompare([]byte(password), []byte(token)) == 1
	}
	return false
}

// ClientIP returns the client address of a request: the IP of remoteAddr
// (ip:port, as in http.Request.RemoteAddr), or, when trustForwarded is true
// and X-Forwarded-For is present, its left-most element (the original
// client as the first proxy saw it; RFC 7239 section 5.2 describes the same
// order for Forwarded). forwarded holds the header's field lines; elements
// are comma-separated and may carry a port or brackets. IPv4-mapped IPv6
// addresses come back as IPv4, without zone. ok is false when the chosen
// address does not parse: a malformed forwarded header is not replaced by
// the peer, so that it cannot smuggle the proxy's own address into an
// allowlist.
func ClientIP(remoteAddr string, forwarded []string, trustForwarded bool) (ip netip.Addr, ok bool) {
	if trustForwarded && len(forwarded) > 0 {
		first, _, _ := strings.Cut(forwarded[0], ",")
		return parseHost(strings.TrimSpace(first))
	}
	return parseHost(remoteAddr)
}

// parseHost parses an IP with or without a port or brackets.
func parseHost(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

// Contains reports whether ip is inside one of prefixes.
func Contains(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
