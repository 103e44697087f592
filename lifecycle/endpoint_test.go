package lifecycle_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// In supervisor mode a worker has no address until a process publishes one,
// each process a new generation, and only ProcessStarted / ProcessExited
// count: a probe answer with another pid (granian's child) or an uptime
// reset is no restart, and a refusal is no stop (issue 13).
func TestSupervisedPoolCountsOnlyTheSupervisor(t *testing.T) {
	pool, err := lifecycle.NewPool(lifecycle.Config{Supervised: true,
		Workers: []lifecycle.WorkerConfig{{Name: "w1", Network: "unix"}}})
	require.NoError(t, err)
	w := pool.Workers()[0]
	assert.Nil(t, w.Endpoint(), "no process yet")

	now := time.Now()
	ep := w.SetEndpoint("unix", "/tmp/s/w1.1.sock", 100, now)
	assert.Equal(t, uint64(1), ep.Generation)
	assert.True(t, w.Current(1))
	pool.ProcessStarted(w, now, 100)
	assert.Equal(t, "unix", pool.Status().Workers[0].Network)
	assert.Equal(t, "/tmp/s/w1.1.sock", pool.Status().Workers[0].Address)

	answer := func(at time.Time, uptime float64, pid int) lifecycle.ProbeResult {
		return lifecycle.ProbeResult{At: at, Health: lifecycle.Healthy, Answered: true, Uptime: uptime, HasUptime: true, PID: pid}
	}
	pool.ObserveProbe(w, answer(now.Add(time.Second), 50, 101))
	pool.ObserveProbe(w, answer(now.Add(2*time.Second), 1, 102))
	pool.ObserveProbe(w, lifecycle.ProbeResult{At: now.Add(3 * time.Second), Health: lifecycle.Unhealthy, Refused: true})
	st := pool.Status().Workers[0]
	assert.Equal(t, uint64(1), st.Started, "probes count no start")
	assert.Equal(t, uint64(0), st.Stopped, "probes count no stop")
	assert.Equal(t, 100, st.PID, "the supervisor's pid")
	assert.True(t, st.Running)

	pool.ProcessExited(w, now.Add(4*time.Second), "killed by SIGKILL")
	assert.True(t, w.ClearEndpoint(ep))
	assert.False(t, w.ClearEndpoint(ep), "only once")
	assert.Nil(t, w.Endpoint())
	ep2 := w.SetEndpoint("unix", "/tmp/s/w1.2.sock", 103, now)
	assert.Equal(t, uint64(2), ep2.Generation)
	assert.False(t, w.Current(1), "a connection to the first process is stale")
	pool.ProcessStarted(w, now.Add(5*time.Second), 103)
	st = pool.Status().Workers[0]
	assert.Equal(t, uint64(2), st.Started)
	assert.Equal(t, uint64(1), st.Stopped)
	var kinds []string
	for _, e := range pool.Events() {
		kinds = append(kinds, e.Kind+":"+e.Reason)
	}
	assert.Equal(t, []string{"started:pid 100", "up:healthy", "pool_up:", "down:unhealthy", "pool_down:", "stopped:killed by SIGKILL", "started:pid 103"}, kinds)
}
