package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/admission"
	"github.com/obsproxy/obsproxy/lifecycle"
)

type admitFixture struct {
	*fixture
	q *admission.Queue
}

// newAdmitFixture is newFixture with admission control over the workers.
func newAdmitFixture(t *testing.T, acfg admission.Config, cfg Config, workers ...lifecycle.WorkerConfig) *admitFixture {
	t.Helper()
	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: workers, InitialState: lifecycle.StateUp})
	require.NoError(t, err)
	acfg.Pool = pool
	q, err := admission.New(acfg)
	require.NoError(t, err)
	cfg.Pool, cfg.Admission = pool, q
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h, err := New(cfg)
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h, q)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &admitFixture{fixture: &fixture{h: h, reg: reg, srv: srv}, q: q}
}

// gate is an upstream that holds every request until released, and counts
// how many it holds at once.
type gate struct {
	release      chan struct{}
	now, most    atomic.Int64
	served, seen atomic.Int64
}

func newGate() *gate { return &gate{release: make(chan struct{})} }

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.seen.Add(1)
	n := g.now.Add(1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-g.release:
	case <-r.Context().Done():
	}
	g.now.Add(-1)
	g.served.Add(1)
	io.WriteString(w, "ok")
}

func awaitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestAdmissionCapsInFlightAndQueues(t *testing.T) {
	g := newGate()
	f := newAdmitFixture(t, admission.Config{MaxInFlight: 2, Size: 10, Timeout: time.Minute}, Config{},
		upstream(t, "w1", g))
	var wg sync.WaitGroup
	codes := make(chan int, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(f.srv.URL + "/x")
			if err != nil {
				codes <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	awaitCond(t, "2 at the worker, 3 waiting", func() bool { return f.q.Depth() == 3 && g.now.Load() == 2 })
	assert.Equal(t, 3.0, f.value(t, "obsproxy_queue_depth", nil))
	for range 5 {
		g.release <- struct{}{}
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		assert.Equal(t, http.StatusOK, c)
	}
	assert.EqualValues(t, 2, g.most.Load(), "the worker never sees more than the cap")
	assert.Equal(t, 5.0, f.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "200", "method": "GET"}))
	assert.Equal(t, 3.0, f.value(t, "obsproxy_queue_wait_seconds", nil))
	assert.EqualValues(t, 0, f.q.InUse(0))
}

func TestAdmissionRejectsOverloaded(t *testing.T) {
	g := newGate()
	f := newAdmitFixture(t, admission.Config{MaxInFlight: 1, Size: 1, Timeout: time.Second}, Config{},
		upstream(t, "w1", g))
	held := make(chan int, 1)
	go func() {
		resp, _ := get(t, f.srv.URL+"/held", nil)
		held <- resp.StatusCode
	}()
	awaitCond(t, "the slot taken", func() bool { return g.now.Load() == 1 })
	waited := make(chan *http.Response, 1)
	waitedBody := make(chan []byte, 1)
	go func() {
		resp, body := get(t, f.srv.URL+"/waits", map[string]string{"X-Request-ID": "queued-1"})
		waited <- resp
		waitedBody <- body
	}()
	awaitCond(t, "one waiting", func() bool { return f.q.Depth() == 1 })
	resp, body := get(t, f.srv.URL+"/full", map[string]string{"X-Request-ID": "full-1"})
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.JSONEq(t, `{"error":"overloaded","request_id":"full-1"}`, string(body))

	resp = <-waited
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.JSONEq(t, `{"error":"overloaded","request_id":"queued-1"}`, string(<-waitedBody))

	g.release <- struct{}{}
	assert.Equal(t, http.StatusOK, <-held)
	assert.EqualValues(t, 1, g.seen.Load(), "rejected requests never reach the worker")
	assert.Equal(t, 2.0, f.value(t, "obsproxy_requests_total", map[string]string{"worker": "none", "code": "503", "method": "GET"}))
	assert.Equal(t, 1.0, f.value(t, "obsproxy_queue_rejected_total", map[string]string{"reason": "full"}))
	assert.Equal(t, 1.0, f.value(t, "obsproxy_queue_rejected_total", map[string]string{"reason": "timeout"}))
}

func TestClientLeavingTheQueueIs499AndNeverSent(t *testing.T) {
	g := newGate()
	f := newAdmitFixture(t, admission.Config{MaxInFlight: 1, Size: 10, Timeout: time.Minute}, Config{},
		upstream(t, "w1", g))
	go get(t, f.srv.URL+"/held", nil)
	awaitCond(t, "the slot taken", func() bool { return g.now.Load() == 1 })
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/leaves", nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	awaitCond(t, "one waiting", func() bool { return f.q.Depth() == 1 })
	cancel()
	require.Error(t, <-errc)
	awaitCond(t, "the 499 counted", func() bool {
		return f.value(t, "obsproxy_requests_total", map[string]string{"worker": "none", "code": "499", "method": "GET"}) == 1
	})
	assert.EqualValues(t, 0, f.q.Depth())
	g.release <- struct{}{}
	awaitCond(t, "the held request done", func() bool { return g.served.Load() == 1 })
	assert.EqualValues(t, 1, g.seen.Load(), "the request that left was never sent")
	assert.Equal(t, 0.0, f.value(t, "obsproxy_queue_rejected_total", map[string]string{"reason": "timeout"}))
}

func TestSSEStreamFreesItsSlot(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	w1 := upstream(t, "w1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sse" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			select {
			case <-stop:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, "ok")
	}))
	f := newAdmitFixture(t, admission.Config{MaxInFlight: 1, Size: 10, Timeout: 5 * time.Second}, Config{}, w1)
	resp, err := http.Get(f.srv.URL + "/sse")
	require.NoError(t, err)
	defer resp.Body.Close()
	awaitCond(t, "the stream counted", func() bool {
		return f.value(t, "obsproxy_streams_active", map[string]string{"worker": "w1", "kind": "sse"}) == 1
	})
	assert.EqualValues(t, 0, f.q.InUse(0), "a stream stops counting against the cap")
	r2, body := get(t, f.srv.URL+"/plain", nil)
	assert.Equal(t, http.StatusOK, r2.StatusCode)
	assert.Equal(t, "ok", string(body))
}

// TestNoSlotLeakAfterPanicsAndErrors runs requests through every way an
// exchange can end badly, with a cap of 1, and checks that every slot comes
// back: a connect failure retried through admission, a worker breaking off
// its body (ReverseProxy panics with http.ErrAbortHandler), a response
// header timeout, a client that leaves mid-response.
func TestNoSlotLeakAfterPanicsAndErrors(t *testing.T) {
	good := upstream(t, "good", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/broken":
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "short")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // cut the connection mid-body
		case "/slow":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	}))
	dead := lifecycle.WorkerConfig{Name: "dead", Network: "tcp", Address: deadAddress(t)}
	f := newAdmitFixture(t, admission.Config{MaxInFlight: 1, Size: 10, Timeout: 5 * time.Second},
		Config{ResponseTimeout: 200 * time.Millisecond}, dead, good)

	for _, tc := range []struct {
		path string
		code int
	}{{"/", 200}, {"/", 200}, {"/broken", 0}, {"/slow", 504}, {"/", 200}} {
		resp, err := http.Get(f.srv.URL + tc.path)
		if tc.code == 0 {
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			assert.Error(t, err, tc.path)
			continue
		}
		require.NoError(t, err, tc.path)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, tc.code, resp.StatusCode, tc.path)
	}
	// A client that leaves mid-response.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/slow", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	cancel()
	awaitCond(t, "every slot back", func() bool {
		return f.q.InUse(0) == 0 && f.q.InUse(1) == 0 && f.h.InFlight() == 0
	})
	assert.GreaterOrEqual(t, f.value(t, "obsproxy_upstream_errors_total", map[string]string{"worker": "dead", "reason": "connect"}), 1.0)
	assert.GreaterOrEqual(t, f.value(t, "obsproxy_upstream_errors_total", map[string]string{"worker": "good", "reason": "reset"}), 1.0)
	resp, body := get(t, f.srv.URL+"/", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok", string(body))
}

func TestWithoutCapNothingWaits(t *testing.T) {
	g := newGate()
	f := newAdmitFixture(t, admission.Config{}, Config{}, upstream(t, "w1", g))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			get(t, f.srv.URL+"/", nil)
		}()
	}
	awaitCond(t, "4 in flight at once", func() bool { return g.now.Load() == 4 })
	assert.Zero(t, f.q.Depth())
	close(g.release)
	wg.Wait()
	assert.Equal(t, 0.0, f.value(t, "obsproxy_worker_max_in_flight", nil))
}

// TestCapBoundsIdleConnections: with a cap, each worker's idle pool (lean
// HTTP/1.1 path and net/http's) keeps no more connections than the cap can
// use, so that uvicorn's --limit-concurrency, which counts idle keep-alive
// connections, is never tripped by obsproxy.
func TestCapBoundsIdleConnections(t *testing.T) {
	for _, tc := range []struct {
		name string
		cap  int
		want int
	}{{"no cap keeps the default", 0, 256}, {"cap 3", 3, 3}, {"cap above the default", 1000, 256}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newAdmitFixture(t, admission.Config{MaxInFlight: tc.cap, Size: 1, Timeout: time.Second}, Config{},
				upstream(t, "w1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
			st, ok := f.h.proxies[0].Transport.(*streamTransport)
			require.True(t, ok)
			h1, ok := st.rt.(*h1Transport)
			require.True(t, ok, "an HTTP/1.1 worker gets the lean round-tripper")
			assert.Equal(t, tc.want, h1.maxIdle)
			nh, ok := h1.fallback.(*http.Transport)
			require.True(t, ok)
			assert.Equal(t, tc.want, nh.MaxIdleConnsPerHost)
		})
	}
}
