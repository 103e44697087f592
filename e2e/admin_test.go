package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// diagGet sends GET /diag to the admin listener with optional headers and
// returns the status and body.
func diagGet(t *testing.T, in *instance, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, in.admin+"/diag", nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	return resp.StatusCode, string(b)
}

// TestDiagGate is seed 000's four cases against the real binary: disabled
// 404; enabled without controls 403; token 200, wrong token 403; allowlist
// with and without trusted forwarding. The 200 bodies never carry the
// tokens, the environment's values or the workers' addresses.
func TestDiagGate(t *testing.T) {
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	const (
		diagToken  = "diag-e2e-token-93b1f"
		adminToken = "admin-e2e-token-4c2aa"
		marker     = "env-marker-value-7d41e0"
	)
	// Values that must never appear in a /diag body.
	secrets := []string{diagToken, adminToken, marker, fmt.Sprintf("127.0.0.1:%d", w.port), fmt.Sprint(w.port)}
	checkBody := func(t *testing.T, body string) {
		t.Helper()
		var d map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &d))
		for _, k := range []string{"status", "timestamp", "uptime_seconds", "process", "system", "queue", "runtime"} {
			assert.Contains(t, d, k)
		}
		queue := d["queue"].(map[string]any)
		assert.Equal(t, 1.0, queue["workers_total"])
		proc := d["process"].(map[string]any)
		assert.Positive(t, proc["memory_rss_bytes"])
		assert.Positive(t, proc["open_fds"])
		for _, s := range secrets {
			assert.NotContains(t, body, s)
		}
	}

	t.Run("disabled", func(t *testing.T) {
		in := startObsproxy(t, []*worker{w}, "OBSPROXY_DIAG_AUTH_TOKEN="+diagToken)
		code, body := diagGet(t, in, map[string]string{"Authorization": "Bearer " + diagToken})
		assert.Equal(t, http.StatusNotFound, code)
		_, unknown := diagGet(t, in, nil)
		resp, err := http.Get(in.admin + "/no-such-route")
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, string(b), unknown, "a disabled /diag looks like an unknown route")
		assert.NotContains(t, body, diagToken)
	})
	t.Run("enabled without controls", func(t *testing.T) {
		in := startObsproxy(t, []*worker{w}, "OBSPROXY_DIAG_ENABLED=true")
		code, _ := diagGet(t, in, nil)
		assert.Equal(t, http.StatusForbidden, code)
		code, _ = diagGet(t, in, map[string]string{"Authorization": "Bearer anything"})
		assert.Equal(t, http.StatusForbidden, code)
	})
	t.Run("token", func(t *testing.T) {
		in := startObsproxy(t, []*worker{w}, "OBSPROXY_DIAG_ENABLED=true", "OBSPROXY_DIAG_AUTH_TOKEN="+diagToken,
			"OBSPROXY_ADMIN_TOKEN="+adminToken, "OBSPROXY_E2E_MARKER="+marker)
		code, body := diagGet(t, in, map[string]string{"Authorization": "Bearer " + diagToken})
		require.Equal(t, http.StatusOK, code, body)
		checkBody(t, body)
		code, body = diagGet(t, in, map[string]string{"Authorization": "Bearer wrong-" + diagToken})
		assert.Equal(t, http.StatusForbidden, code)
		assert.NotContains(t, body, diagToken)
		code, _ = diagGet(t, in, map[string]string{"Authorization": "Bearer " + adminToken})
		assert.Equal(t, http.StatusForbidden, code, "the admin token does not open /diag")
		code, _ = diagGet(t, in, nil)
		assert.Equal(t, http.StatusForbidden, code)
	})
	t.Run("allowlist", func(t *testing.T) {
		in := startObsproxy(t, []*worker{w}, "OBSPROXY_DIAG_ENABLED=true", "OBSPROXY_DIAG_IP_ALLOWLIST=127.0.0.1,::1",
			"OBSPROXY_E2E_MARKER="+marker)
		code, body := diagGet(t, in, nil)
		require.Equal(t, http.StatusOK, code, body)
		checkBody(t, body)
		code, _ = diagGet(t, in, map[string]string{"X-Forwarded-For": "192.0.2.10"})
		assert.Equal(t, http.StatusOK, code, "forwarded-for is ignored unless trusted")
	})
	t.Run("allowlist without trusted forwarding", func(t *testing.T) {
		in := startObsproxy(t, []*worker{w}, "OBSPROXY_DIAG_ENABLED=true", "OBSPROXY_DIAG_IP_ALLOWLIST=10.0.0.0/8")
		code, _ := diagGet(t, in, map[string]string{"X-Forwarded-For": "10.1.2.3"})
		assert.Equal(t, http.StatusForbidden, code, "a spoofed forwarded-for does not pass")
	})
	t.Run("allowlist with trusted forwarding", func(t *testing.T) {
		in := startObsproxy(t, []*worker{w}, "OBSPROXY_DIAG_ENABLED=true", "OBSPROXY_DIAG_IP_ALLOWLIST=10.0.0.0/8",
			"OBSPROXY_DIAG_TRUST_FORWARDED_FOR=true")
		code, body := diagGet(t, in, map[string]string{"X-Forwarded-For": "10.1.2.3, 127.0.0.1"})
		require.Equal(t, http.StatusOK, code, body)
		checkBody(t, body)
		code, _ = diagGet(t, in, map[string]string{"X-Forwarded-For": "192.0.2.10, 10.1.2.3"})
		assert.Equal(t, http.StatusForbidden, code, "the left-most element counts")
		code, _ = diagGet(t, in, nil)
		assert.Equal(t, http.StatusForbidden, code, "the loopback peer itself is not allowlisted")
	})
}

// TestAdminExposedRefused: an admin address off loopback with neither a
// token nor an allowlist stops obsproxy with exit 2 before it listens, and
// the message names both variables.
func TestAdminExposedRefused(t *testing.T) {
	port := freePort(t)
	p := start(t, []string{
		fmt.Sprintf("OBSPROXY_LISTEN_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("OBSPROXY_ADMIN_ADDR=0.0.0.0:%d", freePort(t)),
		"OBSPROXY_UPSTREAMS=http://127.0.0.1:1",
	}, obsproxyBinary(t))
	assert.Equal(t, 2, p.wait(t, 10*time.Second))
	out := p.out.String()
	assert.Contains(t, out, "OBSPROXY_ADMIN_ADDR")
	assert.Contains(t, out, "OBSPROXY_ADMIN_TOKEN")
	assert.Contains(t, out, "OBSPROXY_ADMIN_IP_ALLOWLIST")
	_, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	assert.Error(t, err, "nothing listens")
}

// TestAdminTokenGuardsDashboard: with OBSPROXY_ADMIN_TOKEN every admin
// route but /diag wants it; Prometheus' bearer form and a browser's Basic
// form (any user, the token as password) both pass.
func TestAdminTokenGuardsDashboard(t *testing.T) {
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	const token = "admin-e2e-token-0b9e"
	in := startObsproxy(t, []*worker{w}, "OBSPROXY_ADMIN_TOKEN="+token)
	for _, path := range []string{"/metrics", "/admin/", "/admin/api/observability"} {
		resp, err := http.Get(in.admin + path)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
		assert.NotContains(t, string(b), token)

		req, _ := http.NewRequest(http.MethodGet, in.admin+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)

		req.Header.Del("Authorization")
		req.SetBasicAuth("operator", token)
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
}

// TestObservabilityAPI: the JSON snapshot and the SSE stream against real
// workers: a request count that matches the traffic sent, a killed worker
// shown down with its lifecycle events, and one SSE event per sample
// interval.
func TestObservabilityAPI(t *testing.T) {
	w1, w2 := startUvicorn(t, "w1"), startUvicorn(t, "w2")
	waitReady(t, w1, w2)
	in := startObsproxy(t, []*worker{w1, w2}, "OBSPROXY_SAMPLE_INTERVAL=200ms", "OBSPROXY_HEALTH_INTERVAL=200ms")
	for range 20 {
		code, _ := in.get(t, "/")
		require.Equal(t, http.StatusOK, code)
	}
	w2.proc.stop()
	type snapshot struct {
		Requests struct {
			Total     uint64   `json:"total"`
			PerSecond *float64 `json:"per_second"`
		} `json:"requests"`
		Workers []struct {
			Name     string `json:"name"`
			State    string `json:"state"`
			Requests uint64 `json:"requests"`
			Stopped  uint64 `json:"stopped"`
		} `json:"workers"`
		Events []struct {
			Worker string `json:"worker"`
			Kind   string `json:"kind"`
		} `json:"events"`
		History []json.RawMessage `json:"history"`
	}
	var snap snapshot
	eventually(t, 10*time.Second, func() bool {
		resp, err := http.Get(in.admin + "/admin/api/observability")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		snap = snapshot{}
		return json.NewDecoder(resp.Body).Decode(&snap) == nil && len(snap.Workers) == 2 && snap.Workers[1].State == "down"
	}, "w2 shown down")
	assert.Equal(t, uint64(20), snap.Requests.Total)
	assert.Equal(t, uint64(20), snap.Workers[0].Requests+snap.Workers[1].Requests)
	assert.Equal(t, uint64(1), snap.Workers[1].Stopped)
	assert.NotEmpty(t, snap.History)
	var kinds []string
	for _, e := range snap.Events {
		if e.Worker == "w2" {
			kinds = append(kinds, e.Kind)
		}
	}
	assert.Contains(t, kinds, "down")
	assert.Contains(t, kinds, "stopped")

	resp, err := http.Get(in.admin + "/admin/api/observability/sse")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	started := time.Now()
	buf := make([]byte, 64<<10)
	var got string
	for strings.Count(got, "event: snapshot") < 4 && time.Since(started) < 10*time.Second {
		n, err := resp.Body.Read(buf)
		got += string(buf[:n])
		require.NoError(t, err)
	}
	assert.Equal(t, 4, strings.Count(got, "event: snapshot"))
	// Four events: the first at once, then one per 200 ms.
	assert.GreaterOrEqual(t, time.Since(started), 500*time.Millisecond)
}
