// Package supervisor owns the worker processes of supervisor mode (spec
// section 8): it starts one process per worker w1..wN from the configured
// command, waits for each, restarts one that exits with a growing delay,
// kills one that does not serve in time, forwards their output to the log,
// samples their memory and CPU from /proc, and stops them all on shutdown.
// It replaces a worker's process with surge (replace.go): for a rolling
// restart (Restart), a recycling limit (requests, memory, age), and it
// kills a stuck one.
//
// It reports into lifecycle: every process's address as the worker's
// Endpoint (a new generation per process), its exact start and exit through
// Pool.ProcessStarted, Pool.ProcessExited and, for a replaced process,
// Pool.Replaced and Pool.OldProcessExited. Traffic follows the probes
// (package healthgate) as in static mode; the supervisor kicks a probe
// while a new process starts, and probes a replacement itself
// (Config.Probe) before it takes the worker's requests.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// Config configures a Supervisor.
type Config struct {
	// Pool is the supervised pool (lifecycle.Config.Supervised), one
	// worker per slot; required.
	Pool *lifecycle.Pool
	// Command is the worker command as argv, with the placeholders
	// {socket}, {port} and {name} still in it (spec section 8); required.
	Command []string
	// Env is the processes' environment (KEY=VALUE); each also gets
	// OBSPROXY_WORKER_NAME. The admin and /diag tokens are left out. nil
	// means os.Environ().
	Env []string
	// Dir is the processes' working directory; empty is obsproxy's.
	Dir string
	// Transport is how the workers are reached.
	Transport Transport
	// SocketDir is the unix socket directory (OBSPROXY_WORKER_SOCKET_DIR),
	// created 0700 when missing; empty makes a fresh private directory
	// under os.TempDir(), removed by Stop. Unused for TCP and H2C.
	SocketDir string
	// StartTimeout is how long a new process has to be found serving by
	// a probe before it is killed (start_timeout); zero is 60 s.
	StartTimeout time.Duration
	// StopTimeout is how long a process may take to exit after SIGTERM
	// before SIGKILL; zero is 30 s.
	StopTimeout time.Duration
	// BackoffMax caps the restart delay; zero is 30 s.
	BackoffMax time.Duration
	// SampleInterval is the period of the /proc sampling
	// (OBSPROXY_SAMPLE_INTERVAL); zero is 1 s.
	SampleInterval time.Duration
	// Kick, when set, asks for a probe of a worker now (the prober's
	// Kick): the supervisor calls it every KickInterval while a new process
	// has not been found serving, so that it gets traffic soon after it
	// binds rather than at the next probe period.
	Kick func(*lifecycle.Worker)
	// Logger receives the processes' output and the supervisor's own
	// messages; nil is slog.Default().
	Logger *slog.Logger
	// Probe, when set, reports whether a replacement process serves before
	// it takes the worker's requests (the prober's Serves: the worker's
	// own probe, spec section 8); nil takes an accepted connection as
	// serving.
	Probe func(ctx context.Context, w *lifecycle.Worker, ep *lifecycle.Endpoint) bool
	// CloseStale, when set, closes the proxy's idle connections to a
	// worker's earlier processes (proxy.Handler.CloseStale): called when a
	// new process takes over and while the old one drains, so that pooled
	// connections do not keep it from draining.
	CloseStale func(*lifecycle.Worker)
	// MaxRequests, MaxRSS (bytes) and MaxLifetime are the recycling limits
	// of spec section 8 (OBSPROXY_WORKER_MAX_REQUESTS, _MAX_RSS,
	// _MAX_LIFETIME); zero turns each off. Jitter
	// (OBSPROXY_WORKER_RECYCLE_JITTER, 0 to 1) scales each per process by
	// a random factor in [1, 1+Jitter].
	MaxRequests int64
	MaxRSS      uint64
	MaxLifetime time.Duration
	Jitter      float64
	// StuckTimeout is the stuck-worker kill's delay
	// (OBSPROXY_WORKER_STUCK_TIMEOUT); zero turns it off.
	StuckTimeout time.Duration
	// Reaper, when set, is the command of the reaper process (the obsproxy
	// binary with ReaperArg, see RunReaper), which kills the workers'
	// remaining process groups if obsproxy is killed; nil runs none (the
	// parent-death signal then covers each worker's first process only).
	Reaper []string
}

// KickInterval is how often a starting process is probed (see Config.Kick).
const KickInterval = 100 * time.Millisecond

// Supervisor runs the processes of every worker of a pool. Start, Stop and
// Kill may be called from any goroutine; Snapshot and the
// prometheus.Collector methods are safe for concurrent use.
type Supervisor struct {
	cfg      Config
	logger   *slog.Logger
	slots    []*slot
	madeDir  bool // SocketDir is a temp dir of ours, removed by Stop
	ports    portSet
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	started  bool
	stopOnce sync.Once
	metrics  *metrics
	reaper   *reaper

	gate    chan struct{} // one token while a replacement for a recycle or a restart runs
	rollMu  sync.Mutex    // serialises Restart's check and start
	rolling atomic.Bool
	reloads [2]atomic.Uint64 // rolling restarts: success, failure
}

// New prepares a Supervisor for cfg.Pool's workers; nothing runs until
// Start. It fails without a pool or a command, or when the socket directory
// cannot be made.
func New(cfg Config) (*Supervisor, error) {
	if cfg.Pool == nil {
		return nil, errors.New("creating supervisor: no pool")
	}
	if len(cfg.Command) == 0 {
		return nil, errors.New("creating supervisor: no command")
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 30 * time.Second
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 30 * time.Second
	}
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Env == nil {
		cfg.Env = os.Environ()
	}
	s := &Supervisor{cfg: cfg, logger: cfg.Logger, gate: make(chan struct{}, 1)}
	if cfg.Transport == Unix {
		if cfg.SocketDir == "" {
			dir, err := os.MkdirTemp("", TempDirPattern)
			if err != nil {
				return nil, fmt.Errorf("creating socket directory: %w", err)
			}
			s.cfg.SocketDir, s.madeDir = dir, true
		} else if err := PrepareSocketDir(cfg.SocketDir); err != nil {
			return nil, fmt.Errorf("socket directory %s: %w", cfg.SocketDir, err)
		}
	}
	env := make([]string, 0, len(cfg.Env)+1)
	for _, kv := range cfg.Env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "OBSPROXY_ADMIN_TOKEN", "OBSPROXY_DIAG_AUTH_TOKEN", "OBSPROXY_WORKER_NAME":
			continue // obsproxy's secrets are not the workers'
		}
		env = append(env, kv)
	}
	s.cfg.Env = env
	for _, w := range cfg.Pool.Workers() {
		s.slots = append(s.slots, newSlot(s, w))
	}
	s.metrics = newMetrics(s)
	return s, nil
}

// SocketDir returns the directory of the workers' unix sockets; empty for
// TCP and H2C.
func (s *Supervisor) SocketDir() string { return s.cfg.SocketDir }

// Start starts every worker's first process, and the /proc sampler; each
// slot then runs on its own until Stop. Call it once.
func (s *Supervisor) Start() {
	s.rollMu.Lock()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.started = true
	s.rollMu.Unlock()
	if len(s.cfg.Reaper) > 0 {
		rp, err := startReaper(s.cfg.Reaper)
		if err != nil {
			s.logger.Error("no reaper: a worker's children may outlive an obsproxy killed with SIGKILL", "err", err)
		}
		s.reaper = rp
		if s.madeDir {
			rp.tell("d " + s.cfg.SocketDir)
		}
	}
	for _, sl := range s.slots {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sl.run(s.ctx)
		}()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.sampleLoop(s.ctx)
	}()
}

// Stop ends every process as spec sections 7 and 8 say: SIGTERM to each
// process group, SIGKILL to those still running after StopTimeout, and it
// returns once every process is reaped, its socket file removed (and the
// socket directory, when obsproxy made it). Later calls return at once.
func (s *Supervisor) Stop() {
	s.stopOnce.Do(func() {
		s.rollMu.Lock()
		started := s.started
		if started {
			s.cancel()
		}
		s.rollMu.Unlock()
		if started {
			s.wg.Wait()
			s.reaper.close()
		}
		if s.madeDir {
			if err := os.RemoveAll(s.cfg.SocketDir); err != nil {
				s.logger.Warn("removing the socket directory", "dir", s.cfg.SocketDir, "err", err)
			}
		}
	})
}

// Kill sends SIGKILL to every process group at once, without waiting: for
// a second shutdown signal, when obsproxy exits at once.
func (s *Supervisor) Kill() {
	for _, sl := range s.slots {
		for _, p := range sl.live() {
			p.signal(sigKill, reasonShutdown)
		}
	}
}

// sampleLoop samples every process's figures every SampleInterval until ctx
// is done.
func (s *Supervisor) sampleLoop(ctx context.Context) {
	if !procFigures {
		return
	}
	t := time.NewTicker(s.cfg.SampleInterval)
	defer t.Stop()
	for {
		s.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample reads /proc once and updates every slot's figures.
func (s *Supervisor) sample() {
	table := readProcTable()
	children := childrenOf(table)
	now := time.Now()
	for _, sl := range s.slots {
		for _, p := range sl.live() {
			if rss, cpu, ok := treeFigures(table, children, p.pid); ok {
				sl.sampled(p, now, rss, cpu)
			}
		}
	}
}
