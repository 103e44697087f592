package lifecycle

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/obsproxy/obsproxy/sockio"
)

// Endpoint is where one process of a worker listens: the address the proxy's
// transports and the prober dial. In static mode (OBSPROXY_UPSTREAMS) a
// worker has one Endpoint for ever, generation 0. In supervisor mode (spec
// section 8) every process obsproxy starts for the worker gets a new
// Endpoint with a higher Generation, so that a pooled connection knows which
// process it belongs to and is never reused once the worker moved on.
//
// An Endpoint is immutable once published; share it freely.
type Endpoint struct {
	// Network is "tcp" or "unix".
	Network string
	// Address is host:port for "tcp", the socket path for "unix".
	Address string
	// Generation counts the worker's processes: 0 for a static worker, 1
	// for the first process a supervisor starts, then 2, 3, … It never
	// goes back, so a connection made to generation g is stale as soon as
	// the worker's current generation differs.
	Generation uint64
	// PID is the process listening there; 0 when not known (static mode).
	PID int
	// Started is when the process was started; zero in static mode.
	Started time.Time

	conns atomic.Int64 // connections of DialTracked open now
}

// OpenConns returns how many connections made by DialTracked to this
// endpoint are open now: the proxy's, pooled ones included. When a process
// has been replaced, zero means it holds no request and no stream any more
// (spec section 8: it drains, then gets SIGTERM). Safe for concurrent use.
func (ep *Endpoint) OpenConns() int64 { return ep.conns.Load() }

// Endpoint returns the address of the worker's current process, or nil
// while it has none (a supervised worker between two processes). It is one
// atomic load: safe for concurrent use and allocation-free, so transports
// call it at every dial and every return of a connection to their pool.
func (w *Worker) Endpoint() *Endpoint { return w.endpoint.Load() }

// SetEndpoint publishes the address of the worker's new process and returns
// it, with the next Generation. A process supervisor calls it before it
// starts the process, so that the first probe already dials the new
// address. Safe for concurrent use.
func (w *Worker) SetEndpoint(network, address string, pid int, started time.Time) *Endpoint {
	ep := &Endpoint{Network: network, Address: address, Generation: w.generation.Add(1), PID: pid, Started: started}
	w.endpoint.Store(ep)
	return ep
}

// ClearEndpoint removes the worker's address, if it still is ep: the
// process behind it exited, and until the next one starts every dial fails
// at once (ErrNoProcess) instead of trying a dead socket. It reports whether
// ep was the current endpoint. Safe for concurrent use.
func (w *Worker) ClearEndpoint(ep *Endpoint) bool { return w.endpoint.CompareAndSwap(ep, nil) }

// Generation returns the current endpoint's Generation, or the last one
// published when the worker has no endpoint now. A connection of an older
// generation is stale.
func (w *Worker) Generation() uint64 { return w.generation.Load() }

// Current reports whether a connection made to generation gen may still be
// used: the worker has not moved on to another process since. Static
// workers are always at generation 0.
func (w *Worker) Current(gen uint64) bool { return w.generation.Load() == gen }

// ErrNoProcess is the error of a dial to a supervised worker that has no
// process right now (between an exit and the next start).
var ErrNoProcess = errors.New("worker has no running process")

// DialContext connects d to the worker's current Endpoint: its configured
// address in static mode, its current process's in supervisor mode. With no
// process it fails at once with a *net.OpError (Op "dial") wrapping
// ErrNoProcess, which callers count as a connect failure. Safe for
// concurrent use; it reads the endpoint once, so a connection made here
// belongs to one generation (Endpoint reports which).
func (w *Worker) DialContext(ctx context.Context, d *net.Dialer) (net.Conn, *Endpoint, error) {
	ep := w.Endpoint()
	if ep == nil {
		return nil, nil, &net.OpError{Op: "dial", Net: w.Network, Err: ErrNoProcess}
	}
	c, err := d.DialContext(ctx, ep.Network, ep.Address)
	return c, ep, err
}

// DialTracked is DialContext for the proxy's transports. The connection it
// returns reads and writes with raw socket I/O (package sockio) when it can,
// and one to a supervised process (Generation > 0) is counted in its
// Endpoint's OpenConns until it is closed, so that a supervisor can tell
// when a replaced process has nothing left in flight. Both are kept by a
// thin wrapper (a few allocations per connection, none per request) that
// keeps the raw file descriptor reachable (syscall.Conn).
func (w *Worker) DialTracked(ctx context.Context, d *net.Dialer) (net.Conn, *Endpoint, error) {
	c, ep, err := w.DialContext(ctx, d)
	if err != nil {
		return c, ep, err
	}
	tc := &trackedConn{}
	tc.Init(c)
	if ep.Generation > 0 {
		tc.ep = ep
		ep.conns.Add(1)
	}
	return tc, ep, nil
}

// trackedConn counts itself out of its endpoint's OpenConns (when ep is
// set) once, at the first Close; sockio.Conn gives it raw I/O.
type trackedConn struct {
	sockio.Conn
	ep     *Endpoint
	closed atomic.Bool
}

func (c *trackedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) && c.ep != nil {
		c.ep.conns.Add(-1)
	}
	return c.Conn.Close()
}

// SyscallConn returns the wrapped connection's raw connection, so that a
// liveness peek (MSG_PEEK) still reaches the socket.
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("connection has no raw file descriptor")
}
