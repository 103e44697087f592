package proxy

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/admission"
	"github.com/obsproxy/obsproxy/lifecycle"
)

// newLoopbackHandlerCapped is newLoopbackHandler with admission control
// capping the worker at maxInFlight.
func newLoopbackHandlerCapped(tb testing.TB, addr string, maxInFlight int) *Handler {
	pool, err := lifecycle.NewPool(lifecycle.Config{
		Workers:      []lifecycle.WorkerConfig{{Name: "w1", Network: "tcp", Address: addr}},
		InitialState: lifecycle.StateUp,
	})
	require.NoError(tb, err)
	q, err := admission.New(admission.Config{Pool: pool, MaxInFlight: maxInFlight, Size: 1024, Timeout: 10 * time.Second})
	require.NoError(tb, err)
	h, err := New(Config{Pool: pool, DialTimeout: 2 * time.Second, ResponseTimeout: 60 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Admission: q})
	require.NoError(tb, err)
	return h
}

// BenchmarkAdmissionLoopback is BenchmarkProxyLoopback's 100-byte case
// with admission control: "obsproxy" has no cap; "capped-free" a cap no
// request reaches (every request takes the lock-free fast path);
// "capped-8" a cap of 8 with 64 requests in flight, so most requests wait
// in the queue and are handed a slot.
func BenchmarkAdmissionLoopback(b *testing.B) {
	up := newFastUpstream(b, 100)
	addr := up.Listener.Addr().String()
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"obsproxy", newLoopbackHandler(b, addr)},
		{"capped-free", newLoopbackHandlerCapped(b, addr, 1<<16)},
		{"capped-8", newLoopbackHandlerCapped(b, addr, 8)},
	} {
		b.Run(tc.name+"/"+strconv.Itoa(100)+"B", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				w := &sinkWriter{h: make(http.Header)}
				r, _ := http.NewRequest(http.MethodGet, "http://example.org/small", nil)
				r.RemoteAddr = "127.0.0.1:50000"
				r.RequestURI = "/small"
				r.Header.Set("User-Agent", "bench")
				id := []string{"client-chosen-id"}
				for pb.Next() {
					clear(w.h)
					r.Header["X-Request-Id"] = id
					tc.h.ServeHTTP(w, r)
				}
			})
		})
	}
}
