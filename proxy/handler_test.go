package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
	"github.com/obsproxy/obsproxy/lifecycle"
)

// upstream starts an httptest server and returns its worker config.
func upstream(t *testing.T, name string, h http.Handler) lifecycle.WorkerConfig {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return lifecycle.WorkerConfig{Name: name, Network: "tcp", Address: srv.Listener.Addr().String()}
}

// deadAddress returns a loopback address nothing listens on.
func deadAddress(t *testing.T) string {
	t.Helper()
	// A socket bound but not listening: a connection to it is refused,
	// and the port stays reserved until cleanup, so that no listener of
	// this test (or another) can take it, as could happen to a port merely
	// closed.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

type fixture struct {
	h   *Handler
	reg *prometheus.Registry
	srv *httptest.Server
}

func newFixture(t *testing.T, cfg Config, workers ...lifecycle.WorkerConfig) *fixture {
	t.Helper()
	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: workers, InitialState: lifecycle.StateUp, Policy: cfg.Pool.Policy()})
	require.NoError(t, err)
	cfg.Pool = pool
	return fixtureFor(t, cfg)
}

// fixtureFor serves a Handler over cfg (its Pool set by the caller, such as
// a supervised pool) on an httptest server, its metrics on a registry.
func fixtureFor(t *testing.T, cfg Config) *fixture {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h, err := New(cfg)
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{h: h, reg: reg, srv: srv}
}

func defaultPool(t *testing.T) *lifecycle.Pool {
	p, err := lifecycle.NewPool(lifecycle.Config{Workers: []lifecycle.WorkerConfig{{Name: "x", Network: "tcp", Address: "x:1"}}})
	require.NoError(t, err)
	return p
}

func (f *fixture) value(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	v, _ := metricstest.Value(t, f.reg, name, labels)
	return v
}

func get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp, body
}

func echoHeaders(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"headers": r.Header, "host": r.Host, "path": r.URL.RequestURI()})
}

func TestProxyForwardsAndCounts(t *testing.T) {
	f := newFixture(t, Config{Pool: defaultPool(t)}, upstream(t, "w1", http.HandlerFunc(echoHeaders)))

	resp, body := get(t, f.srv.URL+"/a/b?q=1", map[string]string{"X-Forwarded-For": "6.6.6.6"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var got struct {
		Headers http.Header
		Host    string
		Path    string
	}
	require.NoError(t, json.Unmarshal(body, &got))
	assert.Equal(t, "/a/b?q=1", got.Path)
	assert.Equal(t, []string{"127.0.0.1"}, got.Headers["X-Forwarded-For"], "an untrusted peer's X-Forwarded-For is replaced")
	assert.Equal(t, []string{"http"}, got.Headers["X-Forwarded-Proto"])
	assert.Equal(t, []string{strings.TrimPrefix(f.srv.URL, "http://")}, got.Headers["X-Forwarded-Host"])
	assert.Equal(t, strings.TrimPrefix(f.srv.URL, "http://"), got.Host, "the client's Host is kept")
	id := resp.Header.Get("X-Request-Id")
	assert.Len(t, id, 32)
	assert.Equal(t, []string{id}, got.Headers["X-Request-Id"], "the generated id goes to the worker and back")

	assert.Equal(t, 1.0, f.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "200", "method": "GET"}))
	assert.Equal(t, 0.0, f.value(t, "obsproxy_in_flight_requests", map[string]string{"worker": "w1"}))
	assert.Equal(t, 1.0, f.value(t, "obsproxy_request_duration_seconds", map[string]string{"worker": "w1"}))
}

func TestRequestID(t *testing.T) {
	f := newFixture(t, Config{Pool: defaultPool(t)}, upstream(t, "w1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "from-the-worker")
		io.WriteString(w, r.Header.Get("X-Request-Id"))
	})))
	for _, tc := range []struct {
		name, sent string
		kept       bool
	}{
		{"sane", "abc-123_x.Y", true},
		{"128 chars", strings.Repeat("a", 128), true},
		{"129 chars", strings.Repeat("a", 129), false},
		{"space", "a b", false},
		{"quote", `a"b`, false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.sent != "" {
				hdr["X-Request-Id"] = tc.sent
			}
			resp, body := get(t, f.srv.URL+"/", hdr)
			assert.Equal(t, []string{string(body)}, resp.Header.Values("X-Request-Id"), "the worker saw the id the client gets, once")
			if tc.kept {
				assert.Equal(t, tc.sent, string(body))
			} else {
				assert.Len(t, string(body), 32)
				assert.NotEqual(t, tc.sent, string(body))
			}
		})
	}
}

func TestTrustedProxyKeepsForwardedFor(t *testing.T) {
	f := newFixture(t, Config{Pool: defaultPool(t), TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		upstream(t, "w1", http.HandlerFunc(echoHeaders)))
	_, body := get(t, f.srv.URL+"/", map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "example.org"})
	var got struct{ Headers http.Header }
	require.NoError(t, json.Unmarshal(body, &got))
	assert.Equal(t, []string{"203.0.113.9, 127.0.0.1"}, got.Headers["X-Forwarded-For"])
	assert.Equal(t, []string{"https"}, got.Headers["X-Forwarded-Proto"])
	assert.Equal(t, []string{"example.org"}, got.Headers["X-Forwarded-Host"])
}

func TestH2CUpgradeOfferIsNotForwarded(t *testing.T) {
	f := newFixture(t, Config{Pool: defaultPool(t)}, upstream(t, "w1", http.HandlerFunc(echoHeaders)))
	resp, body := get(t, f.srv.URL+"/", map[string]string{"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var got struct{ Headers http.Header }
	require.NoError(t, json.Unmarshal(body, &got))
	assert.NotContains(t, got.Headers, "Upgrade")
	assert.NotContains(t, got.Headers, "Http2-Settings")
}

func TestNoWorkerUp(t *testing.T) {
	f := newFixture(t, Config{Pool: defaultPool(t)}, upstream(t, "w1", http.HandlerFunc(echoHeaders)))
	f.h.pool.Workers()[0].SetState(lifecycle.StateDown)
	resp, body := get(t, f.srv.URL+"/", nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.JSONEq(t, `{"error":"no healthy upstream","request_id":"`+resp.Header.Get("X-Request-Id")+`"}`, string(body))
	assert.Equal(t, 1.0, f.value(t, "obsproxy_requests_total", map[string]string{"worker": "none", "code": "503", "method": "GET"}))
}

func TestConnectFailureIsRetriedElsewhere(t *testing.T) {
	dead := lifecycle.WorkerConfig{Name: "dead", Network: "tcp", Address: deadAddress(t)}
	live := upstream(t, "live", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	f := newFixture(t, Config{Pool: defaultPool(t)}, dead, live)
	const n = 10
	for i := 0; i < n; i++ {
		// A POST with a body is retried too: nothing was sent.
		resp, err := http.Post(f.srv.URL+"/", "text/plain", strings.NewReader("payload"))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "payload", string(body))
	}
	assert.Equal(t, float64(n), f.value(t, "obsproxy_requests_total", map[string]string{"worker": "live", "code": "200", "method": "POST"}))
	retries := f.value(t, "obsproxy_retries_total", map[string]string{"worker": "dead"})
	assert.Greater(t, retries, 0.0, "least_inflight ties round-robin, so some requests tried the dead worker first")
	assert.Equal(t, retries, f.value(t, "obsproxy_upstream_errors_total", map[string]string{"worker": "dead", "reason": "connect"}))
	assert.Equal(t, 0.0, f.value(t, "obsproxy_in_flight_requests", map[string]string{"worker": "dead"}))
}

func TestConnectFailureIsReported(t *testing.T) {
	dead := lifecycle.WorkerConfig{Name: "dead", Network: "tcp", Address: deadAddress(t)}
	live := upstream(t, "live", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	var mu sync.Mutex
	var reported []string
	f := newFixture(t, Config{Pool: defaultPool(t), OnConnectFailure: func(w *lifecycle.Worker) {
		mu.Lock()
		defer mu.Unlock()
		reported = append(reported, w.Name)
	}}, dead, live)
	for i := 0; i < 4; i++ {
		resp, _ := get(t, f.srv.URL+"/", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, reported, "round-robin ties sent some first attempts to the dead worker")
	for _, name := range reported {
		assert.Equal(t, "dead", name)
	}
	assert.Equal(t, float64(len(reported)), f.value(t, "obsproxy_upstream_errors_total", map[string]string{"worker": "dead", "reason": "connect"}))
}

func TestExhaustedAnswers502WithoutDetails(t *testing.T) {
	addr := deadAddress(t)
	f := newFixture(t, Config{Pool: defaultPool(t)}, lifecycle.WorkerConfig{Name: "dead", Network: "tcp", Address: addr})
	resp, body := get(t, f.srv.URL+"/", nil)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.JSONEq(t, `{"error":"bad gateway","request_id":"`+resp.Header.Get("X-Request-Id")+`"}`, string(body))
	assert.NotContains(t, string(body), addr)
	assert.Equal(t, 1.0, f.value(t, "obsproxy_requests_total", map[string]string{"worker": "dead", "code": "502"}))
}

func TestResponseHeaderTimeoutAnswers504(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := upstream(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	f := newFixture(t, Config{Pool: defaultPool(t), ResponseTimeout: 100 * time.Millisecond}, slow)
	resp, body := get(t, f.srv.URL+"/", nil)
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	assert.Contains(t, string(body), `"error":"gateway timeout"`)
	assert.Equal(t, 1.0, f.value(t, "obsproxy_upstream_errors_total", map[string]string{"worker": "slow", "reason": "timeout"}))
}

func TestClientAbandonIs499(t *testing.T) {
	entered := make(chan struct{}, 1)
	f := newFixture(t, Config{Pool: defaultPool(t)}, upstream(t, "w1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	})))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/", nil)
	go func() { <-entered; cancel() }()
	_, err := http.DefaultClient.Do(req)
	require.Error(t, err)
	require.Eventually(t, func() bool {
		return f.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "499"}) == 1
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 0.0, metricstest.Sum(t, f.reg, "obsproxy_upstream_errors_total", nil), "a client leaving is not an upstream error")
	assert.Equal(t, 0.0, f.value(t, "obsproxy_in_flight_requests", map[string]string{"worker": "w1"}))
}

func TestInFlightAndOldest(t *testing.T) {
	release := make(chan struct{})
	var entered sync.WaitGroup
	f := newFixture(t, Config{Pool: defaultPool(t)}, upstream(t, "w1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Done()
		<-release
	})))
	const n = 3
	entered.Add(n)
	var done sync.WaitGroup
	for i := 0; i < n; i++ {
		done.Add(1)
		go func() { defer done.Done(); get(t, f.srv.URL+"/", nil) }()
	}
	entered.Wait()
	assert.Equal(t, float64(n), f.value(t, "obsproxy_in_flight_requests", map[string]string{"worker": "w1"}))
	require.Eventually(t, func() bool {
		return f.value(t, "obsproxy_oldest_in_flight_seconds", map[string]string{"worker": "w1"}) >= 0.02
	}, 5*time.Second, 5*time.Millisecond, "the oldest in-flight age grows while the requests wait")
	snap, none := f.h.Snapshot()
	require.Len(t, snap, 1)
	assert.Equal(t, "w1", snap[0].Name)
	assert.Equal(t, int64(n), snap[0].InFlight)
	assert.GreaterOrEqual(t, snap[0].OldestInFlight, 20*time.Millisecond)
	assert.Equal(t, "none", none.Name)
	close(release)
	done.Wait()
	snap, _ = f.h.Snapshot()
	assert.Equal(t, WorkerSnapshot{Name: "w1", Requests: n}, snap[0])
	assert.Equal(t, 0.0, f.value(t, "obsproxy_in_flight_requests", map[string]string{"worker": "w1"}))
	assert.Equal(t, 0.0, f.value(t, "obsproxy_oldest_in_flight_seconds", map[string]string{"worker": "w1"}))
}

func TestSSEIsAStreamNotAnInFlightRequest(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, Config{Pool: defaultPool(t)}, upstream(t, "w1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		io.WriteString(w, "data: 1\n\n")
		http.NewResponseController(w).Flush()
		<-release
		io.WriteString(w, "data: 2\n\n")
	})))
	resp, err := http.Get(f.srv.URL + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "data: 1\n", line, "the first event arrives before the response ends")
	assert.Equal(t, 1.0, f.value(t, "obsproxy_streams_active", map[string]string{"worker": "w1", "kind": "sse"}))
	assert.Equal(t, 0.0, f.value(t, "obsproxy_in_flight_requests", map[string]string{"worker": "w1"}))
	assert.Equal(t, 0.0, f.value(t, "obsproxy_oldest_in_flight_seconds", map[string]string{"worker": "w1"}))
	close(release)
	io.Copy(io.Discard, resp.Body)
	require.Eventually(t, func() bool {
		return f.value(t, "obsproxy_streams_active", map[string]string{"worker": "w1", "kind": "sse"}) == 0
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 0.0, f.value(t, "obsproxy_request_duration_seconds", map[string]string{"worker": "w1"}), "streams stay out of the latency histogram")
}

func TestOddMethodsShareOneLabel(t *testing.T) {
	f := newFixture(t, Config{Pool: defaultPool(t)}, upstream(t, "w1", http.HandlerFunc(echoHeaders)))
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("X"+strings.Repeat("Y", i), f.srv.URL+"/", nil)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.Equal(t, map[string]bool{"other": true}, metricstest.LabelValues(t, f.reg, "obsproxy_requests_total", "method"))
	assert.Equal(t, 20.0, f.value(t, "obsproxy_requests_total", map[string]string{"method": "other"}))
}

func TestWorkerSeriesExistFromStart(t *testing.T) {
	f := newFixture(t, Config{Pool: defaultPool(t)}, upstream(t, "w1", http.HandlerFunc(echoHeaders)), upstream(t, "w2", http.HandlerFunc(echoHeaders)))
	for _, name := range []string{"obsproxy_in_flight_requests", "obsproxy_oldest_in_flight_seconds", "obsproxy_retries_total"} {
		assert.Equal(t, map[string]bool{"w1": true, "w2": true}, metricstest.LabelValues(t, f.reg, name, "worker"), name)
	}
}

func TestCloseStreamsEndsSilentSSEStreams(t *testing.T) {
	upstreamDone := make(chan struct{})
	var doneOnce sync.Once
	f := newFixture(t, Config{Pool: defaultPool(t)}, upstream(t, "w1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: hello\n\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // silent until obsproxy goes away
		doneOnce.Do(func() { close(upstreamDone) })
	})))
	resp, err := http.Get(f.srv.URL + "/")
	require.NoError(t, err)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "data: hello\n", line)
	require.Equal(t, 1.0, f.value(t, "obsproxy_streams_active", map[string]string{"kind": "sse"}))

	assert.Equal(t, 1, f.h.CloseStreams())
	io.ReadAll(br) // the client sees its stream end (abruptly: unexpected EOF)
	require.Eventually(t, func() bool {
		return f.value(t, "obsproxy_streams_active", map[string]string{"kind": "sse"}) == 0
	}, 5*time.Second, 10*time.Millisecond)
	<-upstreamDone
	assert.Equal(t, 0.0, metricstest.Sum(t, f.reg, "obsproxy_upstream_errors_total", nil), "a stream closed by shutdown is no upstream error")
	assert.Equal(t, 1.0, f.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "200"}))

	// A stream that starts after CloseStreams is closed at once: the
	// client sees the exchange end (before or after the headers).
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp2, err := http.Get(f.srv.URL + "/"); err == nil {
			io.Copy(io.Discard, resp2.Body)
			resp2.Body.Close()
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a stream started after CloseStreams stayed open")
	}
}
