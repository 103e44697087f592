package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// CloseIdle closes the worker's pooled connections through the handler's
// transport chain (issue 14: a replaced process drains once the proxy's
// connections to it are closed, and an idle pool would otherwise hold it
// for the idle timeout).
func TestCloseIdleClosesPooledConnections(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(srv.Close)
	pool, err := lifecycle.NewPool(lifecycle.Config{Supervised: true, InitialState: lifecycle.StateUp,
		Workers: []lifecycle.WorkerConfig{{Name: "w1", Network: "tcp"}}})
	require.NoError(t, err)
	w := pool.Workers()[0]
	ep := w.SetEndpoint("tcp", srv.Listener.Addr().String(), 1, time.Now())
	h, err := New(Config{Pool: pool, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		DialTimeout: time.Second, ResponseTimeout: 5 * time.Second, IdleConnTimeout: time.Minute})
	require.NoError(t, err)

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://obsproxy.test/", nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, int64(1), ep.OpenConns(), "the connection is pooled")

	h.CloseIdle(w)
	assert.Equal(t, int64(0), ep.OpenConns(), "CloseIdle closed the pooled connection")
}
