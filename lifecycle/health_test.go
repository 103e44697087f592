package lifecycle_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
	"github.com/obsproxy/obsproxy/lifecycle"
)

// fakeClock is a clock that moves only when a test advances it. It is safe
// for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d and returns the new time.
func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// eventLog collects what Config.OnEvent receives.
type eventLog struct {
	mu     sync.Mutex
	events []lifecycle.Event
}

func (l *eventLog) add(e lifecycle.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) all() []lifecycle.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]lifecycle.Event(nil), l.events...)
}

// kinds returns the kinds of the events of worker (all workers when worker
// is "*") whose kind is one of only (every kind when only is empty).
func (l *eventLog) kinds(worker string, only ...string) []string {
	var out []string
	for _, e := range l.all() {
		if worker != "*" && e.Worker != worker {
			continue
		}
		if len(only) > 0 && !contains(only, e.Kind) {
			continue
		}
		out = append(out, e.Kind)
	}
	return out
}

// eventsOf returns the pool's kept events whose kind is one of kinds, with
// Seq zeroed so that tests compare the rest.
func eventsOf(p *lifecycle.Pool, kinds ...string) []lifecycle.Event {
	var out []lifecycle.Event
	for _, e := range p.Events() {
		if contains(kinds, e.Kind) {
			e.Seq = 0
			out = append(out, e)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var processKinds = []string{lifecycle.EventStarted, lifecycle.EventStopped, lifecycle.EventRestarted}

// fixture is a pool of n workers named w0, w1, … with a fake clock and an
// event collector.
type fixture struct {
	pool  *lifecycle.Pool
	clock *fakeClock
	log   *eventLog
}

func newFixture(t *testing.T, n int, cfg lifecycle.Config) *fixture {
	t.Helper()
	f := &fixture{clock: newFakeClock(), log: &eventLog{}}
	for i := 0; i < n; i++ {
		cfg.Workers = append(cfg.Workers, lifecycle.WorkerConfig{
			Name: fmt.Sprintf("w%d", i), Network: "tcp", Address: fmt.Sprintf("127.0.0.1:%d", 8000+i),
		})
	}
	cfg.Now = f.clock.Now
	cfg.OnEvent = f.log.add
	p, err := lifecycle.NewPool(cfg)
	require.NoError(t, err)
	f.pool = p
	return f
}

func (f *fixture) worker(i int) *lifecycle.Worker { return f.pool.Workers()[i] }

func (f *fixture) status(t *testing.T, i int) lifecycle.WorkerStatus {
	t.Helper()
	st := f.pool.Status()
	require.Len(t, st.Workers, len(f.pool.Workers()))
	return st.Workers[i]
}

// answer is a probe that got an HTTP answer with verdict h.
func answer(at time.Time, h lifecycle.Health) lifecycle.ProbeResult {
	return lifecycle.ProbeResult{At: at, Health: h, Answered: true}
}

// answerUp is a healthy answer reporting uptime_seconds and a pid (0: none).
func answerUp(at time.Time, uptime float64, pid int) lifecycle.ProbeResult {
	res := answer(at, lifecycle.Healthy)
	res.Uptime, res.HasUptime, res.PID = uptime, true, pid
	return res
}

// refused is a probe whose connection was refused: no process.
func refused(at time.Time) lifecycle.ProbeResult {
	return lifecycle.ProbeResult{At: at, Health: lifecycle.Unhealthy, Refused: true, Detail: "connection refused"}
}

// timedOut is a probe that got no answer in time: neither Answered nor Refused.
func timedOut(at time.Time) lifecycle.ProbeResult {
	return lifecycle.ProbeResult{At: at, Health: lifecycle.Unhealthy, Detail: "timeout"}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func TestHealthStringAndServing(t *testing.T) {
	for _, tc := range []struct {
		h       lifecycle.Health
		name    string
		serving bool
	}{
		{lifecycle.HealthUnknown, "unknown", false},
		{lifecycle.Healthy, "healthy", true},
		{lifecycle.Degraded, "degraded", true},
		{lifecycle.Unhealthy, "unhealthy", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.name, tc.h.String())
			assert.Equal(t, tc.serving, tc.h.Serving())
		})
	}
}

func TestRiseFallHysteresis(t *testing.T) {
	const (
		H = lifecycle.Healthy
		D = lifecycle.Degraded
		U = lifecycle.Unhealthy
	)
	const (
		unknown = lifecycle.StateUnknown
		up      = lifecycle.StateUp
		down    = lifecycle.StateDown
	)
	type step struct {
		h    lifecycle.Health
		want lifecycle.State
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"unknown rises after two healthy", []step{{H, unknown}, {H, up}}},
		{"degraded counts as serving", []step{{D, unknown}, {D, up}}},
		{"healthy then degraded", []step{{H, unknown}, {D, up}}},
		{"unknown goes down at first bad probe", []step{{U, down}}},
		{"unknown with one good probe goes down at first bad", []step{{H, unknown}, {U, down}}},
		{"up falls after three bad", []step{{H, unknown}, {H, up}, {U, up}, {U, up}, {U, down}}},
		{"degraded keeps an up worker up", []step{{H, unknown}, {H, up}, {D, up}, {D, up}, {D, up}, {D, up}}},
		{"good probe resets the bad streak", []step{
			{H, unknown}, {H, up}, {U, up}, {U, up}, {H, up}, {U, up}, {U, up}, {U, down},
		}},
		{"degraded probe resets the bad streak", []step{
			{H, unknown}, {H, up}, {U, up}, {U, up}, {D, up}, {U, up}, {U, up}, {U, down},
		}},
		{"down needs two consecutive serving probes", []step{
			{U, down}, {H, down}, {U, down}, {D, down}, {H, up},
		}},
		{"down after fall needs rise again", []step{
			{H, unknown}, {H, up}, {U, up}, {U, up}, {U, down}, {H, down}, {H, up},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 1, lifecycle.Config{Rise: 2, Fall: 3})
			w := f.worker(0)
			for i, s := range tc.steps {
				f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), s.h))
				require.Equal(t, s.want, w.State(), "after probe %d (%s)", i+1, s.h)
				assert.Equal(t, s.want, f.status(t, 0).State, "status after probe %d", i+1)
				assert.Equal(t, s.h, f.status(t, 0).Health, "health after probe %d", i+1)
			}
		})
	}
}

func TestUpAndDownEventReasons(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{})
	w := f.worker(0)

	at1 := f.clock.Advance(time.Second)
	f.pool.ObserveProbe(w, answer(at1, lifecycle.Degraded))
	at2 := f.clock.Advance(time.Second)
	bad := answer(at2, lifecycle.Unhealthy)
	bad.Detail = "status 503"
	f.pool.ObserveProbe(w, bad)
	assert.Equal(t, "status 503", f.status(t, 0).DownReason)
	at3 := f.clock.Advance(time.Second)
	f.pool.ObserveProbe(w, answer(at3, lifecycle.Healthy))
	assert.Equal(t, "", f.status(t, 0).DownReason)
	at4 := f.clock.Advance(time.Second)
	f.pool.ObserveProbe(w, answer(at4, lifecycle.Unhealthy)) // no detail: the verdict

	got := eventsOf(f.pool, lifecycle.EventUp, lifecycle.EventDown)
	assert.Equal(t, []lifecycle.Event{
		{Time: at1, Worker: "w0", Kind: lifecycle.EventUp, Reason: "degraded"},
		{Time: at2, Worker: "w0", Kind: lifecycle.EventDown, Reason: "status 503"},
		{Time: at3, Worker: "w0", Kind: lifecycle.EventUp, Reason: "healthy"},
		{Time: at4, Worker: "w0", Kind: lifecycle.EventDown, Reason: "unhealthy"},
	}, got)
	assert.Equal(t, "unhealthy", f.status(t, 0).DownReason)
}

func TestDrainingWorkerIgnoresProbes(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{})
	w := f.worker(0)
	w.SetState(lifecycle.StateDraining)
	for _, h := range []lifecycle.Health{lifecycle.Healthy, lifecycle.Unhealthy, lifecycle.Degraded} {
		f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), h))
		assert.Equal(t, lifecycle.StateDraining, w.State(), "after %s", h)
	}
	assert.Empty(t, f.log.kinds("w0", lifecycle.EventUp, lifecycle.EventDown))
}

func TestProcessLifecycle(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{})
	w := f.worker(0)
	type want struct {
		started, stopped uint64
		running          bool
	}
	check := func(t *testing.T, step string, wt want) {
		t.Helper()
		st := f.status(t, 0)
		assert.Equal(t, wt.started, st.Started, "%s: started", step)
		assert.Equal(t, wt.stopped, st.Stopped, "%s: stopped", step)
		assert.Equal(t, wt.running, st.Running, "%s: running", step)
	}

	// Refused before any answer: no process was ever seen.
	f.pool.ObserveProbe(w, refused(f.clock.Advance(time.Second)))
	check(t, "refused first", want{0, 0, false})
	assert.Empty(t, f.log.kinds("w0", processKinds...))

	t0 := f.clock.Advance(time.Second)
	f.pool.ObserveProbe(w, answer(t0, lifecycle.Healthy))
	check(t, "first answer", want{1, 0, true})
	assert.Equal(t, []string{lifecycle.EventStarted}, f.log.kinds("w0", processKinds...))

	// An unhealthy answer is still an answer: the process runs.
	f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), lifecycle.Unhealthy))
	check(t, "unhealthy answer", want{1, 0, true})

	// A timeout counts nothing and keeps the uptime going.
	f.pool.ObserveProbe(w, timedOut(f.clock.Advance(time.Second)))
	check(t, "timeout", want{1, 0, true})
	f.clock.Advance(time.Second)
	assert.Equal(t, 3*time.Second, f.status(t, 0).Uptime)

	stopAt := f.clock.Advance(time.Second)
	f.pool.ObserveProbe(w, refused(stopAt))
	check(t, "refused after answers", want{1, 1, false})
	assert.Equal(t, time.Duration(0), f.status(t, 0).Uptime)
	f.clock.Advance(10 * time.Second)
	assert.Equal(t, time.Duration(0), f.status(t, 0).Uptime)

	// A second refusal is no second stop, a timeout no start.
	f.pool.ObserveProbe(w, refused(f.clock.Advance(time.Second)))
	f.pool.ObserveProbe(w, timedOut(f.clock.Advance(time.Second)))
	check(t, "refused again", want{1, 1, false})

	f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), lifecycle.Healthy))
	check(t, "answer after refusal", want{2, 1, true})
	assert.Equal(t, []string{lifecycle.EventStarted, lifecycle.EventStopped, lifecycle.EventStarted},
		f.log.kinds("w0", processKinds...))

	stopped := eventsOf(f.pool, lifecycle.EventStopped)
	require.Len(t, stopped, 1)
	assert.Equal(t, stopAt, stopped[0].Time)
	assert.Equal(t, "connection refused", stopped[0].Reason)
}

func TestRestartDetection(t *testing.T) {
	type probe struct {
		after   time.Duration // since the previous probe
		uptime  float64       // reported uptime_seconds; negative: none
		pid     int
		latency time.Duration
	}
	for _, tc := range []struct {
		name        string
		prev, next  probe
		wantRestart string // "" for none
	}{
		{"uptime went backwards", probe{0, 100, 0, 0}, probe{2 * time.Second, 1.5, 0, 0}, "uptime reset"},
		{"uptime backwards by more than the slack", probe{0, 10, 0, 0}, probe{500 * time.Millisecond, 8.9, 0, 0}, "uptime reset"},
		{"uptime backwards within the slack", probe{0, 10, 0, 0}, probe{500 * time.Millisecond, 9.2, 0, 0}, ""},
		{"uptime backwards with same pid", probe{0, 100, 7, 0}, probe{2 * time.Second, 1, 7, 0}, "uptime reset"},
		{"pid changed, uptime kept pace: another process of one listener", probe{0, 10, 100, 0}, probe{2 * time.Second, 12, 200, 0}, ""},
		{"pid changed, uptime within slack of the pace", probe{0, 10, 100, 0}, probe{2 * time.Second, 11.1, 200, 0}, ""},
		{"pid changed, younger process: a quick restart of a young worker", probe{0, 5.7, 100, 0}, probe{5 * time.Second, 5.0, 200, 0}, "pid changed"},
		{"pid changed, latency widens the slack", probe{0, 10, 100, 0}, probe{5 * time.Second, 13.5, 200, 700 * time.Millisecond}, ""},
		{"same pid, uptime short of the pace: no restart", probe{0, 5.7, 100, 0}, probe{5 * time.Second, 4.9, 100, 0}, ""},
		{"pid changed without uptime", probe{0, -1, 100, 0}, probe{2 * time.Second, -1, 200, 0}, "pid changed"},
		{"pid changed and uptime reset", probe{0, 10, 100, 0}, probe{2 * time.Second, 1, 200, 0}, "uptime reset"},
		{"frozen uptime: a cached answer", probe{0, 10, 0, 0}, probe{5 * time.Second, 10, 0, 0}, ""},
		{"uptime short of the clock but not backwards", probe{0, 10, 0, 0}, probe{5 * time.Second, 11, 0, 0}, ""},
		{"normal growth", probe{0, 10, 0, 0}, probe{2 * time.Second, 12.0, 0, 0}, ""},
		{"normal growth same pid", probe{0, 10, 42, 0}, probe{2 * time.Second, 12, 42, 0}, ""},
		{"pid no longer reported", probe{0, 10, 42, 0}, probe{2 * time.Second, 12, 0, 0}, ""},
		{"pid first reported", probe{0, 10, 0, 0}, probe{2 * time.Second, 12, 42, 0}, ""},
		{"no previous uptime to compare", probe{0, -1, 0, 0}, probe{2 * time.Second, 1, 0, 0}, ""},
		{"uptime no longer reported", probe{0, 10, 0, 0}, probe{2 * time.Second, -1, 0, 0}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 1, lifecycle.Config{})
			w := f.worker(0)
			mk := func(p probe) lifecycle.ProbeResult {
				res := answer(f.clock.Advance(p.after), lifecycle.Healthy)
				res.PID, res.Latency = p.pid, p.latency
				if p.uptime >= 0 {
					res.Uptime, res.HasUptime = p.uptime, true
				}
				return res
			}
			f.pool.ObserveProbe(w, mk(tc.prev))
			require.Equal(t, uint64(1), f.status(t, 0).Started)
			require.Equal(t, lifecycle.StateUp, w.State())
			next := mk(tc.next)
			f.pool.ObserveProbe(w, next)

			st := f.status(t, 0)
			assert.Equal(t, lifecycle.StateUp, st.State, "a restart between probes does not take the worker down")
			assert.True(t, st.Running)
			restarts := eventsOf(f.pool, lifecycle.EventRestarted)
			if tc.wantRestart == "" {
				assert.Equal(t, uint64(1), st.Started, "started")
				assert.Equal(t, uint64(0), st.Stopped, "stopped")
				assert.Empty(t, restarts)
				assert.Equal(t, []string{lifecycle.EventStarted}, f.log.kinds("w0", processKinds...))
				return
			}
			assert.Equal(t, uint64(2), st.Started, "started")
			assert.Equal(t, uint64(1), st.Stopped, "stopped")
			if tc.next.pid != 0 {
				assert.Equal(t, tc.next.pid, st.PID, "pid of the new process")
			}
			require.Len(t, restarts, 1)
			assert.Equal(t, tc.wantRestart, restarts[0].Reason)
			assert.Equal(t, next.At, restarts[0].Time)
			assert.Equal(t, "w0", restarts[0].Worker)
			assert.Equal(t, []string{lifecycle.EventStarted, lifecycle.EventRestarted}, f.log.kinds("w0", processKinds...))
			if tc.next.uptime >= 0 {
				assert.Equal(t, secs(tc.next.uptime), st.Uptime, "uptime is the new process's")
			} else {
				assert.Equal(t, time.Duration(0), st.Uptime, "uptime counts from the restart")
			}
		})
	}
}

func TestRestartDetectionAfterRestartUsesNewUptime(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{})
	w := f.worker(0)
	f.pool.ObserveProbe(w, answerUp(f.clock.Now(), 100, 0))
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(2*time.Second), 1, 0))   // restart
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(2*time.Second), 3, 0))   // the new process grows
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(2*time.Second), 5, 0))   // still growing
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(2*time.Second), 0.5, 0)) // second restart
	st := f.status(t, 0)
	assert.Equal(t, uint64(3), st.Started)
	assert.Equal(t, uint64(2), st.Stopped)
	assert.Equal(t, []string{lifecycle.EventStarted, lifecycle.EventRestarted, lifecycle.EventRestarted},
		f.log.kinds("w0", processKinds...))
}

func TestPIDFirstReportedThenChanged(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{})
	w := f.worker(0)
	f.pool.ObserveProbe(w, answer(f.clock.Now(), lifecycle.Healthy))
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(time.Second), 10, 42))
	assert.Equal(t, 42, f.status(t, 0).PID)
	// With uptimes reported, the uptime decides: it grew, so the new pid is
	// another process of the same listener, not a restart.
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(time.Second), 11, 43))
	st := f.status(t, 0)
	assert.Equal(t, 43, st.PID)
	assert.Equal(t, uint64(1), st.Started)
	assert.Equal(t, uint64(0), st.Stopped)
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(time.Second), 0.5, 44))
	st = f.status(t, 0)
	assert.Equal(t, 44, st.PID)
	assert.Equal(t, uint64(2), st.Started)
	assert.Equal(t, uint64(1), st.Stopped)
}

// A worker behind uvicorn --workers 2 answers probes from two processes in
// turn: pids alternate, uptimes both grow. No restart is counted.
func TestMultiProcessListenerIsNoRestart(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{})
	w := f.worker(0)
	for i := 0; i < 10; i++ {
		pid, uptime := 100, 50.0+float64(i)
		if i%2 == 1 {
			pid, uptime = 101, 49.7+float64(i)
		}
		f.pool.ObserveProbe(w, answerUp(f.clock.Advance(time.Second), uptime, pid))
	}
	st := f.status(t, 0)
	assert.Equal(t, uint64(1), st.Started)
	assert.Equal(t, uint64(0), st.Stopped)
}

func TestAnswerAfterRefusalIsAPlainStart(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{})
	w := f.worker(0)
	f.pool.ObserveProbe(w, answerUp(f.clock.Now(), 100, 1))
	f.pool.ObserveProbe(w, refused(f.clock.Advance(2*time.Second)))
	// The new process has a smaller uptime and another pid: a start, not a
	// restart on top of the stop already counted.
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(2*time.Second), 1, 2))
	st := f.status(t, 0)
	assert.Equal(t, uint64(2), st.Started)
	assert.Equal(t, uint64(1), st.Stopped)
	assert.Equal(t, 2, st.PID)
	assert.Equal(t, []string{lifecycle.EventStarted, lifecycle.EventStopped, lifecycle.EventStarted},
		f.log.kinds("w0", processKinds...))
}

func TestWorkerUptime(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(f *fixture, w *lifecycle.Worker)
		want time.Duration
	}{
		{"reported uptime extrapolated with the clock", func(f *fixture, w *lifecycle.Worker) {
			f.pool.ObserveProbe(w, answerUp(f.clock.Now(), 100, 0))
			f.clock.Advance(3 * time.Second)
		}, 103 * time.Second},
		{"latest reported uptime wins", func(f *fixture, w *lifecycle.Worker) {
			f.pool.ObserveProbe(w, answerUp(f.clock.Now(), 100, 0))
			f.pool.ObserveProbe(w, answerUp(f.clock.Advance(2*time.Second), 101.5, 0))
			f.clock.Advance(time.Second)
		}, 102500 * time.Millisecond},
		{"fractional reported uptime", func(f *fixture, w *lifecycle.Worker) {
			f.pool.ObserveProbe(w, answerUp(f.clock.Now(), 0.25, 0))
			f.clock.Advance(500 * time.Millisecond)
		}, 750 * time.Millisecond},
		{"without reported uptime counts from the first answer", func(f *fixture, w *lifecycle.Worker) {
			f.pool.ObserveProbe(w, answer(f.clock.Now(), lifecycle.Healthy))
			f.pool.ObserveProbe(w, answer(f.clock.Advance(5*time.Second), lifecycle.Healthy))
			f.clock.Advance(2 * time.Second)
		}, 7 * time.Second},
		{"start derived from reported uptime when it stops reporting", func(f *fixture, w *lifecycle.Worker) {
			f.pool.ObserveProbe(w, answerUp(f.clock.Now(), 100, 0))
			f.pool.ObserveProbe(w, answer(f.clock.Advance(2*time.Second), lifecycle.Healthy))
			f.clock.Advance(time.Second)
		}, 103 * time.Second},
		{"timeout keeps the uptime going", func(f *fixture, w *lifecycle.Worker) {
			f.pool.ObserveProbe(w, answerUp(f.clock.Now(), 100, 0))
			f.pool.ObserveProbe(w, timedOut(f.clock.Advance(2*time.Second)))
			f.clock.Advance(2 * time.Second)
		}, 104 * time.Second},
		{"zero after a refusal", func(f *fixture, w *lifecycle.Worker) {
			f.pool.ObserveProbe(w, answerUp(f.clock.Now(), 100, 0))
			f.pool.ObserveProbe(w, refused(f.clock.Advance(2*time.Second)))
			f.clock.Advance(2 * time.Second)
		}, 0},
		{"zero before any answer", func(f *fixture, w *lifecycle.Worker) {
			f.pool.ObserveProbe(w, timedOut(f.clock.Now()))
			f.clock.Advance(2 * time.Second)
		}, 0},
		{"counts from the answer after a refusal", func(f *fixture, w *lifecycle.Worker) {
			f.pool.ObserveProbe(w, answerUp(f.clock.Now(), 100, 0))
			f.pool.ObserveProbe(w, refused(f.clock.Advance(2*time.Second)))
			f.pool.ObserveProbe(w, answer(f.clock.Advance(2*time.Second), lifecycle.Healthy))
			f.clock.Advance(3 * time.Second)
		}, 3 * time.Second},
		{"after a restart, the new process's uptime", func(f *fixture, w *lifecycle.Worker) {
			f.pool.ObserveProbe(w, answerUp(f.clock.Now(), 100, 0))
			f.pool.ObserveProbe(w, answerUp(f.clock.Advance(10*time.Second), 4, 0))
			f.clock.Advance(time.Second)
		}, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 1, lifecycle.Config{})
			tc.run(f, f.worker(0))
			assert.Equal(t, tc.want, f.status(t, 0).Uptime)
		})
	}
}

func TestMarkDown(t *testing.T) {
	f := newFixture(t, 2, lifecycle.Config{Rise: 2, Fall: 3, MinUp: 2})
	w := f.worker(0)

	assert.False(t, f.pool.MarkDown(w, "connect failed"), "unknown worker is not up")
	assert.Equal(t, lifecycle.StateUnknown, w.State())

	f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), lifecycle.Healthy))
	f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), lifecycle.Healthy))
	f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), lifecycle.Healthy)) // long good streak
	require.Equal(t, lifecycle.StateUp, w.State())
	require.Same(t, w, f.pool.Pick())

	markedAt := f.clock.Advance(time.Second)
	assert.True(t, f.pool.MarkDown(w, "connect failed"))
	assert.Equal(t, lifecycle.StateDown, w.State())
	assert.Nil(t, f.pool.Pick())
	st := f.status(t, 0)
	assert.Equal(t, lifecycle.StateDown, st.State)
	assert.Equal(t, "connect failed", st.DownReason)
	assert.True(t, st.Running, "a connect failure says nothing about the process")
	evs := f.pool.Events()
	require.NotEmpty(t, evs)
	last := evs[len(evs)-1]
	last.Seq = 0
	assert.Equal(t, lifecycle.Event{Time: markedAt, Worker: "w0", Kind: lifecycle.EventDown, Reason: "connect failed"}, last)

	assert.False(t, f.pool.MarkDown(w, "again"), "down worker is not up")
	assert.Equal(t, "connect failed", f.status(t, 0).DownReason)
	assert.Len(t, f.log.kinds("w0", lifecycle.EventDown), 1)

	// Back only after Rise serving probes, however long the streak before.
	f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), lifecycle.Degraded))
	assert.Equal(t, lifecycle.StateDown, w.State())
	f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), lifecycle.Healthy))
	assert.Equal(t, lifecycle.StateUp, w.State())
	assert.Equal(t, "", f.status(t, 0).DownReason)
}

func TestProcessStartedAndExited(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{})
	w := f.worker(0)

	t0 := f.clock.Now()
	f.pool.ObserveProbe(w, answerUp(t0, 10, 42))
	require.Equal(t, lifecycle.StateUp, w.State())

	exitAt := f.clock.Advance(time.Second)
	f.pool.ProcessExited(w, exitAt, "exit status 1")
	st := f.status(t, 0)
	assert.Equal(t, lifecycle.StateDown, st.State, "exited: down at once")
	assert.Equal(t, "exited", st.DownReason)
	assert.Equal(t, uint64(1), st.Started)
	assert.Equal(t, uint64(1), st.Stopped)
	assert.False(t, st.Running)
	assert.Equal(t, time.Duration(0), st.Uptime)
	assert.Equal(t, 0, st.PID)

	startAt := f.clock.Advance(2 * time.Second)
	f.pool.ProcessStarted(w, startAt, 43)
	st = f.status(t, 0)
	assert.Equal(t, uint64(2), st.Started)
	assert.Equal(t, uint64(1), st.Stopped)
	assert.True(t, st.Running)
	assert.Equal(t, 43, st.PID)
	assert.Equal(t, lifecycle.StateDown, st.State, "traffic only once probes say it serves")
	f.clock.Advance(500 * time.Millisecond)
	assert.Equal(t, 500*time.Millisecond, f.status(t, 0).Uptime)

	// The probe sees the same process: nothing more to count.
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(500*time.Millisecond), 0.9, 43))
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(2*time.Second), 2.9, 43))
	st = f.status(t, 0)
	assert.Equal(t, uint64(2), st.Started)
	assert.Equal(t, uint64(1), st.Stopped)
	assert.Equal(t, lifecycle.StateUp, st.State)

	got := eventsOf(f.pool, append(processKinds, lifecycle.EventDown)...)
	assert.Equal(t, []lifecycle.Event{
		{Time: t0, Worker: "w0", Kind: lifecycle.EventStarted},
		{Time: exitAt, Worker: "w0", Kind: lifecycle.EventStopped, Reason: "exit status 1"},
		{Time: exitAt, Worker: "w0", Kind: lifecycle.EventDown, Reason: "exited"},
		{Time: startAt, Worker: "w0", Kind: lifecycle.EventStarted},
	}, got)
}

func TestProcessStartedWhileRunningCountsARestart(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{})
	w := f.worker(0)
	f.pool.ObserveProbe(w, answerUp(f.clock.Now(), 10, 42))
	f.pool.ProcessStarted(w, f.clock.Advance(time.Second), 43)
	st := f.status(t, 0)
	assert.Equal(t, uint64(2), st.Started)
	assert.Equal(t, uint64(1), st.Stopped)
	assert.Equal(t, 43, st.PID)
	var stops []string
	for _, e := range f.pool.Events() {
		if e.Kind == lifecycle.EventStopped {
			stops = append(stops, e.Reason)
		}
	}
	assert.Equal(t, []string{"restarted"}, stops)
	// The answer from pid 43 is the process the supervisor reported.
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(time.Second), 1, 43))
	st = f.status(t, 0)
	assert.Equal(t, uint64(2), st.Started)
	assert.Equal(t, uint64(1), st.Stopped)
}

func TestProcessExitedNeverStarted(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{})
	w := f.worker(0)
	f.pool.ProcessExited(w, f.clock.Now(), "exit status 2")
	st := f.status(t, 0)
	assert.Equal(t, lifecycle.StateDown, st.State)
	assert.Equal(t, uint64(0), st.Started)
	assert.Equal(t, uint64(0), st.Stopped)
	assert.Empty(t, f.log.kinds("w0", processKinds...))
}

func TestProcessExitedResetsRise(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{Rise: 2})
	w := f.worker(0)
	f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), lifecycle.Healthy))
	f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), lifecycle.Healthy))
	require.Equal(t, lifecycle.StateUp, w.State())
	f.pool.ProcessExited(w, f.clock.Advance(time.Second), "signal: killed")
	f.pool.ProcessStarted(w, f.clock.Advance(time.Second), 0)
	f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), lifecycle.Healthy))
	assert.Equal(t, lifecycle.StateDown, w.State())
	f.pool.ObserveProbe(w, answer(f.clock.Advance(time.Second), lifecycle.Healthy))
	assert.Equal(t, lifecycle.StateUp, w.State())
}

func TestPoolUptime(t *testing.T) {
	f := newFixture(t, 3, lifecycle.Config{MinUp: 2})
	ok := func(i int) { f.pool.ObserveProbe(f.worker(i), answer(f.clock.Now(), lifecycle.Healthy)) }
	bad := func(i int) { f.pool.ObserveProbe(f.worker(i), answer(f.clock.Now(), lifecycle.Unhealthy)) }
	uptime := func() time.Duration { return f.pool.Status().Uptime }

	ok(0)
	assert.Equal(t, 1, f.pool.Status().Up)
	f.clock.Advance(time.Second)
	assert.Equal(t, time.Duration(0), uptime(), "one up of min two")

	upAt := f.clock.Now()
	ok(1)
	assert.Equal(t, 2, f.pool.Status().Up)
	assert.Equal(t, time.Duration(0), uptime(), "just started")
	f.clock.Advance(5 * time.Second)
	assert.Equal(t, 5*time.Second, uptime())

	ok(2)
	bad(0) // three up, then two: no break
	f.clock.Advance(2 * time.Second)
	assert.Equal(t, 7*time.Second, uptime())

	downAt := f.clock.Now()
	bad(1) // one up: break
	st := f.pool.Status()
	assert.Equal(t, 1, st.Up)
	assert.Equal(t, 3, st.Total)
	assert.Equal(t, 2, st.MinUp)
	assert.Equal(t, downAt, st.At)
	assert.Equal(t, time.Duration(0), st.Uptime)
	f.clock.Advance(3 * time.Second)
	assert.Equal(t, time.Duration(0), uptime())

	againAt := f.clock.Now()
	ok(0)
	assert.Equal(t, time.Duration(0), uptime(), "restarts from zero")
	f.clock.Advance(2 * time.Second)
	assert.Equal(t, 2*time.Second, uptime())

	// MarkDown breaks it too.
	markAt := f.clock.Now()
	require.True(t, f.pool.MarkDown(f.worker(2), "connect failed"))
	assert.Equal(t, time.Duration(0), uptime())

	got := eventsOf(f.pool, lifecycle.EventPoolUp, lifecycle.EventPoolDown)
	assert.Equal(t, []lifecycle.Event{
		{Time: upAt, Kind: lifecycle.EventPoolUp},
		{Time: downAt, Kind: lifecycle.EventPoolDown},
		{Time: againAt, Kind: lifecycle.EventPoolUp},
		{Time: markAt, Kind: lifecycle.EventPoolDown},
	}, got)
}

func TestPoolUptimeInitialStateUp(t *testing.T) {
	f := newFixture(t, 2, lifecycle.Config{InitialState: lifecycle.StateUp, MinUp: 2})
	f.clock.Advance(4 * time.Second)
	assert.Equal(t, 4*time.Second, f.pool.Status().Uptime)
	assert.Equal(t, []string{lifecycle.EventStarted, lifecycle.EventStarted, lifecycle.EventPoolUp}, f.log.kinds("*"))
}

// A pool built with InitialState StateUp presumes every process runs. Its
// counters must still pair up: a refusal after answers is one stop of a
// process counted as started once (started_total - stopped_total is the
// number of running processes, never negative).
func TestInitialStateUpCountersPairUp(t *testing.T) {
	f := newFixture(t, 1, lifecycle.Config{InitialState: lifecycle.StateUp})
	w := f.worker(0)
	f.pool.ObserveProbe(w, answerUp(f.clock.Advance(time.Second), 50, 7))
	st := f.status(t, 0)
	assert.True(t, st.Running)
	assert.Equal(t, uint64(1), st.Started, "started after the first answer")
	f.pool.ObserveProbe(w, refused(f.clock.Advance(time.Second)))
	st = f.status(t, 0)
	assert.Equal(t, uint64(1), st.Stopped, "stopped after the refusal")
	assert.Equal(t, st.Started, st.Stopped, "every stop has its start")
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, 3, lifecycle.Config{MinUp: 2})
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(f.pool))

	t0 := f.clock.Now()
	f.pool.ObserveProbe(f.worker(0), answerUp(t0, 100, 1))
	f.pool.ObserveProbe(f.worker(1), answer(t0, lifecycle.Degraded))
	f.pool.ObserveProbe(f.worker(2), refused(t0))
	f.pool.ObserveProbe(f.worker(0), answerUp(f.clock.Advance(2*time.Second), 1, 1)) // restart
	f.clock.Advance(2 * time.Second)

	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		v, ok := metricstest.Value(t, reg, name, labels)
		require.True(t, ok, "%s%v missing", name, labels)
		return v
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"obsproxy_worker_up", map[string]string{"worker": "w0"}, 1},
		{"obsproxy_worker_up", map[string]string{"worker": "w1"}, 1},
		{"obsproxy_worker_up", map[string]string{"worker": "w2"}, 0},
		{"obsproxy_workers", map[string]string{"state": "up"}, 2},
		{"obsproxy_workers", map[string]string{"state": "down"}, 1},
		{"obsproxy_workers", map[string]string{"state": "unknown"}, 0},
		{"obsproxy_workers", map[string]string{"state": "draining"}, 0},
		{"obsproxy_worker_uptime_seconds", map[string]string{"worker": "w0"}, 3},
		{"obsproxy_worker_uptime_seconds", map[string]string{"worker": "w1"}, 4},
		{"obsproxy_worker_uptime_seconds", map[string]string{"worker": "w2"}, 0},
		{"obsproxy_worker_started_total", map[string]string{"worker": "w0"}, 2},
		{"obsproxy_worker_started_total", map[string]string{"worker": "w1"}, 1},
		{"obsproxy_worker_started_total", map[string]string{"worker": "w2"}, 0},
		{"obsproxy_worker_stopped_total", map[string]string{"worker": "w0"}, 1},
		{"obsproxy_worker_stopped_total", map[string]string{"worker": "w1"}, 0},
		{"obsproxy_worker_stopped_total", map[string]string{"worker": "w2"}, 0},
		{"obsproxy_pool_uptime_seconds", nil, 4},
	} {
		t.Run(fmt.Sprintf("%s%v", tc.name, tc.labels), func(t *testing.T) {
			assert.InDelta(t, tc.want, value(tc.name, tc.labels), 1e-9)
		})
	}
	assert.Equal(t, 3.0, metricstest.Sum(t, reg, "obsproxy_workers", nil))

	// A refusal stops w1; the gauges follow at the next scrape.
	f.pool.ObserveProbe(f.worker(1), refused(f.clock.Now()))
	assert.Equal(t, 1.0, value("obsproxy_worker_stopped_total", map[string]string{"worker": "w1"}))
	assert.Equal(t, 0.0, value("obsproxy_worker_uptime_seconds", map[string]string{"worker": "w1"}))
	assert.Equal(t, 0.0, value("obsproxy_worker_up", map[string]string{"worker": "w1"}))
	assert.Equal(t, 0.0, value("obsproxy_pool_uptime_seconds", nil))
	assert.Equal(t, 2.0, value("obsproxy_workers", map[string]string{"state": "down"}))

	problems, err := testutil.CollectAndLint(f.pool)
	require.NoError(t, err)
	assert.Empty(t, problems)
}

func TestConcurrentUse(t *testing.T) {
	const (
		workers = 4
		probes  = 300
		marks   = 200
		readers = 3
	)
	f := newFixture(t, workers, lifecycle.Config{Rise: 2, Fall: 2, MinUp: 2, EventLogSize: 64})
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			w := f.worker(i)
			uptime := 0.0
			for n := 0; n < probes; n++ {
				at := f.clock.Advance(time.Millisecond)
				uptime += 0.001
				var res lifecycle.ProbeResult
				switch (n + i) % 10 {
				case 3:
					res = refused(at)
					uptime = 0
				case 5:
					res = timedOut(at)
				case 7:
					uptime = 0 // restarted behind the probe's back
					res = answerUp(at, uptime, 0)
				case 8:
					res = answerUp(at, uptime, 0)
					res.Health = lifecycle.Unhealthy
				default:
					res = answerUp(at, uptime, 0)
				}
				f.pool.ObserveProbe(w, res)
			}
		}(i)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; n < marks; n++ {
			f.pool.MarkDown(f.worker(n%workers), "connect failed")
		}
	}()
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < marks; n++ {
				st := f.pool.Status()
				up := 0
				for _, ws := range st.Workers {
					if ws.State == lifecycle.StateUp {
						up++
					}
					assert.GreaterOrEqual(t, ws.Started, ws.Stopped)
				}
				assert.Equal(t, up, st.Up)
				if w := f.pool.Pick(); w != nil {
					w.AddInFlight(1)
					w.AddInFlight(-1)
				}
				_ = f.pool.Events()
			}
		}()
	}
	wg.Wait()

	all := f.log.all()
	for i, e := range all {
		require.Equal(t, uint64(i+1), e.Seq, "OnEvent sees every event once, in order")
	}
	kept := f.pool.Events()
	require.Len(t, kept, 64)
	assert.Equal(t, all[len(all)-64:], kept)

	st := f.pool.Status()
	up := 0
	for i, ws := range st.Workers {
		name := fmt.Sprintf("w%d", i)
		count := func(kind string) uint64 { return uint64(len(f.log.kinds(name, kind))) }
		assert.Equal(t, count(lifecycle.EventStarted)+count(lifecycle.EventRestarted), ws.Started, "%s started", name)
		assert.Equal(t, count(lifecycle.EventStopped)+count(lifecycle.EventRestarted), ws.Stopped, "%s stopped", name)
		assert.Greater(t, ws.Stopped, uint64(0), "%s saw stops", name)
		if ws.Running {
			assert.Equal(t, ws.Stopped+1, ws.Started, "%s running", name)
		} else {
			assert.Equal(t, ws.Stopped, ws.Started, "%s not running", name)
		}
		// Up and down alternate, and the last one is the worker's state.
		transitions := f.log.kinds(name, lifecycle.EventUp, lifecycle.EventDown)
		require.NotEmpty(t, transitions, name)
		for j := 1; j < len(transitions); j++ {
			require.NotEqual(t, transitions[j-1], transitions[j], "%s transition %d", name, j)
		}
		assert.Equal(t, ws.State.String(), transitions[len(transitions)-1], name)
		if ws.State == lifecycle.StateUp {
			up++
		}
	}
	assert.Equal(t, up, st.Up)
	poolEvents := f.log.kinds("", lifecycle.EventPoolUp, lifecycle.EventPoolDown)
	for j := 1; j < len(poolEvents); j++ {
		require.NotEqual(t, poolEvents[j-1], poolEvents[j], "pool transition %d", j)
	}
	if st.Up >= 2 {
		require.NotEmpty(t, poolEvents)
		assert.Equal(t, lifecycle.EventPoolUp, poolEvents[len(poolEvents)-1])
	} else if len(poolEvents) > 0 {
		assert.Equal(t, lifecycle.EventPoolDown, poolEvents[len(poolEvents)-1])
		assert.Equal(t, time.Duration(0), st.Uptime)
	}
}
