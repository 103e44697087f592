package admin

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/connstate"
	"github.com/obsproxy/obsproxy/healthgate"
	"github.com/obsproxy/obsproxy/lifecycle"
	"github.com/obsproxy/obsproxy/proxy"
)

// probesDone stands in for the prober: its first round is over.
type probesDone struct{}

func (probesDone) FirstRoundDone() bool    { return true }
func (probesDone) Interval() time.Duration { return time.Hour }

// plane is a real pool, proxy, tracker and gate in front of two httptest
// workers, with the admin Server over them.
type plane struct {
	src    *Sources
	admin  *Server
	public *httptest.Server
	adm    *httptest.Server
	w1, w2 *lifecycle.Worker
	w2Addr string
}

func newPlane(t *testing.T, cfg Config) *plane {
	t.Helper()
	var addrs []string
	for range 2 {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok")
		}))
		t.Cleanup(up.Close)
		addrs = append(addrs, strings.TrimPrefix(up.URL, "http://"))
	}
	pool, err := lifecycle.NewPool(lifecycle.Config{
		Workers: []lifecycle.WorkerConfig{
			{Name: "w1", Network: "tcp", Address: addrs[0]},
			{Name: "w2", Network: "tcp", Address: addrs[1]},
		},
		Policy: lifecycle.RoundRobin,
	})
	require.NoError(t, err)
	for _, w := range pool.Workers() {
		pool.ObserveProbe(w, lifecycle.ProbeResult{
			At: time.Now(), Latency: 2 * time.Millisecond, Health: lifecycle.Healthy, Answered: true,
			Uptime: 30, HasUptime: true, PID: 4242,
		})
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	px, err := proxy.New(proxy.Config{Pool: pool, Logger: logger})
	require.NoError(t, err)
	gate, err := healthgate.NewGate(healthgate.GateConfig{Pool: pool, Probes: probesDone{}, Version: "test", Started: time.Now()})
	require.NoError(t, err)
	tracker := connstate.New()
	p := &plane{
		src: &Sources{Pool: pool, Proxy: px, Conns: tracker, Gate: gate, Started: time.Now(), Version: "test"},
		w1:  pool.Workers()[0], w2: pool.Workers()[1], w2Addr: addrs[1],
	}
	p.public = httptest.NewUnstartedServer(px)
	p.public.Config.ConnState = tracker.ConnState
	p.public.Listener = tracker.Listen(p.public.Listener)
	p.public.Start()
	t.Cleanup(p.public.Close)

	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.NewRegistry()
	}
	cfg.Sources, cfg.Logger = p.src, logger
	p.admin, err = New(cfg)
	require.NoError(t, err)
	p.adm = httptest.NewServer(p.admin)
	t.Cleanup(p.adm.Close)
	return p
}

// send makes n proxied requests and requires each to succeed.
func (p *plane) send(t *testing.T, n int) {
	t.Helper()
	for range n {
		resp, err := http.Get(p.public.URL + "/x")
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
}

func getJSON(t *testing.T, url string, v any) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusOK {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	}
	return resp
}

func TestQuantile(t *testing.T) {
	bounds := []float64{0.01, 0.1, 1}
	for _, tc := range []struct {
		name   string
		q      float64
		counts []uint64
		want   float64
		ok     bool
	}{
		{"empty", 0.5, []uint64{0, 0, 0, 0}, 0, false},
		{"malformed", 0.5, []uint64{1, 2}, 0, false},
		{"all in first bucket interpolates from 0", 0.5, []uint64{10, 10, 10, 10}, 0.005, true},
		{"median in second bucket", 0.5, []uint64{2, 8, 10, 10}, 0.01 + 0.09*(5.0-2)/(8-2), true},
		{"p95 in third bucket", 0.95, []uint64{0, 0, 20, 20}, 0.1 + 0.9*(19.0/20), true},
		{"rank in +Inf gives the highest bound", 0.95, []uint64{1, 1, 1, 10}, 1, true},
		{"q out of range", 1.5, []uint64{1, 1, 1, 1}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := Quantile(tc.q, bounds, tc.counts)
			assert.Equal(t, tc.ok, ok)
			assert.InDelta(t, tc.want, v, 1e-9)
		})
	}
}

func TestSnapshot(t *testing.T) {
	p := newPlane(t, Config{})
	p.send(t, 6)
	require.True(t, p.src.Pool.MarkDown(p.w2, "connect failed"))

	var snap Snapshot
	resp := getJSON(t, p.adm.URL+"/admin/api/observability", &snap)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))

	assert.Equal(t, "test", snap.Version)
	assert.Equal(t, uint64(6), snap.Requests.Total)
	assert.Equal(t, uint64(0), snap.Requests.NoWorkerTotal)
	assert.Equal(t, "degraded", snap.Health.Status)
	require.NotNil(t, snap.Health.Detail)
	assert.Equal(t, healthgate.DetailWorkerDown, *snap.Health.Detail)
	assert.Equal(t, PoolView{Policy: "round_robin", Up: 1, Total: 2, MinUp: 1, UptimeSeconds: snap.Pool.UptimeSeconds,
		States: map[string]int{"up": 1, "down": 1, "unknown": 0, "draining": 0}}, snap.Pool)
	assert.Positive(t, snap.Pool.UptimeSeconds)
	assert.Positive(t, snap.Connections.AcceptedTotal)

	require.Len(t, snap.Workers, 2)
	w1, w2 := snap.Workers[0], snap.Workers[1]
	assert.Equal(t, "w1", w1.Name)
	assert.Equal(t, "up", w1.State)
	assert.Equal(t, "healthy", w1.Health)
	assert.Equal(t, uint64(3), w1.Requests, "round robin over two workers")
	assert.Equal(t, 4242, w1.PID)
	assert.InDelta(t, 30, w1.UptimeSeconds, 5)
	require.NotNil(t, w1.LastProbeLatencyMS)
	assert.Equal(t, 2.0, *w1.LastProbeLatencyMS)
	assert.Equal(t, "down", w2.State)
	assert.Equal(t, "connect failed", w2.DownReason)
	assert.Equal(t, p.w2Addr, w2.Address)

	require.NotEmpty(t, snap.Events)
	assert.Equal(t, lifecycle.EventDown, snap.Events[0].Kind, "newest first")
	assert.Equal(t, "w2", snap.Events[0].Worker)
	for i := 1; i < len(snap.Events); i++ {
		assert.Greater(t, snap.Events[i-1].Seq, snap.Events[i].Seq)
	}
	assert.Nil(t, snap.Requests.PerSecond, "no sampler step yet: no rate")
}

func TestSamplerHistory(t *testing.T) {
	p := newPlane(t, Config{SampleInterval: time.Second})
	clock := time.Unix(1_700_000_000, 0)
	s := newSampler(p.src, time.Second, func() time.Time { return clock })
	capacity := len(s.ring)
	assert.Equal(t, 300, capacity, "five minutes of one-second steps")
	for i := range capacity + 5 {
		if i == 10 {
			p.send(t, 4)
		}
		s.step()
		clock = clock.Add(time.Second)
	}
	h := s.history()
	require.Len(t, h, capacity)
	for i := 1; i < len(h); i++ {
		assert.Equal(t, h[i-1].T+1000, h[i].T, "oldest first, one step apart")
	}
	assert.Equal(t, int64(1_700_000_005_000), h[0].T, "the five oldest points were overwritten")
	var sum float64
	for _, pt := range h {
		require.NotNil(t, pt.PerSecond)
		sum += *pt.PerSecond
		assert.Equal(t, 2, pt.WorkersUp)
	}
	assert.Equal(t, 4.0, sum, "the four requests show up once, in the step after them")

	rt, ok := s.latest()
	assert.True(t, ok)
	assert.True(t, rt.valid)
}

// sseEvent is one parsed `snapshot` event.
type sseEvent struct {
	id   string
	snap Snapshot
}

// readEvents reads n snapshot events from an SSE body.
func readEvents(t *testing.T, body io.Reader, n int) []sseEvent {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var out []sseEvent
	var cur sseEvent
	var kind string
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			kind = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			cur.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.snap))
		case line == "" && kind != "":
			require.Equal(t, "snapshot", kind)
			out = append(out, cur)
			cur, kind = sseEvent{}, ""
		}
	}
	require.NoError(t, sc.Err())
	require.Len(t, out, n)
	return out
}

// TestSSERatesPerStream opens two streams at different moments while
// traffic flows and checks that each stream's requests/s is its own: the
// requests counted between two of its events over the time between them.
// A rate shared between streams would be computed against the other
// stream's last reading and fail this.
func TestSSERatesPerStream(t *testing.T) {
	p := newPlane(t, Config{SampleInterval: 100 * time.Millisecond})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			resp, err := http.Get(p.public.URL + "/x")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })

	open := func() *http.Response {
		resp, err := http.Get(p.adm.URL + "/admin/api/observability/sse")
		require.NoError(t, err)
		t.Cleanup(func() { resp.Body.Close() })
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
		return resp
	}
	a := open()
	time.Sleep(250 * time.Millisecond)
	b := open()

	var streams [2][]sseEvent
	var rwg sync.WaitGroup
	for i, resp := range []*http.Response{a, b} {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			streams[i] = readEvents(t, resp.Body, 6)
		}()
	}
	rwg.Wait()
	for i, evs := range streams {
		for j := 1; j < len(evs); j++ {
			prev, cur := evs[j-1].snap, evs[j].snap
			assert.Equal(t, len(evs[j-1].id) > 0, true)
			assert.Empty(t, cur.History, "SSE events carry no history")
			dt := cur.Timestamp.Sub(prev.Timestamp).Seconds()
			require.Positive(t, dt)
			want := float64(cur.Requests.Total-prev.Requests.Total) / dt
			require.NotNil(t, cur.Requests.PerSecond, "stream %d event %d", i, j)
			assert.InDelta(t, want, *cur.Requests.PerSecond, 0.01*want+0.01, "stream %d event %d", i, j)
			var perWorker float64
			for _, w := range cur.Workers {
				require.NotNil(t, w.RequestsPerSecond)
				perWorker += *w.RequestsPerSecond
			}
			assert.InDelta(t, *cur.Requests.PerSecond, perWorker, 0.01*want+0.01)
		}
		last := evs[len(evs)-1].snap
		assert.Positive(t, *last.Requests.PerSecond, "traffic flows during the test")
		assert.NotNil(t, last.Requests.LatencyP50MS)
		assert.NotNil(t, last.Requests.LatencyP95MS)
	}
}

func TestSSEStreamCap(t *testing.T) {
	p := newPlane(t, Config{SampleInterval: time.Second, MaxStreams: 1})
	resp, err := http.Get(p.adm.URL + "/admin/api/observability/sse")
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	readEvents(t, resp.Body, 1)

	second := getJSON(t, p.adm.URL+"/admin/api/observability/sse", nil)
	assert.Equal(t, http.StatusServiceUnavailable, second.StatusCode)
	resp.Body.Close()
	eventuallyOK := func() bool { return p.admin.streams.Load() == 0 }
	require.Eventually(t, eventuallyOK, 5*time.Second, 10*time.Millisecond, "a closed stream frees its slot")
}

func TestDiag(t *testing.T) {
	const token = "diag-token-6f1d2c"
	lo := mustPrefixes("127.0.0.0/8")
	for _, tc := range []struct {
		name    string
		enabled bool
		access  Access
		xff     string
		auth    string
		want    int
	}{
		{"disabled is 404", false, Access{Token: token}, "", "Bearer " + token, 404},
		{"enabled without controls is 403", true, Access{}, "", "", 403},
		{"enabled without controls ignores any token", true, Access{}, "", "Bearer " + token, 403},
		{"token", true, Access{Token: token}, "", "Bearer " + token, 200},
		{"wrong token", true, Access{Token: token}, "", "Bearer nope", 403},
		{"no token", true, Access{Token: token}, "", "", 403},
		{"allowlisted peer", true, Access{Allow: lo}, "", "", 200},
		{"peer not allowlisted", true, Access{Allow: mustPrefixes("10.0.0.0/8")}, "", "", 403},
		{"forwarded-for ignored by default", true, Access{Allow: mustPrefixes("10.0.0.0/8")}, "10.1.1.1", "", 403},
		{"forwarded-for trusted", true, Access{Allow: mustPrefixes("10.0.0.0/8"), TrustForwardedFor: true}, "10.1.1.1", "", 200},
		{"trusted forwarded-for outside", true, Access{Allow: lo, TrustForwardedFor: true}, "192.0.2.1", "", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The admin routes' own token does not open /diag.
			p := newPlane(t, Config{DiagEnabled: tc.enabled, DiagAccess: tc.access, Access: Access{Token: "admin-token"}})
			req, err := http.NewRequest(http.MethodGet, p.adm.URL+"/diag", nil)
			require.NoError(t, err)
			if tc.xff != "" {
				req.Header.Set("X-Forwarded-For", tc.xff)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, tc.want, resp.StatusCode)
			assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
			assert.NotContains(t, string(body), token)
			if tc.want != 200 {
				assert.NotContains(t, string(body), "process")
				return
			}
			var d Diag
			require.NoError(t, json.Unmarshal(body, &d))
			assert.Equal(t, "ok", d.Status)
			assert.Equal(t, os.Getpid(), d.Process.PID)
			assert.Positive(t, d.Process.Goroutines)
			assert.Positive(t, d.System.CPUCount)
			assert.Equal(t, 2, d.Queue.WorkersTotal)
			assert.NotEmpty(t, d.Runtime.GoVersion)
			if _, err := os.Stat("/proc/self/status"); err == nil {
				require.NotNil(t, d.Process.MemoryRSSBytes)
				assert.Positive(t, *d.Process.MemoryRSSBytes)
				require.NotNil(t, d.Process.OpenFDs)
				require.NotNil(t, d.Process.Threads)
				require.NotNil(t, d.System.MemoryTotalBytes)
				assert.Len(t, d.System.LoadAverage, 3)
			}
			// Nothing that names the setup: no worker address or port, no
			// host name, no environment value.
			_, port, _ := net.SplitHostPort(p.w2Addr)
			assert.NotContains(t, string(body), p.w2Addr)
			assert.NotContains(t, string(body), ":"+port)
			if name, err := os.Hostname(); err == nil && len(name) > 3 {
				assert.NotContains(t, string(body), name)
			}
			for _, kv := range os.Environ() {
				_, v, _ := strings.Cut(kv, "=")
				if len(v) >= 12 {
					assert.NotContains(t, string(body), v)
				}
			}
		})
	}
}

func TestAdminRoutesBehindToken(t *testing.T) {
	p := newPlane(t, Config{Access: Access{Token: "admin-token"}})
	for _, path := range []string{"/metrics", "/admin/", "/admin/api/observability", "/admin/api/observability/sse"} {
		resp := getJSON(t, p.adm.URL+path, nil)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, path)
		assert.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic", "a browser asks for the token")
	}
	req, _ := http.NewRequest(http.MethodGet, p.adm.URL+"/admin/api/observability", nil)
	req.SetBasicAuth("anyone", "admin-token")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	page := getJSON(t, p.adm.URL+"/admin", nil)
	assert.Equal(t, http.StatusUnauthorized, page.StatusCode, "the redirect is guarded too")
}

func TestDashboardPage(t *testing.T) {
	p := newPlane(t, Config{})
	resp, err := http.Get(p.adm.URL + "/admin/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'none'")
	assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
	assert.Contains(t, string(body), "obsproxy")
	assert.NotContains(t, string(body), "http://", "no outside resource")
	assert.NotContains(t, string(body), "https://", "no outside resource")
}

func TestSSEHead(t *testing.T) {
	p := newPlane(t, Config{SampleInterval: time.Second})
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Head(p.adm.URL + "/admin/api/observability/sse")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	require.Eventually(t, func() bool { return p.admin.streams.Load() == 0 }, 5*time.Second, 10*time.Millisecond,
		"a HEAD does not hold a stream open")
}
