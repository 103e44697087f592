package workermetrics

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
	"github.com/obsproxy/obsproxy/lifecycle"
)

// textHandler answers body as the text format, like prometheus_client.
func textHandler(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		fmt.Fprint(w, body)
	})
}

// netDial is what cmd/obsproxy wires: the worker's own network and address.
func netDial(ctx context.Context, w *lifecycle.Worker) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, w.Network, w.Address)
}

// newTestGatherer starts one httptest worker per handler (nil: an address
// that refuses connections), named w1, w2, … in that order, and returns a
// Gatherer over base (nil: an empty registry) with cfg's limits.
func newTestGatherer(t testing.TB, base prometheus.Gatherer, cfg Config, handlers ...http.Handler) *Gatherer {
	t.Helper()
	var workers []lifecycle.WorkerConfig
	for i, h := range handlers {
		var addr string
		if h == nil {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			addr = ln.Addr().String()
			ln.Close() // nothing listens there now
		} else {
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			addr = srv.Listener.Addr().String()
		}
		workers = append(workers, lifecycle.WorkerConfig{Name: fmt.Sprintf("w%d", i+1), Network: "tcp", Address: addr})
	}
	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: workers})
	require.NoError(t, err)
	if base == nil {
		base = prometheus.NewRegistry()
	}
	cfg.Base, cfg.Pool, cfg.Dial = base, pool, netDial
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Path == "" {
		cfg.Path = "/metrics"
	}
	g, err := New(cfg)
	require.NoError(t, err)
	return g
}

// exposition encodes families in the text format.
func exposition(t testing.TB, mfs []*dto.MetricFamily) string {
	t.Helper()
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		require.NoError(t, enc.Encode(mf))
	}
	return buf.String()
}

func gather(t testing.TB, g *Gatherer) (prometheus.Gatherer, string) {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil }), exposition(t, mfs)
}

func errorsTotal(t testing.TB, g prometheus.Gatherer, worker, reason string) float64 {
	t.Helper()
	v, ok := metricstest.Value(t, g, "obsproxy_worker_metrics_errors_total", map[string]string{"worker": worker, "reason": reason})
	require.True(t, ok, "no errors_total{worker=%q,reason=%q}", worker, reason)
	return v
}

func metricsUp(t testing.TB, g prometheus.Gatherer, worker string) float64 {
	t.Helper()
	v, ok := metricstest.Value(t, g, "obsproxy_worker_metrics_up", map[string]string{"worker": worker})
	require.True(t, ok, "no obsproxy_worker_metrics_up{worker=%q}", worker)
	return v
}

const appText = `# HELP app_requests_total Requests.
# TYPE app_requests_total counter
app_requests_total{route="/",method="GET",code="200"} 7
app_requests_total{route="/slow",method="GET",code="200"} 2
# HELP app_temperature A gauge.
# TYPE app_temperature gauge
app_temperature 21.5
`

func TestWorkersSeriesGainTheWorkerLabel(t *testing.T) {
	g := newTestGatherer(t, nil, Config{}, textHandler(appText), textHandler(appText))
	got, text := gather(t, g)

	for _, w := range []string{"w1", "w2"} {
		v, ok := metricstest.Value(t, got, "app_requests_total", map[string]string{"worker": w, "route": "/", "method": "GET", "code": "200"})
		require.True(t, ok, text)
		assert.Equal(t, 7.0, v)
		v, _ = metricstest.Value(t, got, "app_temperature", map[string]string{"worker": w})
		assert.Equal(t, 21.5, v)
		assert.Equal(t, 1.0, metricsUp(t, got, w))
	}
	// No summing: one series per worker, in pool order, labels sorted.
	assert.Contains(t, text, "app_requests_total{code=\"200\",method=\"GET\",route=\"/\",worker=\"w1\"} 7\n"+
		"app_requests_total{code=\"200\",method=\"GET\",route=\"/slow\",worker=\"w1\"} 2\n"+
		"app_requests_total{code=\"200\",method=\"GET\",route=\"/\",worker=\"w2\"} 7\n")
	up, known := g.MetricsUp(1)
	assert.True(t, up)
	assert.True(t, known)
}

func TestMetricsUpIsUnknownBeforeTheFirstFetch(t *testing.T) {
	g := newTestGatherer(t, nil, Config{}, textHandler(appText))
	_, known := g.MetricsUp(0)
	assert.False(t, known)
	_, known = g.MetricsUp(5)
	assert.False(t, known)
}

func TestExistingWorkerLabelBecomesExportedWorker(t *testing.T) {
	body := `# TYPE jobs_total counter
jobs_total{worker="celery-1",queue="a"} 3
jobs_total{worker="celery-2",exported_worker="x",queue="a"} 4
`
	g := newTestGatherer(t, nil, Config{}, textHandler(body))
	got, text := gather(t, g)
	assert.Contains(t, text, `jobs_total{exported_worker="celery-1",queue="a",worker="w1"} 3`)
	assert.Contains(t, text, `jobs_total{exported_exported_worker="celery-2",exported_worker="x",queue="a",worker="w1"} 4`)
	assert.Equal(t, 1.0, metricsUp(t, got, "w1"))
	checkWithPromtool(t, text)
}

func TestTypeConflictDropsTheWorkersFamilyAndCountsIt(t *testing.T) {
	base := prometheus.NewRegistry()
	base.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "process_open_fds", Help: "obsproxy's help."}))
	w1 := `# HELP process_open_fds Python's help.
# TYPE process_open_fds counter
process_open_fds 12
# HELP shared Worker 1's help.
# TYPE shared gauge
shared 1
`
	w2 := `# HELP process_open_fds Python's help.
# TYPE process_open_fds gauge
process_open_fds 13
# HELP shared Worker 2's help.
# TYPE shared counter
shared 2
# TYPE only_w2 gauge
only_w2 5
`
	g := newTestGatherer(t, base, Config{}, textHandler(w1), textHandler(w2))
	got, text := gather(t, g)

	// w1's process_open_fds is a counter where obsproxy's is a gauge: dropped.
	_, ok := metricstest.Value(t, got, "process_open_fds", map[string]string{"worker": "w1"})
	assert.False(t, ok, text)
	v, ok := metricstest.Value(t, got, "process_open_fds", map[string]string{"worker": "w2"})
	assert.True(t, ok, text)
	assert.Equal(t, 13.0, v)
	// w2's shared is a counter where w1 (first) made it a gauge: dropped.
	_, ok = metricstest.Value(t, got, "shared", map[string]string{"worker": "w2"})
	assert.False(t, ok, text)
	_, ok = metricstest.Value(t, got, "only_w2", map[string]string{"worker": "w2"})
	assert.True(t, ok, text)
	// HELP from the first holder: obsproxy, then w1.
	assert.Contains(t, text, "# HELP process_open_fds obsproxy's help.\n")
	assert.Contains(t, text, "# HELP shared Worker 1's help.\n")
	assert.NotContains(t, text, "Python's help")
	// The conflicts are in this very scrape, and the workers' other series still count them as up.
	assert.Equal(t, 1.0, errorsTotal(t, got, "w1", "conflict"))
	assert.Equal(t, 1.0, errorsTotal(t, got, "w2", "conflict"))
	assert.Equal(t, 1.0, metricsUp(t, got, "w1"))
	checkWithPromtool(t, text)
}

func TestSeriesIdenticalToObsproxysOwnAreDropped(t *testing.T) {
	base := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "obsproxy_retries_total", Help: "h"}, []string{"worker"})
	c.WithLabelValues("w1").Add(3)
	base.MustRegister(c)
	body := "# TYPE obsproxy_retries_total counter\nobsproxy_retries_total 99\n# TYPE obsproxy_worker_metrics_up gauge\nobsproxy_worker_metrics_up 1\n"
	g := newTestGatherer(t, base, Config{}, textHandler(body))
	got, text := gather(t, g)
	v, _ := metricstest.Value(t, got, "obsproxy_retries_total", map[string]string{"worker": "w1"})
	assert.Equal(t, 3.0, v, text)
	assert.Equal(t, 1, strings.Count(text, "obsproxy_retries_total{"), text)
	assert.Equal(t, 1, strings.Count(text, "obsproxy_worker_metrics_up{"), text)
	assert.Equal(t, 2.0, errorsTotal(t, got, "w1", "conflict"))
	checkWithPromtool(t, text)
}

func TestHistogramsSummariesSpecialValuesAndEscapes(t *testing.T) {
	body := `# HELP app_request_duration_seconds Latency.
# TYPE app_request_duration_seconds histogram
app_request_duration_seconds_bucket{route="/",le="0.1"} 3
app_request_duration_seconds_bucket{route="/",le="1"} 5
app_request_duration_seconds_bucket{route="/",le="+Inf"} 6
app_request_duration_seconds_sum{route="/"} 2.5
app_request_duration_seconds_count{route="/"} 6
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds{quantile="0.99"} NaN
rpc_seconds_sum 1.5
rpc_seconds_count 7
# TYPE weird gauge
weird{v="quote \" backslash \\ newline \n end"} +Inf
weird{v="neg"} -Inf
weird{v="nan"} NaN
`
	g := newTestGatherer(t, nil, Config{}, textHandler(body))
	mfs, err := g.Gather()
	require.NoError(t, err)
	text := exposition(t, mfs)
	got := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil })

	hist := findMetric(t, mfs, "app_request_duration_seconds", "w1")
	require.NotNil(t, hist.Histogram, text)
	assert.Equal(t, uint64(6), hist.Histogram.GetSampleCount())
	assert.Equal(t, 2.5, hist.Histogram.GetSampleSum())
	require.Len(t, hist.Histogram.Bucket, 3)
	assert.Equal(t, uint64(5), hist.Histogram.Bucket[1].GetCumulativeCount())
	assert.Contains(t, text, `app_request_duration_seconds_bucket{route="/",worker="w1",le="0.1"} 3`)

	sum := findMetric(t, mfs, "rpc_seconds", "w1")
	require.NotNil(t, sum.Summary, text)
	assert.Equal(t, uint64(7), sum.Summary.GetSampleCount())
	assert.True(t, math.IsNaN(sum.Summary.Quantile[1].GetValue()))
	assert.Contains(t, text, `rpc_seconds{worker="w1",quantile="0.99"} NaN`)

	v, ok := metricstest.Value(t, got, "weird", map[string]string{"worker": "w1", "v": "quote \" backslash \\ newline \n end"})
	require.True(t, ok, text)
	assert.True(t, math.IsInf(v, 1))
	assert.Contains(t, text, `weird{v="quote \" backslash \\ newline \n end",worker="w1"} +Inf`)
	assert.Contains(t, text, `weird{v="neg",worker="w1"} -Inf`)
	assert.Contains(t, text, `weird{v="nan",worker="w1"} NaN`)
	checkWithPromtool(t, text)
}

func findMetric(t testing.TB, mfs []*dto.MetricFamily, name, worker string) *dto.Metric {
	t.Helper()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if lp.GetName() == "worker" && lp.GetValue() == worker {
					return m
				}
			}
		}
	}
	t.Fatalf("no %s{worker=%q}", name, worker)
	return nil
}

func TestTimestampsAreRemoved(t *testing.T) {
	g := newTestGatherer(t, nil, Config{}, textHandler("# TYPE a gauge\na 1 1700000000000\n"))
	_, text := gather(t, g)
	assert.Contains(t, text, "a{worker=\"w1\"} 1\n")
}

func TestFailedFetchesContributeNothingAndAreCounted(t *testing.T) {
	gz := func(body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				http.Error(w, "gzip expected", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			zw := gzip.NewWriter(w)
			fmt.Fprint(zw, body)
			zw.Close()
		})
	}
	// 200 KiB of text that gzips to a few KiB: over a 64 KiB limit only once decompressed.
	var big strings.Builder
	big.WriteString("# TYPE pad gauge\n")
	for i := 0; big.Len() < 200<<10; i++ {
		fmt.Fprintf(&big, "pad{i=\"%d\",filler=\"%s\"} 1\n", i, strings.Repeat("x", 40))
	}
	var manySeries strings.Builder
	for i := range 101 {
		fmt.Fprintf(&manySeries, "s{i=\"%d\"} 1\n", i)
	}
	tests := []struct {
		name    string
		handler http.Handler
		reason  string
	}{
		{"refused", nil, "connect"},
		{"status 500", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }), "status"},
		{"redirect", http.RedirectHandler("/elsewhere", http.StatusFound), "status"},
		{"garbage", textHandler("<html>this is { not metrics\n"), "parse"},
		{"duplicate series", textHandler("a{x=\"1\"} 1\na{x=\"1\"} 2\n"), "parse"},
		{"protobuf answer", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/vnd.google.protobuf")
			w.Write([]byte{0x0a, 0x01})
		}), "parse"},
		{"over the byte limit", textHandler(big.String()), "too_large"},
		{"over the byte limit once gunzipped", gz(big.String()), "too_large"},
		{"over the series limit", textHandler(manySeries.String()), "too_large"},
		{"a cut connection", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.Write([]byte("# TYPE a gauge\na 1\n"))
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		}), "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newTestGatherer(t, nil, Config{MaxBytes: 64 << 10, MaxSeries: 100, Timeout: 30 * time.Second}, tt.handler, gz(appText))
			got, text := gather(t, g)
			assert.Equal(t, 0.0, metricsUp(t, got, "w1"))
			assert.Equal(t, 1.0, errorsTotal(t, got, "w1", tt.reason), text)
			for _, r := range reasonNames {
				if r != tt.reason {
					assert.Equal(t, 0.0, errorsTotal(t, got, "w1", r), r)
				}
			}
			assert.NotContains(t, text, `worker="w1",`, "w1 contributed series")
			assert.NotContains(t, text, "pad{")
			// The other worker, gzipped, still arrives.
			assert.Equal(t, 1.0, metricsUp(t, got, "w2"))
			v, _ := metricstest.Value(t, got, "app_temperature", map[string]string{"worker": "w2"})
			assert.Equal(t, 21.5, v)
			up, known := g.MetricsUp(0)
			assert.False(t, up)
			assert.True(t, known)

			_, _ = gather(t, g)
			got, _ = gather(t, g)
			assert.Equal(t, 3.0, errorsTotal(t, got, "w1", tt.reason), "counted once per fetch")
		})
	}
}

func TestSlowWorkerTimesOutAndTheScrapeStillAnswers(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	// Headers sent, then the body stalls: the read is cut by the deadline too.
	stalled := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("# TYPE a gauge\n"))
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	base := prometheus.NewRegistry()
	base.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "obsproxy_uptime_seconds", Help: "h"}))
	// Long enough for the fast worker to answer on a loaded machine under -race.
	timeout := 2 * time.Second
	g := newTestGatherer(t, base, Config{Timeout: timeout}, slow, stalled, textHandler(appText))

	start := time.Now()
	mfs, err := g.Gather()
	took := time.Since(start)
	require.NoError(t, err)
	got := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil })
	assert.GreaterOrEqual(t, took, timeout)
	assert.Less(t, took, timeout+5*time.Second, "the scrape waited for the slow worker")
	assert.Equal(t, 1.0, errorsTotal(t, got, "w1", "timeout"))
	assert.Equal(t, 1.0, errorsTotal(t, got, "w2", "timeout"))
	assert.Equal(t, 0.0, metricsUp(t, got, "w1"))
	assert.Equal(t, 1.0, metricsUp(t, got, "w3"))
	d, _ := metricstest.Value(t, got, "obsproxy_worker_metrics_fetch_duration_seconds", map[string]string{"worker": "w1"})
	// The fetch's clock starts a moment after its deadline's: allow for that.
	assert.InDelta(t, timeout.Seconds(), d, 0.5, "the fetch ran until its deadline")
	_, ok := metricstest.Value(t, got, "obsproxy_uptime_seconds", nil)
	assert.True(t, ok, "obsproxy's own metrics are always served")

	// A caller's earlier deadline (the scraper's) wins over Config.Timeout.
	g2 := newTestGatherer(t, nil, Config{Timeout: time.Hour}, slow)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start = time.Now()
	mfs, err = g2.GatherContext(ctx)
	require.NoError(t, err)
	assert.Less(t, time.Since(start), timeout+5*time.Second)
	got = prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil })
	assert.Equal(t, 1.0, errorsTotal(t, got, "w1", "timeout"))
}

// syntheticExposition is a worker's body of n series: counters, and
// histograms of 10 buckets, like a busy prometheus_client app.
func syntheticExposition(n int) string {
	var b strings.Builder
	b.WriteString("# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\n")
	i := 0
	for ; i < n/2; i++ {
		fmt.Fprintf(&b, "app_requests_total{route=\"/r%d\",method=\"GET\",code=\"200\"} %d\n", i, i*7)
	}
	b.WriteString("# HELP app_request_duration_seconds Latency.\n# TYPE app_request_duration_seconds histogram\n")
	for r := 0; i < n; r++ {
		for k, le := range []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"} {
			fmt.Fprintf(&b, "app_request_duration_seconds_bucket{route=\"/r%d\",le=\"%s\"} %d\n", r, le, k*3)
		}
		fmt.Fprintf(&b, "app_request_duration_seconds_sum{route=\"/r%d\"} 12.5\napp_request_duration_seconds_count{route=\"/r%d\"} 27\n", r, r)
		i += 12
	}
	return b.String()
}

func TestSixteenWorkersOfTwoThousandSeries(t *testing.T) {
	body := syntheticExposition(2000)
	handlers := make([]http.Handler, 16)
	for i := range handlers {
		handlers[i] = textHandler(body)
	}
	// A generous timeout: this is about the merge at scale, not speed
	// (under -race on a loaded machine parsing 32,000 series takes seconds).
	g := newTestGatherer(t, nil, Config{Timeout: time.Minute}, handlers...)
	got, text := gather(t, g)
	for i := range handlers {
		w := fmt.Sprintf("w%d", i+1)
		assert.Equal(t, 1.0, metricsUp(t, got, w))
		assert.Equal(t, 1000, len(metricstest.LabelValues(t, prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
			mfs, _ := got.Gather()
			return filterWorker(mfs, w), nil
		}), "app_requests_total", "route")), w)
	}
	assert.Equal(t, 16*1000, strings.Count(text, "app_requests_total{"))
	checkWithPromtool(t, text)
}

func filterWorker(mfs []*dto.MetricFamily, worker string) []*dto.MetricFamily {
	var out []*dto.MetricFamily
	for _, mf := range mfs {
		c := &dto.MetricFamily{Name: mf.Name, Help: mf.Help, Type: mf.Type}
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if lp.GetName() == "worker" && lp.GetValue() == worker {
					c.Metric = append(c.Metric, m)
				}
			}
		}
		if len(c.Metric) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// checkWithPromtool runs `promtool check metrics` (the prometheus Debian
// package) on a merged exposition; it fails on a format error, and its
// lint findings are reported but only fail on problems of the merge itself.
func checkWithPromtool(t testing.TB, text string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; scripts/deps.sh installs it)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("promtool check metrics: %v\n%s", err, out)
		// Lint findings (exit 3 in recent releases, 1 in older) about the
		// crafted names are acceptable; a parse error is not.
		require.NotContains(t, string(out), "error while linting", "%s", out)
		require.NotContains(t, strings.ToLower(string(out)), "parse", "%s", out)
		require.NotContains(t, string(out), "duplicate", "%s", out)
	}
}

func TestNewRejects(t *testing.T) {
	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: []lifecycle.WorkerConfig{{Name: "w1", Network: "tcp", Address: "127.0.0.1:1"}}})
	require.NoError(t, err)
	base := prometheus.NewRegistry()
	for name, cfg := range map[string]Config{
		"no base":       {Pool: pool, Dial: netDial, Path: "/metrics"},
		"no pool":       {Base: base, Dial: netDial, Path: "/metrics"},
		"no dial":       {Base: base, Pool: pool, Path: "/metrics"},
		"relative path": {Base: base, Pool: pool, Dial: netDial, Path: "metrics"},
		"negative":      {Base: base, Pool: pool, Dial: netDial, Path: "/metrics", MaxBytes: -1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(cfg)
			assert.Error(t, err)
		})
	}
}

func TestUnixSocketAndH2CWorkers(t *testing.T) {
	dir := t.TempDir()
	sock := dir + "/w.sock"
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	unixSrv := &http.Server{Handler: textHandler(appText)}
	go unixSrv.Serve(ln)
	t.Cleanup(func() { unixSrv.Close() })

	// An h2c-only worker: HTTP/2 with prior knowledge, no HTTP/1.1.
	h2 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "h2c only", http.StatusHTTPVersionNotSupported)
			return
		}
		textHandler(appText).ServeHTTP(w, r)
	}))
	h2.Config.Protocols = new(http.Protocols)
	h2.Config.Protocols.SetUnencryptedHTTP2(true)
	h2.Start()
	t.Cleanup(h2.Close)

	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: []lifecycle.WorkerConfig{
		{Name: "sock", Network: "unix", Address: sock},
		{Name: "h2", Network: "tcp", Address: h2.Listener.Addr().String(), H2C: true},
	}})
	require.NoError(t, err)
	g, err := New(Config{Base: prometheus.NewRegistry(), Pool: pool, Dial: netDial, Path: "/metrics",
		Timeout: 30 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(g.Close)
	got, text := gather(t, g)
	for _, w := range []string{"sock", "h2"} {
		assert.Equal(t, 1.0, metricsUp(t, got, w), text)
		v, _ := metricstest.Value(t, got, "app_temperature", map[string]string{"worker": w})
		assert.Equal(t, 21.5, v)
	}
}
