package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/admission"
	"github.com/obsproxy/obsproxy/lifecycle"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// cannedTransport answers every request at once with a small body, so that
// a test measures the proxy's own work and no network.
var cannedTransport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(strings.NewReader("hello, world")),
		ContentLength: 12, Request: r,
	}, nil
})

// sinkWriter is a reusable ResponseWriter that keeps nothing.
type sinkWriter struct{ h http.Header }

func (w *sinkWriter) Header() http.Header         { return w.h }
func (w *sinkWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *sinkWriter) WriteHeader(int)             {}

func newBareProxy() *httputil.ReverseProxy {
	return bareReverseProxy(&url.URL{Scheme: "http", Host: "127.0.0.1:1"}, cannedTransport)
}

// bareReverseProxy is bench/bareproxy's ReverseProxy: the client's Host
// kept, X-Forwarded-* set, obsproxy's buffer pool, sending to u through rt.
func bareReverseProxy(u *url.URL, rt http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:  rt,
		BufferPool: &bufferPool{},
	}
}

func newCannedHandler(t testing.TB) *Handler { return newCannedHandlerCapped(t, 0) }

// newCannedHandlerCapped is newCannedHandler with admission control capping
// each worker at maxInFlight requests (0: no cap).
func newCannedHandlerCapped(t testing.TB, maxInFlight int) *Handler {
	pool, err := lifecycle.NewPool(lifecycle.Config{
		Workers:      []lifecycle.WorkerConfig{{Name: "w1", Network: "tcp", Address: "127.0.0.1:1"}, {Name: "w2", Network: "tcp", Address: "127.0.0.1:2"}},
		InitialState: lifecycle.StateUp,
	})
	require.NoError(t, err)
	q, err := admission.New(admission.Config{Pool: pool, MaxInFlight: maxInFlight, Size: 16, Timeout: time.Second})
	require.NoError(t, err)
	h, err := New(Config{
		Pool:      pool,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Transport: func(*lifecycle.Worker) http.RoundTripper { return cannedTransport },
		Admission: q,
	})
	require.NoError(t, err)
	return h
}

func allocsPerRequest(h http.Handler) float64 {
	w := &sinkWriter{h: make(http.Header)}
	r, _ := http.NewRequest(http.MethodGet, "http://example.org/a/b?c=d", nil)
	r.RemoteAddr = "127.0.0.1:50000"
	r.RequestURI = "/a/b?c=d"
	r.Header.Set("X-Request-Id", "client-chosen-id")
	r.Header.Set("User-Agent", "alloc-test")
	return testing.AllocsPerRun(2000, func() {
		clear(w.h)
		h.ServeHTTP(w, r)
	})
}

// TestObservabilityAddsNoAllocation pins STYLE habit 5: obsproxy's accounting
// (in-flight list, per-worker counters, histogram, stream detection, request
// id echo) costs no allocation per request beyond what a bare
// httputil.ReverseProxy with the same transport already makes, with or
// without admission control (a request that finds a free slot at once).
func TestObservabilityAddsNoAllocation(t *testing.T) {
	bare := allocsPerRequest(newBareProxy())
	ours := allocsPerRequest(newCannedHandler(t))
	capped := allocsPerRequest(newCannedHandlerCapped(t, 2))
	t.Logf("allocations per request: bare ReverseProxy %.0f, obsproxy %.0f, obsproxy with a cap %.0f", bare, ours, capped)
	assert.LessOrEqual(t, ours, bare)
	assert.LessOrEqual(t, capped, bare)
}

func BenchmarkHandler(b *testing.B) {
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"bare", newBareProxy()}, {"obsproxy", newCannedHandler(b)}, {"obsproxy-capped", newCannedHandlerCapped(b, 1<<20)}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &sinkWriter{h: make(http.Header)}
				r, _ := http.NewRequest(http.MethodGet, "http://example.org/a/b?c=d", nil)
				r.RemoteAddr = "127.0.0.1:50000"
				r.RequestURI = "/a/b?c=d"
				r.Header.Set("X-Request-Id", "client-chosen-id")
				for pb.Next() {
					clear(w.h)
					tc.h.ServeHTTP(w, r)
				}
			})
		})
	}
}
