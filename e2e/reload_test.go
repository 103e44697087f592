package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

// Rolling restarts (spec section 8, issue 14): SIGHUP replaces every
// worker's process one at a time, each replacement serving before its old
// process drains, and no request fails.

// steadyLoad is issue 14's load during a roll: 8 clients of GETs, a POST
// with a body every 100 ms, one SSE stream and one WebSocket that end on
// their own. Every failure is recorded.
type steadyLoad struct {
	in       *instance
	stop     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
	ok, bad  atomic.Int64
	posts    atomic.Int64
	mu       sync.Mutex
	failures []string
	buckets  []int64 // successful requests per 250 ms since start
	began    time.Time
}

func startSteadyLoad(t *testing.T, in *instance) *steadyLoad { return startLoad(t, in, 8, true) }

// startGetLoad is GETs only, from clients goroutines.
func startGetLoad(t *testing.T, in *instance, clients int) *steadyLoad {
	return startLoad(t, in, clients, false)
}

// startLoad sends GET / from clients goroutines in closed loops and, with
// posts, a 64 KiB POST every 100 ms, until finish (t.Cleanup calls it); it
// returns once requests flow.
func startLoad(t *testing.T, in *instance, clients int, posts bool) *steadyLoad {
	t.Helper()
	l := &steadyLoad{in: in, stop: make(chan struct{}), began: time.Now(), buckets: make([]int64, 1200)}
	t.Cleanup(func() { l.finish() })
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(client.CloseIdleConnections)
	record := func(err error, code int, what string) {
		if err == nil && code == http.StatusOK {
			l.ok.Add(1)
			if i := int(time.Since(l.began) / (250 * time.Millisecond)); i < len(l.buckets) {
				atomic.AddInt64(&l.buckets[i], 1)
			}
			return
		}
		l.bad.Add(1)
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(l.failures) < 20 {
			l.failures = append(l.failures, fmt.Sprintf("%s: code %d err %v", what, code, err))
		}
	}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := client.Get(in.url + "/")
				code := 0
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				record(err, code, "GET /")
			}
		}()
	}
	if !posts {
		eventually(t, 30*time.Second, func() bool { return l.ok.Load() > 20 }, "load flowing")
		return l
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		body := bytes.Repeat([]byte("x"), 64<<10)
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			resp, err := client.Post(in.url+"/upload", "application/octet-stream", bytes.NewReader(body))
			code := 0
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
				if code == http.StatusOK && !strings.Contains(string(b), `"bytes":65536`) {
					code = -1 // the body did not arrive whole
				}
			}
			l.posts.Add(1)
			record(err, code, "POST /upload")
		}
	}()
	eventually(t, 30*time.Second, func() bool { return l.ok.Load() > 20 }, "load flowing")
	return l
}

// finish stops the load (once) and returns the successful and failed
// counts.
func (l *steadyLoad) finish() (ok, bad int64) {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	return l.ok.Load(), l.bad.Load()
}

// end is finish with the first failure's description ("" when none).
func (l *steadyLoad) end() (ok, failed int64, firstErr string) {
	ok, failed = l.finish()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) > 0 {
		firstErr = l.failures[0]
	}
	return ok, failed, firstErr
}

// rates returns the successful requests per second between from and to,
// and the lowest rate of any 1 s window inside (the dip).
func (l *steadyLoad) rates(from, to time.Time) (mean, lowest float64) {
	a, b := from.Sub(l.began), to.Sub(l.began)
	return l.rate(a, b), l.minRate(a, b)
}

// rate returns the successful requests per second between from and to
// (times since the load began).
func (l *steadyLoad) rate(from, to time.Duration) float64 {
	i, j := int(from/(250*time.Millisecond)), int(to/(250*time.Millisecond))
	if j <= i || j > len(l.buckets) {
		return 0
	}
	var n int64
	for k := i; k < j; k++ {
		n += atomic.LoadInt64(&l.buckets[k])
	}
	return float64(n) / (float64(j-i) * 0.25)
}

// minRate returns the lowest rate of any 1 s window between from and to.
func (l *steadyLoad) minRate(from, to time.Duration) float64 {
	low := -1.0
	for s := from; s+time.Second <= to; s += 250 * time.Millisecond {
		if r := l.rate(s, s+time.Second); low < 0 || r < low {
			low = r
		}
	}
	return low
}

// sseStream reads an SSE stream of count events to its end and reports how
// many arrived.
func sseStream(in *instance, count int, interval time.Duration) <-chan int {
	got := make(chan int, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("%s/sse?count=%d&interval=%g", in.url, count, interval.Seconds()))
		if err != nil {
			got <- -1
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- strings.Count(string(b), "data: ")
	}()
	return got
}

// wsSession opens a WebSocket, echoes n messages every interval, then
// closes it, and reports how many echoes came back.
func wsSession(in *instance, n int, interval time.Duration) <-chan int {
	got := make(chan int, 1)
	go func() {
		ws, _, err := dialWebSocket(strings.TrimPrefix(in.url, "http://"), "/ws")
		if err != nil {
			got <- -1
			return
		}
		defer ws.close()
		echoes := 0
		for i := range n {
			msg := fmt.Sprintf("m%d", i)
			if ws.sendText(msg) != nil {
				break
			}
			if _, s, err := ws.readMessage(); err != nil || s != msg {
				break
			}
			echoes++
			time.Sleep(interval)
		}
		got <- echoes
	}()
	return got
}

// rollUnderLoad runs issue 14's steady load, starts a rolling restart with
// restart, and checks the outcome: zero failed requests, every pid
// replaced, the SSE stream and the WebSocket complete, one successful
// reload, the old processes reaped. It logs the roll's duration and the
// request rate's dip.
func rollUnderLoad(t *testing.T, in *instance, n int, restart func()) {
	t.Helper()
	in.awaitUp(t, n)
	before := in.workerPIDs(t, n)
	load := startSteadyLoad(t, in)
	time.Sleep(2 * time.Second) // a baseline
	sse := sseStream(in, 20, 200*time.Millisecond)
	ws := wsSession(in, 15, 200*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // both open before the roll
	rollAt := time.Since(load.began)
	// The observability JSON shows the replacement under way: a process
	// starting beside each worker's, then the old one draining (the SSE
	// stream holds its process for a while).
	var sawStarting, sawDraining atomic.Bool
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(50 * time.Millisecond):
			}
			resp, err := http.Get(in.admin + "/admin/api/observability")
			if err != nil {
				continue
			}
			var snap struct {
				Workers []struct {
					StartingPID  *int  `json:"starting_pid"`
					DrainingPIDs []int `json:"draining_pids"`
				} `json:"workers"`
			}
			json.NewDecoder(resp.Body).Decode(&snap)
			resp.Body.Close()
			for _, w := range snap.Workers {
				if w.StartingPID != nil {
					sawStarting.Store(true)
				}
				if len(w.DrainingPIDs) > 0 {
					sawDraining.Store(true)
				}
			}
		}
	}()
	restart()
	eventually(t, 120*time.Second, func() bool {
		return in.value(t, "obsproxy_reloads_total", map[string]string{"result": "success"}) == 1
	}, "the rolling restart succeeded")
	rollEnd := time.Since(load.began)
	time.Sleep(2 * time.Second) // after it
	close(stopWatch)
	<-watchDone
	assert.True(t, sawStarting.Load(), "starting_pid seen during the roll")
	assert.True(t, sawDraining.Load(), "draining_pids seen during the roll")
	assert.Equal(t, 20, <-sse, "the SSE stream got every event")
	assert.Equal(t, 15, <-ws, "the WebSocket got every echo")
	ok, bad := load.finish()
	after := in.workerPIDs(t, n)

	load.mu.Lock()
	assert.Zero(t, bad, "failed requests: %v", load.failures)
	load.mu.Unlock()
	assert.Positive(t, load.posts.Load())
	for name, pid := range before {
		assert.NotEqual(t, pid, after[name], "%s got a new process", name)
		assert.NotZero(t, after[name])
		old := pid
		eventually(t, 30*time.Second, func() bool { return !alive(old) }, "%s's old process %d reaped", name, old)
	}
	assert.Equal(t, 0.0, in.value(t, "obsproxy_reloads_total", map[string]string{"result": "failure"}))
	g := in.metrics(t)
	assert.Equal(t, float64(n), metricstest.Sum(t, g, "obsproxy_worker_exits_total", map[string]string{"reason": "reload"}))
	assert.Equal(t, float64(2*n), metricstest.Sum(t, g, "obsproxy_worker_started_total", nil), "every process counted")
	assert.Equal(t, float64(n), metricstest.Sum(t, g, "obsproxy_worker_stopped_total", nil))
	base := load.rate(0, rollAt)
	t.Logf("roll of %d workers: %.1f s; %d requests ok, %d failed (%d POSTs); req/s before %.0f, during %.0f (lowest 1 s window %.0f), after %.0f",
		n, (rollEnd - rollAt).Seconds(), ok, bad, load.posts.Load(), base, load.rate(rollAt, rollEnd), load.minRate(rollAt, rollEnd),
		load.rate(rollEnd, rollEnd+2*time.Second))
}

// SIGHUP with 4 uvicorn workers under load: zero failed requests.
func TestReloadSIGHUPUvicorn(t *testing.T) {
	in := launchSupervisor(t, []string{"OBSPROXY_WORKERS=4", "OBSPROXY_WORKER_STOP_TIMEOUT=15s"}, uvicornArgv()...)
	rollUnderLoad(t, in, 4, func() { in.proc.signal(syscall.SIGHUP) })
	kinds := map[string]int{}
	for _, e := range in.events(t) {
		kinds[e.Kind]++
	}
	assert.Equal(t, 4, kinds["replacing"])
	assert.Equal(t, 4, kinds["replaced"])
	assert.Equal(t, 2, kinds["reload"], "started and succeeded")
}

func TestReloadSIGHUPGranian(t *testing.T) {
	in := launchSupervisor(t, []string{"OBSPROXY_WORKERS=2", "OBSPROXY_WORKER_STOP_TIMEOUT=15s"},
		granian, "--interface", "asgi", "--uds", "{socket}", "--working-dir", "examples/app", "--log-level", "warning", "app:app")
	rollUnderLoad(t, in, 2, func() { in.proc.signal(syscall.SIGHUP) })
}

func TestReloadSIGHUPHypercorn(t *testing.T) {
	in := launchSupervisor(t, []string{"OBSPROXY_WORKERS=2", "OBSPROXY_WORKER_STOP_TIMEOUT=15s"},
		hypercorn, "--bind", "unix:{socket}", "--log-level", "warning", "examples/app/app.py:app")
	rollUnderLoad(t, in, 2, func() { in.proc.signal(syscall.SIGHUP) })
}

// A roll whose new code cannot start stops at the first replacement: the
// old processes serve on, reloads_total{failure} 1; once the code is fixed,
// SIGHUP succeeds.
func TestReloadBrokenCodeStopsTheRoll(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile(filepath.Join(repoRoot, "examples", "app", "app.py"))
	require.NoError(t, err)
	appFile := filepath.Join(dir, "app.py")
	require.NoError(t, os.WriteFile(appFile, good, 0o644))
	in := launchSupervisor(t, []string{"OBSPROXY_WORKERS=2", "OBSPROXY_WORKER_START_TIMEOUT=10s", "OBSPROXY_WORKER_STOP_TIMEOUT=10s"},
		python, "-m", "uvicorn", "app:app", "--app-dir", dir, "--uds", "{socket}", "--log-level", "warning")
	in.awaitUp(t, 2)
	before := in.workerPIDs(t, 2)

	require.NoError(t, os.WriteFile(appFile, append([]byte("def broken(:\n"), good...), 0o644))
	load := startSteadyLoad(t, in)
	in.proc.signal(syscall.SIGHUP)
	eventually(t, 60*time.Second, func() bool {
		return in.value(t, "obsproxy_reloads_total", map[string]string{"result": "failure"}) == 1
	}, "the roll failed")
	time.Sleep(time.Second)
	ok, bad := load.finish()
	load.mu.Lock()
	assert.Zero(t, bad, "failed requests: %v", load.failures)
	load.mu.Unlock()
	assert.Positive(t, ok)
	assert.Equal(t, before, in.workerPIDs(t, 2), "the old processes serve on")
	assert.Equal(t, 0.0, in.value(t, "obsproxy_reloads_total", map[string]string{"result": "success"}))
	assert.Equal(t, 2, in.upWorkers(t))
	var failed []string
	for _, e := range in.events(t) {
		if e.Kind == "reload" || e.Kind == "replace_failed" {
			failed = append(failed, e.Kind+": "+e.Reason)
		}
	}
	assert.Len(t, failed, 3, "reload started, w1's replacement failed, reload failed: %v", failed)
	assert.Contains(t, in.proc.out.String(), "rolling restart stopped")

	require.NoError(t, os.WriteFile(appFile, good, 0o644))
	in.proc.signal(syscall.SIGHUP)
	eventually(t, 60*time.Second, func() bool {
		return in.value(t, "obsproxy_reloads_total", map[string]string{"result": "success"}) == 1
	}, "the roll succeeded once the code is fixed")
	after := in.workerPIDs(t, 2)
	for name, pid := range before {
		assert.NotEqual(t, pid, after[name], name)
	}
	in.awaitUp(t, 2)
}

// A roll while a request blocks a worker's event loop: the old process
// drains for the stop timeout, ignores SIGTERM (its loop is blocked), and
// gets SIGKILL; the blocked request's client gets 502 and the request is
// not retried on another worker, which it would block in turn.
func TestReloadKillsABlockedProcessWithoutRetry(t *testing.T) {
	in := launchSupervisor(t, []string{"OBSPROXY_WORKERS=2", "OBSPROXY_WORKER_STOP_TIMEOUT=2s"}, uvicornArgv()...)
	in.awaitUp(t, 2)
	retries := in.value(t, "obsproxy_retries_total", nil)
	answer := make(chan int, 1)
	go func() {
		c := &http.Client{Timeout: 60 * time.Second}
		resp, err := c.Get(in.url + "/block?seconds=30")
		if err != nil {
			answer <- -1
			return
		}
		resp.Body.Close()
		answer <- resp.StatusCode
	}()
	eventually(t, 10*time.Second, func() bool {
		return metricstest.Sum(t, in.metrics(t), "obsproxy_in_flight_requests", nil) == 1
	}, "the blocking request in flight")
	sent := time.Now()
	in.proc.signal(syscall.SIGHUP)
	var code int
	select {
	case code = <-answer:
	case <-time.After(40 * time.Second):
		t.Fatal("the blocked request got no answer")
	}
	took := time.Since(sent)
	assert.Equal(t, http.StatusBadGateway, code)
	assert.Less(t, took, 25*time.Second, "answered at the drain's SIGKILL, not when the block ended")
	eventually(t, 60*time.Second, func() bool {
		return in.value(t, "obsproxy_reloads_total", map[string]string{"result": "success"}) == 1
	}, "the roll succeeded")
	assert.Equal(t, retries, in.value(t, "obsproxy_retries_total", nil), "the blocked request was not retried")
	g := in.metrics(t)
	eventually(t, 30*time.Second, func() bool {
		return metricstest.Sum(t, in.metrics(t), "obsproxy_worker_exits_total", map[string]string{"reason": "reload"}) == 2
	}, "both old processes gone")
	assert.Zero(t, metricstest.Sum(t, g, "obsproxy_worker_exits_total", map[string]string{"reason": "crash"}))
	assert.Contains(t, in.proc.out.String(), "worker process outlived the stop timeout: SIGKILL")
	t.Logf("the blocked request got %d after %.1f s", code, took.Seconds())
}
