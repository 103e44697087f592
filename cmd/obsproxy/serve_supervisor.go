package main

import (
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
		Kick: a.prober.Kick, Logger: a.logger,
	})
	if err != nil {
		return err
	}
	a.registry.MustRegister(a.supervisor)
	return nil
}

// stopWorkers stops every worker process and waits until all are reaped;
// nothing in static mode.
func (a *app) stopWorkers() {
	if a.supervisor != nil {
		a.supervisor.Stop()
	}
}
