package supervisor

import (
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// Exit reasons: the `reason` label values of obsproxy_worker_exits_total
// (spec section 8).
const (
	reasonCrash        = "crash"
	reasonExited       = "exited"
	reasonStartTimeout = "start_timeout"
	reasonStuck        = "stuck"
	reasonMaxRequests  = "max_requests"
	reasonMaxRSS       = "max_rss"
	reasonMaxLifetime  = "max_lifetime"
	reasonReload       = "reload"
	reasonShutdown     = "shutdown"
)

// recycleReason reports whether label is a planned replacement's.
func recycleReason(label string) bool {
	switch label {
	case reasonMaxRequests, reasonMaxRSS, reasonMaxLifetime, reasonReload:
		return true
	}
	return false
}

// exitReasons are every value of the reason label, in the spec's order;
// each worker exports all of them, zero until they happen.
var exitReasons = []string{"crash", "exited", "start_timeout", "stuck", "max_requests", "max_rss", "max_lifetime", "reload", "shutdown"}

const (
	sigTerm = syscall.SIGTERM
	sigKill = syscall.SIGKILL
)

// process is one started process of a worker.
type process struct {
	pid     int
	ep      *lifecycle.Endpoint // its published address; nil until it takes requests
	probeEP *lifecycle.Endpoint // its address, for probes before it is published
	socket  string              // the socket file obsproxy named for it; "" for tcp
	started time.Time
	done    chan struct{} // closed once the process is reaped
	state   *os.ProcessState

	// Its recycling limits, each scaled by its own jitter factor (spec
	// section 8); zero: none. Set at spawn, then read-only.
	maxRequests int64
	maxRSS      uint64
	lifetimeEnd time.Time

	// Guarded by the slot's mu: the last /proc sample of its tree's CPU,
	// and how many samples in a row found its memory above maxRSS.
	cpu     float64
	rssOver int

	// Owned by the slot's goroutine: a recycle that failed is not tried
	// again before retryAt; requestsLifted is set once a failed request
	// limit replacement lifted the limit.
	retryAt        time.Time
	requestsLifted bool

	mu        sync.Mutex
	asked     string // why obsproxy signalled it (start_timeout, shutdown); "" while it did not
	sentKill  bool   // obsproxy sent SIGKILL
	servingAt time.Time
	reaped    bool
}

// markServing records that p was found serving now.
func (p *process) markServing() {
	p.mu.Lock()
	p.servingAt = time.Now()
	p.mu.Unlock()
}

// servingSince returns when p was found serving; zero when it never was.
func (p *process) servingSince() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.servingAt
}

// signal sends sig to the process's group, recording why; the first reason
// given sticks. Nothing is sent once the process is reaped (its pid, and
// so its group id, may be another's by then).
func (p *process) signal(sig syscall.Signal, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return
	}
	if p.asked == "" {
		p.asked = why
	}
	if sig == sigKill {
		p.sentKill = true
	}
	_ = syscall.Kill(-p.pid, sig)
}

// startAndWait starts cmd from a goroutine locked to its OS thread and
// waits for it there, so that Pdeathsig (sysProcAttr) fires only when
// obsproxy itself dies, never when the Go runtime retires the thread that
// happened to fork the child (golang/go#27505). It returns once the process
// started (or failed to); done is closed once it is reaped, with state set.
func startAndWait(cmd *exec.Cmd, p *process) error {
	started := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with this goroutine, after the
		// process is reaped.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		st, _ := cmd.Process.Wait() // nil only if wait4 failed, which it cannot for a child of ours
		p.mu.Lock()
		p.state, p.reaped = st, true
		p.mu.Unlock()
		close(p.done)
	}()
	return <-started
}

// killGroup sends SIGKILL to what is left of a reaped process's group (a
// granian child whose parent died): the group id stays reserved while any
// member lives, so it cannot name another's group.
func killGroup(pgid int) { _ = syscall.Kill(-pgid, sigKill) }

// exitOf says how a reaped process ended: the lifecycle event's reason
// ("exit code 1", "killed by SIGKILL"), the exits_total label, and whether
// it was a SIGKILL obsproxy did not send (likely the kernel's OOM killer).
func exitOf(st *os.ProcessState, asked string, sentKill bool) (event, label string, foreignKill bool) {
	if st == nil {
		if asked != "" {
			return "wait failed", asked, false
		}
		return "wait failed", reasonCrash, false
	}
	ws, _ := st.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		name := unix.SignalName(ws.Signal())
		if name == "" {
			name = ws.Signal().String()
		}
		event = "killed by " + name
		foreignKill = ws.Signal() == sigKill && !sentKill
	default:
		event = "exit code " + itoa(ws.ExitStatus())
	}
	switch {
	case asked != "":
		label = asked
	case ws.Exited() && ws.ExitStatus() == 0:
		label = reasonExited
	default:
		label = reasonCrash
	}
	return event, label, foreignKill
}

// markKilled records, before the SIGKILL, that p may hold requests of w that
// must not be retried (lifecycle.Worker.MarkKilled). A process never
// published was sent no request: nothing to record.
func (p *process) markKilled(w *lifecycle.Worker, at time.Time) {
	if p.ep != nil {
		w.MarkKilled(p.ep.Generation, at)
	}
}
