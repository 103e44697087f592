package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitingGatherer serves one gauge after ctx is done, and records the
// deadline it was given.
type waitingGatherer struct {
	mu       sync.Mutex
	deadline time.Time
	has      bool
}

func (g *waitingGatherer) Gather() ([]*dto.MetricFamily, error) {
	return g.GatherContext(context.Background())
}

func (g *waitingGatherer) GatherContext(ctx context.Context) ([]*dto.MetricFamily, error) {
	d, ok := ctx.Deadline()
	g.mu.Lock()
	g.deadline, g.has = d, ok
	g.mu.Unlock()
	if ok {
		<-ctx.Done()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "obsproxy_uptime_seconds", Help: "h"}))
	return reg.Gather()
}

func TestMetricsGatherWithinTheScrapersTimeout(t *testing.T) {
	g := &waitingGatherer{}
	srv, err := New(Config{Gatherer: g})
	require.NoError(t, err)

	for name, tc := range map[string]struct {
		header string
		want   time.Duration // 0: no deadline
	}{
		"prometheus timeout": {"2", 1800 * time.Millisecond},
		"fraction":           {"0.5", 450 * time.Millisecond},
		"no header":          {"", 0},
		"garbage":            {"soon", 0},
		"negative":           {"-3", 0},
		"NaN":                {"NaN", 0},
	} {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/metrics", nil)
			if tc.header != "" {
				r.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", tc.header)
			}
			start := time.Now()
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, r)
			assert.Equal(t, http.StatusOK, w.Code)
			assert.Contains(t, w.Body.String(), "obsproxy_uptime_seconds 0")
			g.mu.Lock()
			defer g.mu.Unlock()
			if tc.want == 0 {
				assert.False(t, g.has, "no deadline expected")
				return
			}
			require.True(t, g.has)
			assert.WithinDuration(t, start.Add(tc.want), g.deadline, 200*time.Millisecond)
			assert.GreaterOrEqual(t, time.Since(start), tc.want, "the gather used its budget")
		})
	}
}

// fakeFetches reports w1's metrics up and w2's never fetched.
type fakeFetches struct{}

func (fakeFetches) MetricsUp(i int) (bool, bool) { return i == 0, i == 0 }

func TestSnapshotShowsWhetherAWorkersMetricsAreUp(t *testing.T) {
	for name, tc := range map[string]struct {
		src  WorkerMetricsSource
		want []string
	}{
		"off":     {nil, []string{"null", "null"}},
		"fetched": {fakeFetches{}, []string{"true", "null"}},
	} {
		t.Run(name, func(t *testing.T) {
			p := newPlane(t, Config{})
			p.src.WorkerMetrics = tc.src
			resp, err := http.Get(p.adm.URL + "/admin/api/observability")
			require.NoError(t, err)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var raw struct {
				Workers []map[string]json.RawMessage `json:"workers"`
			}
			require.NoError(t, json.Unmarshal(body, &raw))
			require.Len(t, raw.Workers, 2)
			for i, want := range tc.want {
				got, ok := raw.Workers[i]["metrics_up"]
				require.True(t, ok, "metrics_up is always present")
				assert.Equal(t, want, strings.TrimSpace(string(got)))
			}
		})
	}
}
