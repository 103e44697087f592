package admin

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/connstate"
	"github.com/obsproxy/obsproxy/healthgate"
	"github.com/obsproxy/obsproxy/lifecycle"
	"github.com/obsproxy/obsproxy/proxy"
)

type cannedRoundTrip func(*http.Request) (*http.Response, error)

func (f cannedRoundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// scrapeKinds is the traffic each worker sees: (method, status) pairs. Their
// number is prime to the worker count, so that round-robin spreads every
// pair over every worker.
var scrapeKinds = []struct {
	method string
	code   int
}{
	{"GET", 200}, {"GET", 404}, {"POST", 201}, {"GET", 500}, {"HEAD", 200},
	{"GET", 304}, {"DELETE", 204}, {"GET", 502}, {"PUT", 200},
}

// newScrapeRegistry builds the registry cmd/obsproxy serves at /metrics
// (Go and process collectors, connections, proxy, pool, prober, gate) over
// a pool of n workers, probes every worker once and sends two rounds of
// scrapeKinds through the proxy, so that every per-worker series exists.
func newScrapeRegistry(tb testing.TB, n int) *prometheus.Registry {
	tb.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var workers []lifecycle.WorkerConfig
	for i := range n {
		workers = append(workers, lifecycle.WorkerConfig{Name: "w" + strconv.Itoa(i+1), Network: "tcp", Address: "127.0.0.1:" + strconv.Itoa(10000+i)})
	}
	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: workers, InitialState: lifecycle.StateUp})
	require.NoError(tb, err)
	health := `{"status":"healthy","uptime_seconds":12.5,"pid":4242,"checks":{"database":{"status":"ok"}}}`
	prober, err := healthgate.NewProber(healthgate.ProberConfig{
		Pool: pool, Interval: time.Hour, Logger: logger,
		Transport: func(*lifecycle.Worker) http.RoundTripper {
			return cannedRoundTrip(func(r *http.Request) (*http.Response, error) {
				return &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Request: r,
					Header: http.Header{"Content-Type": {"application/json"}}, ContentLength: int64(len(health)),
					Body: io.NopCloser(strings.NewReader(health))}, nil
			})
		},
	})
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); prober.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); !prober.FirstRoundDone(); time.Sleep(time.Millisecond) {
		require.True(tb, time.Now().Before(deadline), "first probe round")
	}
	cancel()
	<-done
	gate, err := healthgate.NewGate(healthgate.GateConfig{Pool: pool, Probes: prober, Version: "bench"})
	require.NoError(tb, err)
	h, err := proxy.New(proxy.Config{
		Pool: pool, Logger: logger,
		Transport: func(*lifecycle.Worker) http.RoundTripper {
			return cannedRoundTrip(func(r *http.Request) (*http.Response, error) {
				code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
				return &http.Response{StatusCode: code, ProtoMajor: 1, ProtoMinor: 1, Request: r,
					Header: http.Header{}, Body: http.NoBody}, nil
			})
		},
	})
	require.NoError(tb, err)
	w := &discardWriter{h: http.Header{}}
	for range 2 * n {
		for _, k := range scrapeKinds {
			r, err := http.NewRequest(k.method, "http://obsproxy/"+strconv.Itoa(k.code), nil)
			require.NoError(tb, err)
			r.RemoteAddr = "127.0.0.1:40000"
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		connstate.New(), h, pool, prober, gate,
	)
	return reg
}

// discardWriter is a ResponseWriter that keeps nothing but its headers.
type discardWriter struct {
	h http.Header
	n int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}
func (w *discardWriter) WriteHeader(int) {}

// BenchmarkScrape measures one /metrics scrape of obsproxy's registry with
// 64 workers that have served traffic: gathering alone, gathering and
// encoding the text format, and the admin handler as Prometheus calls it
// (plain and gzip). It reports the series and text bytes per scrape.
func BenchmarkScrape(b *testing.B) {
	const workers = 64
	reg := newScrapeRegistry(b, workers)
	families, err := reg.Gather()
	require.NoError(b, err)
	series := 0
	for _, f := range families {
		series += len(f.Metric)
	}
	var text strings.Builder
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range families {
		require.NoError(b, enc.Encode(f))
	}
	require.Contains(b, text.String(), `obsproxy_requests_total{code="502",method="GET",worker="w64"}`)

	b.Run("gather", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := reg.Gather(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(series), "series")
	})
	b.Run("gather+text", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			fs, err := reg.Gather()
			if err != nil {
				b.Fatal(err)
			}
			enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
			for _, f := range fs {
				if err := enc.Encode(f); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(text.Len()), "text-bytes")
	})
	srv, err := New(Config{Gatherer: reg})
	require.NoError(b, err)
	for _, enc := range []string{"identity", "gzip"} {
		b.Run("http-"+enc, func(b *testing.B) {
			r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:9090/metrics", nil)
			r.RemoteAddr = "127.0.0.1:50000"
			r.Header.Set("Accept-Encoding", enc)
			r.Header.Set("Accept", "text/plain;version=0.0.4")
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.n = 0
				srv.ServeHTTP(w, r)
			}
			b.ReportMetric(float64(w.n), "body-bytes")
		})
	}
}
