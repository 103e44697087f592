// Package lifecycle owns the pool of workers: their addresses, their state
// (unknown, up, down, draining) and the load-balancing choice between them.
//
// Probes (package healthgate) report through Pool.ObserveProbe, the proxy
// takes a worker it cannot reach out of traffic with Pool.MarkDown, and a
// process supervisor can report exact starts and exits through
// Pool.ProcessStarted and Pool.ProcessExited: one state machine, one event
// log, one set of counters for all three.
package lifecycle

import (
	"sync/atomic"
)

// State is a worker's place in its lifecycle. The names are the values of the
// `state` label of obsproxy_workers (spec section 6).
type State int32

const (
	// StateUnknown is a worker that has not been probed yet.
	StateUnknown State = iota
	// StateUp is a worker that receives traffic.
	StateUp
	// StateDown is a worker that receives no traffic until probes bring it back.
	StateDown
	// StateDraining is a worker that finishes its in-flight requests but takes no new ones.
	StateDraining
)

// NumStates is the number of States, for arrays indexed by State.
const NumStates = 4

// String returns the state's label value: unknown, up, down or draining.
func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	case StateDraining:
		return "draining"
	default:
		return "unknown"
	}
}

// Worker is one upstream ASGI server process (uvicorn, hypercorn, granian)
// with its own address. Its identity fields are set by NewPool and never
// change; its state and in-flight count are atomics, safe for concurrent use.
type Worker struct {
	// Name is the worker label of spec section 2: the configured name, else
	// host:port, else the socket path. It is the `worker` metric label.
	Name string
	// Network is "tcp" or "unix".
	Network string
	// Address is host:port for "tcp" and the socket path for "unix", as
	// configured; empty for a supervised worker, whose address changes with
	// every process (see Endpoint, which transports and probes dial).
	Address string
	// H2C is true for h2c:// workers, spoken to in HTTP/2 cleartext with prior
	// knowledge (RFC 9113 section 3.3). Such workers cannot take HTTP/1.1
	// upgrades (WebSocket), so the pool never picks them for one.
	H2C bool
	// Index is the worker's position in the pool, from 0.
	Index int

	state    atomic.Int32
	inFlight atomic.Int64
	rec      record // guarded by the pool's mu

	// endpoint is the current process's address (see Endpoint); nil while
	// a supervised worker has no process. generation is the last
	// Generation published.
	endpoint   atomic.Pointer[Endpoint]
	generation atomic.Uint64

	repl replacement // the current process's request limit, the stuck mark
}

// Supervised reports whether a supervisor runs the worker's processes
// (no configured Address: each process publishes its own Endpoint).
func (w *Worker) Supervised() bool { return w.Address == "" }

// State returns the worker's current state.
func (w *Worker) State() State { return State(w.state.Load()) }

// SetState sets the worker's state and returns the previous one.
func (w *Worker) SetState(s State) State { return State(w.state.Swap(int32(s))) }

// Up reports whether the worker receives traffic.
func (w *Worker) Up() bool { return w.State() == StateUp }

// InFlight returns the number of requests sent to the worker whose response
// has not finished (streams excluded, see AddInFlight).
func (w *Worker) InFlight() int64 { return w.inFlight.Load() }

// AddInFlight adds delta (+1 when a request is sent, -1 when its response has
// finished or it became a stream) to the in-flight count that the
// least_inflight policy reads. It allocates nothing.
func (w *Worker) AddInFlight(delta int64) { w.inFlight.Add(delta) }
