package lifecycle

import (
	"encoding/json"
	"strconv"
	"time"
)

// Health is a worker's verdict about itself, from its last probe (spec
// section 3). The names are the values of the `result` label of
// obsproxy_probes_total.
type Health int32

const (
	// HealthUnknown: not probed yet.
	HealthUnknown Health = iota
	// Healthy: the worker and its dependencies are fine.
	Healthy
	// Degraded: the worker serves, but some non-critical dependency fails.
	Degraded
	// Unhealthy: the worker cannot serve: it said so, answered with an
	// error, or did not answer.
	Unhealthy
)

// String returns unknown, healthy, degraded or unhealthy.
func (h Health) String() string {
	switch h {
	case Healthy:
		return "healthy"
	case Degraded:
		return "degraded"
	case Unhealthy:
		return "unhealthy"
	default:
		return "unknown"
	}
}

// Serving reports whether a worker with this verdict may receive traffic:
// healthy or degraded (spec section 3).
func (h Health) Serving() bool { return h == Healthy || h == Degraded }

// ProbeResult is the outcome of one probe of a worker, as the prober
// (package healthgate) reports it to Pool.ObserveProbe.
type ProbeResult struct {
	// At is when the probe finished.
	At time.Time
	// Latency is how long the probe took.
	Latency time.Duration
	// Health is the verdict: Healthy, Degraded or Unhealthy.
	Health Health
	// Answered is true when the worker sent an HTTP response, whatever its
	// status: its process runs.
	Answered bool
	// Refused is true when nothing listens at the worker's address
	// (connection refused, socket file missing): its process is not
	// running. A timeout sets neither Answered nor Refused: a hung process
	// is still a process.
	Refused bool
	// TimedOut is true when the probe got no answer within its timeout:
	// with requests in flight, the sign of a blocked event loop (spec
	// section 8, OBSPROXY_WORKER_STUCK_TIMEOUT).
	TimedOut bool
	// Uptime is the worker's reported uptime_seconds; valid when HasUptime.
	Uptime    float64
	HasUptime bool
	// PID is the worker's reported process id; 0 when it gave none.
	PID int
	// Detail says what the verdict rests on ("status 503", "timeout",
	// "reports unhealthy", an error text). Admin plane and verbose /health
	// only: it may carry addresses.
	Detail string
	// Checks is the worker's own "checks" object, verbatim (admin plane and
	// verbose /health only); nil when it gave none.
	Checks json.RawMessage
}

// restartSlack is how far a worker's reported uptime must go backwards, or
// fall short of what the previous answer predicts, before obsproxy concludes
// that the process restarted in between. It absorbs the start-up skew
// between the processes of one multi-process listener (uvicorn --workers N
// behind one port, answering probes in turn), whose uptimes are nearly
// equal, and the gap between when a worker computes its uptime and when
// obsproxy reads the answer.
const restartSlack = time.Second

// record is what the pool knows about one worker beyond its atomic state and
// in-flight count. The pool's mutex guards it.
type record struct {
	health     Health
	good, bad  int // consecutive serving / not serving probes
	running    bool
	pid        int
	hasUptime  bool
	uptime     float64   // last reported uptime_seconds
	uptimeAt   time.Time // when it was reported
	startedAt  time.Time // when the running process started, as best known
	started    uint64
	stopped    uint64
	lastProbe  time.Time
	latency    time.Duration
	answered   bool // the last probe got an HTTP answer
	detail     string
	checks     json.RawMessage
	downReason string
	// timeoutSince is when the current run of timed-out probes began (the
	// first one's start); zero when the last probe did not time out.
	timeoutSince time.Time
}

// WorkerStatus is a copy of one worker's lifecycle at one moment, for
// /health, the admin plane and the metrics.
type WorkerStatus struct {
	Name    string
	Network string
	Address string
	State   State
	// Health is the last probe's verdict.
	Health Health
	// Running is true while the worker's process is known to run: it
	// answered its last probe, or a timeout left that unsettled.
	Running bool
	// Uptime is how long the process has run: its own reported uptime
	// extrapolated to now when it gives one, else since obsproxy saw it
	// start. Zero while not running.
	Uptime time.Duration
	// Started and Stopped count the process's starts and stops (spec
	// section 6: obsproxy_worker_started_total / _stopped_total).
	Started, Stopped uint64
	// PID is the last reported process id, 0 when unknown.
	PID int
	// LastProbe is when the last probe finished; zero before the first.
	LastProbe time.Time
	// Latency is the last probe's duration.
	Latency time.Duration
	// Answered is true when the last probe got an HTTP response.
	Answered bool
	// Detail and Checks are the last probe's (see ProbeResult); admin only.
	Detail string
	Checks json.RawMessage
	// DownReason says why the worker is down; empty while up.
	DownReason string
	// InFlight is the number of requests in flight to the worker.
	InFlight int64
}

// PoolStatus is a copy of the pool's lifecycle at one moment.
type PoolStatus struct {
	// Workers in configuration order.
	Workers []WorkerStatus
	// Up is how many workers are up; Total how many there are.
	Up, Total int
	// MinUp is the pool's minimum of up workers (OBSPROXY_MIN_HEALTHY_WORKERS).
	MinUp int
	// Uptime is how long the pool has had at least MinUp workers up
	// without a break; zero while it has not.
	Uptime time.Duration
	// At is when the copy was taken.
	At time.Time
}

// Status returns a copy of every worker's lifecycle and the pool's. It is
// safe for concurrent use; it holds the pool's lock only while copying.
func (p *Pool) Status() PoolStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	st := PoolStatus{Workers: make([]WorkerStatus, len(p.workers)), Total: len(p.workers), MinUp: p.minUp, At: now}
	for i, w := range p.workers {
		r := &w.rec
		s := w.State()
		if s == StateUp {
			st.Up++
		}
		addr := w.Address
		if ep := w.Endpoint(); addr == "" && ep != nil {
			addr = ep.Address
		}
		st.Workers[i] = WorkerStatus{
			Name: w.Name, Network: w.Network, Address: addr, State: s,
			Health: r.health, Running: r.running, Uptime: r.uptimeNow(now),
			Started: r.started, Stopped: r.stopped, PID: r.pid,
			LastProbe: r.lastProbe, Latency: r.latency, Answered: r.answered,
			Detail: r.detail, Checks: r.checks, DownReason: r.downReason,
			InFlight: w.InFlight(),
		}
	}
	st.Uptime = p.poolUptime(now)
	return st
}

// uptimeNow is the process's uptime at now (zero while not running).
func (r *record) uptimeNow(now time.Time) time.Duration {
	if !r.running {
		return 0
	}
	if r.hasUptime {
		return time.Duration(r.uptime*float64(time.Second)) + now.Sub(r.uptimeAt)
	}
	return now.Sub(r.startedAt)
}

// Events returns the kept lifecycle events (the newest Config.EventLogSize),
// oldest first, in a new slice. Safe for concurrent use.
func (p *Pool) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.events.list()
}

// ObserveProbe applies one probe's result to w, following spec sections 3
// and 6:
//
//   - Traffic state: a worker not up (unknown or down) becomes up after
//     Config.Rise consecutive serving verdicts (healthy or degraded); an up
//     worker becomes down after Config.Fall consecutive other verdicts. A
//     worker never seen up becomes down at its first bad verdict. A draining
//     worker is left to whoever drains it.
//   - Process: an answer after none (or after a refusal) is a start; a
//     refusal after an answer is a stop; between two answers, a reported
//     uptime_seconds that went backwards, or a changed pid from a younger
//     process, is a restart, counted as one stop and one start (see
//     restartReason).
//
// It is safe for concurrent use.
func (p *Pool) ObserveProbe(w *Worker, res ProbeResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := &w.rec
	at := res.At
	r.lastProbe, r.latency, r.answered = at, res.Latency, res.Answered
	r.health, r.detail, r.checks = res.Health, res.Detail, res.Checks
	switch {
	case !res.TimedOut:
		r.timeoutSince = time.Time{}
	case r.timeoutSince.IsZero():
		r.timeoutSince = at.Add(-res.Latency)
	}

	switch {
	case p.supervised:
		// The supervisor reports starts and exits exactly.
	case res.Refused:
		if r.running {
			reason := res.Detail // "connection refused", "no socket"
			if reason == "" {
				reason = "connection refused"
			}
			p.processStopped(w, at, reason)
		}
	case res.Answered:
		restart := ""
		if r.running {
			restart = restartReason(r, res)
		}
		startedAt := at
		if res.HasUptime {
			startedAt = at.Add(-time.Duration(res.Uptime * float64(time.Second)))
		}
		switch {
		case restart != "":
			r.stopped++
			r.started++
			r.startedAt = startedAt
			p.record(at, w.Name, EventRestarted, restart)
		case !r.running:
			p.processStarted(w, startedAt, at, res.PID)
		}
		if res.PID != 0 {
			r.pid = res.PID
		}
		r.hasUptime, r.uptime, r.uptimeAt = res.HasUptime, res.Uptime, at
	}

	if res.Health.Serving() {
		r.good++
		r.bad = 0
	} else {
		r.bad++
		r.good = 0
	}
	switch w.State() {
	case StateUnknown, StateDown:
		if r.good >= p.rise {
			p.setState(w, StateUp, at, res.Health.String())
		} else if r.bad > 0 && w.State() == StateUnknown {
			p.setState(w, StateDown, at, downReason(res))
		}
	case StateUp:
		if r.bad >= p.fall {
			p.setState(w, StateDown, at, downReason(res))
		}
	}
}

// restartReason says why res cannot come from the process that gave the
// previous answer, or returns "" when it can:
//
//   - "uptime reset": both answers report uptime_seconds and it went
//     backwards by more than restartSlack;
//   - "pid changed": the pid changed and, when both answers report
//     uptime_seconds, the new one also falls short of the previous one plus
//     the time between the answers by more than restartSlack plus this
//     probe's latency: a younger process. This catches a quick restart of a
//     young worker, whose uptime need not go backwards, while a changed pid
//     with an uptime that kept pace is another process of the same
//     multi-process listener (uvicorn --workers N behind one port), and a
//     frozen uptime with the same pid is a cached answer: neither is a
//     restart.
func restartReason(r *record, res ProbeResult) string {
	uptimes := res.HasUptime && r.hasUptime
	if uptimes && res.Uptime+restartSlack.Seconds() < r.uptime {
		return "uptime reset"
	}
	if res.PID == 0 || r.pid == 0 || res.PID == r.pid {
		return ""
	}
	if uptimes {
		expected := r.uptime + res.At.Sub(r.uptimeAt).Seconds()
		if res.Uptime+(restartSlack+res.Latency).Seconds() >= expected {
			return ""
		}
	}
	return "pid changed"
}

// downReason is the event reason for a probe that took a worker down.
func downReason(res ProbeResult) string {
	if res.Detail != "" {
		return res.Detail
	}
	return res.Health.String()
}

// MarkDown takes w out of traffic at once, without waiting for probes: the
// proxy calls it when a connection to w could not be made (spec section 4).
// w comes back only through Config.Rise serving probes. It reports whether w
// was up. Safe for concurrent use.
func (p *Pool) MarkDown(w *Worker, reason string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.State() != StateUp {
		return false
	}
	w.rec.good = 0
	p.setState(w, StateDown, p.now(), reason)
	return true
}

// ProcessStarted records that w's process started at at, with pid when
// known (0 otherwise): for a process supervisor, which knows exact starts.
// A later probe answer from the same pid counts nothing more. w still
// receives traffic only once probes say it serves. In supervisor mode a
// replacement process started beside a running one (spec section 8) is
// counted, and becomes w's process at Replaced; otherwise a start while a
// process is known to run counts that one's stop first. Safe for
// concurrent use.
func (p *Pool) ProcessStarted(w *Worker, at time.Time, pid int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.rec.running && p.supervised {
		w.rec.started++
		p.record(at, w.Name, EventStarted, p.startReason(pid))
		return
	}
	if w.rec.running {
		p.processStopped(w, at, "restarted")
	}
	p.processStarted(w, at, at, pid)
	w.rec.hasUptime = false
	w.rec.timeoutSince = time.Time{}
}

// startReason is the started event's reason: in supervisor mode the new
// process's pid ("pid 4242"), so that the event log shows which process
// each spawn is; empty otherwise.
func (p *Pool) startReason(pid int) string {
	if !p.supervised || pid <= 0 {
		return ""
	}
	return "pid " + strconv.Itoa(pid)
}

// ProcessExited records that w's process exited at at, for a process
// supervisor: w stops receiving traffic at once and counts one stop.
// reason is kept in the event log ("exit status 1", "signal: killed").
// Safe for concurrent use.
func (p *Pool) ProcessExited(w *Worker, at time.Time, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.rec.running {
		p.processStopped(w, at, reason)
	}
	w.rec.good = 0
	if w.State() == StateUp || w.State() == StateUnknown {
		p.setState(w, StateDown, at, "exited")
	}
}

func (p *Pool) processStarted(w *Worker, startedAt, at time.Time, pid int) {
	r := &w.rec
	r.running, r.startedAt, r.pid = true, startedAt, pid
	r.started++
	p.record(at, w.Name, EventStarted, p.startReason(pid))
}

func (p *Pool) processStopped(w *Worker, at time.Time, reason string) {
	r := &w.rec
	r.running, r.hasUptime, r.pid = false, false, 0
	r.stopped++
	p.record(at, w.Name, EventStopped, reason)
}

// setState moves w to s, logs the event and keeps the pool uptime; the
// caller holds p.mu.
func (p *Pool) setState(w *Worker, s State, at time.Time, reason string) {
	if w.SetState(s) == s {
		return
	}
	kind := EventDown
	if s == StateUp {
		kind = EventUp
		w.rec.downReason = ""
		defer p.changed.notify()
	} else {
		w.rec.downReason = reason
	}
	p.record(at, w.Name, kind, reason)
	p.updatePoolUp(at)
}

// updatePoolUp starts or breaks the pool uptime after a state change; the
// caller holds p.mu.
func (p *Pool) updatePoolUp(at time.Time) {
	up := 0
	for _, w := range p.workers {
		if w.Up() {
			up++
		}
	}
	switch {
	case up >= p.minUp && p.poolUpSince.IsZero():
		p.poolUpSince = at
		p.record(at, "", EventPoolUp, "")
	case up < p.minUp && !p.poolUpSince.IsZero():
		p.poolUpSince = time.Time{}
		p.record(at, "", EventPoolDown, "")
	}
}

func (p *Pool) poolUptime(now time.Time) time.Duration {
	if p.poolUpSince.IsZero() {
		return 0
	}
	return now.Sub(p.poolUpSince)
}

// record appends an event to the log and hands it to Config.OnEvent; the
// caller holds p.mu.
func (p *Pool) record(at time.Time, worker, kind, reason string) {
	e := p.events.add(Event{Time: at, Worker: worker, Kind: kind, Reason: reason})
	if p.onEvent != nil {
		p.onEvent(e)
	}
}
