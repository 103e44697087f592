package proxy

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// newTransport returns the transport for one worker: for an HTTP/1.1
// worker the lean h1Transport in front of a tuned net/http.Transport, for an
// h2c worker the tuned net/http.Transport alone.
func newTransport(w *lifecycle.Worker, cfg Config) http.RoundTripper {
	t := newNetHTTPTransport(w, cfg)
	if w.H2C {
		return t
	}
	return newH1TransportFor(w, cfg, t)
}

// dialWorker dials w's current Endpoint (its address in static mode, its
// current process's in supervisor mode); with none, it fails at once with a
// dial error wrapping lifecycle.ErrNoProcess, which the proxy treats as a
// connect failure (retried on another worker).
func dialWorker(ctx context.Context, d *net.Dialer, w *lifecycle.Worker) (net.Conn, error) {
	c, ep, err := w.DialTracked(ctx, d)
	if err != nil || ep.Generation == 0 {
		return c, err
	}
	return &generationConn{Conn: c, w: w, gen: ep.Generation}, nil
}

// generationConn is a net/http.Transport connection to one process of a
// supervised worker. net/http gives no hook when it pools a connection, so
// the check is at the next request's first write: once the worker has moved
// on to another process, a write on a connection that has been idle fails
// before a byte is sent, which net/http.Transport answers by sending the
// request again on a new connection (its "nothing written" retry). A
// connection whose request is under way (its last write less than
// staleAfterIdle ago, e.g. a request body being streamed) keeps writing.
type generationConn struct {
	net.Conn
	w         *lifecycle.Worker
	gen       uint64
	lastWrite atomic.Int64 // unix nanoseconds
}

// staleAfterIdle is how long a generationConn of an old process must have
// written nothing before a write is taken as a new request's.
const staleAfterIdle = 50 * time.Millisecond

func (c *generationConn) Write(p []byte) (int, error) {
	now := time.Now().UnixNano()
	if !c.w.Current(c.gen) && now-c.lastWrite.Load() >= int64(staleAfterIdle) {
		c.Conn.Close()
		return 0, errStaleConn
	}
	c.lastWrite.Store(now)
	return c.Conn.Write(p)
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

// CloseIdle closes w's pooled idle connections: a supervisor calls it when
// w's new process takes over, so that the old process's idle connections do
// not keep it from draining (its busy ones close as their requests end).
// Safe for concurrent use.
func (h *Handler) CloseIdle(w *lifecycle.Worker) {
	if w == nil || w.Index >= len(h.proxies) {
		return
	}
	if t, ok := h.proxies[w.Index].Transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}
