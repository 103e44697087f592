package admin

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// restartPath is the rolling-restart route of the admin listener (spec
// section 8): POST starts a rolling restart of every worker's process.
// It is the only admin route that changes state; every other one answers
// GET (and HEAD) only.
const restartPath = "/admin/api/workers/restart"

// serveRestart is POST /admin/api/workers/restart, reached after the admin
// access rules passed (ServeHTTP). Its answers, in the order they are
// checked, all JSON:
//   - 404 {"error":"Not Found"} without Sources.RestartWorkers (static
//     mode), whatever the method, as for an unknown route;
//   - 405 {"error":"Method Not Allowed"} with Allow: POST for any other
//     method (OPTIONS included: no CORS preflight ever succeeds);
//   - 403 {"error":"Forbidden"} to a cross-site request (crossSite);
//   - 202 {"status":"started"} once RestartWorkers started a restart, at
//     once: its progress is in the lifecycle events;
//   - 409 {"status":"running","error":"Conflict"} while one already runs.
//
// RestartWorkers is called only on the 202 and 409 paths. The request
// body, if any, is ignored.
func (s *Server) serveRestart(w http.ResponseWriter, r *http.Request) {
	restart := s.restartWorkers()
	switch {
	case restart == nil:
		writeError(w, http.StatusNotFound)
		return
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed)
		return
	}
	if why := crossSite(r); why != "" {
		s.cfg.Logger.Warn("refused a cross-site request to restart the workers", "why", why, "peer", r.RemoteAddr)
		writeError(w, http.StatusForbidden)
		return
	}
	if !restart() {
		writeRestart(w, http.StatusConflict, restartAnswer{Status: "running", Error: http.StatusText(http.StatusConflict)})
		return
	}
	s.cfg.Logger.Info("rolling restart of the workers requested through the admin API", "peer", r.RemoteAddr)
	writeRestart(w, http.StatusAccepted, restartAnswer{Status: "started"})
}

// restartWorkers returns Sources.RestartWorkers, nil without Sources.
func (s *Server) restartWorkers() func() bool {
	if s.cfg.Sources == nil {
		return nil
	}
	return s.cfg.Sources.RestartWorkers
}

// restartAnswer is the body of the restart route's 202 and 409.
type restartAnswer struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// writeRestart answers code with a.
func writeRestart(w http.ResponseWriter, code int, a restartAnswer) {
	body, _ := json.Marshal(a) // two strings: cannot fail
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(body, '\n'))
}

// crossSite reports why r must be refused as a cross-site request to a
// state-changing admin route, or "" when it may pass (spec section 8). A
// browser on the operator's machine can reach the loopback admin listener,
// so a page from anywhere could otherwise make it POST; browsers mark such
// requests, and crossSite refuses:
//   - a Sec-Fetch-Site header (Fetch Metadata) other than same-origin or
//     none (none: the operator's own action, such as a bookmark);
//   - an Origin header (RFC 6454 section 7) whose host[:port] is not the
//     request's Host, compared without case and with the scheme's default
//     port (80 for http, 443 for https) dropped on both sides; an opaque
//     "null" origin, another scheme or several Origin values count as
//     foreign.
//
// A request with neither header (curl, scripts, Prometheus) passes: only
// browsers send them, and the admin access rules still apply. It is safe
// for concurrent use.
func crossSite(r *http.Request) string {
	for _, site := range r.Header.Values("Sec-Fetch-Site") {
		if site = strings.TrimSpace(site); site != "same-origin" && site != "none" {
			return "Sec-Fetch-Site " + site
		}
	}
	origins := r.Header.Values("Origin")
	switch {
	case len(origins) == 0:
		return ""
	case len(origins) > 1:
		return "several Origin headers"
	}
	u, err := url.Parse(strings.TrimSpace(origins[0]))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "Origin " + origins[0]
	}
	if !strings.EqualFold(withoutDefaultPort(u.Host, u.Scheme), withoutDefaultPort(r.Host, u.Scheme)) {
		return "Origin " + origins[0] + " for host " + r.Host
	}
	return ""
}

// withoutDefaultPort drops scheme's default port from hostport.
func withoutDefaultPort(hostport, scheme string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return hostport
}
