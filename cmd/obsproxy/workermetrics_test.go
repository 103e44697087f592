package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/admin"
	"github.com/obsproxy/obsproxy/internal/metricstest"
	"github.com/obsproxy/obsproxy/workermetrics"
)

var _ admin.ContextGatherer = (*workermetrics.Gatherer)(nil)

// metricsWorker is a worker that answers its /metrics with one counter and
// counts the requests for that path.
func metricsWorker(t *testing.T, hits *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/metrics") {
			hits.Add(1)
		}
		fmt.Fprint(w, "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\napp_requests_total{route=\"/\"} 5\n")
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestWorkerMetricsAreWiredIntoMetricsAndPush(t *testing.T) {
	var hits atomic.Int64
	cfg, err := loadConfig(nil, []string{
		"OBSPROXY_UPSTREAMS=w1=http://" + metricsWorker(t, &hits) + ",w2=http://" + metricsWorker(t, &hits),
		"OBSPROXY_WORKER_METRICS_PATH=/metrics",
		"OBSPROXY_PUSH_URL=http://127.0.0.1:1/api/v1/import/prometheus",
	})
	require.NoError(t, err)
	a, err := newApp(cfg, newLogger(cfg, &bytes.Buffer{}))
	require.NoError(t, err)

	// The public listener hides the path and what is under it, without asking a worker.
	for _, p := range []string{"/metrics", "/metrics/", "/metrics/x", "//metrics", "/./metrics", "/%6Detrics"} {
		w := httptest.NewRecorder()
		a.public.Handler.ServeHTTP(w, httptest.NewRequest("GET", p, nil))
		assert.Equal(t, http.StatusNotFound, w.Code, p)
		assert.NotContains(t, w.Body.String(), "app_requests_total", p)
	}
	assert.Zero(t, hits.Load(), "a worker was asked")

	// The admin /metrics serves the merged exposition; push sends the same gatherer.
	w := httptest.NewRecorder()
	a.adminPlane.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	require.Equal(t, http.StatusOK, w.Code)
	body := w.Body.String()
	assert.Contains(t, body, `app_requests_total{route="/",worker="w1"} 5`)
	assert.Contains(t, body, `app_requests_total{route="/",worker="w2"} 5`)
	assert.Contains(t, body, `obsproxy_worker_metrics_up{worker="w2"} 1`)
	assert.Equal(t, int64(2), hits.Load())
	assert.Same(t, a.workerMetrics, a.pusher.gatherer.(*workermetrics.Gatherer))
	pushed, err := a.pusher.gather(t.Context())
	require.NoError(t, err)
	assert.Contains(t, string(pushed), `app_requests_total{route="/",worker="w1"} 5`)
	// obsproxy's own metrics are still there, from the registry.
	v, ok := metricstest.Value(t, a.gatherer, "obsproxy_build_info", nil)
	assert.True(t, ok)
	assert.Equal(t, 1.0, v)
}

func TestWorkerMetricsOffProxiesThePath(t *testing.T) {
	var hits atomic.Int64
	cfg, err := loadConfig(nil, []string{"OBSPROXY_UPSTREAMS=w1=http://" + metricsWorker(t, &hits)})
	require.NoError(t, err)
	a, err := newApp(cfg, newLogger(cfg, &bytes.Buffer{}))
	require.NoError(t, err)
	assert.Nil(t, a.workerMetrics)
	w := httptest.NewRecorder()
	a.adminPlane.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	assert.NotContains(t, w.Body.String(), "app_requests_total")
	assert.NotContains(t, w.Body.String(), "obsproxy_worker_metrics_up")
	assert.Zero(t, hits.Load())
}

// TestScrapeAnswersWithinTheScrapersTimeout: a worker that never answers
// its metrics costs a scrape at most 90 % of the scraper's timeout (less
// than OBSPROXY_WORKER_METRICS_TIMEOUT here), and the answer still has
// obsproxy's own metrics and counts the timeout.
func TestScrapeAnswersWithinTheScrapersTimeout(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	cfg, err := loadConfig(nil, []string{
		"OBSPROXY_UPSTREAMS=w1=http://" + slow.Listener.Addr().String(),
		"OBSPROXY_WORKER_METRICS_PATH=/metrics",
		"OBSPROXY_WORKER_METRICS_TIMEOUT=1m",
	})
	require.NoError(t, err)
	a, err := newApp(cfg, newLogger(cfg, &bytes.Buffer{}))
	require.NoError(t, err)

	r := httptest.NewRequest("GET", "/metrics", nil)
	r.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "1")
	w := httptest.NewRecorder()
	start := time.Now()
	a.adminPlane.ServeHTTP(w, r)
	took := time.Since(start)
	require.Equal(t, http.StatusOK, w.Code)
	assert.GreaterOrEqual(t, took, 900*time.Millisecond)
	assert.Less(t, took, 30*time.Second, "the scrape waited for the worker, not for the scraper's timeout")
	assert.Contains(t, w.Body.String(), "obsproxy_build_info{")
	assert.Contains(t, w.Body.String(), `obsproxy_worker_metrics_errors_total{reason="timeout",worker="w1"} 1`)
	assert.Contains(t, w.Body.String(), `obsproxy_worker_metrics_up{worker="w1"} 0`)
}
