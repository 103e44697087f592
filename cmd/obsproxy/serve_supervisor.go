package main

import (
	"errors"
	"log/slog"
	"os"
	"strings"

	"github.com/obsproxy/obsproxy/admin"
	"github.com/obsproxy/obsproxy/supervisor"
)

// newSupervisor wires supervisor mode (spec section 8): the supervisor runs
// the pool's workers w1..wN, kicks the prober while a process starts, and
// its metrics join the registry. It is built last in newApp, so that no
// earlier failure leaves its socket directory behind.
func (a *app) newSupervisor(cfg Config) error {
	transport, err := supervisor.ParseTransport(cfg.WorkerTransport)
	if err != nil {
		return err
	}
	a.supervisor, err = supervisor.New(supervisor.Config{
		Pool: a.pool, Command: cfg.WorkerArgv, Env: cfg.WorkerEnv, Transport: transport,
		SocketDir: cfg.WorkerSocketDir, StartTimeout: cfg.WorkerStartTimeout, StopTimeout: cfg.WorkerStopTimeout,
		BackoffMax: cfg.WorkerBackoffMax, SampleInterval: cfg.SampleInterval,
		Kick: a.prober.Kick, Logger: a.logger, Reaper: reaperCommand(a.logger),
		Probe: a.prober.Serves, CloseStale: a.proxy.CloseStale,
		MaxRequests: int64(cfg.WorkerMaxRequests), MaxRSS: uint64(cfg.WorkerMaxRSS), MaxLifetime: cfg.WorkerMaxLifetime,
		Jitter: cfg.WorkerRecycleJitter, StuckTimeout: cfg.WorkerStuckTimeout,
	})
	if err != nil {
		return err
	}
	a.registry.MustRegister(a.supervisor)
	return nil
}

// reloadOn starts a rolling restart of the workers at every SIGHUP (spec
// section 8), until hups is no longer notified. In static mode SIGHUP is
// logged and ignored: obsproxy has no process of its own to replace, and
// the signal must not end it (its default action).
func (a *app) reloadOn(hups <-chan os.Signal) {
	for range hups {
		if a.supervisor == nil {
			a.logger.Warn("SIGHUP ignored: static mode has no worker processes to restart")
			continue
		}
		if a.gate.Draining() {
			a.logger.Warn("SIGHUP ignored: obsproxy is shutting down")
			continue
		}
		switch err := a.supervisor.Restart(); {
		case errors.Is(err, supervisor.ErrRestartRunning):
			a.logger.Warn("SIGHUP ignored: a rolling restart is already running")
		case err != nil:
			a.logger.Warn("SIGHUP ignored", "err", err)
		default:
			a.logger.Info("SIGHUP: rolling restart of the workers")
		}
	}
}

// stopWorkers stops every worker process and waits until all are reaped;
// nothing in static mode.
func (a *app) stopWorkers() {
	if a.supervisor != nil {
		a.supervisor.Stop()
	}
}

// processFigures is the admin plane's view of the supervisor (admin only
// reads); nil in static mode.
func (a *app) processFigures() func() []admin.ProcessFigures {
	if a.supervisor == nil {
		return nil
	}
	sup := a.supervisor
	return func() []admin.ProcessFigures {
		figs := sup.Snapshot()
		out := make([]admin.ProcessFigures, len(figs))
		for i, f := range figs {
			out[i] = admin.ProcessFigures{
				PID: f.PID, HasFigures: f.HasProc, RSSBytes: f.RSSBytes, CPUSeconds: f.CPUSeconds, CPUPercent: f.CPUPercent,
				Exits: f.Exits, LastExitReason: f.LastExitReason, Backoff: f.Backoff,
				StartingPID: f.StartingPID, DrainingPIDs: f.DrainingPIDs,
			}
		}
		return out
	}
}

// restartWorkers is the admin plane's POST /admin/api/workers/restart
// (spec section 8): nil in static mode (the route answers 404), else a
// function that starts a rolling restart and reports whether it did: false
// (409) while one runs, and also while obsproxy shuts down, before the
// supervisor started or once it stopped (Supervisor.Restart's other
// error), when no roll can start.
func (a *app) restartWorkers() func() bool {
	if a.supervisor == nil {
		return nil
	}
	sup, gate := a.supervisor, a.gate
	return func() bool { return !gate.Draining() && sup.Restart() == nil }
}

// reaperCommand is this binary run as the supervisor's reaper; nil (no
// reaper) when the binary cannot be found.
func reaperCommand(logger *slog.Logger) []string {
	exe, err := os.Executable()
	if err == nil && strings.HasSuffix(exe, ".test") {
		return nil // a go test binary would run its tests, not the reaper
	}
	if err != nil {
		logger.Warn("no reaper: a worker's children may outlive an obsproxy killed with SIGKILL", "err", err)
		return nil
	}
	return []string{exe, supervisor.ReaperArg}
}
