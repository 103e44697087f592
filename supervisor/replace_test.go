package supervisor

import (
	"context"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// serving is the test's prober: a process serves once its script has
// created its socket file, unless refuse says otherwise for its pid.
type serving struct {
	pool   *lifecycle.Pool
	mu     sync.Mutex
	refuse func(pid int) bool
}

func (sv *serving) ok(ep *lifecycle.Endpoint) bool {
	if ep == nil {
		return false
	}
	sv.mu.Lock()
	refuse := sv.refuse
	sv.mu.Unlock()
	if refuse != nil && refuse(ep.PID) {
		return false
	}
	_, err := os.Stat(ep.Address)
	return err == nil
}

// wire makes cfg's Kick probe the worker's current process into the pool
// and its Probe check a replacement.
func (sv *serving) wire(cfg *Config) {
	cfg.Kick = func(w *lifecycle.Worker) {
		res := lifecycle.ProbeResult{At: time.Now(), Health: lifecycle.Unhealthy, Refused: true}
		if sv.ok(w.Endpoint()) {
			res = lifecycle.ProbeResult{At: time.Now(), Health: lifecycle.Healthy, Answered: true}
		}
		sv.pool.ObserveProbe(w, res)
	}
	cfg.Probe = func(_ context.Context, _ *lifecycle.Worker, ep *lifecycle.Endpoint) bool { return sv.ok(ep) }
}

// newReplaceSupervisor is newTestSupervisor with the test prober wired.
func newReplaceSupervisor(t *testing.T, n int, cfg Config) (*Supervisor, *lifecycle.Pool, *serving, *syncBuffer) {
	t.Helper()
	sv := &serving{}
	sv.wire(&cfg)
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	s, pool, log := newTestSupervisor(t, n, `: > "$0"; trap 'exit 0' TERM; while :; do sleep 0.05; done`, cfg)
	sv.pool = pool
	return s, pool, sv, log
}

func pids(s *Supervisor) []int {
	var out []int
	for _, f := range s.Snapshot() {
		out = append(out, f.PID)
	}
	return out
}

func awaitServing(t *testing.T, s *Supervisor, pool *lifecycle.Pool) []int {
	t.Helper()
	eventually(t, 10*time.Second, func() bool {
		st := pool.Status()
		for _, p := range pids(s) {
			if p == 0 {
				return false
			}
		}
		return st.Up == st.Total
	}, "every worker up")
	return pids(s)
}

func exitsOf(s *Supervisor, reason string) (n uint64) {
	for _, sl := range s.slots {
		sl.mu.Lock()
		n += sl.exits[reason]
		sl.mu.Unlock()
	}
	return n
}

func kinds(pool *lifecycle.Pool) []string {
	var out []string
	for _, e := range pool.Events() {
		switch e.Kind {
		case lifecycle.EventReplacing, lifecycle.EventReplaced, lifecycle.EventReplaceFailed, lifecycle.EventReload:
			out = append(out, e.Worker+" "+e.Kind)
		}
	}
	return out
}

// A rolling restart replaces every worker's process in turn, each old one
// drained and reaped after its replacement serves; the workers never leave
// traffic; a second Restart while it runs is refused.
func TestRestartReplacesEveryProcessInTurn(t *testing.T) {
	s, pool, _, _ := newReplaceSupervisor(t, 2, Config{SocketDir: t.TempDir()})
	require.Error(t, s.Restart(), "not started")
	s.Start()
	before := awaitServing(t, s, pool)
	events := len(pool.Events())

	require.NoError(t, s.Restart())
	assert.ErrorIs(t, s.Restart(), ErrRestartRunning)
	eventually(t, 20*time.Second, func() bool { return s.reloads[0].Load() == 1 }, "the restart succeeded")
	assert.False(t, s.Rolling())
	after := pids(s)
	for i := range before {
		assert.NotEqual(t, before[i], after[i])
		old := before[i]
		eventually(t, 10*time.Second, func() bool { return syscall.Kill(old, 0) != nil }, "old process reaped")
	}
	// Counted just after the reaping the loop above saw.
	eventually(t, 10*time.Second, func() bool { return exitsOf(s, reasonReload) == 2 }, "both old processes counted")
	assert.Equal(t, []string{" reload", "w1 replacing", "w1 replaced", "w2 replacing", "w2 replaced", " reload"}, kinds(pool))
	for _, e := range pool.Events()[events:] {
		assert.NotEqual(t, lifecycle.EventDown, e.Kind, "no worker left traffic: %+v", e)
	}
	st := pool.Status()
	for _, w := range st.Workers {
		assert.Equal(t, uint64(2), w.Started)
		assert.Equal(t, uint64(1), w.Stopped)
	}
	assert.Equal(t, after[0], st.Workers[0].PID, "the pool knows the new process")
	require.NoError(t, s.Restart(), "a new restart once the last is done")
	eventually(t, 20*time.Second, func() bool { return s.reloads[0].Load() == 2 }, "the second restart succeeded")
}

// A replacement that never serves stops the restart at that worker: the
// old processes serve on, and the failure is counted.
func TestRestartStopsWhenAReplacementDoesNotServe(t *testing.T) {
	s, pool, sv, log := newReplaceSupervisor(t, 2, Config{SocketDir: t.TempDir(), StartTimeout: 500 * time.Millisecond})
	s.Start()
	before := awaitServing(t, s, pool)
	sv.mu.Lock()
	sv.refuse = func(pid int) bool { return pid != before[0] && pid != before[1] }
	sv.mu.Unlock()

	require.NoError(t, s.Restart())
	eventually(t, 20*time.Second, func() bool { return s.reloads[1].Load() == 1 }, "the restart failed")
	assert.Equal(t, before, pids(s), "the old processes serve on")
	assert.Equal(t, uint64(1), exitsOf(s, reasonStartTimeout), "w1's replacement was killed")
	assert.Equal(t, []string{" reload", "w1 replacing", "w1 replace_failed", " reload"}, kinds(pool))
	assert.Equal(t, 2, pool.Status().Up)
	assert.Contains(t, log.String(), "rolling restart stopped")
}

// MAX_REQUESTS: the pick that reaches a process's limit has it replaced at
// once; until the replacement serves, the spent worker is not picked while
// another can take the request.
func TestMaxRequestsReplacesTheSpentProcess(t *testing.T) {
	s, pool, _, _ := newReplaceSupervisor(t, 2, Config{SocketDir: t.TempDir(), MaxRequests: 3})
	s.Start()
	before := awaitServing(t, s, pool)
	w1, w2 := pool.Workers()[0], pool.Workers()[1]
	for range 3 {
		require.Equal(t, w1, pool.PickWhere(nil, false, func(w *lifecycle.Worker) bool { return w == w1 }))
	}
	assert.True(t, w1.Spent())
	assert.Nil(t, pool.PickWhere(nil, false, func(w *lifecycle.Worker) bool { return w == w1 }), "spent: not picked")
	assert.Equal(t, w2, pool.Pick(), "the other worker takes the request")
	eventually(t, 10*time.Second, func() bool { return pids(s)[0] != before[0] && !w1.Spent() }, "w1 replaced")
	assert.Equal(t, before[1], pids(s)[1])
	eventually(t, 10*time.Second, func() bool { return exitsOf(s, reasonMaxRequests) == 1 }, "the spent process exited")
	assert.Equal(t, int64(0), w1.SentToProcess(), "the new process's count starts at zero")
}

// MAX_LIFETIME: processes are replaced after their lifetime, never two at
// once.
func TestMaxLifetimeOneRecycleAtATime(t *testing.T) {
	s, pool, _, _ := newReplaceSupervisor(t, 3, Config{SocketDir: t.TempDir(), MaxLifetime: 300 * time.Millisecond})
	s.Start()
	awaitServing(t, s, pool)
	eventually(t, 30*time.Second, func() bool { return exitsOf(s, reasonMaxLifetime) >= 6 }, "recycled by age")
	open := map[string]bool{}
	for _, e := range pool.Events() {
		switch e.Kind {
		case lifecycle.EventReplacing:
			for w, busy := range open {
				require.False(t, busy, "%s replacing while %s was: %v", e.Worker, w, kinds(pool))
			}
			open[e.Worker] = true
		case lifecycle.EventReplaced, lifecycle.EventReplaceFailed:
			open[e.Worker] = false
		}
	}
	assert.True(t, strings.Count(strings.Join(kinds(pool), ","), "replaced") >= 6)
}

// The old process dies while its replacement starts: the replacement takes
// over at once (it is published, and the pool knows it as the worker's
// process), the old one's exit is an ordinary crash.
func TestReplacementTakesOverWhenTheOldProcessDies(t *testing.T) {
	s, pool, sv, _ := newReplaceSupervisor(t, 1, Config{SocketDir: t.TempDir(), StartTimeout: 20 * time.Second})
	s.Start()
	before := awaitServing(t, s, pool)
	sv.mu.Lock()
	sv.refuse = func(pid int) bool { return pid != before[0] }
	sv.mu.Unlock()
	require.NoError(t, s.Restart())
	eventually(t, 10*time.Second, func() bool { return len(s.slots[0].live()) == 2 }, "the replacement started")
	require.NoError(t, syscall.Kill(before[0], syscall.SIGKILL))
	eventually(t, 10*time.Second, func() bool { p := pids(s)[0]; return p != 0 && p != before[0] }, "the replacement took over")
	sv.mu.Lock()
	sv.refuse = nil
	sv.mu.Unlock()
	eventually(t, 10*time.Second, func() bool { return pool.Status().Up == 1 }, "it serves")
	st := pool.Status().Workers[0]
	assert.Equal(t, pids(s)[0], st.PID)
	assert.True(t, st.Running)
	assert.Equal(t, uint64(1), exitsOf(s, reasonCrash))
	eventually(t, 10*time.Second, func() bool { return s.reloads[0].Load() == 1 }, "the restart counts as done")
}
