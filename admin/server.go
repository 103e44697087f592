// Package admin is obsproxy's admin listener (spec section 5): the
// Prometheus exposition at /metrics today, the dashboard and /diag in later
// issues. It is meant for loopback; off loopback, every route is guarded by a
// bearer token or an IP allowlist.
package admin

import (
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures the admin Handler.
type Config struct {
	// Gatherer is the registry served at /metrics; required.
	Gatherer prometheus.Gatherer
	// Token, when non-empty, admits requests with `Authorization: Bearer
	// <Token>` (compared in constant time) (OBSPROXY_ADMIN_TOKEN).
	Token string
	// Allow admits requests whose TCP peer is inside one of the prefixes
	// (OBSPROXY_ADMIN_IP_ALLOWLIST).
	Allow []netip.Prefix
	// Logger receives errors from the exposition; nil means slog.Default().
	Logger *slog.Logger
}

// NewHandler returns the admin listener's handler. With neither Token nor
// Allow set, every request is admitted: the caller (cmd/obsproxy) refuses to
// start such a listener off loopback. With either set, a request must pass
// one of them, else it gets 401 (no or wrong token) or 403 (unknown
// address); the bodies name no secret.
func NewHandler(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelError),
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: false,
	}))
	g := guard{token: []byte(cfg.Token), allow: cfg.Allow}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if code := g.check(r); code != 0 {
			w.Header().Set("Content-Type", "application/json")
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="obsproxy admin"`)
			}
			w.WriteHeader(code)
			w.Write([]byte(`{"error":"` + strings.ToLower(http.StatusText(code)) + `"}` + "\n"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// guard is the admin access rule: token or allowlist, either admits.
type guard struct {
	token []byte
	allow []netip.Prefix
}

// check returns 0 when r is admitted, else the status to answer.
func (g guard) check(r *http.Request) int {
	if len(g.token) == 0 && len(g.allow) == 0 {
		return 0
	}
	if len(g.allow) > 0 && PeerAllowed(g.allow, r.RemoteAddr) {
		return 0
	}
	if len(g.token) > 0 {
		if BearerMatches(r.Header.Get("Authorization"), g.token) {
			return 0
		}
		return http.StatusUnauthorized
	}
	return http.StatusForbidden
}

// BearerMatches reports whether an Authorization header value carries
// `Bearer <token>` (RFC 6750 section 2.1; the scheme is case-insensitive),
// comparing the token in constant time. An empty token never matches.
func BearerMatches(authorization string, token []byte) bool {
	const prefix = "bearer "
	if len(token) == 0 || len(authorization) < len(prefix) || !strings.EqualFold(authorization[:len(prefix)], prefix) {
		return false
	}
	got := strings.TrimSpace(authorization[len(prefix):])
	return subtle.ConstantTimeCompare([]byte(got), token) == 1
}

// PeerAllowed reports whether the IP of remoteAddr (ip:port, as in
// http.Request.RemoteAddr) is inside one of prefixes. IPv4-mapped IPv6
// addresses are compared as IPv4.
func PeerAllowed(prefixes []netip.Prefix, remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
