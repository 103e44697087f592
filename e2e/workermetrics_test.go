package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

// startGranian starts examples/app under granian (ASGI interface) on a
// loopback port. granian forks its worker process: the process group
// that start kills ends both.
func startGranian(t *testing.T, name string) *worker {
	t.Helper()
	port := freePort(t)
	p := start(t, []string{"WORKER_NAME=" + name}, granian, "--interface", "asgi", "--host", "127.0.0.1",
		"--port", fmt.Sprint(port), "--working-dir", "examples/app", "--log-level", "warning", "app:app")
	return &worker{proc: p, upstream: fmt.Sprintf("%s=http://127.0.0.1:%d", name, port),
		client: &http.Client{Timeout: 5 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", port), port: port}
}

// byWorker runs an instant query and returns its samples by their worker label.
func (ps *prometheusServer) byWorker(t *testing.T, query string) map[string]float64 {
	t.Helper()
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	ps.api(t, "query", url.Values{"query": {query}}, &data)
	require.Equal(t, "vector", data.ResultType, query)
	out := map[string]float64{}
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err)
		out[r.Metric["worker"]] = v
	}
	return out
}

// TestWorkerMetricsThroughPrometheus is issue 15's acceptance: real uvicorn,
// hypercorn (spoken to in h2c) and granian workers instrumented with
// prometheus_client in single-process mode, obsproxy fetching their
// /metrics on each scrape, and a real Prometheus scraping obsproxy.
func TestWorkerMetricsThroughPrometheus(t *testing.T) {
	u1, h1, g1 := startUvicorn(t, "u1"), startHypercorn(t, "h1"), startGranian(t, "g1")
	waitReady(t, u1, h1, g1)
	in := startObsproxy(t, []*worker{u1, h1, g1},
		"OBSPROXY_WORKER_METRICS_PATH=/metrics",
		"OBSPROXY_HEALTH_INTERVAL=250ms", "OBSPROXY_HEALTH_TIMEOUT=1s")
	adminHostPort := strings.TrimPrefix(in.admin, "http://")
	ps := startPrometheus(t, fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: obsproxy
    static_configs:
      - targets: [%q]
`, adminHostPort))

	// The application's metrics are not public: 404 from obsproxy itself.
	for _, p := range []string{"/metrics", "/metrics/", "/%6Detrics"} {
		code, body := in.get(t, p)
		assert.Equal(t, http.StatusNotFound, code, p)
		assert.NotContains(t, body, "app_requests_total", p)
	}

	// Paced over a few scrapes, once Prometheus scrapes (its discovery
	// starts the scrape loop some seconds after start), so that rate()
	// has increases to see.
	eventually(t, 30*time.Second, func() bool { return ps.targets(t)["obsproxy"].Health == "up" }, "obsproxy scraped")
	const n = 90
	sendPaced(t, in, n)

	// Every worker's counter equals what obsproxy counted for it, in Prometheus.
	var app, own map[string]float64
	eventually(t, 20*time.Second, func() bool {
		app = ps.byWorker(t, `sum by (worker) (app_requests_total{job="obsproxy"})`)
		own = ps.byWorker(t, `sum by (worker) (obsproxy_requests_total{job="obsproxy"})`)
		return len(app) == 3 && sumValues(app) == n && fmt.Sprint(app) == fmt.Sprint(own)
	}, "app_requests_total by worker = obsproxy_requests_total by worker (sum %d); app %v, obsproxy %v", n, app, own)
	for _, w := range []string{"u1", "h1", "g1"} {
		assert.Positive(t, app[w], "worker %s served nothing", w)
	}
	// And so do the rates, the query an operator writes (both series are
	// sampled by the same scrapes).
	appRate := ps.byWorker(t, `sum by (worker) (rate(app_requests_total{job="obsproxy"}[1m]))`)
	ownRate := ps.byWorker(t, `sum by (worker) (rate(obsproxy_requests_total{job="obsproxy"}[1m]))`)
	for _, w := range []string{"u1", "h1", "g1"} {
		if assert.Positive(t, ownRate[w], "no rate for %s: obsproxy %v", w, ownRate) {
			assert.InEpsilon(t, ownRate[w], appRate[w], 0.25, "rate for %s: obsproxy %v, app %v", w, ownRate, appRate)
		}
	}
	// Each worker's own process collector arrives with its worker label.
	rss := ps.byWorker(t, `process_resident_memory_bytes{job="obsproxy",worker!=""}`)
	for _, w := range []string{"u1", "h1", "g1"} {
		assert.Greater(t, rss[w], 10e6, "RSS of %s: %v", w, rss)
	}
	up := ps.byWorker(t, `obsproxy_worker_metrics_up{job="obsproxy"}`)
	assert.Equal(t, map[string]float64{"u1": 1, "h1": 1, "g1": 1}, up)

	// Kill u1: the next scrape has none of its series, and its metrics are down.
	port := u1.port
	u1.proc.stop()
	eventually(t, 15*time.Second, func() bool {
		return ps.byWorker(t, `obsproxy_worker_metrics_up{job="obsproxy"}`)["u1"] == 0 &&
			len(ps.byWorker(t, `app_requests_total{job="obsproxy",worker="u1"}`)) == 0
	}, "u1's series stale and obsproxy_worker_metrics_up{worker=u1} 0 in Prometheus")
	scrape := scrapeText(t, in)
	for _, line := range strings.Split(scrape, "\n") {
		if strings.Contains(line, `worker="u1"`) && !strings.HasPrefix(line, "obsproxy_") {
			t.Errorf("a series of the dead worker in the scrape: %s", line)
		}
	}
	assert.Contains(t, scrape, `obsproxy_worker_metrics_up{worker="u1"} 0`)
	assert.Contains(t, scrape, `obsproxy_worker_metrics_up{worker="h1"} 1`)
	assert.NotContains(t, scrape, `obsproxy_worker_metrics_errors_total{reason="connect",worker="u1"} 0`)

	// Restart it on the same port: its counter starts from zero in its own series.
	u1 = startUvicornOn(t, "u1", port)
	waitReady(t, u1)
	eventually(t, 15*time.Second, func() bool {
		return in.value(t, "obsproxy_worker_up", map[string]string{"worker": "u1"}) == 1
	}, "u1 back in traffic")
	sendPaced(t, in, n)
	servedAfter := func() float64 {
		resp, err := u1.client.Get(u1.base + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		return metricstest.Sum(t, metricstest.Parse(t, resp.Body), "app_requests_total", nil)
	}()
	require.Positive(t, servedAfter)
	eventually(t, 20*time.Second, func() bool {
		v := ps.byWorker(t, `sum by (worker) (app_requests_total{job="obsproxy",worker="u1"})`)
		return v["u1"] == servedAfter
	}, "u1's restarted counter (%v) in Prometheus", servedAfter)

	// rate() over the whole window: never negative, never above what
	// obsproxy itself saw (a reset misread as traffic would be a spike).
	const window = `[3m:1s]`
	minRate := ps.byWorker(t, `min_over_time(sum by (worker) (rate(app_requests_total{job="obsproxy",worker="u1"}[5s]))`+window+`)`)
	maxRate := ps.byWorker(t, `max_over_time(sum by (worker) (rate(app_requests_total{job="obsproxy",worker="u1"}[5s]))`+window+`)`)
	maxOwn := ps.byWorker(t, `max_over_time(sum by (worker) (rate(obsproxy_requests_total{job="obsproxy",worker="u1"}[5s]))`+window+`)`)
	assert.GreaterOrEqual(t, minRate["u1"], 0.0)
	assert.LessOrEqual(t, maxRate["u1"], maxOwn["u1"]*1.5+1, "rate spike: app %v, obsproxy %v", maxRate, maxOwn)
	// The restarted process' series holds only what it served since (not
	// the sum over both processes), and increase() over the restart is
	// never more than the traffic obsproxy sent it.
	total := ps.byWorker(t, `sum by (worker) (obsproxy_requests_total{job="obsproxy",worker="u1"})`)
	assert.Less(t, servedAfter, total["u1"])
	inc := ps.byWorker(t, `sum by (worker) (increase(app_requests_total{job="obsproxy",worker="u1"}[5m]))`)
	assert.GreaterOrEqual(t, inc["u1"], servedAfter*0.5, "increase over the restart: app %v, obsproxy %v", inc, total)
	assert.LessOrEqual(t, inc["u1"], total["u1"]*1.2, "increase over the restart: app %v, obsproxy %v", inc, total)
}

// sendPaced sends n requests through obsproxy over about 3 s (a few
// scrapes of 1 s), each required to succeed.
func sendPaced(t *testing.T, in *instance, n int) {
	t.Helper()
	tick := time.NewTicker(3 * time.Second / time.Duration(n))
	defer tick.Stop()
	for i := range n {
		code, body := in.get(t, fmt.Sprintf("/anything/%d", i))
		require.Equal(t, http.StatusOK, code, body)
		<-tick.C
	}
}

func sumValues(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

// scrapeText GETs the admin /metrics as text.
func scrapeText(t *testing.T, in *instance) string {
	t.Helper()
	resp, err := http.Get(in.admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return string(b)
}

// TestWorkerMetricsPromtoolChecksTheMergedExposition: the exposition with
// real workers' series merged in passes `promtool check metrics` (problems
// of the client libraries' own collectors tolerated, as in
// TestPrometheusPromtoolChecksTheExposition).
func TestWorkerMetricsPromtoolChecksTheMergedExposition(t *testing.T) {
	u1, h1 := startUvicorn(t, "u1"), startHypercorn(t, "h1")
	waitReady(t, u1, h1)
	in := startObsproxy(t, []*worker{u1, h1}, "OBSPROXY_WORKER_METRICS_PATH=/metrics")
	sendRequests(t, in, 10)
	text := scrapeText(t, in)
	require.Contains(t, text, `app_requests_total{code="200",method="GET",route="/anything/{path:path}",worker="u1"}`)
	require.Contains(t, text, `app_requests_total{code="200",method="GET",route="/anything/{path:path}",worker="h1"}`)
	// obsproxy's HELP wins for the shared process_* families.
	assert.Contains(t, text, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n")
	promtoolCheck(t, text)
}

// TestPushCarriesTheWorkersMetrics: the push sends the same merged
// exposition, so VictoriaMetrics gets the application's series with worker.
func TestPushCarriesTheWorkersMetrics(t *testing.T) {
	vm := startVictoriaMetrics(t, "", "")
	u1, g1 := startUvicorn(t, "u1"), startGranian(t, "g1")
	waitReady(t, u1, g1)
	in := startObsproxy(t, []*worker{u1, g1},
		"OBSPROXY_WORKER_METRICS_PATH=/metrics",
		"OBSPROXY_PUSH_URL="+vm.importURL(), "OBSPROXY_PUSH_INTERVAL=1s",
		`OBSPROXY_PUSH_EXTRA_LABELS=instance="obsproxy-e2e"`)
	const n = 20
	sendRequests(t, in, n)
	var got float64
	var series int
	eventually(t, 30*time.Second, func() bool {
		got, series = vm.latestSum(t, "app_requests_total", map[string]string{"instance": "obsproxy-e2e"})
		return got == n
	}, "app_requests_total in VictoriaMetrics sums to %d; last %v over %d series", n, got, series)
	workers := map[string]bool{}
	for _, s := range vm.export(t, "app_requests_total") {
		workers[s.Metric["worker"]] = true
	}
	assert.Equal(t, map[string]bool{"u1": true, "g1": true}, workers)
	rss, series := vm.latestSum(t, "process_resident_memory_bytes", map[string]string{"worker": "g1"})
	assert.Equal(t, 1, series)
	assert.Positive(t, rss)
}

// promtoolCheck runs `promtool check metrics` on text: a parse error fails,
// and so does a lint problem of a family that is not the client
// libraries' own (go_*, process_*, python_*).
func promtoolCheck(t *testing.T, text string) {
	t.Helper()
	cmd := exec.Command("/usr/bin/promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err == nil {
		return
	}
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "running promtool: %v", err)
	var ours []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "go_") || strings.HasPrefix(line, "process_") || strings.HasPrefix(line, "python_") {
			t.Logf("promtool, on a client library's collectors (tolerated): %s", line)
			continue
		}
		ours = append(ours, line)
	}
	assert.Empty(t, ours, "promtool check metrics (exit %d):\n%s", ee.ExitCode(), out)
}
