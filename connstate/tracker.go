// Package connstate counts the public listener's client connections by
// http.ConnState, including upgraded (hijacked) connections, which
// http.Server forgets once it hands them over: a listener wrapper keeps them
// counted until they really close, and can close them on shutdown.
package connstate

import (
	"net"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obsproxy/obsproxy/internal/closeset"
	"github.com/obsproxy/obsproxy/sockio"
)

// The states a connection is counted in. They are the values of the `state`
// label of obsproxy_connections (spec section 6).
const (
	stateNew = iota
	stateActive
	stateIdle
	stateHijacked
	stateClosed
	numOpenStates = stateClosed
)

var stateNames = [numOpenStates]string{"new", "active", "idle", "hijacked"}

// Tracker counts open client connections per state. Use Listen to wrap the
// listener and ConnState as the http.Server's ConnState hook; both must be
// set for the counts to be right. A Tracker is safe for concurrent use; its
// per-request work (the active/idle transitions) is two atomic adds and
// allocates nothing. The zero value is not usable: call New.
type Tracker struct {
	accepted atomic.Uint64
	open     [numOpenStates]atomic.Int64

	hijacked closeset.Set[*Conn]

	// requests counts client requests by protocol (CountRequests);
	// handshakeErrors failed TLS handshakes.
	requests        [numProtocols]atomic.Uint64
	handshakeErrors atomic.Uint64

	descActive, descState, descAccepted, descRequests, descHandshakeErrors *prometheus.Desc
}

// New returns an empty Tracker.
func New() *Tracker {
	return &Tracker{
		descActive: prometheus.NewDesc("obsproxy_active_connections",
			"Client TCP connections open now, upgraded ones included.", nil, nil),
		descState: prometheus.NewDesc("obsproxy_connections",
			"Open client connections by http.ConnState (new, active, idle, hijacked).", []string{"state"}, nil),
		descAccepted: prometheus.NewDesc("obsproxy_connections_accepted_total",
			"Client connections accepted.", nil, nil),
		descRequests: prometheus.NewDesc("obsproxy_client_requests_total",
			"Client requests by protocol (HTTP/1.0, HTTP/1.1, HTTP/2.0).", []string{"protocol"}, nil),
		descHandshakeErrors: prometheus.NewDesc("obsproxy_tls_handshake_errors_total",
			"Failed TLS handshakes on the public listener, a plain HTTP request to it included.", nil, nil),
	}
}

// Listen wraps ln so that every accepted connection is counted until it is
// closed, by the server or, once hijacked, by whoever owns it then.
func (t *Tracker) Listen(ln net.Listener) net.Listener { return &listener{Listener: ln, t: t} }

// ConnState is the http.Server ConnState hook. Connections that did not come
// from a listener made by Listen are ignored. A *tls.Conn over a counted
// connection (a TLS listener wrapping the Listen listener) is counted as
// that connection; one that closes before its handshake finished counts as
// a failed handshake (obsproxy_tls_handshake_errors_total). An HTTP/2
// connection is one connection, active while any of its streams is.
func (t *Tracker) ConnState(c net.Conn, s http.ConnState) {
	raw, tlsConn := unwrapTLS(c)
	tc, ok := raw.(*Conn)
	if !ok {
		return
	}
	switch s {
	case http.StateNew:
		tc.move(stateNew)
	case http.StateActive:
		tc.move(stateActive)
	case http.StateIdle:
		tc.move(stateIdle)
	case http.StateHijacked:
		t.hijacked.Add(tc)
		tc.move(stateHijacked)
	case http.StateClosed:
		if tlsConn != nil {
			t.closedTLS(tlsConn)
		}
		tc.markClosed()
	}
}

// Active returns the number of client connections open now, hijacked ones
// included (obsproxy_active_connections).
func (t *Tracker) Active() int64 {
	var n int64
	for i := range t.open {
		n += t.open[i].Load()
	}
	return n
}

// Counts returns the open connections per state: new, active, idle, hijacked.
func (t *Tracker) Counts() (newConns, active, idle, hijacked int64) {
	return t.open[stateNew].Load(), t.open[stateActive].Load(), t.open[stateIdle].Load(), t.open[stateHijacked].Load()
}

// Accepted returns the number of connections accepted since start.
func (t *Tracker) Accepted() uint64 { return t.accepted.Load() }

// CloseHijacked closes every hijacked connection still open and returns how
// many it closed. Server.Shutdown does not close hijacked connections (its
// documentation says so), so shutdown calls this after it.
func (t *Tracker) CloseHijacked() int { return t.hijacked.CloseAll() }

// Describe implements prometheus.Collector.
func (t *Tracker) Describe(ch chan<- *prometheus.Desc) {
	ch <- t.descActive
	ch <- t.descState
	ch <- t.descAccepted
	ch <- t.descRequests
	ch <- t.descHandshakeErrors
}

// Collect implements prometheus.Collector.
func (t *Tracker) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(t.descActive, prometheus.GaugeValue, float64(t.Active()))
	for i, name := range stateNames {
		ch <- prometheus.MustNewConstMetric(t.descState, prometheus.GaugeValue, float64(t.open[i].Load()), name)
	}
	ch <- prometheus.MustNewConstMetric(t.descAccepted, prometheus.CounterValue, float64(t.accepted.Load()))
	for i, name := range protocolNames {
		ch <- prometheus.MustNewConstMetric(t.descRequests, prometheus.CounterValue, float64(t.requests[i].Load()), name)
	}
	ch <- prometheus.MustNewConstMetric(t.descHandshakeErrors, prometheus.CounterValue, float64(t.handshakeErrors.Load()))
}

type listener struct {
	net.Listener
	t *Tracker
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.t.accepted.Add(1)
	l.t.open[stateNew].Add(1)
	tc := &Conn{t: l.t}
	tc.Init(c)
	tc.state.Store(stateNew)
	return tc, nil
}

// Conn is an accepted client connection counted by its Tracker. It is what
// the http.Server and, after a hijack, the handler see. Close is safe to call
// more than once; the connection is uncounted on the first call. Read and
// Write use raw socket I/O (sockio.Conn) when the connection allows it.
type Conn struct {
	sockio.Conn
	t     *Tracker
	state atomic.Int32
}

// move moves the connection's count from its current state to s, unless it
// is already closed.
func (c *Conn) move(s int32) {
	for {
		old := c.state.Load()
		if old == stateClosed || old == s {
			return
		}
		if c.state.CompareAndSwap(old, s) {
			c.t.open[old].Add(-1)
			c.t.open[s].Add(1)
			return
		}
	}
}

// markClosed uncounts the connection once.
func (c *Conn) markClosed() {
	old := c.state.Swap(stateClosed)
	if old == stateClosed {
		return
	}
	c.t.open[old].Add(-1)
	if old == stateHijacked {
		c.t.hijacked.Remove(c)
	}
}

// Close closes the connection and uncounts it.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.markClosed()
	return err
}

// CloseWrite shuts down the writing side of the connection when the
// underlying connection supports it (TCP does), so that a proxied upgraded
// connection can half-close as httputil.ReverseProxy expects.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
