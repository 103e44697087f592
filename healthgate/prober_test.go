package healthgate

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
	"github.com/obsproxy/obsproxy/lifecycle"
)

const (
	waitFor = 5 * time.Second       // deadline for a polled condition
	pollDt  = 2 * time.Millisecond  // poll period
	fastDt  = 10 * time.Millisecond // a short probe interval
)

// tcpWorker is a worker at an httptest server's address.
func tcpWorker(name string, srv *httptest.Server) lifecycle.WorkerConfig {
	return lifecycle.WorkerConfig{Name: name, Network: "tcp", Address: srv.Listener.Addr().String()}
}

// newPool builds a pool of workers, every one unknown until probed.
func newPool(t *testing.T, workers ...lifecycle.WorkerConfig) *lifecycle.Pool {
	t.Helper()
	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: workers})
	require.NoError(t, err)
	return pool
}

// runProber starts a Prober over cfg and returns it with a stop function
// that cancels Run and fails the test unless Run returns promptly. stop is
// also registered with t.Cleanup; calling it twice is harmless.
func runProber(t *testing.T, cfg ProberConfig) (*Prober, func()) {
	t.Helper()
	p, err := NewProber(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(waitFor):
				t.Errorf("Prober.Run did not return within %v of its context's cancellation", waitFor)
			}
		})
	}
	t.Cleanup(stop)
	return p, stop
}

// status returns worker i's status in pool.
func status(pool *lifecycle.Pool, i int) lifecycle.WorkerStatus { return pool.Status().Workers[i] }

// hasResult reports whether worker i has had a probe result.
func hasResult(pool *lifecycle.Pool, i int) func() bool {
	return func() bool { return !status(pool, i).LastProbe.IsZero() }
}

// unixServer starts an httptest server on a unix socket with a short path
// (t.TempDir can exceed the 108-byte limit of sun_path).
func unixServer(t *testing.T, h http.Handler) (*httptest.Server, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "hg")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "w.sock")
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, path
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func jsonHandler(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

func TestNewProberNeedsAPool(t *testing.T) {
	p, err := NewProber(ProberConfig{})
	require.Error(t, err)
	assert.Nil(t, p)
}

func TestProberDefaults(t *testing.T) {
	pool := newPool(t, lifecycle.WorkerConfig{Name: "w", Network: "tcp", Address: "127.0.0.1:1"})
	p, err := NewProber(ProberConfig{Pool: pool})
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, p.Interval())
	p, err = NewProber(ProberConfig{Pool: pool, Interval: 250 * time.Millisecond})
	require.NoError(t, err)
	assert.Equal(t, 250*time.Millisecond, p.Interval())
}

func TestProberHealthyWorkerComesUp(t *testing.T) {
	srv := httptest.NewServer(jsonHandler(200, `{"status":"ok","uptime_seconds":5,"pid":321}`))
	t.Cleanup(srv.Close)
	pool := newPool(t, tcpWorker("api", srv))
	reg := prometheus.NewPedanticRegistry()
	p, _ := runProber(t, ProberConfig{Pool: pool, Interval: fastDt, Timeout: time.Second})
	require.NoError(t, reg.Register(p))

	healthy := func() float64 {
		v, _ := metricstest.Value(t, reg, "obsproxy_probes_total", map[string]string{"worker": "api", "result": "healthy"})
		return v
	}
	require.Eventually(t, func() bool { return pool.Workers()[0].State() == lifecycle.StateUp }, waitFor, pollDt)
	require.Eventually(t, func() bool { return healthy() >= 1 }, waitFor, pollDt)
	first := healthy()
	require.Eventually(t, func() bool { return healthy() >= first+2 }, waitFor, pollDt,
		"probes go on every Interval")

	st := status(pool, 0)
	assert.Equal(t, lifecycle.Healthy, st.Health)
	assert.True(t, st.Answered)
	assert.True(t, st.Running)
	assert.Equal(t, 321, st.PID)
	assert.Positive(t, st.Latency)
	for _, result := range []string{"degraded", "unhealthy"} {
		v, ok := metricstest.Value(t, reg, "obsproxy_probes_total", map[string]string{"worker": "api", "result": result})
		assert.True(t, ok, result)
		assert.Zero(t, v, result)
	}
}

func TestProberUsesInjectedClock(t *testing.T) {
	srv := httptest.NewServer(jsonHandler(200, `{"status":"ok"}`))
	t.Cleanup(srv.Close)
	pool := newPool(t, tcpWorker("api", srv))
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	runProber(t, ProberConfig{Pool: pool, Interval: time.Hour, Now: func() time.Time { return at }})
	require.Eventually(t, hasResult(pool, 0), waitFor, pollDt)
	assert.Equal(t, at, status(pool, 0).LastProbe)
}

func TestProberVerdicts(t *testing.T) {
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		timeout  time.Duration
		health   lifecycle.Health
		state    lifecycle.State
		detail   string
		answered bool
	}{
		{
			name: "healthy", handler: jsonHandler(200, `{"status":"pass"}`),
			health: lifecycle.Healthy, state: lifecycle.StateUp, answered: true,
		},
		{
			name: "degraded worker is up", handler: jsonHandler(200, `{"status":"warn"}`),
			health: lifecycle.Degraded, state: lifecycle.StateUp, answered: true,
		},
		{
			name: "503 is unhealthy", handler: jsonHandler(503, `{"status":"ok"}`),
			health: lifecycle.Unhealthy, state: lifecycle.StateDown, detail: "status 503", answered: true,
		},
		{
			name: "malformed json", handler: jsonHandler(200, `{"status":`),
			health: lifecycle.Unhealthy, state: lifecycle.StateDown, detail: "malformed JSON", answered: true,
		},
		{
			name: "body over 64 KiB", handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Write(make([]byte, MaxBody+100))
			},
			health: lifecycle.Unhealthy, state: lifecycle.StateDown, detail: "body over 64 KiB", answered: true,
		},
		{
			name: "body of exactly 64 KiB", handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Write(make([]byte, MaxBody))
			},
			health: lifecycle.Healthy, state: lifecycle.StateUp, answered: true,
		},
		{
			name: "handler slower than Timeout", timeout: 100 * time.Millisecond,
			handler: func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(waitFor):
				}
			},
			health: lifecycle.Unhealthy, state: lifecycle.StateDown, detail: "timeout",
		},
		{
			name: "302 is not followed", handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
			},
			health: lifecycle.Unhealthy, state: lifecycle.StateDown, detail: "status 302", answered: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			pool := newPool(t, tcpWorker("w", srv))
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 2 * time.Second
			}
			runProber(t, ProberConfig{Pool: pool, Interval: time.Hour, Timeout: timeout})
			require.Eventually(t, hasResult(pool, 0), waitFor, pollDt)
			st := status(pool, 0)
			assert.Equal(t, tc.health, st.Health)
			assert.Equal(t, tc.state, st.State)
			assert.Equal(t, tc.answered, st.Answered)
			if tc.detail != "" {
				assert.Equal(t, tc.detail, st.Detail)
			}
			if tc.timeout != 0 {
				assert.GreaterOrEqual(t, st.Latency, tc.timeout)
				assert.Less(t, st.Latency, tc.timeout+400*time.Millisecond, "Timeout bounds the probe")
			}
		})
	}
}

func TestProberRefused(t *testing.T) {
	t.Run("closed port", func(t *testing.T) {
		pool := newPool(t, lifecycle.WorkerConfig{Name: "gone", Network: "tcp", Address: closedAddr(t)})
		runProber(t, ProberConfig{Pool: pool, Interval: time.Hour, Timeout: time.Second})
		require.Eventually(t, hasResult(pool, 0), waitFor, pollDt)
		st := status(pool, 0)
		assert.Equal(t, lifecycle.StateDown, st.State)
		assert.Equal(t, lifecycle.Unhealthy, st.Health)
		assert.Equal(t, "connection refused", st.Detail)
		assert.False(t, st.Answered)
		assert.False(t, st.Running)
	})
	t.Run("missing unix socket", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nobody.sock")
		pool := newPool(t, lifecycle.WorkerConfig{Name: "gone", Network: "unix", Address: path})
		runProber(t, ProberConfig{Pool: pool, Interval: time.Hour, Timeout: time.Second})
		require.Eventually(t, hasResult(pool, 0), waitFor, pollDt)
		st := status(pool, 0)
		assert.Equal(t, lifecycle.StateDown, st.State)
		assert.Equal(t, "no socket", st.Detail)
		assert.False(t, st.Answered)
	})
	// A refusal after answers is the process stopping: only a Refused
	// result counts a stop (a timeout would not).
	t.Run("worker that stops", func(t *testing.T) {
		srv := httptest.NewServer(jsonHandler(200, `{"status":"ok"}`))
		pool := newPool(t, tcpWorker("w", srv))
		runProber(t, ProberConfig{Pool: pool, Interval: fastDt, Timeout: time.Second})
		require.Eventually(t, func() bool { return pool.Workers()[0].Up() }, waitFor, pollDt)
		srv.Close()
		require.Eventually(t, func() bool { return status(pool, 0).Stopped == 1 }, waitFor, pollDt)
		st := status(pool, 0)
		assert.Equal(t, lifecycle.StateDown, st.State)
		assert.Equal(t, "connection refused", st.Detail)
		assert.False(t, st.Running)
		assert.Equal(t, uint64(1), st.Started)
	})
}

func TestProberUnixSocket(t *testing.T) {
	var hits atomic.Int64
	var gotPath atomic.Value
	_, path := unixServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		gotPath.Store(r.URL.Path)
		jsonHandler(200, `{"status":"degraded","pid":77}`)(w, r)
	}))
	pool := newPool(t, lifecycle.WorkerConfig{Name: "sock", Network: "unix", Address: path})
	runProber(t, ProberConfig{Pool: pool, Path: "/healthz", Interval: time.Hour, Timeout: time.Second})
	require.Eventually(t, hasResult(pool, 0), waitFor, pollDt)
	st := status(pool, 0)
	assert.Equal(t, lifecycle.StateUp, st.State)
	assert.Equal(t, lifecycle.Degraded, st.Health)
	assert.Equal(t, 77, st.PID)
	assert.Equal(t, int64(1), hits.Load())
	assert.Equal(t, "/healthz", gotPath.Load())
}

// TestProberNeverOverlapsProbes: with probes that outlast Interval (and a
// Timeout longer than Interval), a worker still has one probe in flight at
// most. The handler leaves the in-flight count before its response is sent,
// so any overlap the server sees is the prober's.
func TestProberNeverOverlapsProbes(t *testing.T) {
	var cur, peak, done atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(5 * fastDt) // the probe outlasts the interval
		cur.Add(-1)
		done.Add(1)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	pool := newPool(t, tcpWorker("slow", srv))
	_, stop := runProber(t, ProberConfig{Pool: pool, Interval: fastDt, Timeout: time.Second})
	require.Eventually(t, func() bool { return done.Load() >= 4 }, waitFor, pollDt,
		"a probe that outlasts Interval is followed at once by the next")
	stop()
	assert.Equal(t, int64(1), peak.Load(), "probes of one worker overlapped")
}

func TestProberKick(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	pool := newPool(t, tcpWorker("w", srv))
	p, _ := runProber(t, ProberConfig{Pool: pool, Interval: time.Hour, Timeout: time.Second})
	require.Eventually(t, func() bool { return p.FirstRoundDone() }, waitFor, pollDt)
	assert.Equal(t, int64(1), hits.Load())

	p.Kick(pool.Workers()[0])
	require.Eventually(t, func() bool { return hits.Load() == 2 }, waitFor, pollDt,
		"Kick probes at once, not after the 1 h interval")

	// Kicks that cannot name one of the pool's workers are ignored.
	assert.NotPanics(t, func() {
		p.Kick(nil)
		p.Kick(&lifecycle.Worker{Name: "stranger", Index: 5})
	})
}

// TestProberKickNeverBlocks: kicks pile into one pending probe, whether or
// not Run is running.
func TestProberKickNeverBlocks(t *testing.T) {
	pool := newPool(t, lifecycle.WorkerConfig{Name: "w", Network: "tcp", Address: "127.0.0.1:1"})
	p, err := NewProber(ProberConfig{Pool: pool})
	require.NoError(t, err)
	kicked := make(chan struct{})
	go func() {
		defer close(kicked)
		for i := 0; i < 100; i++ {
			p.Kick(pool.Workers()[0])
		}
	}()
	select {
	case <-kicked:
	case <-time.After(waitFor):
		t.Fatal("Kick blocked")
	}
}

func TestProberFirstRoundDone(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	fast := httptest.NewServer(jsonHandler(200, `{"status":"ok"}`))
	t.Cleanup(fast.Close)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(unblock) // runs before slow.Close, which waits for the handler
	pool := newPool(t, tcpWorker("fast", fast), tcpWorker("slow", slow), lifecycle.WorkerConfig{Name: "gone", Network: "tcp", Address: closedAddr(t)})

	p, err := NewProber(ProberConfig{Pool: pool})
	require.NoError(t, err)
	assert.False(t, p.FirstRoundDone(), "before Run")

	p, _ = runProber(t, ProberConfig{Pool: pool, Interval: time.Hour, Timeout: waitFor})
	require.Eventually(t, func() bool { return hasResult(pool, 0)() && hasResult(pool, 2)() }, waitFor, pollDt)
	assert.False(t, p.FirstRoundDone(), "the slow worker has no result yet")
	assert.True(t, status(pool, 1).LastProbe.IsZero())

	unblock()
	require.Eventually(t, p.FirstRoundDone, waitFor, pollDt)
	assert.False(t, status(pool, 1).LastProbe.IsZero(), "FirstRoundDone implies a result in the pool")
}

func TestProberRequest(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		userAgent string
		wantPath  string
		wantUA    string
	}{
		{name: "defaults", wantPath: "/health", wantUA: "obsproxy-probe"},
		{name: "configured", path: "/internal/ready", userAgent: "obsproxy/1.2.3 probe", wantPath: "/internal/ready", wantUA: "obsproxy/1.2.3 probe"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reqs := make(chan *http.Request, 10)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reqs <- r.Clone(context.Background())
				io.WriteString(w, "ok")
			}))
			t.Cleanup(srv.Close)
			pool := newPool(t, tcpWorker("w", srv))
			runProber(t, ProberConfig{Pool: pool, Path: tc.path, UserAgent: tc.userAgent, Interval: time.Hour, Timeout: time.Second})
			var r *http.Request
			select {
			case r = <-reqs:
			case <-time.After(waitFor):
				t.Fatal("no probe arrived")
			}
			assert.Equal(t, http.MethodGet, r.Method)
			assert.Equal(t, tc.wantPath, r.URL.Path)
			assert.Empty(t, r.URL.RawQuery)
			assert.Equal(t, tc.wantUA, r.Header.Get("User-Agent"))
			assert.Equal(t, "application/json", r.Header.Get("Accept"))
			assert.Equal(t, "close", r.Header.Get("Connection"), "a new connection for every probe")
		})
	}
}

func TestProberDoesNotFollowRedirects(t *testing.T) {
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			var followed atomic.Int64
			mux := http.NewServeMux()
			mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/elsewhere", code)
			})
			mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
				followed.Add(1)
				io.WriteString(w, "ok")
			})
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			pool := newPool(t, tcpWorker("w", srv))
			_, stop := runProber(t, ProberConfig{Pool: pool, Interval: time.Hour, Timeout: time.Second})
			require.Eventually(t, hasResult(pool, 0), waitFor, pollDt)
			stop()
			st := status(pool, 0)
			assert.Equal(t, lifecycle.Unhealthy, st.Health)
			assert.Equal(t, lifecycle.StateDown, st.State)
			assert.True(t, st.Answered)
			assert.Equal(t, fmt.Sprintf("status %d", code), st.Detail)
			assert.Zero(t, followed.Load(), "the redirect was followed")
		})
	}
}

func TestProberMetrics(t *testing.T) {
	healthy := httptest.NewServer(jsonHandler(200, `{"status":"ok"}`))
	t.Cleanup(healthy.Close)
	degraded := httptest.NewServer(jsonHandler(200, `{"status":"degraded"}`))
	t.Cleanup(degraded.Close)
	pool := newPool(t, tcpWorker("a", healthy), tcpWorker("b", degraded),
		lifecycle.WorkerConfig{Name: "c", Network: "tcp", Address: closedAddr(t)})
	reg := prometheus.NewPedanticRegistry()
	p, stop := runProber(t, ProberConfig{Pool: pool, Interval: fastDt, Timeout: time.Second})
	require.NoError(t, reg.Register(p))

	count := func(worker string) float64 {
		return metricstest.Sum(t, reg, "obsproxy_probes_total", map[string]string{"worker": worker})
	}
	require.Eventually(t, func() bool { return count("a") >= 2 && count("b") >= 2 && count("c") >= 2 }, waitFor, pollDt)
	stop() // counts are final once Run has returned

	assert.Equal(t, map[string]bool{"a": true, "b": true, "c": true},
		metricstest.LabelValues(t, reg, "obsproxy_probe_duration_seconds", "worker"))
	assert.Equal(t, map[string]bool{"healthy": true, "degraded": true, "unhealthy": true},
		metricstest.LabelValues(t, reg, "obsproxy_probes_total", "result"))
	want := map[string]string{"a": "healthy", "b": "degraded", "c": "unhealthy"}
	for worker, result := range want {
		total := count(worker)
		for _, r := range resultNames {
			v, ok := metricstest.Value(t, reg, "obsproxy_probes_total", map[string]string{"worker": worker, "result": r})
			require.True(t, ok, "%s/%s", worker, r)
			if r == result {
				assert.Equal(t, total, v, "%s/%s", worker, r)
			} else {
				assert.Zero(t, v, "%s/%s", worker, r)
			}
		}
		observed, ok := metricstest.Value(t, reg, "obsproxy_probe_duration_seconds", map[string]string{"worker": worker})
		require.True(t, ok, worker)
		assert.Equal(t, total, observed, "one duration per probe of %s", worker)
	}
}

// TestProberRunStopsOnCancel: Run returns promptly when its context ends,
// even with a probe in flight, and a probe cut short by the cancellation is
// not held against the worker.
func TestProberRunStopsOnCancel(t *testing.T) {
	var entered atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	pool := newPool(t, tcpWorker("w", srv))
	reg := prometheus.NewPedanticRegistry()
	p, err := NewProber(ProberConfig{Pool: pool, Interval: time.Hour, Timeout: time.Minute})
	require.NoError(t, err)
	require.NoError(t, reg.Register(p))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	require.Eventually(t, func() bool { return entered.Load() == 1 }, waitFor, pollDt)
	cancel()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Run did not return after cancel")
	}
	assert.False(t, p.FirstRoundDone())
	assert.True(t, status(pool, 0).LastProbe.IsZero(), "a cancelled probe reached the pool")
	assert.Equal(t, lifecycle.StateUnknown, pool.Workers()[0].State())
	assert.Zero(t, metricstest.Sum(t, reg, "obsproxy_probes_total", nil))
}

// TestProberTransportOverride: Transport replaces every worker's transport.
func TestProberTransportOverride(t *testing.T) {
	var calls atomic.Int64
	pool := newPool(t,
		lifecycle.WorkerConfig{Name: "a", Network: "tcp", Address: "203.0.113.1:80"},
		lifecycle.WorkerConfig{Name: "b", Network: "unix", Address: "/nonexistent/b.sock"})
	var got sync.Map
	p, _ := runProber(t, ProberConfig{Pool: pool, Interval: time.Hour, Timeout: time.Second,
		Transport: func(w *lifecycle.Worker) http.RoundTripper {
			calls.Add(1)
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				got.Store(w.Name, r.URL.String())
				return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
					Body: io.NopCloser(strings.NewReader(`{"status":"warn"}`)), Request: r}, nil
			})
		}})
	require.Eventually(t, p.FirstRoundDone, waitFor, pollDt)
	assert.Equal(t, int64(2), calls.Load(), "called once per worker")
	a, _ := got.Load("a")
	b, _ := got.Load("b")
	assert.Equal(t, "http://203.0.113.1:80/health", a)
	assert.Equal(t, "http://localhost/health", b)
	assert.Equal(t, lifecycle.Degraded, status(pool, 0).Health)
	assert.Equal(t, lifecycle.Degraded, status(pool, 1).Health)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
