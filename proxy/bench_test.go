package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// newFastUpstream serves body at every path, with Content-Length, as
// bench/upstream does.
func newFastUpstream(tb testing.TB, size int) *httptest.Server {
	tb.Helper()
	body := bytes.Repeat([]byte("x"), size)
	ct, cl := []string{"text/plain"}, []string{strconv.Itoa(size)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"], h["Content-Length"] = ct, cl
		w.Write(body)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// newTunedBareProxy is bench/bareproxy: a bare ReverseProxy with a buffer
// pool and a tuned transport, in front of addr.
func newTunedBareProxy(tb testing.TB, addr string) *httputil.ReverseProxy {
	u := &url.URL{Scheme: "http", Host: addr}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	tb.Cleanup(tr.CloseIdleConnections)
	return bareReverseProxy(u, tr)
}

// newLoopbackHandler is obsproxy's Handler with its own tuned transport, in
// front of addr.
func newLoopbackHandler(tb testing.TB, addr string) *Handler {
	return newLoopbackHandlerWith(tb, addr, nil)
}

// newLoopbackNetHTTPHandler is newLoopbackHandler with net/http.Transport
// for every request instead of the lean HTTP/1.1 path, as before it existed.
func newLoopbackNetHTTPHandler(tb testing.TB, addr string) *Handler {
	return newLoopbackHandlerWith(tb, addr, func(w *lifecycle.Worker) http.RoundTripper {
		t := newNetHTTPTransport(w, Config{DialTimeout: 2 * time.Second, ResponseTimeout: 60 * time.Second,
			IdleConnTimeout: 4 * time.Second, MaxIdleConnsPerWorker: 256})
		tb.Cleanup(t.CloseIdleConnections)
		return t
	})
}

func newLoopbackHandlerWith(tb testing.TB, addr string, transport func(*lifecycle.Worker) http.RoundTripper) *Handler {
	return newLoopbackHandlerPool(tb, addr, false, transport)
}

// newLoopbackSupervisedHandler is newLoopbackHandler for a worker of
// supervisor mode: no configured address, its process's Endpoint (a
// generation above 0) published as a supervisor does.
func newLoopbackSupervisedHandler(tb testing.TB, addr string) *Handler {
	return newLoopbackHandlerPool(tb, addr, true, nil)
}

func newLoopbackHandlerPool(tb testing.TB, addr string, supervised bool, transport func(*lifecycle.Worker) http.RoundTripper) *Handler {
	wc := lifecycle.WorkerConfig{Name: "w1", Network: "tcp", Address: addr}
	if supervised {
		wc.Address = ""
	}
	pool, err := lifecycle.NewPool(lifecycle.Config{
		Workers:      []lifecycle.WorkerConfig{wc},
		InitialState: lifecycle.StateUp,
		Supervised:   supervised,
	})
	require.NoError(tb, err)
	if supervised {
		pool.Workers()[0].SetEndpoint("tcp", addr, 1, time.Now())
	}
	// cmd/obsproxy's defaults: a 2 s dial timeout and a 60 s response
	// timeout (a timer per request in net/http.Transport, a read deadline
	// in the lean path).
	h, err := New(Config{Pool: pool, DialTimeout: 2 * time.Second, ResponseTimeout: 60 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Transport: transport})
	require.NoError(tb, err)
	return h
}

// BenchmarkProxyLoopback compares obsproxy's Handler with the bare tuned
// ReverseProxy of bench/bareproxy per request, both sending to a real
// upstream over loopback with their real transports (the client side is
// in-process, so the figure is the proxy's work plus one upstream
// exchange), 64 requests in flight. "obsproxy-nethttp" is obsproxy with
// net/http.Transport in place of its lean HTTP/1.1 path. "no-client-id" is
// obsproxy generating the request id itself (two allocations: the id and
// its header slice). "obsproxy-supervised" is obsproxy's worker in
// supervisor mode (the process's Endpoint and its generation checked when
// a connection is pooled or reused).
func BenchmarkProxyLoopback(b *testing.B) {
	for _, size := range []int{100, 16 << 10} {
		up := newFastUpstream(b, size)
		addr := up.Listener.Addr().String()
		for _, tc := range []struct {
			name     string
			h        http.Handler
			clientID bool
		}{
			{"bare", newTunedBareProxy(b, addr), true},
			{"obsproxy", newLoopbackHandler(b, addr), true},
			{"obsproxy-nethttp", newLoopbackNetHTTPHandler(b, addr), true},
			{"obsproxy-no-client-id", newLoopbackHandler(b, addr), false},
			{"obsproxy-supervised", newLoopbackSupervisedHandler(b, addr), true},
		} {
			b.Run(tc.name+"/"+strconv.Itoa(size)+"B", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(size))
				b.SetParallelism(32) // 32 × GOMAXPROCS requests in flight: c=64 on 2 CPUs
				b.RunParallel(func(pb *testing.PB) {
					w := &sinkWriter{h: make(http.Header)}
					r, _ := http.NewRequest(http.MethodGet, "http://example.org/small", nil)
					r.RemoteAddr = "127.0.0.1:50000"
					r.RequestURI = "/small"
					r.Header.Set("User-Agent", "bench")
					id := []string{"client-chosen-id"}
					for pb.Next() {
						clear(w.h)
						if tc.clientID {
							r.Header["X-Request-Id"] = id
						} else {
							delete(r.Header, "X-Request-Id")
						}
						tc.h.ServeHTTP(w, r)
					}
				})
			})
		}
	}
}
