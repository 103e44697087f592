package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

// The admin side of issue 14's rolling restart: POST
// /admin/api/workers/restart (spec section 8) against real uvicorn workers
// in supervisor mode. These tests need the supervisor's rolling restart
// (Supervisor.Restart wired into admin.Sources.RestartWorkers); without it
// the route answers 404 and they fail.

// adminRequest sends method path to the admin listener with headers and
// returns status and body.
func adminRequest(t *testing.T, in *instance, method, path string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, in.admin+path, nil)
	require.NoError(t, err)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := noKeepAlive.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// bearer is the Authorization header for token; none when token is "".
func bearer(token string) map[string]string {
	if token == "" {
		return map[string]string{}
	}
	return map[string]string{"Authorization": "Bearer " + token}
}

// adminMetrics scrapes the admin /metrics with token (none when "").
func adminMetrics(t *testing.T, in *instance, token string) prometheus.Gatherer {
	t.Helper()
	code, body := adminRequest(t, in, http.MethodGet, "/metrics", bearer(token))
	require.Equal(t, http.StatusOK, code, body)
	return metricstest.Parse(t, strings.NewReader(body))
}

// restartFigures are what a rolling restart changes: each worker's pid,
// the processes started, and obsproxy_reloads_total by result.
type restartFigures struct {
	pids             map[string]int
	up, workers      int
	started          float64
	success, failure float64
	reloadExits      float64
}

// readRestartFigures scrapes them for n workers w1..wN.
func readRestartFigures(t *testing.T, in *instance, token string, n int) restartFigures {
	t.Helper()
	g := adminMetrics(t, in, token)
	f := restartFigures{pids: map[string]int{}, workers: n}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("w%d", i)
		f.pids[name] = int(metricstest.Sum(t, g, "obsproxy_worker_pid", map[string]string{"worker": name}))
	}
	f.up = int(metricstest.Sum(t, g, "obsproxy_worker_up", nil))
	f.started = metricstest.Sum(t, g, "obsproxy_worker_started_total", nil)
	f.success = metricstest.Sum(t, g, "obsproxy_reloads_total", map[string]string{"result": "success"})
	f.failure = metricstest.Sum(t, g, "obsproxy_reloads_total", map[string]string{"result": "failure"})
	f.reloadExits = metricstest.Sum(t, g, "obsproxy_worker_exits_total", map[string]string{"reason": "reload"})
	return f
}

// awaitRestartUp waits until n workers take traffic and returns the
// figures then.
func awaitRestartUp(t *testing.T, in *instance, token string, n int) restartFigures {
	t.Helper()
	var f restartFigures
	eventually(t, 90*time.Second, func() bool {
		f = readRestartFigures(t, in, token, n)
		return f.up == n
	}, "%d workers up", n)
	return f
}

// awaitRolled waits until one rolling restart since before has succeeded
// and every worker runs a new process, and every old process is gone
// (reaped, not a zombie); it returns the figures then.
func awaitRolled(t *testing.T, in *instance, token string, before restartFigures) restartFigures {
	t.Helper()
	var f restartFigures
	eventually(t, 180*time.Second, func() bool {
		f = readRestartFigures(t, in, token, before.workers)
		if f.success != before.success+1 || f.up != before.workers {
			return false
		}
		for name, pid := range before.pids {
			if f.pids[name] == 0 || f.pids[name] == pid || alive(pid) {
				return false
			}
		}
		return true
	}, "a rolling restart replacing every worker's process (before: %+v)", before)
	return f
}

// TestAdminRestartAPI: POST /admin/api/workers/restart answers 202
// {"status":"started"} at once and 409 {"status":"running"} while the
// roll runs; the roll replaces every one of three uvicorn workers' pids,
// the old processes are reaped, obsproxy_reloads_total{result="success"}
// becomes 1, each old process counts as an exit with reason reload, and
// GETs sent throughout all succeed.
func TestAdminRestartAPI(t *testing.T) {
	in := launchSupervisor(t, []string{"OBSPROXY_WORKERS=3"}, uvicornArgv()...)
	before := awaitRestartUp(t, in, "", 3)
	load := startGetLoad(t, in, 4)
	time.Sleep(3 * time.Second) // a baseline for the req/s figure, not a wait for a condition

	began := time.Now()
	code, body := adminRequest(t, in, http.MethodPost, "/admin/api/workers/restart", nil)
	require.Equal(t, http.StatusAccepted, code, body)
	assert.JSONEq(t, `{"status":"started"}`, body)
	answeredIn := time.Since(began)
	code, body = adminRequest(t, in, http.MethodPost, "/admin/api/workers/restart", nil)
	assert.Equal(t, http.StatusConflict, code, "a second POST while the roll runs: %s", body)
	var conflict struct{ Status string }
	require.NoError(t, json.Unmarshal([]byte(body), &conflict), body)
	assert.Equal(t, "running", conflict.Status)

	after := awaitRolled(t, in, "", before)
	took := time.Since(began)
	baseline, _ := load.rates(began.Add(-3*time.Second), began)
	during, dip := load.rates(began, began.Add(took))
	eventually(t, 30*time.Second, func() bool {
		after = readRestartFigures(t, in, "", 3)
		return after.reloadExits == before.reloadExits+3
	}, "three exits with reason reload")
	ok, failed, firstErr := load.end()
	assert.Zero(t, failed, "requests failed during the roll (first: %s)", firstErr)
	assert.Equal(t, before.failure, after.failure, "no failed reload")
	assert.Equal(t, before.started+3, after.started, "one new process per worker, no other start")
	t.Logf("POST answered in %v; roll of 3 workers took %v (to reloads_total success and every old pid reaped); %d GETs, %d failed",
		answeredIn.Round(time.Millisecond), took.Round(time.Millisecond), ok, failed)
	if baseline > 0 {
		t.Logf("GET/s (4 clients, one loaded machine): %.0f before, %.0f during the roll (%.2f×), lowest one-second window %.0f (%.2f×)",
			baseline, during, during/baseline, dip, dip/baseline)
	}
}

// TestAdminRestartCrossSite: with OBSPROXY_ADMIN_TOKEN set, a cross-site
// POST (a foreign Origin, or Sec-Fetch-Site: cross-site, even carrying the
// token) answers 403 and a POST without the token 401; none of them starts
// anything: the pids and the process starts stay the same, no reload is
// counted, and the next valid POST answers 202, not 409. That roll then
// replaces each worker exactly once.
func TestAdminRestartCrossSite(t *testing.T) {
	const token = "restart-e2e-token-7f3c1"
	in := launchSupervisor(t, []string{"OBSPROXY_WORKERS=2", "OBSPROXY_ADMIN_TOKEN=" + token}, uvicornArgv()...)
	before := awaitRestartUp(t, in, token, 2)
	auth := "Bearer " + token
	host := strings.TrimPrefix(in.admin, "http://")
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"foreign Origin", map[string]string{"Authorization": auth, "Origin": "http://evil.example"}, http.StatusForbidden},
		{"a cross-site form post", map[string]string{"Authorization": auth, "Origin": "http://evil.example",
			"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Content-Type": "application/x-www-form-urlencoded"}, http.StatusForbidden},
		{"Sec-Fetch-Site cross-site", map[string]string{"Authorization": auth, "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"Sec-Fetch-Site same-site", map[string]string{"Authorization": auth, "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"opaque Origin", map[string]string{"Authorization": auth, "Origin": "null"}, http.StatusForbidden},
		{"no token", map[string]string{"Origin": "http://" + host, "Sec-Fetch-Site": "same-origin"}, http.StatusUnauthorized},
		{"wrong token", map[string]string{"Authorization": "Bearer " + token + "x"}, http.StatusUnauthorized},
	} {
		code, body := adminRequest(t, in, http.MethodPost, "/admin/api/workers/restart", tc.headers)
		assert.Equal(t, tc.want, code, "%s: %s", tc.name, body)
		assert.NotContains(t, body, token, tc.name)
		assert.NotContains(t, body, "started", tc.name)
	}
	now := readRestartFigures(t, in, token, 2)
	assert.Equal(t, before.pids, now.pids, "refused requests replaced a process")
	assert.Equal(t, before.started, now.started, "refused requests started a process")
	assert.Zero(t, now.success+now.failure, "refused requests counted a reload")

	// The same POST from the operator's own page (same origin) passes; a
	// roll started by a refused request would make it 409.
	code, body := adminRequest(t, in, http.MethodPost, "/admin/api/workers/restart",
		map[string]string{"Authorization": auth, "Origin": "http://" + host, "Sec-Fetch-Site": "same-origin"})
	require.Equal(t, http.StatusAccepted, code, body)
	after := awaitRolled(t, in, token, before)
	assert.Equal(t, before.started+2, after.started, "exactly one roll: one new process per worker")
	assert.Equal(t, 1.0, after.success)
}
