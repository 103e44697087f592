package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// slot is one worker's place in the supervisor: it runs one process at a
// time, then the next after a backoff. Its goroutine (run) owns seq and
// backoff; mu guards what Snapshot and the metrics read.
//
// Issue 14 (surge replacement, recycling) extends it to hold an old and a
// new process at once: the worker's Endpoint already moves to the new
// process's generation while the old one may keep its connections.
type slot struct {
	s      *Supervisor
	w      *lifecycle.Worker
	logger *slog.Logger
	seq    uint64
	bo     backoff

	mu         sync.Mutex
	proc       *process // the process taking new requests; nil while none runs
	exits      map[string]uint64
	lastReason string        // the last exit's event reason
	backoffNow time.Duration // the delay before the next start; 0 while a process runs
	rss        uint64
	cpuDone    float64 // CPU seconds of the worker's ended processes
	cpuCur     float64 // CPU seconds of the current process tree, last sample
	cpuPct     float64
	sampledAt  time.Time
}

func newSlot(s *Supervisor, w *lifecycle.Worker) *slot {
	return &slot{
		s: s, w: w, logger: s.logger.With("worker", w.Name),
		bo:    backoff{min: BackoffMin, max: s.cfg.BackoffMax, reset: BackoffReset},
		exits: make(map[string]uint64, len(exitReasons)),
	}
}

// current returns the running process, or nil.
func (sl *slot) current() *process {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return sl.proc
}

// run starts processes for the worker until ctx is done, then stops the
// running one (SIGTERM, SIGKILL after StopTimeout) and returns once it is
// reaped.
func (sl *slot) run(ctx context.Context) {
	for ctx.Err() == nil {
		p, err := sl.start()
		var served time.Duration
		if err != nil {
			// No process, so no exit to count: the sum of the exits stays
			// obsproxy_worker_stopped_total. The backoff applies all the same.
			sl.logger.Error("worker process did not start", "err", err)
			sl.mu.Lock()
			sl.lastReason = "start failed"
			sl.mu.Unlock()
		} else {
			served = sl.watch(ctx, p)
		}
		if ctx.Err() != nil {
			return
		}
		delay := sl.bo.next(served)
		sl.mu.Lock()
		sl.backoffNow = delay
		sl.mu.Unlock()
		sl.logger.Info("restarting worker after a delay", "delay", delay.String())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		sl.mu.Lock()
		sl.backoffNow = 0
		sl.mu.Unlock()
	}
}

// address returns a new address for the next process: a socket path in the
// socket directory never used before by this worker (a stale file from an
// obsproxy killed earlier is removed when nothing listens on it), or a free
// 127.0.0.1 port none of the pool's processes had.
func (sl *slot) address() (network, address string, err error) {
	if sl.s.cfg.Transport != Unix {
		port, err := sl.s.ports.fresh()
		if err != nil {
			return "", "", err
		}
		return "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
	}
	for range 1000 {
		sl.seq++
		path := filepath.Join(sl.s.cfg.SocketDir, socketName(sl.w.Name, sl.seq))
		if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
			return "unix", path, nil
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close() // someone serves there: not ours to take
			continue
		}
		if err := os.Remove(path); err == nil {
			return "unix", path, nil
		}
	}
	return "", "", errors.New("no free socket name in the socket directory")
}

// start starts the worker's next process and publishes its address.
func (sl *slot) start() (*process, error) {
	network, address, err := sl.address()
	if err != nil {
		return nil, err
	}
	port := ""
	if network == "tcp" {
		_, port, _ = net.SplitHostPort(address)
	}
	repl := strings.NewReplacer("{socket}", address, "{port}", port, "{name}", sl.w.Name)
	argv := make([]string, len(sl.s.cfg.Command))
	for i, a := range sl.s.cfg.Command {
		argv[i] = repl.Replace(a)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(make([]string, 0, len(sl.s.cfg.Env)+1), sl.s.cfg.Env...), "OBSPROXY_WORKER_NAME="+sl.w.Name)
	cmd.Dir = sl.s.cfg.Dir
	cmd.SysProcAttr = sysProcAttr()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	p := &process{done: make(chan struct{})}
	if network == "unix" {
		p.socket = address
	}
	err = startAndWait(cmd, p)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	p.started = time.Now()
	sl.s.reaper.tell("+" + strconv.Itoa(p.pid))
	logger := sl.logger.With("pid", p.pid)
	go func() { defer outR.Close(); logLines(outR, logger, "stdout") }()
	go func() { defer errR.Close(); logLines(errR, logger, "stderr") }()

	p.ep = sl.w.SetEndpoint(network, address, p.pid, p.started)
	sl.mu.Lock()
	sl.proc, sl.rss, sl.cpuCur, sl.cpuPct, sl.sampledAt = p, 0, 0, 0, time.Time{}
	sl.mu.Unlock()
	sl.s.cfg.Pool.ProcessStarted(sl.w, p.started, p.pid)
	logger.Info("worker process started", "address", address)
	return p, nil
}

// watch follows p until it is reaped: it kicks probes until p is found
// serving, kills it when that takes longer than StartTimeout, and when ctx
// is done stops it. It records the exit and returns how long p served.
func (sl *slot) watch(ctx context.Context, p *process) (served time.Duration) {
	deadline := time.NewTimer(sl.s.cfg.StartTimeout)
	defer deadline.Stop()
	kick := time.NewTicker(KickInterval)
	defer kick.Stop()
	serving := false
	sl.kickProbe()
	for !serving {
		select {
		case <-p.done:
			return sl.ended(p)
		case <-ctx.Done():
			sl.stop(p)
			return sl.ended(p)
		case <-deadline.C:
			sl.logger.Warn("worker process did not serve in time: killing it", "pid", p.pid,
				"start_timeout", sl.s.cfg.StartTimeout.String())
			p.signal(sigKill, reasonStartTimeout)
			<-p.done
			return sl.ended(p)
		case <-kick.C:
			if sl.w.Up() {
				serving = true
				p.mu.Lock()
				p.servingAt = time.Now()
				p.mu.Unlock()
				sl.logger.Info("worker process serves", "pid", p.pid, "after", time.Since(p.started).Round(time.Millisecond).String())
			} else {
				sl.kickProbe()
			}
		}
	}
	kick.Stop()
	select {
	case <-p.done:
	case <-ctx.Done():
		sl.stop(p)
	}
	return sl.ended(p)
}

func (sl *slot) kickProbe() {
	if sl.s.cfg.Kick != nil {
		sl.s.cfg.Kick(sl.w)
	}
}

// stop ends p for shutdown: SIGTERM to its group, SIGKILL after
// StopTimeout; it returns once p is reaped.
func (sl *slot) stop(p *process) {
	p.signal(sigTerm, reasonShutdown)
	t := time.NewTimer(sl.s.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		sl.logger.Warn("worker process outlived the stop timeout: SIGKILL", "pid", p.pid,
			"stop_timeout", sl.s.cfg.StopTimeout.String())
		p.signal(sigKill, reasonShutdown)
		<-p.done
	}
}

// ended records the exit of the reaped process p: it kills what is left of
// its group, withdraws its address, removes its socket file, reports the
// exit to the pool and counts it. It returns how long p served.
func (sl *slot) ended(p *process) time.Duration {
	at := time.Now()
	killGroup(p.pid)
	sl.s.reaper.tell("-" + strconv.Itoa(p.pid))
	p.mu.Lock()
	asked, sentKill, servingAt := p.asked, p.sentKill, p.servingAt
	p.mu.Unlock()
	event, label, foreignKill := exitOf(p.state, asked, sentKill)
	sl.w.ClearEndpoint(p.ep)
	if p.socket != "" {
		if err := os.Remove(p.socket); err != nil && !errors.Is(err, os.ErrNotExist) {
			sl.logger.Warn("removing a worker socket", "path", p.socket, "err", err)
		}
	}
	reason := event
	if label != reasonCrash && label != reasonExited {
		reason = label + ", " + event
	}
	attrs := []any{"pid", p.pid, "reason", label, "status", event, "uptime", at.Sub(p.started).Round(time.Millisecond).String()}
	switch {
	case foreignKill:
		sl.logger.Error("worker process killed by SIGKILL that obsproxy did not send: out of memory?", attrs...)
	case label == reasonShutdown:
		sl.logger.Info("worker process stopped", attrs...)
	default:
		sl.logger.Warn("worker process exited", attrs...)
	}
	// The kernel's own count for the process and the children it reaped;
	// the last /proc sample also has descendants that outlived it.
	cpu := 0.0
	if p.state != nil {
		cpu = p.state.UserTime().Seconds() + p.state.SystemTime().Seconds()
	}
	sl.mu.Lock()
	sl.proc = nil
	sl.cpuDone += max(cpu, sl.cpuCur)
	sl.cpuCur, sl.rss, sl.cpuPct = 0, 0, 0
	sl.mu.Unlock()
	sl.s.cfg.Pool.ProcessExited(sl.w, at, reason)
	sl.recordExit(label, reason)
	if servingAt.IsZero() {
		return 0
	}
	return at.Sub(servingAt)
}

// recordExit counts one exit with label and keeps reason as the last.
func (sl *slot) recordExit(label, reason string) {
	sl.mu.Lock()
	sl.exits[label]++
	sl.lastReason = reason
	sl.mu.Unlock()
}

// sampled stores one /proc sample of p's tree.
func (sl *slot) sampled(p *process, at time.Time, rss uint64, cpu float64) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.proc != p {
		return
	}
	if !sl.sampledAt.IsZero() {
		if dt := at.Sub(sl.sampledAt).Seconds(); dt > 0 {
			sl.cpuPct = max(0, (cpu-sl.cpuCur)/dt*100)
		}
	}
	sl.rss, sl.cpuCur, sl.sampledAt = rss, cpu, at
}

// portSet hands out 127.0.0.1 ports that no process of the pool had before.
type portSet struct {
	mu   sync.Mutex
	used map[int]bool
}

// fresh returns a port free now (the kernel's choice for a listener on
// 127.0.0.1:0) and never handed out before.
func (ps *portSet) fresh() (int, error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.used == nil {
		ps.used = make(map[int]bool)
	}
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !ps.used[port] {
			ps.used[port] = true
			return port, nil
		}
	}
	return 0, errors.New("finding a free port: the kernel kept offering used ones")
}

func itoa(n int) string { return strconv.Itoa(n) }
