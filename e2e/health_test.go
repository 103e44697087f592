package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// healthBody is the part of the /health body the tests read.
type healthBody struct {
	Status string  `json:"status"`
	Detail *string `json:"detail"`
	Checks struct {
		Proxy   struct{ Status, Detail *string } `json:"proxy"`
		Workers struct {
			Status string  `json:"status"`
			Up     int     `json:"up"`
			Total  int     `json:"total"`
			Detail *string `json:"detail"`
		} `json:"workers"`
		Upstream struct {
			Status string  `json:"status"`
			Detail *string `json:"detail"`
		} `json:"upstream"`
	} `json:"checks"`
	Workers []map[string]any `json:"workers"`
}

func (h healthBody) detail() string {
	if h.Detail == nil {
		return ""
	}
	return *h.Detail
}

// noKeepAlive is a client that opens a new connection per request, so that
// polling never holds a connection open.
var noKeepAlive = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// health GETs path (a health or liveness path) from obsproxy's public listener.
func (in *instance) health(t *testing.T, path string) (int, healthBody, string) {
	t.Helper()
	resp, err := noKeepAlive.Get(in.url + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	var h healthBody
	require.NoError(t, json.Unmarshal(raw, &h), "body: %s", raw)
	return resp.StatusCode, h, string(raw)
}

// awaitHealth polls /health until its status and detail are the ones given.
func (in *instance) awaitHealth(t *testing.T, status, detail string) (int, healthBody, string) {
	t.Helper()
	var code int
	var h healthBody
	var raw string
	eventually(t, 10*time.Second, func() bool {
		code, h, raw = in.health(t, "/health")
		return h.Status == status && h.detail() == detail
	}, "/health %s %q; last: %d %s", status, detail, code, raw)
	return code, h, raw
}

// setCheck switches one simulated dependency of a worker, talking to the
// worker directly.
func setCheck(t *testing.T, w *worker, name string, ok bool) {
	t.Helper()
	resp, err := w.client.Post(fmt.Sprintf("%s/control/checks/%s?ok=%t", w.base, name, ok), "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// proxiedStatus sends GET path through obsproxy on a fresh connection.
func (in *instance) proxiedStatus(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := noKeepAlive.Get(in.url + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNoWorkerReachableFailsClosed(t *testing.T) {
	dead := &worker{upstream: fmt.Sprintf("gone=http://127.0.0.1:%d", freePort(t))}
	in := startObsproxy(t, []*worker{dead})

	code, h, raw := in.health(t, "/health")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "unhealthy", h.Status)
	assert.Equal(t, "no healthy worker", h.detail())
	assert.Equal(t, "upstream unreachable", *h.Checks.Upstream.Detail)
	assert.NotContains(t, raw, "127.0.0.1")

	code, _, _ = in.health(t, "/livez")
	assert.Equal(t, http.StatusOK, code)

	resp, err := in.client.Get(in.url + "/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.JSONEq(t, `{"error":"no healthy upstream","request_id":"`+resp.Header.Get("X-Request-Id")+`"}`, string(body))
	assert.NotContains(t, string(body), "127.0.0.1")
	assert.Equal(t, 1.0, in.value(t, "obsproxy_requests_total", map[string]string{"worker": "none", "code": "503"}))
	assert.Equal(t, 1.0, in.value(t, "obsproxy_health_status", map[string]string{"status": "unhealthy"}))
	assert.Equal(t, 1.0, in.value(t, "obsproxy_workers", map[string]string{"state": "down"}))
}

// TestStartingUntilTheFirstProbeRound points obsproxy at a worker that
// accepts connections and never answers: until its first probe times out,
// /health says "starting" and nothing is proxied.
func TestStartingUntilTheFirstProbeRound(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	silent := &worker{upstream: "silent=http://" + ln.Addr().String()}
	in := launchObsproxy(t, []*worker{silent}, "OBSPROXY_HEALTH_TIMEOUT=4s")

	code, h, _ := in.health(t, "/health")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "starting", h.detail())
	assert.Equal(t, "starting", *h.Checks.Proxy.Detail)
	code, _, _ = in.health(t, "/livez")
	assert.Equal(t, http.StatusOK, code)
	code, body := in.proxiedStatus(t, "/")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, body, `"error":"no healthy upstream"`)

	// The probe times out: the round is over and the worker is down.
	in.awaitHealth(t, "unhealthy", "no healthy worker")
	assert.Equal(t, 1.0, in.value(t, "obsproxy_probes_total", map[string]string{"worker": "silent", "result": "unhealthy"}))
}

// TestWorkersOwnHealthDecidesHealth flips the example app's simulated
// dependencies on every worker: database down makes every worker report
// unhealthy (503), cache down makes them report degraded (200).
func TestWorkersOwnHealthDecidesHealth(t *testing.T) {
	ws := []*worker{startUvicorn(t, "u1"), startHypercorn(t, "h1")}
	waitReady(t, ws...)
	in := startObsproxy(t, ws, "OBSPROXY_HEALTH_INTERVAL=200ms")
	code, h, _ := in.awaitHealth(t, "healthy", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, 2, h.Checks.Workers.Up)

	for _, w := range ws {
		setCheck(t, w, "database", false)
	}
	code, h, raw := in.awaitHealth(t, "unhealthy", "upstream reports unhealthy")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Equal(t, "error", h.Checks.Upstream.Status)
	assert.Equal(t, "upstream reports unhealthy", *h.Checks.Upstream.Detail)
	assert.NotContains(t, raw, "127.0.0.1", "no address in the public body")
	assert.NotContains(t, raw, "database", "no worker check detail in the public body")
	assert.Nil(t, h.Workers)
	code, _ = in.proxiedStatus(t, "/")
	assert.Equal(t, http.StatusServiceUnavailable, code, "workers reporting unhealthy take no traffic")

	for _, w := range ws {
		setCheck(t, w, "database", true)
		setCheck(t, w, "cache", false)
	}
	code, h, _ = in.awaitHealth(t, "degraded", "upstream degraded")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "degraded", h.Checks.Upstream.Status)
	code, _ = in.proxiedStatus(t, "/")
	assert.Equal(t, http.StatusOK, code, "degraded workers still serve")

	for _, w := range ws {
		setCheck(t, w, "cache", true)
	}
	in.awaitHealth(t, "healthy", "")
	assert.Equal(t, 1.0, in.value(t, "obsproxy_health_status", map[string]string{"status": "healthy"}))
	assert.Equal(t, 0.0, in.value(t, "obsproxy_worker_stopped_total", nil), "a dependency outage is not a process stop")
	assert.Greater(t, in.value(t, "obsproxy_probes_total", map[string]string{"worker": "u1", "result": "unhealthy"}), 0.0)
	assert.Greater(t, in.value(t, "obsproxy_probe_duration_seconds", map[string]string{"worker": "h1"}), 0.0)
}

func TestVerboseHealthNamesWorkers(t *testing.T) {
	ws := []*worker{startUvicorn(t, "u1")}
	waitReady(t, ws...)
	in := startObsproxy(t, ws, "OBSPROXY_HEALTH_VERBOSE=true", "OBSPROXY_HEALTH_INTERVAL=200ms")
	setCheck(t, ws[0], "cache", false)
	_, h, _ := in.awaitHealth(t, "degraded", "upstream degraded")
	require.Len(t, h.Workers, 1)
	w := h.Workers[0]
	assert.Equal(t, "u1", w["name"])
	assert.Equal(t, fmt.Sprintf("127.0.0.1:%d", ws[0].port), w["address"])
	assert.Equal(t, "up", w["state"])
	assert.Equal(t, "degraded", w["health"])
	assert.Contains(t, w, "checks", "the worker's own checks, verbatim")
}

// pid returns a worker process's PID.
func (w *worker) pid() int { return w.proc.cmd.Process.Pid }

// kill9 kills a worker with SIGKILL and waits for it to be gone.
func (w *worker) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, syscall.Kill(w.pid(), syscall.SIGKILL))
	<-w.proc.done
}

func TestKilledWorkerIsDownThenRestartedIsUp(t *testing.T) {
	ws := []*worker{startUvicorn(t, "u1"), startUvicorn(t, "u2"), startUvicorn(t, "u3")}
	waitReady(t, ws...)
	in := startObsproxy(t, ws, "OBSPROXY_HEALTH_INTERVAL=300ms")
	in.awaitHealth(t, "healthy", "")
	up := map[string]string{"worker": "u2"}
	assert.Equal(t, 1.0, in.value(t, "obsproxy_worker_started_total", up))

	ws[1].kill9(t)
	eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_worker_up", up) == 0 }, "u2 down")
	_, h, _ := in.awaitHealth(t, "degraded", "worker down")
	assert.Equal(t, 2, h.Checks.Workers.Up)
	assert.Equal(t, 3, h.Checks.Workers.Total)
	eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_worker_stopped_total", up) == 1 }, "u2 stopped")
	assert.Equal(t, 0.0, in.value(t, "obsproxy_worker_uptime_seconds", up))
	assert.Equal(t, 1.0, in.value(t, "obsproxy_workers", map[string]string{"state": "down"}))
	for i := 0; i < 6; i++ {
		code, _ := in.proxiedStatus(t, "/")
		require.Equal(t, http.StatusOK, code, "the two other workers serve")
	}

	restarted := startUvicornOn(t, "u2", ws[1].port)
	waitReady(t, restarted)
	in.awaitHealth(t, "healthy", "")
	assert.Equal(t, 1.0, in.value(t, "obsproxy_worker_up", up))
	assert.Equal(t, 2.0, in.value(t, "obsproxy_worker_started_total", up))
	assert.Equal(t, 1.0, in.value(t, "obsproxy_worker_stopped_total", up))
	u1 := in.value(t, "obsproxy_worker_uptime_seconds", map[string]string{"worker": "u1"})
	u2 := in.value(t, "obsproxy_worker_uptime_seconds", up)
	assert.Less(t, u2, u1-0.5, "u2's uptime restarted (u1 %.3fs, u2 %.3fs)", u1, u2)
	assert.Less(t, u2, 5.0)
}

// TestRestartBetweenTwoProbesIsCounted restarts a worker between two probes
// that both find it answering: only its reported uptime and pid tell.
func TestRestartBetweenTwoProbesIsCounted(t *testing.T) {
	ws := []*worker{startUvicorn(t, "u1")}
	waitReady(t, ws...)
	in := startObsproxy(t, ws, "OBSPROXY_HEALTH_INTERVAL=5s")
	in.awaitHealth(t, "healthy", "")
	probes := func() float64 { return in.value(t, "obsproxy_probes_total", map[string]string{"worker": "u1"}) }
	// Wait for the start of a fresh interval, then restart within it.
	before := probes()
	eventually(t, 10*time.Second, func() bool { return probes() > before }, "a probe")
	ws[0].kill9(t)
	restarted := startUvicornOn(t, "u1", ws[0].port)
	waitReady(t, restarted)

	up := map[string]string{"worker": "u1"}
	eventually(t, 10*time.Second, func() bool { return in.value(t, "obsproxy_worker_stopped_total", up) == 1 }, "restart counted")
	assert.Equal(t, 2.0, in.value(t, "obsproxy_worker_started_total", up))
	assert.Equal(t, 1.0, in.value(t, "obsproxy_worker_up", up))
	assert.Less(t, in.value(t, "obsproxy_worker_uptime_seconds", up), 6.0)
	// The old process answered only about one interval before, so its
	// uptime need not go backwards by more than the slack: the new pid with
	// a younger uptime tells.
	assert.Regexp(t, `kind=restarted worker=u1 reason="(uptime reset|pid changed)"`, in.proc.out.String(),
		"seen as a restart, not as a stop and a start")
}

// TestKillUnderLoadLosesNoRequest kills one of three workers with SIGKILL
// under a steady load of GETs: every request is answered 200, because
// refused connections and resets of idempotent requests are retried.
func TestKillUnderLoadLosesNoRequest(t *testing.T) {
	ws := []*worker{startUvicorn(t, "u1"), startUvicorn(t, "u2"), startUvicorn(t, "u3")}
	waitReady(t, ws...)
	in := startObsproxy(t, ws, "OBSPROXY_HEALTH_INTERVAL=500ms")
	in.awaitHealth(t, "healthy", "")

	const clients = 8
	stop := make(chan struct{})
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				resp, err := in.client.Get(in.url + "/slow?seconds=0.02")
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, resp.Status)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	ws[1].kill9(t)
	killedAt := sent.Load()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	t.Logf("%d requests, %d sent before the kill, %d failed; retries away from u2: %.0f",
		sent.Load(), killedAt, failed.Load(), in.value(t, "obsproxy_retries_total", map[string]string{"worker": "u2"}))
	assert.Equal(t, int64(0), failed.Load(), "first failure: %v", firstFailure.Load())
	assert.Greater(t, sent.Load()-killedAt, int64(clients), "load went on after the kill")
	assert.Equal(t, 0.0, in.value(t, "obsproxy_worker_up", map[string]string{"worker": "u2"}))
	assert.Equal(t, 1.0, in.value(t, "obsproxy_worker_stopped_total", map[string]string{"worker": "u2"}))
}

// TestSIGTERMDrainsUnderLoad: /health turns 503 "draining" at once while
// /livez stays 200, in-flight slow requests finish, the process exits 0.
func TestSIGTERMDrainsUnderLoad(t *testing.T) {
	ws := []*worker{startUvicorn(t, "u1"), startUvicorn(t, "u2"), startUvicorn(t, "u3")}
	waitReady(t, ws...)
	in := startObsproxy(t, ws, "OBSPROXY_DRAIN_DELAY=1s", "OBSPROXY_SHUTDOWN_TIMEOUT=20s")
	in.awaitHealth(t, "healthy", "")

	const slow = 6
	codes := make(chan int, slow)
	for i := 0; i < slow; i++ {
		go func() {
			resp, err := in.client.Get(in.url + "/slow?seconds=2.5")
			if err != nil {
				codes <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_in_flight_requests", nil) == slow }, "slow requests in flight")

	// One kept-alive connection polls /health as a load balancer would.
	lb := &http.Client{Timeout: 2 * time.Second}
	t.Cleanup(lb.CloseIdleConnections)
	poll := func(path string) int {
		resp, err := lb.Get(in.url + path)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, poll("/health"))

	signalled := time.Now()
	in.proc.signal(syscall.SIGTERM)
	var draining time.Duration
	for time.Since(signalled) < 900*time.Millisecond {
		if poll("/health") == http.StatusServiceUnavailable {
			draining = time.Since(signalled)
			break
		}
	}
	require.NotZero(t, draining, "/health never answered 503 during the drain delay")
	_, h, _ := in.health(t, "/health")
	assert.Equal(t, "draining", h.detail())
	assert.Equal(t, http.StatusOK, poll("/livez"), "liveness stays 200 while draining")
	assert.Less(t, draining, 100*time.Millisecond)

	for i := 0; i < slow; i++ {
		assert.Equal(t, http.StatusOK, <-codes, "in-flight request %d", i)
	}
	assert.Equal(t, 0, in.proc.wait(t, 25*time.Second))
	t.Logf("/health 503 draining %v after SIGTERM; exit 0 %v after it", draining, time.Since(signalled))
}

func TestHealthcheckCommandFollowsHealth(t *testing.T) {
	ws := []*worker{startUvicorn(t, "u1")}
	waitReady(t, ws...)
	in := startObsproxy(t, ws, "OBSPROXY_HEALTH_INTERVAL=200ms")
	in.awaitHealth(t, "healthy", "")
	run := func() int {
		cmd := exec.Command(obsproxyBinary(t), "healthcheck")
		cmd.Env = []string{"OBSPROXY_LISTEN_ADDR=" + strings.TrimPrefix(in.url, "http://")}
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		require.NoError(t, err)
		return 0
	}
	assert.Equal(t, 0, run())
	setCheck(t, ws[0], "database", false)
	in.awaitHealth(t, "unhealthy", "upstream reports unhealthy")
	assert.Equal(t, 1, run())
}

// TestMultiProcessListenerIsNotRestarting puts obsproxy in front of
// uvicorn --workers 2 on one port: probes reach either process, so the
// reported pid alternates, but both uptimes keep pace and no restart is
// counted. (One process per address is still the advice: see docs/health.md.)
func TestMultiProcessListenerIsNotRestarting(t *testing.T) {
	port := freePort(t)
	p := start(t, []string{"WORKER_NAME=multi"}, python, "-m", "uvicorn", "app:app", "--app-dir", "examples/app",
		"--host", "127.0.0.1", "--port", fmt.Sprint(port), "--workers", "2", "--log-level", "warning")
	w := &worker{proc: p, upstream: fmt.Sprintf("multi=http://127.0.0.1:%d", port),
		client: &http.Client{Timeout: 5 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", port), port: port}
	waitReady(t, w)
	// Both processes answer once they have both started.
	pids := map[string]bool{}
	eventually(t, 15*time.Second, func() bool {
		resp, err := noKeepAlive.Get(w.base + "/")
		if err == nil {
			var body struct {
				PID int `json:"pid"`
			}
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			pids[fmt.Sprint(body.PID)] = true
		}
		return len(pids) == 2
	}, "answers from both processes")

	in := startObsproxy(t, []*worker{w}, "OBSPROXY_HEALTH_INTERVAL=100ms")
	probes := map[string]string{"worker": "multi"}
	eventually(t, 15*time.Second, func() bool { return in.value(t, "obsproxy_probes_total", probes) >= 30 }, "30 probes")
	assert.Equal(t, 1.0, in.value(t, "obsproxy_worker_started_total", probes))
	assert.Equal(t, 0.0, in.value(t, "obsproxy_worker_stopped_total", probes))
	assert.NotContains(t, in.proc.out.String(), "kind=restarted")
}
