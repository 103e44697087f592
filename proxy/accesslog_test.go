package proxy

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// lockedLog collects log output written from the server's goroutines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.FieldsFunc(l.b.String(), func(r rune) bool { return r == '\n' })
}

// TestAccessLog: one JSON line per finished request (spec section 2,
// OBSPROXY_ACCESS_LOG) with the request id, method, path without the query,
// status, bytes, duration, worker and client address, and no query string
// or header value.
func TestAccessLog(t *testing.T) {
	var out lockedLog
	f := newFixture(t, Config{Pool: defaultPool(t), AccessLog: slog.New(slog.NewJSONHandler(&out, nil))},
		upstream(t, "w1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte("twelve bytes"))
		})))
	resp, body := get(t, f.srv.URL+"/orders/42?token=query-secret", map[string]string{
		"Authorization": "Bearer header-secret", "Cookie": "session=cookie-secret", "X-Request-Id": "req-7",
	})
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Equal(t, "twelve bytes", string(body))
	require.Eventually(t, func() bool { return len(out.lines()) == 1 }, 5*time.Second, 5*time.Millisecond)

	line := out.lines()[0]
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &rec))
	assert.Equal(t, "request", rec["msg"])
	assert.Equal(t, "req-7", rec["request_id"])
	assert.Equal(t, "GET", rec["method"])
	assert.Equal(t, "/orders/42", rec["path"])
	assert.Equal(t, 201.0, rec["status"])
	assert.Equal(t, 12.0, rec["bytes"])
	assert.Equal(t, "w1", rec["worker"])
	assert.Contains(t, rec["client"], "127.0.0.1:")
	assert.IsType(t, 0.0, rec["duration_ms"])
	for _, secret := range []string{"query-secret", "header-secret", "cookie-secret", "token="} {
		assert.NotContains(t, line, secret)
	}

	// A request no worker could take is logged under "none".
	f.h.pool.Workers()[0].SetState(lifecycle.StateDown)
	resp, _ = get(t, f.srv.URL+"/x", nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Eventually(t, func() bool { return len(out.lines()) == 2 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, json.Unmarshal([]byte(out.lines()[1]), &rec))
	assert.Equal(t, "none", rec["worker"])
	assert.Equal(t, 503.0, rec["status"])
}
