package admin

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// restarter counts the calls of a Sources.RestartWorkers that answers
// started (true) or running (false).
type restarter struct {
	started bool
	calls   int
}

func (r *restarter) restart() bool {
	r.calls++
	return r.started
}

// TestRestartRoute checks every answer of POST /admin/api/workers/restart
// (spec section 8) and that RestartWorkers runs only when the request
// passed the admin access rules, the method check and the cross-site
// check: 202 started, 409 running, 404 in static mode, 405 with Allow:
// POST, 401/403 by the access rules, 403 to a cross-site request by
// Sec-Fetch-Site or Origin, allowed for same-origin, none, an Origin equal
// to the Host, and for curl (neither header).
func TestRestartRoute(t *testing.T) {
	const (
		token = "restart-s3cret"
		host  = "127.0.0.1:9090"
	)
	basic := "Basic " + "ZGFzaGJvYXJkOnJlc3RhcnQtczNjcmV0" // dashboard:restart-s3cret
	type want struct {
		code   int
		called bool
		status string // the JSON status field, when the answer has one
	}
	started := want{http.StatusAccepted, true, "started"}
	forbidden := want{http.StatusForbidden, false, ""}
	for _, tc := range []struct {
		name    string
		mode    string // "started", "running" (RestartWorkers answers false), "static" (nil)
		token   string
		allow   string
		remote  string
		method  string
		host    string
		headers map[string]string
		want    want
	}{
		{name: "curl: neither header", want: started},
		{name: "already running", mode: "running", want: want{http.StatusConflict, true, "running"}},
		{name: "static mode", mode: "static", want: want{http.StatusNotFound, false, ""}},
		{name: "static mode GET", mode: "static", method: http.MethodGet, want: want{http.StatusNotFound, false, ""}},
		{name: "GET", method: http.MethodGet, want: want{http.StatusMethodNotAllowed, false, ""}},
		{name: "HEAD", method: http.MethodHead, want: want{http.StatusMethodNotAllowed, false, ""}},
		{name: "PUT", method: http.MethodPut, want: want{http.StatusMethodNotAllowed, false, ""}},
		{name: "DELETE", method: http.MethodDelete, want: want{http.StatusMethodNotAllowed, false, ""}},
		{name: "CORS preflight", method: http.MethodOptions, headers: map[string]string{
			"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}, want: want{http.StatusMethodNotAllowed, false, ""}},

		{name: "token set, none sent", token: token, remote: "10.1.2.3:5000", want: want{http.StatusUnauthorized, false, ""}},
		{name: "token set, wrong one", token: token, remote: "10.1.2.3:5000",
			headers: map[string]string{"Authorization": "Bearer restart-s3cre"}, want: want{http.StatusUnauthorized, false, ""}},
		{name: "token set, static mode, none sent", mode: "static", token: token, want: want{http.StatusUnauthorized, false, ""}},
		{name: "token as bearer", token: token, headers: map[string]string{"Authorization": "Bearer " + token}, want: started},
		{name: "token as the dashboard's basic password", token: token, headers: map[string]string{
			"Authorization": basic, "Sec-Fetch-Site": "same-origin", "Origin": "http://" + host}, want: started},
		{name: "not allowlisted", allow: "10.0.0.0/8", remote: "192.0.2.1:5000", want: forbidden},
		{name: "allowlisted", allow: "10.0.0.0/8", remote: "10.9.9.9:5000", want: started},

		{name: "Sec-Fetch-Site cross-site", headers: map[string]string{"Sec-Fetch-Site": "cross-site"}, want: forbidden},
		{name: "Sec-Fetch-Site same-site", headers: map[string]string{"Sec-Fetch-Site": "same-site"}, want: forbidden},
		{name: "Sec-Fetch-Site cross-site with the token", token: token,
			headers: map[string]string{"Authorization": "Bearer " + token, "Sec-Fetch-Site": "cross-site"}, want: forbidden},
		{name: "Sec-Fetch-Site same-origin", headers: map[string]string{"Sec-Fetch-Site": "same-origin"}, want: started},
		{name: "Sec-Fetch-Site none", headers: map[string]string{"Sec-Fetch-Site": "none"}, want: started},
		{name: "foreign Origin", headers: map[string]string{"Origin": "http://evil.example"}, want: forbidden},
		{name: "foreign Origin, cross-site, while running", mode: "running",
			headers: map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, want: forbidden},
		{name: "foreign Origin behind same-origin", headers: map[string]string{
			"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"}, want: forbidden},
		{name: "Origin on another port", headers: map[string]string{"Origin": "http://127.0.0.1:8080"}, want: forbidden},
		{name: "Origin naming the host without its port", headers: map[string]string{"Origin": "http://127.0.0.1"}, want: forbidden},
		{name: "opaque Origin null", headers: map[string]string{"Origin": "null"}, want: forbidden},
		{name: "Origin of another scheme", headers: map[string]string{"Origin": "file://127.0.0.1:9090"}, want: forbidden},
		{name: "Origin equal to Host", headers: map[string]string{"Origin": "http://" + host}, want: started},
		{name: "Origin equal to Host, https", headers: map[string]string{"Origin": "https://" + host}, want: started},
		{name: "Origin and Host differ in case only", host: "LocalHost:9090",
			headers: map[string]string{"Origin": "http://localhost:9090"}, want: started},
		{name: "Origin with the default port implied", host: "admin.example:80",
			headers: map[string]string{"Origin": "http://admin.example"}, want: started},
		{name: "Origin with the https default port implied", host: "admin.example",
			headers: map[string]string{"Origin": "https://admin.example:443"}, want: started},
		{name: "Origin equal to an IPv6 Host", host: "[::1]:9090",
			headers: map[string]string{"Origin": "http://[::1]:9090"}, want: started},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &restarter{started: tc.mode != "running"}
			src := &Sources{}
			if tc.mode != "static" {
				src.RestartWorkers = r.restart
			}
			acc := Access{Token: tc.token}
			if tc.allow != "" {
				acc.Allow = []netip.Prefix{netip.MustParsePrefix(tc.allow)}
			}
			s := newRestartServer(t, src, acc)
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "/admin/api/workers/restart", nil)
			req.Host = host
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.remote != "" {
				req.RemoteAddr = tc.remote
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)

			assert.Equal(t, tc.want.code, w.Code)
			assert.Equal(t, map[bool]int{true: 1, false: 0}[tc.want.called], r.calls, "RestartWorkers calls")
			assert.Equal(t, "no-store", w.Header().Get("Cache-Control"))
			assert.Equal(t, "application/json", w.Header().Get("Content-Type"))
			assert.NotContains(t, w.Body.String(), token)
			if tc.want.code == http.StatusMethodNotAllowed {
				assert.Equal(t, "POST", w.Header().Get("Allow"))
			}
			if method == http.MethodHead {
				return
			}
			var body struct{ Status, Error string }
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), "JSON body: %s", w.Body)
			assert.Equal(t, tc.want.status, body.Status)
			if tc.want.code != http.StatusAccepted {
				assert.Equal(t, http.StatusText(tc.want.code), body.Error)
			} else {
				assert.Empty(t, body.Error)
			}
		})
	}
}

func newRestartServer(t *testing.T, src *Sources, acc Access) *Server {
	t.Helper()
	s, err := New(Config{Gatherer: prometheus.NewRegistry(), Sources: src, Access: acc,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	return s
}

// TestRestartRouteWithoutSources: an admin server that serves /metrics
// only answers the route 404, whatever the method.
func TestRestartRouteWithoutSources(t *testing.T) {
	s, err := New(Config{Gatherer: prometheus.NewRegistry()})
	require.NoError(t, err)
	for _, m := range []string{http.MethodPost, http.MethodGet} {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(m, "/admin/api/workers/restart", nil))
		assert.Equal(t, http.StatusNotFound, w.Code, m)
		assert.JSONEq(t, `{"error":"Not Found"}`, w.Body.String())
	}
}

// TestAdminRoutesOnlyRead: the restart route is the admin plane's only
// state-changing route. Every other route, and paths near the restart
// route's, refuses POST, PUT, PATCH and DELETE without calling
// RestartWorkers, with /diag enabled and open.
func TestAdminRoutesOnlyRead(t *testing.T) {
	p := newPlane(t, Config{DiagEnabled: true, DiagAccess: Access{Allow: mustPrefixes("0.0.0.0/0", "::/0")}})
	r := &restarter{started: true}
	p.src.RestartWorkers = r.restart
	for _, path := range []string{
		"/metrics", "/admin/", "/admin/index.html", "/admin/app.js", "/admin/api/observability",
		"/admin/api/observability/sse", "/diag", "/admin/api/workers", "/admin/api/workers/restart/",
		"/admin/api/workers/restart/x", "/admin/api/workers/RESTART", "/nope",
	} {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			w := httptest.NewRecorder()
			p.admin.ServeHTTP(w, httptest.NewRequest(m, path, strings.NewReader("{}")))
			assert.Contains(t, []int{http.StatusMethodNotAllowed, http.StatusNotFound}, w.Code, "%s %s", m, path)
		}
	}
	assert.Zero(t, r.calls, "RestartWorkers called by another route")

	w := httptest.NewRecorder()
	p.admin.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/admin/api/workers/restart", nil))
	assert.Equal(t, http.StatusAccepted, w.Code)
	assert.Equal(t, 1, r.calls, "the route itself calls it")
}

// TestSnapshotSupervised: the snapshot's supervised field is false in
// static mode and true in supervisor mode (Sources.Processes set), and
// it is what the dashboard shows its restart button by.
func TestSnapshotSupervised(t *testing.T) {
	p := newPlane(t, Config{})
	var static map[string]any
	getJSON(t, p.adm.URL+"/admin/api/observability", &static)
	assert.Equal(t, false, static["supervised"])

	p.src.Processes = func() []ProcessFigures { return []ProcessFigures{{PID: 101}, {PID: 102}} }
	var snap Snapshot
	resp := getJSON(t, p.adm.URL+"/admin/api/observability", &snap)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.True(t, snap.Supervised)
}
