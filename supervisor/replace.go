package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// ErrRestartRunning is Restart's error while a rolling restart runs (the
// admin API's 409, spec section 8).
var ErrRestartRunning = errors.New("a rolling restart is already running")

// checkInterval is how often a serving process's recycling limits and the
// stuck-worker rule are checked.
const checkInterval = 250 * time.Millisecond

// replaceRequest asks a slot to replace its serving process (a rolling
// restart); done receives nil once the replacement serves (or when there
// was nothing to replace), or why it did not.
type replaceRequest struct {
	why  string
	done chan error
}

// limits gives p its recycling limits (spec section 8): each configured
// one scaled by a random factor in [1, 1+Jitter], drawn per process and per
// limit, so that the workers of a pool started together do not recycle
// together.
func (s *Supervisor) limits(p *process) {
	c := s.cfg
	jitter := func() float64 { return 1 + rand.Float64()*c.Jitter }
	if c.MaxRequests > 0 {
		p.maxRequests = int64(float64(c.MaxRequests) * jitter())
	}
	if c.MaxRSS > 0 {
		p.maxRSS = uint64(float64(c.MaxRSS) * jitter())
	}
	if c.MaxLifetime > 0 {
		p.lifetimeEnd = p.started.Add(time.Duration(float64(c.MaxLifetime) * jitter()))
	}
}

// tryGate takes the recycle gate when free: at most one replacement is in
// progress at a time (spec section 8).
func (s *Supervisor) tryGate() bool {
	select {
	case s.gate <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *Supervisor) releaseGate() { <-s.gate }

// serve follows p, found serving, until it is reaped (see watch): it
// replaces it when a rolling restart (first, pending, when one asked while
// p started) or a recycling limit asks, and kills it when it is stuck. It
// returns how long the process it ends with served.
func (sl *slot) serve(ctx context.Context, p *process, pending *replaceRequest) time.Duration {
	check := time.NewTicker(checkInterval)
	defer check.Stop()
	if pending != nil {
		np, tookOver, err := sl.surge(ctx, p, pending.why)
		pending.done <- err
		if tookOver {
			return sl.watch(ctx, np)
		}
		if np != nil {
			p = np
		}
	}
	for {
		var np *process
		var tookOver bool
		select {
		case <-p.done:
			return sl.ended(p)
		case <-ctx.Done():
			sl.stop(p)
			return sl.ended(p)
		case req := <-sl.replace:
			var err error
			np, tookOver, err = sl.surge(ctx, p, req.why)
			req.done <- err
		case <-sl.w.LimitReached():
			// Spec section 8: the replacement starts at once. It does not
			// wait for another recycle to end: its process already takes
			// no requests, and waiting would only keep capacity down.
			held := sl.s.tryGate()
			var err error
			np, tookOver, err = sl.surge(ctx, p, reasonMaxRequests)
			if held {
				sl.s.releaseGate()
			}
			if err != nil {
				// replaceFailed lifted the limit: the old process serves
				// on, past it, rather than leave the worker without one.
				p.requestsLifted, p.retryAt = true, time.Now().Add(sl.s.cfg.StartTimeout)
			}
		case now := <-check.C:
			if sl.stuck(p, now) {
				return sl.ended(p)
			}
			why := sl.due(p, now)
			if why == "" || !sl.s.tryGate() {
				continue
			}
			var err error
			np, tookOver, err = sl.surge(ctx, p, why)
			sl.s.releaseGate()
			if err != nil {
				p.retryAt = time.Now().Add(sl.s.cfg.StartTimeout)
			}
		}
		if tookOver {
			// Not yet found serving: follow it as a fresh start.
			return sl.watch(ctx, np)
		}
		if np != nil {
			p = np
		}
	}
}

// due returns the recycling limit p has passed (max_requests after a
// failed replacement, max_rss, max_lifetime), or "" when none has or a
// failed replacement is too recent.
func (sl *slot) due(p *process, now time.Time) string {
	if now.Before(p.retryAt) {
		return ""
	}
	sl.mu.Lock()
	rssOver := p.rssOver
	sl.mu.Unlock()
	switch {
	case p.requestsLifted:
		return reasonMaxRequests
	case rssOver >= 2: // two samples in a row, not one spike
		return reasonMaxRSS
	case !p.lifetimeEnd.IsZero() && !now.Before(p.lifetimeEnd):
		return reasonMaxLifetime
	}
	return ""
}

// stuck applies the stuck-worker rule (spec section 8,
// OBSPROXY_WORKER_STUCK_TIMEOUT): requests in flight and every probe timed
// out for StuckTimeout means a blocked event loop, which would not run a
// SIGTERM handler: SIGKILL. It returns once p is reaped, true, or false
// when p is not stuck.
func (sl *slot) stuck(p *process, now time.Time) bool {
	limit := sl.s.cfg.StuckTimeout
	if limit <= 0 || sl.w.InFlight() == 0 {
		return false
	}
	since := sl.s.cfg.Pool.ProbesTimedOutSince(sl.w)
	if since.IsZero() || now.Sub(since) < limit {
		return false
	}
	inFlight := sl.w.InFlight()
	// Marked first: the requests it holds fail with 502, never retried.
	p.markKilled(sl.w, now)
	sl.logger.Error("worker process is stuck: requests in flight and every probe timed out; SIGKILL",
		"pid", p.pid, "in_flight", inFlight, "probes_timing_out_for", now.Sub(since).Round(time.Millisecond).String(),
		"stuck_timeout", limit.String())
	p.signal(sigKill, reasonStuck)
	<-p.done
	return true
}

// surge replaces old, the worker's serving process, for why: it starts the
// new process beside it on a fresh address, probes it until it serves,
// then makes it the worker's process and lets old drain in the background
// (drain). It returns the new process, or nil and why the replacement
// failed, old serving on (its process killed at StartTimeout, an exit
// before serving). When old exits meanwhile, the new process takes over at
// once, not yet found serving, and is returned with tookOver set; old's
// exit is recorded as an ordinary one.
func (sl *slot) surge(ctx context.Context, old *process, why string) (np *process, tookOver bool, err error) {
	pool := sl.s.cfg.Pool
	pool.Note(sl.w, lifecycle.EventReplacing, why)
	sl.logger.Info("replacing worker process", "pid", old.pid, "reason", why)
	np, err = sl.spawn()
	if err != nil {
		return nil, false, sl.replaceFailed(why, fmt.Errorf("the new process did not start: %w", err))
	}
	sl.mu.Lock()
	sl.old = append(sl.old, np) // counted as old until it takes over
	sl.mu.Unlock()
	deadline := time.NewTimer(sl.s.cfg.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(KickInterval)
	defer tick.Stop()
	for serving := false; !serving; {
		select {
		case <-np.done:
			sl.endedOld(np)
			return nil, false, sl.replaceFailed(why, errors.New("the new process exited before it served"))
		case <-old.done:
			sl.ended(old)
			sl.takeOver(np)
			pool.Replaced(sl.w, old.pid, np.pid, np.started, why, np.maxRequests)
			return np, true, nil
		case <-ctx.Done():
			sl.terminate(np, reasonShutdown)
			sl.endedOld(np)
			return nil, false, ctx.Err()
		case <-deadline.C:
			np.signal(sigKill, reasonStartTimeout)
			<-np.done
			sl.endedOld(np)
			return nil, false, sl.replaceFailed(why, fmt.Errorf("the new process did not serve within the start timeout (%s)", sl.s.cfg.StartTimeout))
		case <-tick.C:
			serving = sl.s.probe(ctx, sl.w, np.probeEP)
		}
	}
	np.markServing()
	sl.takeOver(np)
	pool.Replaced(sl.w, old.pid, np.pid, np.started, why, np.maxRequests)
	sl.mu.Lock()
	sl.old = append(sl.old, old)
	sl.mu.Unlock()
	sl.s.closeStale(sl.w)
	sl.kickProbe()
	sl.logger.Info("worker process replaced: the old one drains", "old_pid", old.pid, "pid", np.pid, "reason", why,
		"after", time.Since(np.started).Round(time.Millisecond).String())
	sl.drains.Add(1)
	go func() {
		defer sl.drains.Done()
		sl.drain(ctx, old, why)
	}()
	return np, false, nil
}

// takeOver makes np, a replacement found serving (or whose old process
// exited), the worker's process.
func (sl *slot) takeOver(np *process) {
	sl.dropOld(np)
	sl.publish(np)
}

// replaceFailed logs and records a failed replacement and returns err. A
// spent process's request limit is lifted first, so that the requests
// waiting for the replacement (and the admission queue, which the event
// wakes) go to it.
func (sl *slot) replaceFailed(why string, err error) error {
	if why == reasonMaxRequests {
		sl.s.cfg.Pool.SetRequestLimit(sl.w, 0)
	}
	sl.logger.Error("worker process replacement failed: the old process serves on", "reason", why, "err", err)
	sl.s.cfg.Pool.Note(sl.w, lifecycle.EventReplaceFailed, why+": "+err.Error())
	return err
}

// drain ends old, a replaced process (spec section 8): it takes no new
// requests; once the proxy's connections to it are all closed (its
// requests and streams done), or StopTimeout passed, it gets SIGTERM, then
// SIGKILL after StopTimeout again.
func (sl *slot) drain(ctx context.Context, old *process, why string) {
	t := time.NewTimer(sl.s.cfg.StopTimeout)
	defer t.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
wait:
	for old.ep.OpenConns() > 0 {
		select {
		case <-old.done:
			sl.endedOld(old)
			return
		case <-ctx.Done():
			break wait
		case <-t.C:
			sl.logger.Warn("replaced worker process still busy at the stop timeout: SIGTERM", "pid", old.pid,
				"open_connections", old.ep.OpenConns(), "stop_timeout", sl.s.cfg.StopTimeout.String())
			break wait
		case <-poll.C:
			// A connection whose request ended since went back to its
			// pool: close it rather than wait for its idle timeout.
			sl.s.closeStale(sl.w)
		}
	}
	sl.terminate(old, why)
	sl.endedOld(old)
}

// probe reports whether the process at ep serves (Config.Probe); without a
// Probe, whether it accepts a connection.
func (s *Supervisor) probe(ctx context.Context, w *lifecycle.Worker, ep *lifecycle.Endpoint) bool {
	if s.cfg.Probe != nil {
		return s.cfg.Probe(ctx, w, ep)
	}
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, ep.Network, ep.Address)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// closeStale closes the proxy's idle connections to w's earlier processes
// (Config.CloseStale).
func (s *Supervisor) closeStale(w *lifecycle.Worker) {
	if s.cfg.CloseStale != nil {
		s.cfg.CloseStale(w)
	}
}

// Restart starts a rolling restart (spec section 8: SIGHUP and POST
// /admin/api/workers/restart) and returns at once: every worker's process
// is replaced in turn, each replacement serving before its old process
// drains. A replacement that does not serve within StartTimeout stops the
// restart, the old processes serving on; the outcome is a lifecycle event
// and obsproxy_reloads_total{result}. It fails with ErrRestartRunning while
// one runs, and before Start or after Stop. Safe for concurrent use.
func (s *Supervisor) Restart() error {
	s.rollMu.Lock()
	defer s.rollMu.Unlock()
	if !s.started || s.ctx.Err() != nil {
		return errors.New("the supervisor is not running")
	}
	if s.rolling.Load() {
		return ErrRestartRunning
	}
	s.rolling.Store(true)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.rolling.Store(false)
		s.roll(s.ctx)
	}()
	return nil
}

// Rolling reports whether a rolling restart runs now.
func (s *Supervisor) Rolling() bool { return s.rolling.Load() }

// roll replaces every slot's process in pool order, holding the recycle
// gate throughout (no recycle runs beside it).
func (s *Supervisor) roll(ctx context.Context) {
	pool := s.cfg.Pool
	select {
	case s.gate <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer s.releaseGate()
	began := time.Now()
	pool.Note(nil, lifecycle.EventReload, "started")
	s.logger.Info("rolling restart started", "workers", len(s.slots))
	for _, sl := range s.slots {
		req := replaceRequest{why: reasonReload, done: make(chan error, 1)}
		var err error
		select {
		case sl.replace <- req:
			select {
			case err = <-req.done:
			case <-ctx.Done():
				return
			}
		case <-ctx.Done():
			return
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.reloads[1].Add(1)
			pool.Note(nil, lifecycle.EventReload, "failed at "+sl.w.Name+": "+err.Error())
			s.logger.Error("rolling restart stopped: the remaining workers keep their processes", "worker", sl.w.Name, "err", err)
			return
		}
	}
	s.reloads[0].Add(1)
	took := time.Since(began).Round(time.Millisecond)
	pool.Note(nil, lifecycle.EventReload, "succeeded in "+took.String())
	s.logger.Info("rolling restart done", "took", took.String())
}
