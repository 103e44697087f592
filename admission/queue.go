// Package admission owns admission control (spec section 10): a cap on the
// requests in flight to each worker, and one FIFO queue in which requests
// wait for a free slot when every up worker is at its cap or none is up.
//
// The proxy asks a Queue for a worker at pick time (Acquire) and gives the
// slot back when the request leaves flight (Release): its response
// finished, it failed, or it became a stream. A slot that frees goes to the
// oldest waiting request that can use it, the hand-off HAProxy makes with a
// per-server maxconn and its queue.
//
// The uncontended path (nobody waits and a worker has a free slot) takes no
// lock and allocates nothing: a compare-and-swap on the worker's slot count.
// Only a request that has to wait takes the queue's mutex and allocates its
// place in the line.
package admission

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// Outcome is what Acquire decided for a request.
type Outcome int

const (
	// Admitted: the request holds a slot on the returned worker and must
	// give it back with Release.
	Admitted Outcome = iota
	// Full: the queue already held Config.Size requests (reason "full").
	Full
	// TimedOut: the request waited Config.Timeout without a slot (reason
	// "timeout").
	TimedOut
	// Canceled: the request's context ended while it waited (the client
	// left); nothing is to be sent to a worker.
	Canceled
	// NoWorker: no worker could ever take the request (every worker was
	// tried already, or an upgrade found only h2c workers); waiting would
	// not help.
	NoWorker
)

// String returns the outcome's name; for Full and TimedOut it is the
// `reason` label of obsproxy_queue_rejected_total.
func (o Outcome) String() string {
	switch o {
	case Admitted:
		return "admitted"
	case Full:
		return "full"
	case TimedOut:
		return "timeout"
	case Canceled:
		return "canceled"
	default:
		return "no_worker"
	}
}

// DefaultWaitBuckets are the queue wait histogram's upper bounds in seconds,
// from 1 ms to 30 s (past the default 10 s queue timeout).
var DefaultWaitBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Config configures a Queue.
type Config struct {
	// Pool is the worker pool whose policy picks among the workers with a
	// free slot; required.
	Pool *lifecycle.Pool
	// MaxInFlight is the cap on requests in flight per worker
	// (OBSPROXY_WORKER_MAX_IN_FLIGHT); zero means no cap, and the proxy
	// then does not consult the Queue at all. Negative is an error.
	MaxInFlight int
	// Size is how many requests may wait at once (OBSPROXY_QUEUE_SIZE);
	// zero means none may: a request that finds every worker at its cap is
	// rejected at once. Negative is an error.
	Size int
	// Timeout is the longest a request waits (OBSPROXY_QUEUE_TIMEOUT);
	// required (> 0) when MaxInFlight is set.
	Timeout time.Duration
	// WaitBuckets are the obsproxy_queue_wait_seconds bounds in seconds;
	// nil means DefaultWaitBuckets.
	WaitBuckets []float64
}

// slot is one worker's count of held slots, alone on its cache line so
// that workers do not slow each other down.
type slot struct {
	n atomic.Int64
	_ [56]byte
}

// Queue is admission control over one pool: per-worker slot counts and the
// FIFO line of waiting requests. It implements prometheus.Collector for the
// metrics of spec section 10. It is safe for concurrent use.
type Queue struct {
	pool    *lifecycle.Pool
	max     int64
	size    int
	timeout time.Duration
	slots   []slot
	hasRoom func(*lifecycle.Worker) bool // bound once, so picking allocates nothing

	// waiting mirrors the length of the line (written under mu, read
	// without it): Acquire's fast path and Release read it to know whether
	// anyone waits.
	waiting atomic.Int64

	mu         sync.Mutex
	head, tail *waiter // the line, oldest first

	rejected [2]atomic.Uint64 // Full-1, TimedOut-1
	wait     prometheus.Histogram
	descs    descs
}

// waiter is one request's place in the line. Its fields but ready are
// guarded by the queue's mu.
type waiter struct {
	tried      []uint64 // workers not to use (read only while queued)
	http1Only  bool
	since      time.Time
	deadline   time.Time // since + the queue timeout: past it, no slot is handed over
	queued     bool
	prev, next *waiter
	// ready receives the worker whose slot was handed to this waiter, or
	// nil when the line passed it over because its deadline had passed (its
	// timer had not fired yet); it has room for one, so neither blocks.
	ready chan *lifecycle.Worker
}

// New builds a Queue over cfg.Pool. It fails on a missing pool, a negative
// cap or size, or a cap without a positive timeout.
func New(cfg Config) (*Queue, error) {
	switch {
	case cfg.Pool == nil:
		return nil, errors.New("creating admission queue: no pool")
	case cfg.MaxInFlight < 0:
		return nil, errors.New("creating admission queue: negative max in flight")
	case cfg.Size < 0:
		return nil, errors.New("creating admission queue: negative size")
	case cfg.MaxInFlight > 0 && cfg.Timeout <= 0:
		return nil, errors.New("creating admission queue: a cap needs a positive timeout")
	}
	if cfg.WaitBuckets == nil {
		cfg.WaitBuckets = DefaultWaitBuckets
	}
	q := &Queue{
		pool: cfg.Pool, max: int64(cfg.MaxInFlight), size: cfg.Size, timeout: cfg.Timeout,
		slots: make([]slot, len(cfg.Pool.Workers())),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "obsproxy_queue_wait_seconds",
			Help:    "Time waited in the admission queue by requests that then went to a worker, in seconds.",
			Buckets: cfg.WaitBuckets,
		}),
		descs: newDescs(),
	}
	q.hasRoom = q.room
	return q, nil
}

// Capped reports whether a cap is set (MaxInFlight > 0). Without one the
// proxy picks workers as before and never calls Acquire.
func (q *Queue) Capped() bool { return q != nil && q.max > 0 }

// MaxInFlight returns the cap (0: none).
func (q *Queue) MaxInFlight() int { return int(q.max) }

// room reports whether w has a free slot.
func (q *Queue) room(w *lifecycle.Worker) bool { return q.slots[w.Index].n.Load() < q.max }

// Acquire returns an up worker below its cap, chosen by the pool's policy
// among those not set in tried (a bit set as for lifecycle.Pool.PickExcept)
// and, with http1Only, not h2c; the caller then holds one slot on it and
// must Release it exactly once. When nobody waits and such a worker exists,
// it returns at once without locking or allocating. Otherwise the request
// joins the end of the line and waits until a slot is handed to it
// (Admitted), the line is full (Full, at once), Config.Timeout passes
// (TimedOut), or ctx ends (Canceled). NoWorker means no worker could ever
// take it (every candidate was tried), so it does not wait.
//
// A slot handed over in the same instant as the timeout fires is used, not
// lost: the request is admitted. No slot is handed to a request that has
// waited longer than Config.Timeout, even if its timer is late. tried must
// not change until Acquire returns.
func (q *Queue) Acquire(ctx context.Context, tried []uint64, http1Only bool) (*lifecycle.Worker, Outcome) {
	if q.waiting.Load() == 0 {
		// Nobody waits: a free slot now is this request's (FIFO holds,
		// since a request that finds a waiter queues behind it).
		if w := q.take(tried, http1Only); w != nil {
			return w, Admitted
		}
	}
	if !q.candidate(tried, http1Only) {
		return nil, NoWorker
	}
	return q.await(ctx, tried, http1Only)
}

// take picks a worker with a free slot and takes the slot, or returns nil.
// A lost compare-and-swap means another request changed the count: pick
// again, a bounded number of times. Giving up is safe: a releaser that
// changed the count dispatches to the line after it.
func (q *Queue) take(tried []uint64, http1Only bool) *lifecycle.Worker {
	for range 16 {
		w := q.pool.PickWhere(tried, http1Only, q.hasRoom)
		if w == nil {
			return nil
		}
		c := &q.slots[w.Index].n
		if n := c.Load(); n < q.max && c.CompareAndSwap(n, n+1) {
			return w
		}
	}
	return nil
}

// candidate reports whether some worker, whatever its state, could take a
// request with this tried set.
func (q *Queue) candidate(tried []uint64, http1Only bool) bool {
	for i, w := range q.pool.Workers() {
		if !lifecycle.IsTried(tried, i) && !(http1Only && w.H2C) {
			return true
		}
	}
	return false
}

// await puts the request at the end of the line and waits for a slot.
func (q *Queue) await(ctx context.Context, tried []uint64, http1Only bool) (*lifecycle.Worker, Outcome) {
	now := time.Now()
	wt := &waiter{tried: tried, http1Only: http1Only, since: now, deadline: now.Add(q.timeout), ready: make(chan *lifecycle.Worker, 1)}
	q.mu.Lock()
	if q.waiting.Load() >= int64(q.size) {
		q.mu.Unlock()
		q.rejected[Full-1].Add(1)
		return nil, Full
	}
	q.push(wt)
	// A slot may have freed between the fast path and now, with its
	// releaser seeing nobody waiting: look again, with this request in
	// the line. (Release lowers the count before it reads waiting; we
	// raised waiting before we read the counts: one of the two sees the
	// other.)
	q.dispatchLocked()
	q.mu.Unlock()

	timer := time.NewTimer(q.timeout)
	defer timer.Stop()
	var out Outcome
	select {
	case w := <-wt.ready:
		if w == nil { // passed over: it had waited out the timeout
			q.rejected[TimedOut-1].Add(1)
			return nil, TimedOut
		}
		q.wait.Observe(time.Since(wt.since).Seconds())
		return w, Admitted
	case <-timer.C:
		out = TimedOut
	case <-ctx.Done():
		out = Canceled
	}
	q.mu.Lock()
	if wt.queued {
		q.remove(wt)
		q.mu.Unlock()
		if out == TimedOut {
			q.rejected[TimedOut-1].Add(1)
		}
		return nil, out
	}
	q.mu.Unlock()
	// The line dealt with it as the wait ended: a slot handed over, or
	// nil (passed over, deadline gone), is in the channel.
	w := <-wt.ready
	if w == nil {
		if out == TimedOut {
			q.rejected[TimedOut-1].Add(1)
		}
		return nil, out
	}
	if out == Canceled {
		// Nobody will use it: on to the next in line.
		q.Release(w)
		return nil, Canceled
	}
	q.wait.Observe(time.Since(wt.since).Seconds())
	return w, Admitted
}

// Release gives back a slot on w taken by Acquire, and hands it to the
// oldest waiting request that can use it. It takes no lock when nobody
// waits. Each Admitted Acquire must be matched by exactly one Release.
func (q *Queue) Release(w *lifecycle.Worker) {
	q.slots[w.Index].n.Add(-1)
	if q.waiting.Load() > 0 {
		q.dispatch()
	}
}

// Kick hands free slots to waiting requests; call it when a worker comes
// up (lifecycle.EventUp), since no Release announces that capacity. It
// takes the queue's lock only when someone waits, and never the pool's.
func (q *Queue) Kick() {
	if q.Capped() && q.waiting.Load() > 0 {
		q.dispatch()
	}
}

func (q *Queue) dispatch() {
	q.mu.Lock()
	q.dispatchLocked()
	q.mu.Unlock()
}

// dispatchLocked hands free slots to the line in order. A waiter that
// cannot use any free slot (its tried set excludes them) stays and lets
// those behind it go; an unrestricted waiter that finds none means there is
// none, and dispatch stops. A waiter whose deadline has passed gets no
// slot, even when its timer has not fired yet (timers run late on a busy
// CPU): it leaves the line as timed out, so that no request is admitted
// after waiting longer than the queue timeout (spec section 10).
func (q *Queue) dispatchLocked() {
	now := time.Now()
	for wt := q.head; wt != nil; {
		next := wt.next
		if !now.Before(wt.deadline) {
			q.remove(wt)
			wt.ready <- nil
		} else if w := q.take(wt.tried, wt.http1Only); w != nil {
			q.remove(wt)
			wt.ready <- w
		} else if !wt.http1Only && !anySet(wt.tried) {
			return
		}
		wt = next
	}
}

func anySet(bits []uint64) bool {
	for _, b := range bits {
		if b != 0 {
			return true
		}
	}
	return false
}

func (q *Queue) push(wt *waiter) {
	wt.prev, wt.next, wt.queued = q.tail, nil, true
	if q.tail != nil {
		q.tail.next = wt
	} else {
		q.head = wt
	}
	q.tail = wt
	q.waiting.Add(1)
}

func (q *Queue) remove(wt *waiter) {
	if wt.prev != nil {
		wt.prev.next = wt.next
	} else {
		q.head = wt.next
	}
	if wt.next != nil {
		wt.next.prev = wt.prev
	} else {
		q.tail = wt.prev
	}
	wt.prev, wt.next, wt.queued = nil, nil, false
	q.waiting.Add(-1)
}

// Depth returns the number of requests waiting now (obsproxy_queue_depth).
func (q *Queue) Depth() int64 { return q.waiting.Load() }

// OldestWait returns how long the oldest waiting request has waited at
// now, 0 when none waits.
func (q *Queue) OldestWait(now time.Time) time.Duration {
	if q.waiting.Load() == 0 {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == nil {
		return 0
	}
	return max(0, now.Sub(q.head.since))
}

// InUse returns the slots held on the worker with index i (its requests in
// flight as admission control counts them); 0 without a cap.
func (q *Queue) InUse(i int) int64 {
	if !q.Capped() || i < 0 || i >= len(q.slots) {
		return 0
	}
	return q.slots[i].n.Load()
}

// Rejected returns the requests answered 503 overloaded because the line
// was full and because they waited too long.
func (q *Queue) Rejected() (full, timeout uint64) {
	return q.rejected[Full-1].Load(), q.rejected[TimedOut-1].Load()
}
