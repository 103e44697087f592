package lifecycle

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Event kinds of a supervised worker's replacement (spec section 8: rolling
// restarts and recycling). Reload events are pool events (empty Worker).
const (
	// EventReplacing: a replacement process is starting beside the
	// worker's current one (Reason: why: reload, max_requests, max_rss,
	// max_lifetime).
	EventReplacing = "replacing"
	// EventReplaced: the replacement serves and takes the worker's new
	// requests; the old process drains (Reason: "pid 41 → pid 42").
	EventReplaced = "replaced"
	// EventReplaceFailed: the replacement did not serve in time; the old
	// process keeps serving (Reason: why).
	EventReplaceFailed = "replace_failed"
	// EventReload: a rolling restart began, succeeded or failed (Reason:
	// "started", "succeeded", or why it stopped).
	EventReload = "reload"
)

// replacement is a worker's per-process request limit (spec section 8,
// OBSPROXY_WORKER_MAX_REQUESTS) and its killed-process records. The request
// path reads the limit's atomics without a lock; the kill records are read
// under killMu only by a failed exchange, after a kill.
type replacement struct {
	limit    atomic.Int64  // requests the current process may be sent; 0: no limit
	sent     atomic.Int64  // requests sent to the current process, counted while limit > 0
	limitHit chan struct{} // one token when sent reaches limit

	killed   atomic.Bool // a process of the worker was ever killed (MarkKilled): the fast path of HeldByKilled
	killMu   sync.Mutex
	kills    [4]killRecord // the last kills, oldest overwritten first
	nextKill int
}

// killRecord is one MarkKilled: the process's Endpoint generation and when,
// in unix ns.
type killRecord struct {
	gen uint64
	at  int64
}

// Spent reports whether the worker's current process has been sent its
// request limit: it is then sent no more while another worker can take the
// request (see PickWhere). Allocation-free; safe for concurrent use.
func (w *Worker) Spent() bool {
	l := w.repl.limit.Load()
	return l > 0 && w.repl.sent.Load() >= l
}

// countRequest counts one request sent to the worker's current process
// against its limit. It fails, counting nothing, when the limit is already
// reached, unless force is set (no other worker could take the request).
// The request that reaches the limit exactly posts LimitReached. A
// compare-and-swap loop, so that concurrent picks never overshoot.
func (w *Worker) countRequest(force bool) bool {
	for {
		l := w.repl.limit.Load()
		if l <= 0 {
			return true
		}
		n := w.repl.sent.Load()
		if n >= l && !force {
			return false
		}
		if w.repl.sent.CompareAndSwap(n, n+1) {
			if n+1 == l {
				select {
				case w.repl.limitHit <- struct{}{}:
				default:
				}
			}
			return true
		}
	}
}

// SentToProcess returns the requests counted against the current process's
// limit (0 while no limit is set).
func (w *Worker) SentToProcess() int64 { return w.repl.sent.Load() }

// LimitReached receives a token when the worker's current process has been
// sent its request limit (SetRequestLimit): the supervisor then starts its
// replacement at once.
func (w *Worker) LimitReached() <-chan struct{} { return w.repl.limitHit }

// MarkKilled records that the worker's process of Endpoint generation gen
// is killed with SIGKILL at at while it may hold requests, before the
// signal is sent: as stuck (spec section 8), or a replaced process still
// busy at the end of its stop timeout (its event loop may be blocked just
// the same). A request it held fails with 502 and is never sent again,
// neither to another worker nor on a fresh connection to this one, so that
// a request that blocks workers cannot kill them one after another. The
// last four kills are remembered. Safe for concurrent use.
func (w *Worker) MarkKilled(gen uint64, at time.Time) {
	r := &w.repl
	r.killMu.Lock()
	r.kills[r.nextKill] = killRecord{gen: gen, at: at.UnixNano()}
	r.nextKill = (r.nextKill + 1) % len(r.kills)
	r.killMu.Unlock()
	r.killed.Store(true)
}

// HeldByKilled reports whether a request sent at sent, while the worker's
// current Endpoint generation was gen, may have been held by a process
// killed afterwards (see MarkKilled): it must fail, not be retried. A
// request recorded at generation gen went to that process or a later one
// (transports never use an older one), so a kill of generation k counts
// for it when gen <= k: a request sent to a replacement is still retried
// when the process it replaced is killed. Allocation-free; lock-free until
// a process of the worker has been killed; safe for concurrent use.
func (w *Worker) HeldByKilled(gen uint64, sent time.Time) bool {
	r := &w.repl
	if !r.killed.Load() {
		return false
	}
	ns := sent.UnixNano()
	r.killMu.Lock()
	defer r.killMu.Unlock()
	for _, k := range r.kills {
		if k.at != 0 && gen <= k.gen && ns <= k.at {
			return true
		}
	}
	return false
}

// changed is a broadcast: a channel closed, and replaced, whenever a worker
// may take requests it could not take before.
type changed struct {
	mu sync.Mutex
	ch chan struct{}
}

func (c *changed) wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

func (c *changed) notify() {
	c.mu.Lock()
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
	c.mu.Unlock()
}

// Changed returns a channel closed the next time a worker may take requests
// it could not take before: it came up, or its process was replaced or its
// request limit lifted. A request that found every worker spent waits on it
// (see PickSpent). Safe for concurrent use.
func (p *Pool) Changed() <-chan struct{} { return p.changed.wait() }

// SetRequestLimit gives w's current process a request limit of n (0: none)
// and starts its count from zero. A supervisor calls it when a process
// starts taking w's requests, and with 0 when a replacement failed, so that
// the old process serves on. Safe for concurrent use.
func (p *Pool) SetRequestLimit(w *Worker, n int64) {
	// The count starts over before the limit changes, and the limit is
	// never cleared on the way: a pick that saw no limit would count
	// nothing, and the new process could be sent one request past its own.
	// A pick between the two stores counts against the new process (its
	// address is published first), under the previous limit.
	w.repl.sent.Store(0)
	select {
	case <-w.repl.limitHit: // a token of the previous process
	default:
	}
	w.repl.limit.Store(max(n, 0))
	p.changed.notify()
}

// Replaced records that w's new process, pid, started at started, now takes
// w's new requests and the previous one drains: an EventReplaced with why
// (reload, max_requests, …). The request limit starts again at limit, and
// the probe-timeout streak that the stuck-worker check reads starts over.
// Safe for concurrent use.
func (p *Pool) Replaced(w *Worker, oldPID, pid int, started time.Time, why string, limit int64) {
	// The new count first: the event wakes requests waiting for a worker.
	p.SetRequestLimit(w, limit)
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &w.rec
	r.pid, r.startedAt, r.hasUptime, r.running = pid, started, false, true
	r.timeoutSince = time.Time{}
	p.record(p.now(), w.Name, EventReplaced, "pid "+strconv.Itoa(oldPID)+" → pid "+strconv.Itoa(pid)+" ("+why+")")
}

// OldProcessExited records the exit of a process of w that no longer took
// new requests (it was replaced): one stop, with reason in the event log,
// and no change to w's state, which its new process decides. Safe for
// concurrent use.
func (p *Pool) OldProcessExited(w *Worker, at time.Time, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.rec.stopped++
	p.record(at, w.Name, EventStopped, reason)
}

// Note records a supervisor's event of kind (EventReplacing,
// EventReplaceFailed, EventReload) for w, or for the pool when w is nil.
// Safe for concurrent use.
func (p *Pool) Note(w *Worker, kind, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := ""
	if w != nil {
		name = w.Name
	}
	p.record(p.now(), name, kind, reason)
}

// ProbesTimedOutSince returns when the run of timed-out probes of w's
// current process began (the start of the first of them), or the zero time
// when its last probe did not time out: the stuck-worker signal of spec
// section 8. Safe for concurrent use.
func (p *Pool) ProbesTimedOutSince(w *Worker) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.rec.timeoutSince
}
