package lifecycle

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Policy is a load-balancing policy (OBSPROXY_LB_POLICY, spec section 2).
type Policy int

const (
	// LeastInFlight picks the up worker with the fewest requests in flight;
	// ties are broken round-robin, so an idle pool is still spread evenly.
	LeastInFlight Policy = iota
	// RoundRobin picks up workers in turn, whatever their load.
	RoundRobin
)

// ParsePolicy maps least_inflight and round_robin to their Policy; any other
// value is an error.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "least_inflight":
		return LeastInFlight, nil
	case "round_robin":
		return RoundRobin, nil
	}
	return 0, fmt.Errorf("unknown load-balancing policy %q (want least_inflight or round_robin)", s)
}

// String returns the policy's configuration value.
func (p Policy) String() string {
	if p == RoundRobin {
		return "round_robin"
	}
	return "least_inflight"
}

// WorkerConfig is one worker of OBSPROXY_UPSTREAMS, already parsed.
type WorkerConfig struct {
	// Name is the worker label; required and unique in the pool.
	Name string
	// Network is "tcp" or "unix".
	Network string
	// Address is host:port for "tcp", the socket path for "unix".
	Address string
	// H2C selects HTTP/2 cleartext with prior knowledge (tcp only).
	H2C bool
}

// Config configures a Pool.
type Config struct {
	// Workers are the pool's workers, in configuration order. At least one.
	Workers []WorkerConfig
	// Policy is the load-balancing policy; zero is LeastInFlight.
	Policy Policy
	// InitialState is every worker's state before any probe; zero is
	// StateUnknown (no traffic until a probe says up). Set StateUp to send
	// traffic to every worker from the start.
	InitialState State
	// Rise and Fall are the consecutive serving / not serving probes that
	// take a worker up / down (OBSPROXY_HEALTH_RISE and _FALL); zero is 1.
	Rise, Fall int
	// MinUp is the number of up workers below which the pool counts as down
	// for its uptime (OBSPROXY_MIN_HEALTHY_WORKERS); zero is 1.
	MinUp int
	// EventLogSize is how many lifecycle events the pool keeps; zero is 256.
	EventLogSize int
	// OnEvent, when non-nil, is called with every lifecycle event as it
	// happens (obsproxy logs them). It runs with the pool's lock held: it
	// must return quickly and must not call back into the pool.
	OnEvent func(Event)
	// Now is the clock; nil is time.Now. Tests inject their own.
	Now func() time.Time
	// Supervised is supervisor mode (spec section 8): the workers have no
	// configured Address (a process supervisor publishes one per process
	// with Worker.SetEndpoint), and their process starts and exits come
	// only from ProcessStarted and ProcessExited: probes then decide
	// traffic alone, and the probe-based restart detection of spec section
	// 6 is off, so that nothing is counted twice.
	Supervised bool
}

// Pool is every configured worker and the policy that picks between them.
// Pick is safe for concurrent use and allocates nothing; the lifecycle
// methods (ObserveProbe, MarkDown, Status, …) share one mutex, which Pick
// never takes.
type Pool struct {
	workers []*Worker
	policy  Policy
	next    atomic.Uint64

	rise, fall, minUp int
	now               func() time.Time
	onEvent           func(Event)

	supervised bool
	changed    changed

	mu          sync.Mutex
	events      eventRing
	poolUpSince time.Time
}

// NewPool builds the pool. It fails on an empty worker list, a worker without
// a name or address, a duplicate name, or h2c on a unix socket.
func NewPool(cfg Config) (*Pool, error) {
	if len(cfg.Workers) == 0 {
		return nil, errors.New("creating pool: no workers")
	}
	p := &Pool{
		policy: cfg.Policy, workers: make([]*Worker, len(cfg.Workers)),
		rise: atLeast1(cfg.Rise), fall: atLeast1(cfg.Fall), minUp: atLeast1(cfg.MinUp),
		now: cfg.Now, onEvent: cfg.OnEvent, supervised: cfg.Supervised,
	}
	if p.now == nil {
		p.now = time.Now
	}
	size := cfg.EventLogSize
	if size <= 0 {
		size = 256
	}
	p.events = newEventRing(size)
	seen := make(map[string]bool, len(cfg.Workers))
	for i, wc := range cfg.Workers {
		switch {
		case wc.Name == "":
			return nil, fmt.Errorf("creating pool: worker %d has no name", i+1)
		case wc.Address == "" && !cfg.Supervised:
			return nil, fmt.Errorf("creating pool: worker %q has no address", wc.Name)
		case seen[wc.Name]:
			return nil, fmt.Errorf("creating pool: duplicate worker name %q", wc.Name)
		case wc.Network != "tcp" && wc.Network != "unix":
			return nil, fmt.Errorf("creating pool: worker %q: unknown network %q", wc.Name, wc.Network)
		case wc.H2C && wc.Network != "tcp":
			return nil, fmt.Errorf("creating pool: worker %q: h2c needs a tcp address", wc.Name)
		}
		seen[wc.Name] = true
		w := &Worker{Name: wc.Name, Network: wc.Network, Address: wc.Address, H2C: wc.H2C, Index: i}
		w.repl.limitHit = make(chan struct{}, 1)
		w.state.Store(int32(cfg.InitialState))
		if !cfg.Supervised {
			w.endpoint.Store(&Endpoint{Network: wc.Network, Address: wc.Address})
		}
		p.workers[i] = w
	}
	if cfg.InitialState == StateUp && !cfg.Supervised {
		now := p.now()
		for _, w := range p.workers {
			p.processStarted(w, now, now, 0) // counted, so that a later stop pairs up
		}
		p.updatePoolUp(now)
	}
	return p, nil
}

func atLeast1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// Workers returns the pool's workers in configuration order. The slice is
// shared: callers must not modify it.
func (p *Pool) Workers() []*Worker { return p.workers }

// Policy returns the pool's load-balancing policy.
func (p *Pool) Policy() Policy { return p.policy }

// Pick returns an up worker chosen by the pool's policy, or nil when no worker
// is up. See PickExcept.
func (p *Pool) Pick() *Worker { return p.PickExcept(nil, false) }

// PickExcept returns an up worker chosen by the pool's policy, skipping the
// workers whose Index bit is set in tried (bit i of tried[i/64]; nil skips
// none) and, when http1Only is set, h2c workers. It returns nil when no
// worker qualifies. It allocates nothing.
func (p *Pool) PickExcept(tried []uint64, http1Only bool) *Worker {
	return p.PickWhere(tried, http1Only, nil)
}

// PickWhere is PickExcept among the workers for which admit returns true
// (nil admits every worker): admission control passes a check of the
// worker's free slots, so that the policy chooses among the workers below
// their cap (spec section 10). admit is called more than once per worker
// and must not block; PickWhere allocates nothing itself.
//
// A worker whose current process has been sent its request limit (Spent,
// OBSPROXY_WORKER_MAX_REQUESTS, spec section 8) is not picked; the pick
// counts the request against the chosen worker's limit, so that concurrent
// picks never send a process more than its limit. A count may rarely be
// taken for a request that is then not sent (admission lost its slot
// race): a process is recycled a request early, never late. When only
// spent workers qualify, PickWhere returns nil: see PickSpent.
func (p *Pool) PickWhere(tried []uint64, http1Only bool, admit func(*Worker) bool) *Worker {
	for range 8 {
		w := p.pickOnce(tried, http1Only, admit, false)
		if w == nil || w.countRequest(false) {
			return w
		}
	}
	return nil
}

// PickSpent is PickExcept for a request that found every qualifying worker
// spent (PickWhere returned nil while SpentOnly is true) and waited for a
// replacement in vain: it picks among the spent workers too, counting past
// their limit, since no other process of the pool can take the request
// (spec section 8). Allocation-free.
func (p *Pool) PickSpent(tried []uint64, http1Only bool) *Worker {
	w := p.pickOnce(tried, http1Only, nil, true)
	if w != nil {
		w.countRequest(true)
	}
	return w
}

// SpentOnly reports whether an up worker qualifies for the request (as for
// PickExcept) but every one that does is spent: the request should wait for
// a replacement process (Changed) rather than fail.
func (p *Pool) SpentOnly(tried []uint64, http1Only bool) bool {
	spent := false
	for i, w := range p.workers {
		if !w.Up() || (http1Only && w.H2C) || IsTried(tried, i) {
			continue
		}
		if !w.Spent() {
			return false
		}
		spent = true
	}
	return spent
}

// pickOnce is one pick by the policy; spent workers qualify only with
// withSpent.
func (p *Pool) pickOnce(tried []uint64, http1Only bool, admit func(*Worker) bool, withSpent bool) *Worker {
	// Two passes: find the lowest load among the candidates (every load is
	// equal under RoundRobin) and how many share it, then take the k-th of
	// those, k turning with every pick. This keeps ties strictly
	// round-robin: a busy, down or excluded worker does not hand its share
	// to its neighbour.
	var first *Worker
	var minLoad int64
	ties := 0
	for i, w := range p.workers {
		if !w.Up() || (http1Only && w.H2C) || IsTried(tried, i) || (!withSpent && w.Spent()) || (admit != nil && !admit(w)) {
			continue
		}
		load := p.load(w)
		switch {
		case first == nil || load < minLoad:
			first, minLoad, ties = w, load, 1
		case load == minLoad:
			ties++
		}
	}
	if ties <= 1 {
		return first
	}
	k := int(p.next.Add(1) % uint64(ties))
	for i, w := range p.workers {
		if !w.Up() || (http1Only && w.H2C) || IsTried(tried, i) || (!withSpent && w.Spent()) || p.load(w) != minLoad || (admit != nil && !admit(w)) {
			continue
		}
		if k == 0 {
			return w
		}
		k--
	}
	return first // loads moved between the passes
}

// load is what the policy compares: the in-flight count under LeastInFlight,
// nothing under RoundRobin.
func (p *Pool) load(w *Worker) int64 {
	if p.policy == RoundRobin {
		return 0
	}
	return w.inFlight.Load()
}

// IsTried reports whether bit i is set in the bit set tried.
func IsTried(tried []uint64, i int) bool {
	return i/64 < len(tried) && tried[i/64]&(1<<(uint(i)%64)) != 0
}

// MarkTried sets bit i in the bit set tried, which must have room for it
// (len(tried) >= i/64+1; see TriedWords).
func MarkTried(tried []uint64, i int) { tried[i/64] |= 1 << (uint(i) % 64) }

// TriedWords returns the length of a bit set with room for every worker of
// the pool, for PickExcept.
func (p *Pool) TriedWords() int { return (len(p.workers) + 63) / 64 }
