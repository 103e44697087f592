package proxy

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// newTransport returns the transport for one worker: for an HTTP/1.1
// worker the lean h1Transport in front of a tuned net/http.Transport, for an
// h2c worker the tuned net/http.Transport alone. A supervised worker's
// net/http.Transport is one per process (genTransport).
func newTransport(w *lifecycle.Worker, cfg Config) http.RoundTripper {
	var t http.RoundTripper = newNetHTTPTransport(w, cfg)
	if w.Supervised() {
		t = newGenTransport(w, cfg)
	}
	if w.H2C {
		return t
	}
	return newH1TransportFor(w, cfg, t)
}

// dialWorker dials w's current Endpoint (its address in static mode, its
// current process's in supervisor mode), counting the connection in the
// endpoint's OpenConns; with none, it fails at once with a dial error
// wrapping lifecycle.ErrNoProcess, which the proxy treats as a connect
// failure (retried on another worker).
func dialWorker(ctx context.Context, d *net.Dialer, w *lifecycle.Worker) (net.Conn, error) {
	c, _, err := w.DialTracked(ctx, d)
	return c, err
}

// genTransport is a supervised worker's net/http.Transport, one per
// process generation: net/http gives no hook when it pools or reuses a
// connection, so a request after the worker moved on to a new process
// (a replacement, a restart) goes through a new Transport, which dials the
// new process, and never through a connection kept alive to the old one.
// The old Transport keeps the requests and streams already under way on
// it until they end (the old process drains, spec section 8); closeStale
// closes its idle connections, so that the old process's connection count
// falls to zero once its last request ends. The request path costs one
// atomic load and a comparison.
type genTransport struct {
	w   *lifecycle.Worker
	cfg Config
	cur atomic.Pointer[genEntry]

	mu      sync.Mutex
	retired []*http.Transport // the last transports replaced, newest last
}

type genEntry struct {
	gen uint64
	t   *http.Transport
}

// maxRetired bounds the retired transports kept for closeStale: a process
// drains within the stop timeout, long before four more replacements of
// the same worker.
const maxRetired = 4

func newGenTransport(w *lifecycle.Worker, cfg Config) *genTransport {
	g := &genTransport{w: w, cfg: cfg}
	g.cur.Store(&genEntry{gen: w.Generation(), t: newNetHTTPTransport(w, cfg)})
	return g
}

// current returns the Transport of the worker's current generation,
// retiring the previous one when the worker moved on.
func (g *genTransport) current() *http.Transport {
	gen := g.w.Generation()
	if e := g.cur.Load(); e.gen == gen {
		return e.t
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	e := g.cur.Load()
	if e.gen == gen {
		return e.t
	}
	g.cur.Store(&genEntry{gen: gen, t: newNetHTTPTransport(g.w, g.cfg)})
	e.t.CloseIdleConnections()
	if len(g.retired) == maxRetired {
		g.retired = append(g.retired[:0], g.retired[1:]...)
	}
	g.retired = append(g.retired, e.t)
	return g.cur.Load().t
}

// RoundTrip implements http.RoundTripper.
func (g *genTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return g.current().RoundTrip(r)
}

// CloseIdleConnections closes every idle connection, old processes' too.
func (g *genTransport) CloseIdleConnections() {
	g.closeStale()
	g.current().CloseIdleConnections()
}

// closeStale closes the idle connections to the worker's earlier
// processes, and none to its current one.
func (g *genTransport) closeStale() {
	g.current()
	g.mu.Lock()
	retired := append([]*http.Transport(nil), g.retired...)
	g.mu.Unlock()
	for _, t := range retired {
		t.CloseIdleConnections()
	}
}

// newNetHTTPTransport returns the net/http.Transport for one worker: all of
// an h2c worker's requests, and those of an HTTP/1.1 worker that the lean
// path does not take (bodies, upgrades, Expect). It dials the worker's own
// address whatever the request URL says (so unix sockets need no special
// URL), never consults a proxy from the environment, never asks for
// compression (the client's Accept-Encoding passes through untouched), and
// keeps enough idle connections that a busy worker is not redialled per
// request. IdleConnTimeout is below the 5 s keep-alive timeout of uvicorn
// and hypercorn, so obsproxy closes an idle connection before the worker
// does and seldom sends on a connection the worker is closing.
func newNetHTTPTransport(w *lifecycle.Worker, cfg Config) *http.Transport {
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialWorker(ctx, d, w)
		},
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerWorker,
		IdleConnTimeout:       cfg.IdleConnTimeout,
		ResponseHeaderTimeout: cfg.ResponseTimeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		// WriteBufferSize and ReadBufferSize stay at net/http's 4 KiB: a
		// request head fits, and bodies bypass the reader's buffer because
		// ReverseProxy reads them into its own 32 KiB copy buffer (a
		// bufio.Reader hands a read larger than its buffer straight to the
		// connection). 32 KiB each cost 64 KiB per pooled worker
		// connection for no measured gain (docs/performance.md).
	}
	if w.H2C {
		// HTTP/2 without TLS and with prior knowledge (RFC 9113 section
		// 3.3), as hypercorn and granian speak it: only UnencryptedHTTP2.
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	return t
}

// CloseStale closes w's idle connections to processes other than its
// current one: a supervisor calls it when w's new process takes over, and
// while the old one drains, so that idle connections do not keep the old
// process from draining (its busy ones close as their requests end).
// Connections to the current process stay pooled. Safe for concurrent use.
func (h *Handler) CloseStale(w *lifecycle.Worker) {
	if w == nil || w.Index >= len(h.proxies) {
		return
	}
	rt := h.proxies[w.Index].Transport
	if st, ok := rt.(*streamTransport); ok {
		rt = st.rt
	}
	if h1, ok := rt.(*h1Transport); ok {
		h1.closeStale()
		rt = h1.fallback
	}
	if g, ok := rt.(*genTransport); ok {
		g.closeStale()
	}
}
