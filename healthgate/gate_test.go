package healthgate

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
	"github.com/obsproxy/obsproxy/lifecycle"
)

// fakeClock is a settable clock shared by the pool and the gate.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeProbes stands in for the Prober: FirstRoundDone returns done.
type fakeProbes struct{ done atomic.Bool }

func (f *fakeProbes) FirstRoundDone() bool { return f.done.Load() }

// Interval is the probe period the gate judges staleness by.
func (f *fakeProbes) Interval() time.Duration { return gateInterval }

var (
	t0           = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	gateInterval = 2 * time.Second
	// The workers' addresses, names and error texts must not leak into the
	// public /health body unless it is verbose.
	gateWorkers = []lifecycle.WorkerConfig{
		{Name: "api-1", Network: "tcp", Address: "10.1.2.3:8001"},
		{Name: "api-2", Network: "tcp", Address: "10.1.2.4:8002"},
		{Name: "api-3", Network: "unix", Address: "/run/app/w3.sock"},
	}
)

type gateFixture struct {
	pool   *lifecycle.Pool
	gate   *Gate
	clock  *fakeClock
	probes *fakeProbes
}

// newGate builds a pool of the first n gateWorkers and a gate over it, both
// on one fake clock at t0; the gate started at t0.
func newGate(t *testing.T, n, minUp int, verbose bool) *gateFixture {
	t.Helper()
	clock := &fakeClock{t: t0}
	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: gateWorkers[:n], MinUp: minUp, Now: clock.Now})
	require.NoError(t, err)
	probes := &fakeProbes{}
	gate, err := NewGate(GateConfig{
		Pool: pool, Probes: probes, Verbose: verbose,
		Version: "0.3.0", Started: t0, Now: clock.Now,
	})
	require.NoError(t, err)
	return &gateFixture{pool: pool, gate: gate, clock: clock, probes: probes}
}

// observe feeds worker i one probe result, finished now.
func (f *gateFixture) observe(i int, res lifecycle.ProbeResult) {
	res.At = f.clock.Now()
	f.pool.ObserveProbe(f.pool.Workers()[i], res)
}

func ms(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }

// Crafted probe results, as the prober would report them.
func healthy(latency time.Duration) lifecycle.ProbeResult {
	return lifecycle.ProbeResult{Health: lifecycle.Healthy, Answered: true, Latency: latency}
}

func degradedRes(latency time.Duration) lifecycle.ProbeResult {
	return lifecycle.ProbeResult{Health: lifecycle.Degraded, Answered: true, Latency: latency, Detail: "reports degraded",
		Checks: json.RawMessage(`{"redis":{"status":"warn","detail":"slow replica redis-7.internal"}}`)}
}

func unhealthyAnswer(latency time.Duration) lifecycle.ProbeResult {
	return lifecycle.ProbeResult{Health: lifecycle.Unhealthy, Answered: true, Latency: latency, Detail: "status 503"}
}

func refused() lifecycle.ProbeResult {
	return lifecycle.ProbeResult{Health: lifecycle.Unhealthy, Refused: true, Latency: ms(0.2),
		Detail: "dial tcp 10.1.2.4:8002: connect: connection refused"}
}

func timedOut() lifecycle.ProbeResult {
	return lifecycle.ProbeResult{Health: lifecycle.Unhealthy, Latency: time.Second, Detail: "timeout"}
}

func strp(s string) *string   { return &s }
func f64p(v float64) *float64 { return &v }
func okCheck() Check          { return Check{Status: "ok"} }
func errCheck(d string) Check { return Check{Status: "error", Detail: strp(d)} }
func workers(up, total int) WorkersCheck {
	return WorkersCheck{Status: "ok", Up: up, Total: total}
}

func TestNewGateNeedsPoolAndProbes(t *testing.T) {
	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: gateWorkers[:1]})
	require.NoError(t, err)
	tests := []struct {
		name string
		cfg  GateConfig
	}{
		{name: "no pool", cfg: GateConfig{Probes: &fakeProbes{}}},
		{name: "no probes", cfg: GateConfig{Pool: pool}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := NewGate(tc.cfg)
			require.Error(t, err)
			assert.Nil(t, g)
		})
	}
}

// TestGateReport is the table of /health outcomes of spec section 3.
func TestGateReport(t *testing.T) {
	type probe = *lifecycle.ProbeResult
	p := func(r lifecycle.ProbeResult) probe { return &r }
	tests := []struct {
		name       string
		n, minUp   int
		probes     []probe // per worker; nil: not probed
		notStarted bool    // the first probe round has not finished
		drain      bool
		markDown   []int         // workers the proxy takes out of traffic after the probes
		advance    time.Duration // clock moves after the probes
		status     string
		detail     *string
		proxy      Check
		workers    WorkersCheck
		upstream   *UpstreamCheck // nil: not checked (the spec fixes nothing)
	}{
		{
			name: "starting", notStarted: true,
			status: StatusUnhealthy, detail: strp("starting"),
			proxy:   errCheck("starting"),
			workers: WorkersCheck{Status: "error", Up: 0, Total: 3, Detail: strp("no healthy worker")},
		},
		{
			name: "starting until every worker has a result", notStarted: true,
			probes: []probe{p(healthy(ms(1))), p(healthy(ms(1))), nil},
			status: StatusUnhealthy, detail: strp("starting"),
			proxy:   errCheck("starting"),
			workers: WorkersCheck{Status: "degraded", Up: 2, Total: 3},
		},
		{
			name:   "draining",
			probes: []probe{p(healthy(ms(1))), p(healthy(ms(1))), p(healthy(ms(1)))}, drain: true,
			status: StatusUnhealthy, detail: strp("draining"),
			proxy:    errCheck("draining"),
			workers:  workers(3, 3),
			upstream: &UpstreamCheck{Status: "ok", LatencyMS: f64p(1)},
		},
		{
			name: "draining takes precedence over starting", notStarted: true, drain: true,
			status: StatusUnhealthy, detail: strp("draining"),
			proxy:   errCheck("draining"),
			workers: WorkersCheck{Status: "error", Up: 0, Total: 3, Detail: strp("no healthy worker")},
		},
		{
			name:   "draining takes precedence over probes stale",
			probes: []probe{p(healthy(ms(1))), p(healthy(ms(1))), p(healthy(ms(1)))}, drain: true,
			advance: time.Hour,
			status:  StatusUnhealthy, detail: strp("draining"),
			proxy:   errCheck("draining"),
			workers: workers(3, 3),
		},
		{
			name:     "all healthy",
			probes:   []probe{p(healthy(ms(2.4))), p(healthy(ms(17.25))), p(healthy(ms(3)))},
			status:   StatusHealthy,
			proxy:    okCheck(),
			workers:  workers(3, 3),
			upstream: &UpstreamCheck{Status: "ok", LatencyMS: f64p(17.25)},
		},
		{
			name:   "one worker refused of three",
			probes: []probe{p(healthy(ms(2))), p(refused()), p(healthy(ms(4)))},
			status: StatusDegraded, detail: strp("worker down"),
			proxy:    okCheck(),
			workers:  WorkersCheck{Status: "degraded", Up: 2, Total: 3},
			upstream: &UpstreamCheck{Status: "ok", LatencyMS: f64p(4)},
		},
		{
			name:   "one worker timed out of three",
			probes: []probe{p(healthy(ms(2))), p(healthy(ms(3))), p(timedOut())},
			status: StatusDegraded, detail: strp("worker down"),
			proxy:    okCheck(),
			workers:  WorkersCheck{Status: "degraded", Up: 2, Total: 3},
			upstream: &UpstreamCheck{Status: "ok", LatencyMS: f64p(1000)},
		},
		{
			name:   "one worker answers 503 of three",
			probes: []probe{p(healthy(ms(2))), p(unhealthyAnswer(ms(8))), p(healthy(ms(1)))},
			status: StatusDegraded, detail: strp("worker down"),
			proxy:    okCheck(),
			workers:  WorkersCheck{Status: "degraded", Up: 2, Total: 3},
			upstream: &UpstreamCheck{Status: "ok", LatencyMS: f64p(8)},
		},
		{
			name:   "a degraded worker taken out of traffic is down, not degraded",
			probes: []probe{p(healthy(ms(2))), p(degradedRes(ms(3))), p(healthy(ms(1)))}, markDown: []int{1},
			status: StatusDegraded, detail: strp("worker down"),
			proxy:    okCheck(),
			workers:  WorkersCheck{Status: "degraded", Up: 2, Total: 3},
			upstream: &UpstreamCheck{Status: "ok", LatencyMS: f64p(3)},
		},
		{
			name:   "one up worker reports degraded",
			probes: []probe{p(healthy(ms(2))), p(degradedRes(ms(5))), p(healthy(ms(1)))},
			status: StatusDegraded, detail: strp("upstream degraded"),
			proxy:    okCheck(),
			workers:  workers(3, 3),
			upstream: &UpstreamCheck{Status: "degraded", LatencyMS: f64p(5)},
		},
		{
			name:   "every worker degraded is still serving",
			probes: []probe{p(degradedRes(ms(1))), p(degradedRes(ms(1))), p(degradedRes(ms(1)))},
			status: StatusDegraded, detail: strp("upstream degraded"),
			proxy:    okCheck(),
			workers:  workers(3, 3),
			upstream: &UpstreamCheck{Status: "degraded", LatencyMS: f64p(1)},
		},
		{
			name:   "a worker down outranks a degraded one",
			probes: []probe{p(refused()), p(degradedRes(ms(1))), p(healthy(ms(1)))},
			status: StatusDegraded, detail: strp("worker down"),
			proxy:    okCheck(),
			workers:  WorkersCheck{Status: "degraded", Up: 2, Total: 3},
			upstream: &UpstreamCheck{Status: "degraded", LatencyMS: f64p(1)},
		},
		{
			name:   "every answering worker unhealthy",
			probes: []probe{p(unhealthyAnswer(ms(6))), p(unhealthyAnswer(ms(2))), p(unhealthyAnswer(ms(1)))},
			status: StatusUnhealthy, detail: strp("upstream reports unhealthy"),
			proxy:    okCheck(),
			workers:  WorkersCheck{Status: "error", Up: 0, Total: 3, Detail: strp("no healthy worker")},
			upstream: &UpstreamCheck{Status: "error", LatencyMS: f64p(6), Detail: strp("upstream reports unhealthy")},
		},
		{
			name:   "every worker that answered unhealthy, the rest refused",
			probes: []probe{p(unhealthyAnswer(ms(2))), p(refused()), p(unhealthyAnswer(ms(3)))},
			status: StatusUnhealthy, detail: strp("upstream reports unhealthy"),
			proxy:    okCheck(),
			workers:  WorkersCheck{Status: "error", Up: 0, Total: 3, Detail: strp("no healthy worker")},
			upstream: &UpstreamCheck{Status: "error", LatencyMS: f64p(3), Detail: strp("upstream reports unhealthy")},
		},
		{
			name:   "no worker answered",
			probes: []probe{p(refused()), p(refused()), p(refused())},
			status: StatusUnhealthy, detail: strp("no healthy worker"),
			proxy:    okCheck(),
			workers:  WorkersCheck{Status: "error", Up: 0, Total: 3, Detail: strp("no healthy worker")},
			upstream: &UpstreamCheck{Status: "error", LatencyMS: f64p(0.2), Detail: strp("upstream unreachable")},
		},
		{
			name:   "no worker answered: refused and timed out",
			probes: []probe{p(refused()), p(timedOut()), p(timedOut())},
			status: StatusUnhealthy, detail: strp("no healthy worker"),
			proxy:    okCheck(),
			workers:  WorkersCheck{Status: "error", Up: 0, Total: 3, Detail: strp("no healthy worker")},
			upstream: &UpstreamCheck{Status: "error", LatencyMS: f64p(1000), Detail: strp("upstream unreachable")},
		},
		{
			name: "MIN_HEALTHY_WORKERS=2 with one up", minUp: 2,
			probes: []probe{p(healthy(ms(1))), p(refused()), p(refused())},
			status: StatusUnhealthy, detail: strp("no healthy worker"),
			proxy:    okCheck(),
			workers:  WorkersCheck{Status: "error", Up: 1, Total: 3, Detail: strp("no healthy worker")},
			upstream: &UpstreamCheck{Status: "ok", LatencyMS: f64p(1)},
		},
		{
			name: "MIN_HEALTHY_WORKERS=2 with two up", minUp: 2,
			probes: []probe{p(healthy(ms(1))), p(refused()), p(healthy(ms(1)))},
			status: StatusDegraded, detail: strp("worker down"),
			proxy:    okCheck(),
			workers:  WorkersCheck{Status: "degraded", Up: 2, Total: 3},
			upstream: &UpstreamCheck{Status: "ok", LatencyMS: f64p(1)},
		},
		{
			name:     "results exactly three intervals old are not stale",
			probes:   []probe{p(healthy(ms(1))), p(healthy(ms(1))), p(healthy(ms(1)))},
			advance:  3 * gateInterval,
			status:   StatusHealthy,
			proxy:    okCheck(),
			workers:  workers(3, 3),
			upstream: &UpstreamCheck{Status: "ok", LatencyMS: f64p(1)},
		},
		{
			name:    "probes stale",
			probes:  []probe{p(healthy(ms(1))), p(healthy(ms(1))), p(healthy(ms(1)))},
			advance: 3*gateInterval + time.Millisecond,
			status:  StatusUnhealthy, detail: strp("probes stale"),
			proxy:   okCheck(),
			workers: workers(3, 3),
		},
		{
			name: "single worker healthy", n: 1,
			probes:   []probe{p(healthy(ms(0.5)))},
			status:   StatusHealthy,
			proxy:    okCheck(),
			workers:  workers(1, 1),
			upstream: &UpstreamCheck{Status: "ok", LatencyMS: f64p(0.5)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			if n == 0 {
				n = 3
			}
			f := newGate(t, n, tc.minUp, false)
			f.clock.Advance(10 * time.Second)
			for i, res := range tc.probes {
				if res != nil {
					f.observe(i, *res)
				}
			}
			for _, i := range tc.markDown {
				require.True(t, f.pool.MarkDown(f.pool.Workers()[i], "connect failed"))
			}
			f.probes.done.Store(!tc.notStarted)
			if tc.drain {
				f.gate.Drain()
			}
			f.clock.Advance(tc.advance)

			rep := f.gate.Report(false)
			assert.Equal(t, tc.status, rep.Status)
			assert.Equal(t, tc.detail, rep.Detail)
			assert.Equal(t, tc.proxy, rep.Checks.Proxy)
			assert.Equal(t, tc.workers, rep.Checks.Workers)
			if tc.upstream != nil {
				assert.Equal(t, *tc.upstream, rep.Checks.Upstream)
			}
			assert.Equal(t, "0.3.0", rep.Version)
			assert.Equal(t, (10*time.Second + tc.advance).Seconds(), rep.UptimeSeconds)
			assert.Nil(t, rep.Workers, "per-worker detail only when verbose")
			assert.Equal(t, tc.drain, f.gate.Draining())

			// The HTTP answer agrees with the report.
			rec := httptest.NewRecorder()
			f.gate.ServeHealth(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
			wantCode := http.StatusOK
			if tc.status == StatusUnhealthy {
				wantCode = http.StatusServiceUnavailable
			}
			assert.Equal(t, wantCode, rec.Code)
			var body Report
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, rep, body)
		})
	}
}

// TestGateReportFollowsTheClock: a pool that was healthy goes stale when the
// prober stops reporting, and recovers with the next result.
func TestGateReportFollowsTheClock(t *testing.T) {
	f := newGate(t, 2, 1, false)
	f.observe(0, healthy(ms(1)))
	f.observe(1, healthy(ms(1)))
	f.probes.done.Store(true)
	require.Equal(t, StatusHealthy, f.gate.Report(false).Status)

	// One worker keeps being probed: its fresh results keep the pool fresh.
	for i := 0; i < 5; i++ {
		f.clock.Advance(gateInterval)
		f.observe(0, healthy(ms(1)))
	}
	assert.Equal(t, StatusHealthy, f.gate.Report(false).Status)

	f.clock.Advance(3*gateInterval + time.Second)
	rep := f.gate.Report(false)
	assert.Equal(t, StatusUnhealthy, rep.Status)
	assert.Equal(t, strp(DetailProbesStale), rep.Detail)

	f.observe(0, healthy(ms(1)))
	f.observe(1, healthy(ms(1)))
	rep = f.gate.Report(false)
	assert.Equal(t, StatusHealthy, rep.Status)
	assert.Nil(t, rep.Detail)
}

// TestGateUsesItsOwnClock: GateConfig.Now is "the clock" of the gate:
// uptime_seconds and staleness are measured with it, whatever clock the pool
// was built with.
func TestGateUsesItsOwnClock(t *testing.T) {
	poolClock := &fakeClock{t: t0}
	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: gateWorkers[:1], Now: poolClock.Now})
	require.NoError(t, err)
	gateClock := &fakeClock{t: t0}
	probes := &fakeProbes{}
	probes.done.Store(true)
	g, err := NewGate(GateConfig{Pool: pool, Probes: probes, Now: gateClock.Now})
	require.NoError(t, err)
	res := healthy(ms(1))
	res.At = t0
	pool.ObserveProbe(pool.Workers()[0], res)

	gateClock.Advance(90 * time.Second)
	rep := g.Report(false)
	assert.Equal(t, 90.0, rep.UptimeSeconds, "uptime since Started (the gate clock's first reading)")
	assert.Equal(t, StatusUnhealthy, rep.Status, "the last result is 45 intervals old")
	assert.Equal(t, strp(DetailProbesStale), rep.Detail)
}

func TestGateDrainIsForGood(t *testing.T) {
	f := newGate(t, 1, 1, false)
	f.probes.done.Store(true)
	f.observe(0, healthy(ms(1)))
	assert.False(t, f.gate.Draining())
	require.Equal(t, StatusHealthy, f.gate.Report(false).Status)
	f.gate.Drain()
	f.observe(0, healthy(ms(1)))
	assert.True(t, f.gate.Draining())
	assert.Equal(t, strp(DetailDraining), f.gate.Report(false).Detail)
}

func TestCode(t *testing.T) {
	tests := []struct {
		status string
		code   int
	}{
		{StatusHealthy, http.StatusOK},
		{StatusDegraded, http.StatusOK},
		{StatusUnhealthy, http.StatusServiceUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.status, func(t *testing.T) {
			assert.Equal(t, tc.code, Code(tc.status))
		})
	}
}

// gateState puts a fixture in a named state.
type gateState struct {
	name   string
	set    func(f *gateFixture)
	status string
	code   int
}

var gateStates = []gateState{
	{name: "healthy", status: StatusHealthy, code: http.StatusOK, set: func(f *gateFixture) {
		f.observe(0, healthy(ms(1)))
		f.observe(1, healthy(ms(1)))
		f.observe(2, healthy(ms(1)))
		f.probes.done.Store(true)
	}},
	{name: "degraded", status: StatusDegraded, code: http.StatusOK, set: func(f *gateFixture) {
		f.observe(0, healthy(ms(1)))
		f.observe(1, refused())
		f.observe(2, degradedRes(ms(1)))
		f.probes.done.Store(true)
	}},
	{name: "unhealthy", status: StatusUnhealthy, code: http.StatusServiceUnavailable, set: func(f *gateFixture) {
		f.observe(0, refused())
		f.observe(1, refused())
		f.observe(2, timedOut())
		f.probes.done.Store(true)
	}},
	{name: "starting", status: StatusUnhealthy, code: http.StatusServiceUnavailable, set: func(f *gateFixture) {}},
	{name: "draining", status: StatusUnhealthy, code: http.StatusServiceUnavailable, set: func(f *gateFixture) {
		f.observe(0, healthy(ms(1)))
		f.observe(1, healthy(ms(1)))
		f.observe(2, healthy(ms(1)))
		f.probes.done.Store(true)
		f.gate.Drain()
	}},
}

// serveGate serves the gate's handler over real HTTP; next answers 418 and
// counts its calls.
func serveGate(t *testing.T, f *gateFixture) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var nextCalls atomic.Int64
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nextCalls.Add(1)
		w.Header().Set("X-Next", r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	srv := httptest.NewServer(f.gate.Handler("/health", "/livez", next))
	t.Cleanup(srv.Close)
	return srv, &nextCalls
}

func do(t *testing.T, method, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestHealthEndpoint(t *testing.T) {
	for _, st := range gateStates {
		t.Run(st.name, func(t *testing.T) {
			f := newGate(t, 3, 1, false)
			st.set(f)
			srv, nextCalls := serveGate(t, f)

			resp, body := do(t, http.MethodGet, srv.URL+"/health")
			assert.Equal(t, st.code, resp.StatusCode)
			assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))

			var doc map[string]any
			require.NoError(t, json.Unmarshal(body, &doc), string(body))
			assert.Equal(t, []string{"checks", "detail", "status", "uptime_seconds", "version"}, keys(doc))
			assert.Equal(t, st.status, doc["status"])
			assert.Equal(t, "0.3.0", doc["version"])
			assert.IsType(t, float64(0), doc["uptime_seconds"])
			if st.status == StatusHealthy {
				assert.Nil(t, doc["detail"])
			} else {
				assert.IsType(t, "", doc["detail"])
			}
			checks, ok := doc["checks"].(map[string]any)
			require.True(t, ok, "checks is an object")
			assert.Equal(t, []string{"proxy", "upstream", "workers"}, keys(checks))
			wantKeys := map[string][]string{
				"proxy":    {"detail", "status"},
				"workers":  {"detail", "status", "total", "up"},
				"upstream": {"detail", "latency_ms", "status"},
			}
			for name, want := range wantKeys {
				c, ok := checks[name].(map[string]any)
				require.True(t, ok, name)
				assert.Equal(t, want, keys(c), name)
				assert.Contains(t, []any{"ok", "degraded", "error"}, c["status"], name)
			}
			w := checks["workers"].(map[string]any)
			assert.Equal(t, 3.0, w["total"])

			// Nothing about individual workers in the public body.
			for _, secret := range []string{"10.1.2.3", "10.1.2.4", "8001", "8002", "/run/app", "w3.sock",
				"api-1", "api-2", "api-3", "connection refused", "redis", "reports degraded", "status 503", "timeout"} {
				assert.NotContains(t, string(body), secret)
			}
			assert.Zero(t, nextCalls.Load())
		})
	}
}

func TestHealthEndpointVerbose(t *testing.T) {
	f := newGate(t, 3, 1, true)
	f.observe(0, healthy(ms(1.5)))
	f.observe(1, refused())
	f.observe(2, degradedRes(ms(2)))
	f.probes.done.Store(true)
	f.clock.Advance(time.Second)
	srv, _ := serveGate(t, f)

	resp, body := do(t, http.MethodGet, srv.URL+"/health")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	var doc struct {
		Status  string           `json:"status"`
		Workers []map[string]any `json:"workers"`
	}
	require.NoError(t, json.Unmarshal(body, &doc), string(body))
	assert.Equal(t, StatusDegraded, doc.Status)
	require.Len(t, doc.Workers, 3)
	type row struct{ name, address, state, health string }
	want := []row{
		{"api-1", "10.1.2.3:8001", "up", "healthy"},
		{"api-2", "10.1.2.4:8002", "down", "unhealthy"},
		{"api-3", "unix:/run/app/w3.sock", "up", "degraded"},
	}
	for i, w := range want {
		got := doc.Workers[i]
		assert.Equal(t, w, row{got["name"].(string), got["address"].(string), got["state"].(string), got["health"].(string)})
		assert.Contains(t, got, "latency_ms")
		assert.Contains(t, got, "last_probe_age_seconds")
		assert.Equal(t, 1.0, got["last_probe_age_seconds"])
	}
	assert.Equal(t, 1.5, doc.Workers[0]["latency_ms"])
	assert.Contains(t, doc.Workers[1]["detail"], "connection refused", "error texts only in the verbose body")
	assert.Equal(t, map[string]any{"redis": map[string]any{"status": "warn", "detail": "slow replica redis-7.internal"}},
		doc.Workers[2]["checks"], "the worker's own checks, verbatim")

	// Verbose is the gate's setting: the report without it has no workers.
	assert.Nil(t, f.gate.Report(false).Workers)
}

func TestHealthHead(t *testing.T) {
	for _, st := range gateStates {
		t.Run(st.name, func(t *testing.T) {
			f := newGate(t, 3, 1, false)
			st.set(f)
			srv, _ := serveGate(t, f)
			get, _ := do(t, http.MethodGet, srv.URL+"/health")
			head, body := do(t, http.MethodHead, srv.URL+"/health")
			assert.Equal(t, st.code, head.StatusCode)
			assert.Equal(t, get.StatusCode, head.StatusCode)
			assert.Empty(t, body)
			assert.Equal(t, "no-store", head.Header.Get("Cache-Control"))
			assert.Equal(t, "application/json", head.Header.Get("Content-Type"))

			// The handler itself writes no body (net/http would drop one).
			rec := httptest.NewRecorder()
			f.gate.ServeHealth(rec, httptest.NewRequest(http.MethodHead, "/health", nil))
			assert.Equal(t, st.code, rec.Code)
			assert.Zero(t, rec.Body.Len())
		})
	}
}

func TestHealthAndLivezRejectOtherMethods(t *testing.T) {
	f := newGate(t, 3, 1, false)
	gateStates[0].set(f)
	srv, nextCalls := serveGate(t, f)
	for _, path := range []string{"/health", "/livez"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
			t.Run(method+" "+path, func(t *testing.T) {
				resp, _ := do(t, method, srv.URL+path)
				assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
				assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
				assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
			})
		}
	}
	assert.Zero(t, nextCalls.Load())
}

// TestLivez: 200 while the process serves, whatever /health says.
func TestLivez(t *testing.T) {
	for _, st := range gateStates {
		t.Run(st.name, func(t *testing.T) {
			f := newGate(t, 3, 1, false)
			st.set(f)
			srv, nextCalls := serveGate(t, f)
			health, _ := do(t, http.MethodGet, srv.URL+"/health")
			require.Equal(t, st.code, health.StatusCode)

			resp, body := do(t, http.MethodGet, srv.URL+"/livez")
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
			assert.JSONEq(t, `{"status":"ok"}`, string(body))
			head, body := do(t, http.MethodHead, srv.URL+"/livez")
			assert.Equal(t, http.StatusOK, head.StatusCode)
			assert.Empty(t, body)
			assert.Zero(t, nextCalls.Load())
		})
	}
}

func TestHandlerPassesOtherPathsOn(t *testing.T) {
	f := newGate(t, 3, 1, false)
	srv, nextCalls := serveGate(t, f)
	paths := []string{"/", "/api/items", "/health/", "/healthz", "/livez/x", "/HEALTH", "/v1/health"}
	for i, path := range paths {
		t.Run(path, func(t *testing.T) {
			resp, _ := do(t, http.MethodGet, srv.URL+path+"?q=1")
			assert.Equal(t, http.StatusTeapot, resp.StatusCode)
			assert.Equal(t, path, resp.Header.Get("X-Next"))
			assert.Equal(t, int64(i+1), nextCalls.Load())
		})
	}
	t.Run("POST to another path", func(t *testing.T) {
		resp, _ := do(t, http.MethodPost, srv.URL+"/submit")
		assert.Equal(t, http.StatusTeapot, resp.StatusCode)
	})
}

func TestHandlerCustomPaths(t *testing.T) {
	f := newGate(t, 3, 1, false)
	gateStates[0].set(f)
	var nextCalls atomic.Int64
	srv := httptest.NewServer(f.gate.Handler("/_status", "/_alive", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nextCalls.Add(1)
		w.WriteHeader(http.StatusTeapot)
	})))
	t.Cleanup(srv.Close)
	tests := []struct {
		path string
		code int
		next int64
	}{
		{"/_status", http.StatusOK, 0},
		{"/_alive", http.StatusOK, 0},
		{"/health", http.StatusTeapot, 1},
		{"/livez", http.StatusTeapot, 2},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, _ := do(t, http.MethodGet, srv.URL+tc.path)
			assert.Equal(t, tc.code, resp.StatusCode)
			assert.Equal(t, tc.next, nextCalls.Load())
		})
	}
}

func TestHealthStatusMetric(t *testing.T) {
	for _, st := range gateStates {
		t.Run(st.name, func(t *testing.T) {
			f := newGate(t, 3, 1, false)
			st.set(f)
			reg := prometheus.NewPedanticRegistry()
			require.NoError(t, reg.Register(f.gate))
			for _, s := range []string{StatusHealthy, StatusDegraded, StatusUnhealthy} {
				v, ok := metricstest.Value(t, reg, "obsproxy_health_status", map[string]string{"status": s})
				require.True(t, ok, s)
				want := 0.0
				if s == st.status {
					want = 1
				}
				assert.Equal(t, want, v, s)
			}
			assert.Equal(t, 1.0, metricstest.Sum(t, reg, "obsproxy_health_status", nil))
			assert.Equal(t, map[string]bool{StatusHealthy: true, StatusDegraded: true, StatusUnhealthy: true},
				metricstest.LabelValues(t, reg, "obsproxy_health_status", "status"))
		})
	}
}

// TestHealthStatusMetricFollowsChanges: the gauge is read at scrape time.
func TestHealthStatusMetricFollowsChanges(t *testing.T) {
	f := newGate(t, 3, 1, false)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(f.gate))
	current := func() string {
		for _, s := range []string{StatusHealthy, StatusDegraded, StatusUnhealthy} {
			if v, _ := metricstest.Value(t, reg, "obsproxy_health_status", map[string]string{"status": s}); v == 1 {
				return s
			}
		}
		return ""
	}
	assert.Equal(t, StatusUnhealthy, current(), "starting")
	gateStates[0].set(f)
	assert.Equal(t, StatusHealthy, current())
	f.observe(1, refused())
	assert.Equal(t, StatusDegraded, current())
	f.gate.Drain()
	assert.Equal(t, StatusUnhealthy, current())
}

// TestGateConcurrentUse: reports, scrapes and probe results race safely.
func TestGateConcurrentUse(t *testing.T) {
	f := newGate(t, 3, 1, true)
	f.probes.done.Store(true)
	srv, _ := serveGate(t, f)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(f.gate))
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if j%2 == 0 {
					f.observe(i, healthy(ms(1)))
				} else {
					f.observe(i, refused())
				}
			}
		}()
	}
	for j := 0; j < 10; j++ {
		resp, body := do(t, http.MethodGet, srv.URL+"/health")
		assert.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, resp.StatusCode)
		assert.True(t, json.Valid(body))
		_, err := reg.Gather()
		assert.NoError(t, err)
	}
	wg.Wait()
	rep := f.gate.Report(false)
	assert.Equal(t, StatusUnhealthy, rep.Status, "every worker's last result is a refusal")
	assert.Equal(t, strp(DetailNoHealthyWorker), rep.Detail)
}
