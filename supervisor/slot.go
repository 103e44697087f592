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

// slot is one worker's place in the supervisor. Its goroutine (run) starts
// the worker's process, watches it, restarts it after a backoff when it
// exits, and replaces it with surge (replace.go): a new process beside the
// old one, which drains once the new one serves. run owns seq and bo; mu
// guards what Snapshot, the sampler and the metrics read.
type slot struct {
	s       *Supervisor
	w       *lifecycle.Worker
	logger  *slog.Logger
	seq     uint64
	bo      backoff
	replace chan replaceRequest // a rolling restart's requests (Supervisor.Restart)
	drains  sync.WaitGroup      // replaced processes still draining

	mu         sync.Mutex
	proc       *process   // the process taking new requests; nil while none runs
	old        []*process // replaced processes draining
	exits      map[string]uint64
	lastReason string        // the last exit's event reason
	backoffNow time.Duration // the delay before the next start; 0 while a process runs
	rss        uint64        // proc's tree, last sample
	cpuDone    float64       // CPU seconds of the worker's ended processes
	cpuPct     float64
	sampledAt  time.Time
}

func newSlot(s *Supervisor, w *lifecycle.Worker) *slot {
	return &slot{
		s: s, w: w, logger: s.logger.With("worker", w.Name),
		bo:      backoff{min: BackoffMin, max: s.cfg.BackoffMax, reset: BackoffReset},
		replace: make(chan replaceRequest),
		exits:   make(map[string]uint64, len(exitReasons)),
	}
}

// live returns the current process and the draining ones.
func (sl *slot) live() []*process {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	out := append(make([]*process, 0, 1+len(sl.old)), sl.old...)
	if sl.proc != nil {
		out = append(out, sl.proc)
	}
	return out
}

// run starts processes for the worker until ctx is done, then stops the
// running one (SIGTERM, SIGKILL after StopTimeout) and returns once it and
// every draining one are reaped.
func (sl *slot) run(ctx context.Context) {
	defer sl.drains.Wait()
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
		if !sl.sleep(ctx, delay) {
			return
		}
		sl.mu.Lock()
		sl.backoffNow = 0
		sl.mu.Unlock()
	}
}

// sleep waits d, answering a rolling restart's request meanwhile (nothing
// to replace: the next process runs the new code); false when ctx is done.
func (sl *slot) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case req := <-sl.replace:
			req.done <- nil
		case <-t.C:
			return true
		}
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

// spawn starts the worker's next process on a fresh address and counts its
// start; the address is not published yet (see publish).
func (sl *slot) spawn() (*process, error) {
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
	p.probeEP = &lifecycle.Endpoint{Network: network, Address: address, PID: p.pid, Started: p.started}
	sl.s.limits(p)
	sl.s.reaper.tell("+" + strconv.Itoa(p.pid))
	logger := sl.logger.With("pid", p.pid)
	go func() { defer outR.Close(); logLines(outR, logger, "stdout") }()
	go func() { defer errR.Close(); logLines(errR, logger, "stderr") }()
	sl.s.cfg.Pool.ProcessStarted(sl.w, p.started, p.pid)
	logger.Info("worker process started", "address", address)
	return p, nil
}

// publish makes p the process that takes the worker's new requests: its
// address becomes the worker's Endpoint (a new generation, so that pooled
// connections to an earlier process are never reused).
func (sl *slot) publish(p *process) {
	p.ep = sl.w.SetEndpoint(p.probeEP.Network, p.probeEP.Address, p.pid, p.started)
	sl.mu.Lock()
	sl.proc, sl.rss, sl.cpuPct, sl.sampledAt = p, 0, 0, time.Time{}
	sl.mu.Unlock()
}

// start starts the worker's next process and publishes its address at
// once: the worker has no other process, and the probes decide when it
// gets traffic.
func (sl *slot) start() (*process, error) {
	p, err := sl.spawn()
	if err != nil {
		return nil, err
	}
	sl.publish(p)
	sl.s.cfg.Pool.SetRequestLimit(sl.w, p.maxRequests)
	return p, nil
}

// watch follows p until it is reaped: it kicks probes until p is found
// serving, kills it when that takes longer than StartTimeout, and when ctx
// is done stops it. Once p serves, it replaces it when a rolling restart or
// a recycling limit asks, and kills it when it is stuck (replace.go). It
// records the exit of the process it ends with and returns how long that
// one served.
func (sl *slot) watch(ctx context.Context, p *process) (served time.Duration) {
	deadline := time.NewTimer(sl.s.cfg.StartTimeout)
	defer deadline.Stop()
	kick := time.NewTicker(KickInterval)
	defer kick.Stop()
	serving := false
	// A rolling restart's request while p starts waits until p serves: p
	// may have been started before the new code was deployed. If p never
	// serves, the next process runs the code on disk: nothing to replace.
	var pending *replaceRequest
	defer func() {
		if pending != nil {
			pending.done <- nil
		}
	}()
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
		case req := <-sl.replace:
			if pending != nil {
				pending.done <- nil
			}
			pending = &req
		case <-kick.C:
			if sl.w.Up() {
				serving = true
				p.markServing()
				sl.logger.Info("worker process serves", "pid", p.pid, "after", time.Since(p.started).Round(time.Millisecond).String())
			} else {
				sl.kickProbe()
			}
		}
	}
	kick.Stop()
	req := pending
	pending = nil
	return sl.serve(ctx, p, req)
}

func (sl *slot) kickProbe() {
	if sl.s.cfg.Kick != nil {
		sl.s.cfg.Kick(sl.w)
	}
}

// stop ends p for shutdown: SIGTERM to its group, SIGKILL after
// StopTimeout; it returns once p is reaped.
func (sl *slot) stop(p *process) {
	sl.terminate(p, reasonShutdown)
}

// terminate sends p SIGTERM for why, then SIGKILL after StopTimeout, and
// returns once p is reaped.
func (sl *slot) terminate(p *process, why string) {
	p.signal(sigTerm, why)
	t := time.NewTimer(sl.s.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		sl.logger.Warn("worker process outlived the stop timeout: SIGKILL", "pid", p.pid,
			"stop_timeout", sl.s.cfg.StopTimeout.String())
		// What it still holds is not retried elsewhere: a blocked event
		// loop ignores SIGTERM, and its request would block the next one.
		p.markKilled(sl.w, time.Now())
		p.signal(sigKill, why)
		<-p.done
	}
}

// ended records the exit of the reaped process p, the worker's current
// one: it withdraws its address, reports the exit to the pool (the worker
// leaves traffic) and counts it. It returns how long p served.
func (sl *slot) ended(p *process) time.Duration {
	at, reason := sl.finish(p)
	sl.w.ClearEndpoint(p.ep)
	sl.mu.Lock()
	if sl.proc == p {
		sl.proc = nil
		sl.rss, sl.cpuPct = 0, 0
	}
	sl.mu.Unlock()
	sl.s.cfg.Pool.ProcessExited(sl.w, at, reason)
	servingAt := p.servingSince()
	if servingAt.IsZero() {
		return 0
	}
	return at.Sub(servingAt)
}

// endedOld records the exit of the reaped process p that no longer took
// the worker's new requests (replaced, or a replacement that never
// served): one stop, and the worker's state is left to its current process.
func (sl *slot) endedOld(p *process) {
	at, reason := sl.finish(p)
	sl.dropOld(p)
	sl.s.cfg.Pool.OldProcessExited(sl.w, at, reason)
}

// dropOld takes p off the slot's list of processes beside the current one.
func (sl *slot) dropOld(p *process) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	for i, o := range sl.old {
		if o == p {
			sl.old = append(sl.old[:i], sl.old[i+1:]...)
			return
		}
	}
}

// finish does what every exit needs: it kills what is left of p's group,
// removes its socket file, logs and counts the exit, and returns when it
// happened and the lifecycle event's reason.
func (sl *slot) finish(p *process) (time.Time, string) {
	at := time.Now()
	killGroup(p.pid)
	sl.s.reaper.tell("-" + strconv.Itoa(p.pid))
	p.mu.Lock()
	asked, sentKill := p.asked, p.sentKill
	p.mu.Unlock()
	event, label, foreignKill := exitOf(p.state, asked, sentKill)
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
	case label == reasonShutdown || recycleReason(label):
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
	sl.cpuDone += max(cpu, p.cpu)
	p.cpu = 0
	sl.exits[label]++
	sl.lastReason = reason
	sl.mu.Unlock()
	return at, reason
}

// sampled stores one /proc sample of p's tree, and counts the samples in a
// row above p's memory limit.
func (sl *slot) sampled(p *process, at time.Time, rss uint64, cpu float64) {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if p.maxRSS > 0 && rss > p.maxRSS {
		p.rssOver++
	} else {
		p.rssOver = 0
	}
	prev := p.cpu
	p.cpu = cpu
	if sl.proc != p {
		return
	}
	if !sl.sampledAt.IsZero() {
		if dt := at.Sub(sl.sampledAt).Seconds(); dt > 0 {
			sl.cpuPct = max(0, (cpu-prev)/dt*100)
		}
	}
	sl.rss, sl.sampledAt = rss, at
}

// cpuSeconds is the CPU of every process the worker has had; the caller
// holds sl.mu.
func (sl *slot) cpuSeconds() float64 {
	cpu := sl.cpuDone
	if sl.proc != nil {
		cpu += sl.proc.cpu
	}
	for _, o := range sl.old {
		cpu += o.cpu
	}
	return cpu
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
