package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
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
	tr := newNetHTTPTransport(w, Config{DialTimeout: time.Second, ResponseTimeout: 2 * time.Second,
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
	time.Sleep(2 * staleAfterIdle) // the pooled connection is idle, as between two requests
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
