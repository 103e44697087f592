package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// A supervised worker that moves on to another process (a new Endpoint
// generation) never gets a request on a connection made to the old one:
// the lean transport closes such a connection instead of pooling it, and
// one already pooled instead of reusing it (issue 13, the shape for
// issue 14's replacements).
func TestH1GenerationNeverReusesOldProcessConnection(t *testing.T) {
	oldSrv := newH1tServer(t, "tcp", h1tServe(h1tOK))
	newSrv := newH1tServer(t, "tcp", h1tServe(h1tOK))
	w := &lifecycle.Worker{Name: "w1", Network: "tcp"}
	w.SetEndpoint("tcp", oldSrv.addr, 1, time.Now())
	tr := newH1TransportFor(w, h1tConfig(), h1tNoFallback(t))
	t.Cleanup(tr.CloseIdleConnections)
	ctx := h1tContext(t)

	h1tGet(t, tr, h1tRequest(ctx, http.MethodGet, "/a"))
	require.Equal(t, 1, tr.idleConns(), "a current connection is pooled")

	// The worker moves on while a connection is pooled: it is not reused.
	w.SetEndpoint("tcp", newSrv.addr, 2, time.Now())
	h1tGet(t, tr, h1tRequest(ctx, http.MethodGet, "/b"))
	assert.Equal(t, []string{"GET /a"}, oldSrv.requests(), "nothing more reaches the old process")
	assert.Equal(t, []string{"GET /b"}, newSrv.requests())
	h1tEventually(t, func() bool { return oldSrv.peerClosed.Load() == 1 }, "the stale pooled connection is closed")

	// The worker moves on while a response is being read: the connection
	// is closed when its body ends instead of going back to the pool.
	resp, err := tr.RoundTrip(h1tRequest(ctx, http.MethodGet, "/c"))
	require.NoError(t, err)
	w.SetEndpoint("tcp", oldSrv.addr, 3, time.Now())
	_, err = h1tBody(resp)
	require.NoError(t, err)
	assert.Equal(t, 0, tr.idleConns(), "a connection of an old generation is not pooled")
	h1tEventually(t, func() bool { return newSrv.peerClosed.Load() == 1 }, "and is closed")

	// No process at all: a dial error wrapping ErrNoProcess, at once.
	ep := w.Endpoint()
	require.True(t, w.ClearEndpoint(ep))
	_, err = tr.RoundTrip(h1tRequest(ctx, http.MethodGet, "/d"))
	require.ErrorIs(t, err, lifecycle.ErrNoProcess)
	assert.Equal(t, reasonConnect, reasonOf(err), "counted and retried as a connect failure")
}

// The net/http.Transport of a supervised worker (bodies, h2c) dials the
// current process and never sends a new request on a kept-alive connection
// to an earlier one: the request goes out on a new connection instead.
func TestNetHTTPGenerationNeverReusesOldProcessConnection(t *testing.T) {
	var oldHits, newHits atomic.Int32
	oldSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { oldHits.Add(1) }))
	t.Cleanup(oldSrv.Close)
	newSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { newHits.Add(1) }))
	t.Cleanup(newSrv.Close)
	w := &lifecycle.Worker{Name: "w1", Network: "tcp"}
	w.SetEndpoint("tcp", oldSrv.Listener.Addr().String(), 1, time.Now())
	tr := newGenTransport(w, Config{DialTimeout: time.Second, ResponseTimeout: 2 * time.Second,
		IdleConnTimeout: 10 * time.Second, MaxIdleConnsPerWorker: 4})
	t.Cleanup(tr.CloseIdleConnections)
	get := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://worker.test/x", nil)
		require.NoError(t, err)
		resp, err := tr.RoundTrip(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	get()
	get()
	require.Equal(t, int32(2), oldHits.Load())
	w.SetEndpoint("tcp", newSrv.Listener.Addr().String(), 2, time.Now())
	get()
	assert.Equal(t, int32(2), oldHits.Load(), "the kept-alive connection to the old process is not used")
	assert.Equal(t, int32(1), newHits.Load())

	require.True(t, w.ClearEndpoint(w.Endpoint()))
	tr.CloseIdleConnections()
	_, err := dialWorker(context.Background(), &net.Dialer{}, w)
	var op *net.OpError
	require.True(t, errors.As(err, &op), fmt.Sprint(err))
	assert.Equal(t, "dial", op.Op)
	assert.ErrorIs(t, err, lifecycle.ErrNoProcess)
}

// A replacement while a request body is being streamed to the old process
// (issue 14): the request completes on its connection, the old process's
// tracked connections fall to zero once it ends and CloseStale ran, and the
// current process's pooled connection stays.
func TestGenerationSwitchMidBodyAndCloseStale(t *testing.T) {
	bodyStarted := make(chan struct{})
	var oldGot atomic.Int64
	oldSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1)
		n, _ := r.Body.Read(buf)
		close(bodyStarted)
		rest, _ := io.ReadAll(r.Body)
		oldGot.Store(int64(n + len(rest)))
	}))
	t.Cleanup(oldSrv.Close)
	var newHits atomic.Int32
	newSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { newHits.Add(1) }))
	t.Cleanup(newSrv.Close)

	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: []lifecycle.WorkerConfig{{Name: "w1", Network: "tcp"}}, Supervised: true})
	require.NoError(t, err)
	w := pool.Workers()[0]
	oldEP := w.SetEndpoint("tcp", oldSrv.Listener.Addr().String(), 1, time.Now())
	h, err := New(Config{Pool: pool, DialTimeout: time.Second})
	require.NoError(t, err)
	tr := h.proxies[0].Transport.(*streamTransport).rt
	t.Cleanup(func() { h.CloseStale(w); tr.(interface{ CloseIdleConnections() }).CloseIdleConnections() })

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://worker.test/upload", pr)
		req.ContentLength = 3 * 1000
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	pw.Write(bytes.Repeat([]byte("x"), 1000))
	<-bodyStarted
	w.SetEndpoint("tcp", newSrv.Listener.Addr().String(), 2, time.Now())
	h.CloseStale(w)
	time.Sleep(100 * time.Millisecond) // a pause in the body, longer than any idle rule
	pw.Write(bytes.Repeat([]byte("x"), 2000))
	pw.Close()
	require.NoError(t, <-done, "the body's request completes on the old process")
	assert.Equal(t, int64(3000), oldGot.Load())

	// New requests go to the new process; the old connection, back in
	// its retired pool, is closed by CloseStale.
	req, _ := http.NewRequest(http.MethodPut, "http://worker.test/x", strings.NewReader("y"))
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, int32(1), newHits.Load())
	h.CloseStale(w)
	h1tEventually(t, func() bool { return oldEP.OpenConns() == 0 }, "the old process has no connection left")
	assert.Equal(t, int64(1), w.Endpoint().OpenConns(), "the new process's pooled connection stays")
}
