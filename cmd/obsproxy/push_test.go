package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

// pushReceiver is an httptest import endpoint that keeps every push.
type pushReceiver struct {
	srv *httptest.Server
	// status is what it answers (204 when 0).
	status int
	// hold, when set, keeps each request open until the client gives up.
	hold bool

	mu     sync.Mutex
	pushes []receivedPush
	got    chan struct{} // one send per push received (buffered)
}

type receivedPush struct {
	method, contentType, encoding string
	user, password                string
	hasAuth                       bool
	body                          string // gunzipped
}

func newPushReceiver(t *testing.T, configure func(*pushReceiver)) *pushReceiver {
	t.Helper()
	r := &pushReceiver{got: make(chan struct{}, 100)}
	if configure != nil {
		configure(r)
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var body []byte
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err == nil {
				body, _ = io.ReadAll(zr)
			}
		} else {
			body, _ = io.ReadAll(req.Body)
		}
		user, password, ok := req.BasicAuth()
		r.mu.Lock()
		r.pushes = append(r.pushes, receivedPush{
			method: req.Method, contentType: req.Header.Get("Content-Type"), encoding: req.Header.Get("Content-Encoding"),
			user: user, password: password, hasAuth: ok, body: string(body),
		})
		r.mu.Unlock()
		select {
		case r.got <- struct{}{}:
		default:
		}
		if r.hold {
			<-req.Context().Done()
			return
		}
		status := r.status
		if status == 0 {
			status = http.StatusNoContent
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *pushReceiver) received() []receivedPush {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedPush(nil), r.pushes...)
}

// await waits until n pushes have arrived.
func (r *pushReceiver) await(t *testing.T, n int) []receivedPush {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for len(r.received()) < n {
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("%d pushes received, want %d", len(r.received()), n)
		}
	}
	return r.received()
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pushFixture is a registry with one labelled and one plain counter, and a
// pusher of it.
type pushFixture struct {
	reg  *prometheus.Registry
	reqs *prometheus.CounterVec
	p    *pusher
	log  *syncBuffer
}

func newPushFixture(t *testing.T, url string, interval time.Duration, labels []labelPair) *pushFixture {
	t.Helper()
	f := &pushFixture{reg: prometheus.NewRegistry(), log: &syncBuffer{}}
	f.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_requests_total", Help: "Requests {with braces} in help."},
		[]string{"code"})
	plain := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_plain_total", Help: "A counter without labels."})
	f.reg.MustRegister(f.reqs, plain)
	f.reqs.WithLabelValues("200").Add(7)
	plain.Add(3)
	var err error
	f.p, err = newPusher(pushConfig{URL: url, Interval: interval, Labels: labels, Gatherer: f.reg, Registerer: f.reg,
		Logger: slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	require.NoError(t, err)
	t.Cleanup(f.p.Stop)
	return f
}

func (f *pushFixture) pushes(t *testing.T, result string) float64 {
	t.Helper()
	v, ok := metricstest.Value(t, f.reg, "obsproxy_pushes_total", map[string]string{"result": result})
	require.True(t, ok, "obsproxy_pushes_total{result=%q} exists", result)
	return v
}

func TestPushSendsTheRegistryAsPrometheusTextWithExtraLabels(t *testing.T) {
	recv := newPushReceiver(t, nil)
	f := newPushFixture(t, recv.srv.URL+"/api/v1/import/prometheus", time.Hour,
		[]labelPair{{"env", "e2e"}, {"q", "say \"hi\" \\ bye\nnow"}})

	// Both series exist before any push.
	assert.Equal(t, 0.0, f.pushes(t, "success"))
	assert.Equal(t, 0.0, f.pushes(t, "failure"))

	f.p.Start()
	got := recv.await(t, 1)[0]
	assert.Equal(t, http.MethodPost, got.method)
	assert.Equal(t, "gzip", got.encoding)
	assert.Equal(t, "text/plain", got.contentType)
	assert.False(t, got.hasAuth)
	assert.Contains(t, got.body, "# HELP test_requests_total Requests {with braces} in help.\n")
	assert.Contains(t, got.body, "# TYPE test_requests_total counter\n")

	// The body parses as the text format, every series carrying the extra
	// labels, their values unescaped as written in the configuration.
	g := metricstest.Parse(t, strings.NewReader(got.body))
	extra := map[string]string{"env": "e2e", "q": "say \"hi\" \\ bye\nnow"}
	withExtra := func(l map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range extra {
			out[k] = v
		}
		for k, v := range l {
			out[k] = v
		}
		return out
	}
	v, ok := metricstest.Value(t, g, "test_requests_total", withExtra(map[string]string{"code": "200"}))
	require.True(t, ok, "test_requests_total with extra labels in:\n%s", got.body)
	assert.Equal(t, 7.0, v)
	v, ok = metricstest.Value(t, g, "test_plain_total", extra)
	require.True(t, ok, "test_plain_total with extra labels in:\n%s", got.body)
	assert.Equal(t, 3.0, v)
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			assert.Equal(t, "e2e", labelOf(m, "env"), "series of %s", mf.GetName())
		}
	}
	// The first push is sent before it is counted: both counters at 0.
	v, ok = metricstest.Value(t, g, "obsproxy_pushes_total", withExtra(map[string]string{"result": "success"}))
	require.True(t, ok)
	assert.Equal(t, 0.0, v)

	eventually(t, func() bool { return f.pushes(t, "success") == 1 })
	assert.Equal(t, 0.0, f.pushes(t, "failure"))
}

func labelOf(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		require.False(t, time.Now().After(deadline), "condition not met within 5s")
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPushWithoutExtraLabelsSendsTheExpositionAsIs(t *testing.T) {
	recv := newPushReceiver(t, nil)
	f := newPushFixture(t, recv.srv.URL+"/api/v1/import/prometheus", time.Hour, nil)
	f.p.Start()
	got := recv.await(t, 1)[0]
	assert.Contains(t, got.body, "\ntest_requests_total{code=\"200\"} 7\n")
	assert.Contains(t, got.body, "\ntest_plain_total 3\n")
}

func TestPushURLUserinfoIsBasicAuth(t *testing.T) {
	recv := newPushReceiver(t, nil)
	url := strings.Replace(recv.srv.URL, "http://", "http://pusher:s3cr%40t@", 1) + "/api/v1/import/prometheus"
	f := newPushFixture(t, url, time.Hour, nil)
	f.p.Start()
	got := recv.await(t, 1)[0]
	require.True(t, got.hasAuth, "an Authorization: Basic header")
	assert.Equal(t, "pusher", got.user)
	assert.Equal(t, "s3cr@t", got.password, "percent-escapes in the URL are decoded")
}

func TestPushFailuresAreCountedAndLoggedWithoutThePassword(t *testing.T) {
	// A port that was free a moment ago: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	ln.Close()

	for _, tc := range []struct {
		name    string
		url     func() string
		wantErr string
	}{
		{"connection refused", func() string { return "http://pusher:hunter2-pw@" + closed + "/api/v1/import/prometheus" }, "connection refused"},
		{"answer 500", func() string {
			recv := newPushReceiver(t, func(r *pushReceiver) { r.status = http.StatusInternalServerError })
			return strings.Replace(recv.srv.URL, "http://", "http://pusher:hunter2-pw@", 1) + "/api/v1/import/prometheus"
		}, "500"},
		{"answer 401", func() string {
			recv := newPushReceiver(t, func(r *pushReceiver) { r.status = http.StatusUnauthorized })
			return strings.Replace(recv.srv.URL, "http://", "http://pusher:hunter2-pw@", 1) + "/api/v1/import/prometheus"
		}, "401"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newPushFixture(t, tc.url(), 10*time.Millisecond, nil)
			f.p.Start()
			eventually(t, func() bool { return f.pushes(t, "failure") >= 3 })
			f.p.Stop()
			assert.Equal(t, 0.0, f.pushes(t, "success"))
			logs := f.log.String()
			assert.Contains(t, logs, "level=WARN msg=\"metrics push failed\"")
			assert.Contains(t, logs, "pusher:xxxxx@", "the URL is logged, redacted")
			assert.Contains(t, logs, tc.wantErr)
			assert.NotContains(t, logs, "hunter2")
		})
	}
}

func TestPushReceiverEchoingThePasswordIsScrubbed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pw, _ := r.BasicAuth()
		http.Error(w, "bad password "+pw, http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	f := newPushFixture(t, strings.Replace(srv.URL, "http://", "http://u:hunter2-pw@", 1), time.Hour, nil)
	f.p.Start()
	eventually(t, func() bool { return f.pushes(t, "failure") == 1 })
	assert.Contains(t, f.log.String(), "bad password xxxxx")
	assert.NotContains(t, f.log.String(), "hunter2")
}

func TestPushRecoversAfterFailures(t *testing.T) {
	var failing atomic.Bool // the receiver answers 503 while set
	failing.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	f := newPushFixture(t, srv.URL, 10*time.Millisecond, nil)
	f.p.Start()
	eventually(t, func() bool { return f.pushes(t, "failure") >= 2 })
	assert.NotContains(t, f.log.String(), "succeeds again")
	failing.Store(false)
	eventually(t, func() bool { return f.pushes(t, "success") >= 2 })
	assert.Contains(t, f.log.String(), "msg=\"metrics push succeeds again\"")
}

func TestPushPeriodicallyThenStopsOnStop(t *testing.T) {
	recv := newPushReceiver(t, nil)
	f := newPushFixture(t, recv.srv.URL, 20*time.Millisecond, nil)
	start := time.Now()
	f.p.Start()
	recv.await(t, 4)
	// The first push is sent at once, then one per interval.
	assert.GreaterOrEqual(t, time.Since(start), 60*time.Millisecond)

	f.p.Stop()
	n := len(recv.received())
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, n, len(recv.received()), "no push after Stop")
	f.p.Stop() // twice is fine
}

func TestPushFinalSendsOneMoreAfterStop(t *testing.T) {
	recv := newPushReceiver(t, nil)
	f := newPushFixture(t, recv.srv.URL, time.Hour, nil)
	f.p.Start()
	recv.await(t, 1)
	eventually(t, func() bool { return f.pushes(t, "success") == 1 })

	f.reqs.WithLabelValues("200").Add(5)
	f.p.Final()
	got := recv.received()
	require.Len(t, got, 2, "Final has pushed before returning")
	v, ok := metricstest.Value(t, metricstest.Parse(t, strings.NewReader(got[1].body)), "test_requests_total", map[string]string{"code": "200"})
	require.True(t, ok)
	assert.Equal(t, 12.0, v, "the final push carries the latest values")
	assert.Equal(t, 2.0, f.pushes(t, "success"))
	assert.Contains(t, f.log.String(), "msg=\"final metrics push sent\"")
}

func TestPushFinalWithoutStartStillPushes(t *testing.T) {
	recv := newPushReceiver(t, nil)
	f := newPushFixture(t, recv.srv.URL, time.Hour, nil)
	f.p.Final()
	assert.Len(t, recv.received(), 1)
}

func TestPushFinalIsBoundedAndCountsAFailure(t *testing.T) {
	recv := newPushReceiver(t, func(r *pushReceiver) { r.hold = true })
	f := newPushFixture(t, recv.srv.URL, time.Hour, nil)
	assert.Equal(t, 5*time.Second, f.p.finalTimeout, "the default")
	f.p.finalTimeout = 200 * time.Millisecond
	start := time.Now()
	f.p.Final()
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, 200*time.Millisecond)
	assert.Less(t, took, 2*time.Second)
	assert.Equal(t, 1.0, f.pushes(t, "failure"))
	assert.Contains(t, f.log.String(), "deadline exceeded")
}

func TestPushTimesOutWithinTheInterval(t *testing.T) {
	recv := newPushReceiver(t, func(r *pushReceiver) { r.hold = true })
	f := newPushFixture(t, recv.srv.URL, 50*time.Millisecond, nil)
	f.p.Start()
	eventually(t, func() bool { return f.pushes(t, "failure") >= 2 })
	assert.Contains(t, f.log.String(), "deadline exceeded")
}

func TestPushStopAbandonsAPushUnderWay(t *testing.T) {
	recv := newPushReceiver(t, func(r *pushReceiver) { r.hold = true })
	f := newPushFixture(t, recv.srv.URL, time.Hour, nil)
	f.p.Start()
	recv.await(t, 1)
	start := time.Now()
	f.p.Stop()
	assert.Less(t, time.Since(start), time.Second, "Stop does not wait for the push")
	assert.Equal(t, 0.0, f.pushes(t, "success"), "an abandoned push is no success")
	assert.Equal(t, 0.0, f.pushes(t, "failure"), "nor a failure")
}

func TestPushSurvivesAPanickingCollector(t *testing.T) {
	recv := newPushReceiver(t, nil)
	reg := prometheus.NewRegistry()
	log := &syncBuffer{}
	p, err := newPusher(pushConfig{URL: recv.srv.URL, Interval: time.Hour, Registerer: reg,
		Gatherer: prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { panic("collector bug") }),
		Logger:   slog.New(slog.NewTextHandler(log, nil))})
	require.NoError(t, err)
	p.Final()
	v, _ := metricstest.Value(t, reg, "obsproxy_pushes_total", map[string]string{"result": "failure"})
	assert.Equal(t, 1.0, v)
	assert.Contains(t, log.String(), "collector bug")
	assert.Empty(t, recv.received())
}

func TestPushesTotalPassesLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := newPusher(pushConfig{URL: "http://127.0.0.1:1/", Interval: time.Second, Gatherer: reg, Registerer: reg})
	require.NoError(t, err)
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
	n, err := testutil.GatherAndCount(reg, "obsproxy_pushes_total")
	require.NoError(t, err)
	assert.Equal(t, 2, n, "both results exist from the start")
}

func TestNewPusherRejects(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, tc := range []struct {
		name string
		c    pushConfig
		want string
	}{
		{"no gatherer", pushConfig{URL: "http://vm/", Interval: time.Second, Registerer: reg}, "gatherer and registerer are required"},
		{"zero interval", pushConfig{URL: "http://vm/", Gatherer: reg, Registerer: reg}, "interval 0s is not positive"},
		{"bad URL, password not echoed", pushConfig{URL: "http://u:hunter2@[::1", Interval: time.Second, Gatherer: reg, Registerer: reg}, "the URL does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newPusher(tc.c)
			require.Error(t, err)
			assert.Equal(t, "metrics push: "+tc.want, err.Error())
		})
	}
	// Twice on one registry: the second cannot register its counter.
	_, err := newPusher(pushConfig{URL: "http://vm/", Interval: time.Second, Gatherer: reg, Registerer: reg})
	require.NoError(t, err)
	_, err = newPusher(pushConfig{URL: "http://vm/", Interval: time.Second, Gatherer: reg, Registerer: reg})
	require.ErrorContains(t, err, "registering obsproxy_pushes_total")
}

func TestNilPusherDoesNothing(t *testing.T) {
	var p *pusher
	p.Start()
	p.Stop()
	p.Final()
}

func TestExtraLabelsText(t *testing.T) {
	for _, tc := range []struct {
		in   []labelPair
		want string
	}{
		{nil, ""},
		{[]labelPair{{"env", "prod"}}, `env="prod"`},
		{[]labelPair{{"env", "prod"}, {"region", "eu-1"}}, `env="prod",region="eu-1"`},
		{[]labelPair{{"q", `say "hi"`}}, `q="say \"hi\""`},
		{[]labelPair{{"p", `C:\dir\`}}, `p="C:\\dir\\"`},
		{[]labelPair{{"n", "a\nb"}, {"c", "a,b=c"}}, `n="a\nb",c="a,b=c"`},
		{[]labelPair{{"u", "café"}}, `u="café"`},
	} {
		assert.Equal(t, tc.want, extraLabelsText(tc.in))
	}
}

func TestPushFailureLogIsCut(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, strings.Repeat("é", 2000), http.StatusBadRequest)
	}))
	t.Cleanup(srv.Close)
	f := newPushFixture(t, srv.URL, time.Hour, nil)
	f.p.Final()
	logs := f.log.String()
	assert.Contains(t, logs, "…")
	assert.Less(t, len(logs), 1000, "the answer body is cut: %s", logs)
	assert.True(t, utf8.ValidString(logs))
}
