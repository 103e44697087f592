package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

func TestBackoffDoublesToMaxAndResetsAfterServing(t *testing.T) {
	b := backoff{min: BackoffMin, max: 800 * time.Millisecond, reset: BackoffReset}
	var got []time.Duration
	for range 6 {
		got = append(got, b.next(0))
	}
	ms := time.Millisecond
	assert.Equal(t, []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, 800 * ms, 800 * ms}, got)
	assert.Equal(t, 800*ms, b.next(59*time.Second), "served less than a minute: still failing in a row")
	assert.Equal(t, 100*ms, b.next(time.Minute), "served a minute: the first failure again")
	assert.Equal(t, 200*ms, b.next(0))

	odd := backoff{min: BackoffMin, max: 250 * ms, reset: BackoffReset}
	assert.Equal(t, []time.Duration{100 * ms, 200 * ms, 250 * ms, 250 * ms}, []time.Duration{odd.next(0), odd.next(0), odd.next(0), odd.next(0)})
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogLinesCutsLongLinesWithBoundedMemory(t *testing.T) {
	var out syncBuffer
	logger := slog.New(slog.NewTextHandler(&out, nil))
	long := strings.Repeat("a", MaxLineBytes+10)
	input := "first\r\n" + long + "\nsecond\n" + strings.Repeat("b", 3*MaxLineBytes) + "\nlast without newline"
	logLines(strings.NewReader(input), logger, "stdout")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 5, out.String())
	assert.Contains(t, lines[0], "stream=stdout line=first")
	assert.NotContains(t, lines[0], "cut")
	assert.Contains(t, lines[1], "line="+strings.Repeat("a", MaxLineBytes)+" cut=true")
	assert.Contains(t, lines[2], "line=second")
	assert.Contains(t, lines[3], "line="+strings.Repeat("b", MaxLineBytes)+" cut=true")
	assert.Contains(t, lines[4], `line="last without newline"`)

	// 64 MiB without a newline: read in fixed buffers, a few allocations.
	out.mu.Lock()
	out.b.Reset()
	out.mu.Unlock()
	allocs := testing.AllocsPerRun(1, func() {
		logLines(io.LimitReader(zeros{}, 64<<20), slog.New(slog.NewTextHandler(io.Discard, nil)), "stderr")
	})
	assert.Less(t, allocs, 100.0, "memory does not grow with the line")
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	return len(p), nil
}

func TestExitOf(t *testing.T) {
	run := func(script string) *os.ProcessState {
		cmd := exec.Command("sh", "-c", script)
		_ = cmd.Run()
		return cmd.ProcessState
	}
	for _, tc := range []struct {
		name, script, asked string
		sentKill            bool
		event, label        string
		foreign             bool
	}{
		{"exit 1", "exit 1", "", false, "exit code 1", "crash", false},
		{"exit 0 unasked", "exit 0", "", false, "exit code 0", "exited", false},
		{"SIGKILL not ours", "kill -KILL $$", "", false, "killed by SIGKILL", "crash", true},
		{"SIGKILL ours", "kill -KILL $$", reasonStartTimeout, true, "killed by SIGKILL", "start_timeout", false},
		{"SIGTERM at shutdown", "kill -TERM $$", reasonShutdown, false, "killed by SIGTERM", "shutdown", false},
		{"SIGSEGV", "kill -SEGV $$", "", false, "killed by SIGSEGV", "crash", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			event, label, foreign := exitOf(run(tc.script), tc.asked, tc.sentKill)
			assert.Equal(t, tc.event, event)
			assert.Equal(t, tc.label, label)
			assert.Equal(t, tc.foreign, foreign)
		})
	}
}

// newTestSupervisor runs cmd (sh -c script {socket} {name}) for n workers;
// the test plays the prober through kick.
func newTestSupervisor(t *testing.T, n int, script string, cfg Config) (*Supervisor, *lifecycle.Pool, *syncBuffer) {
	t.Helper()
	workers := make([]lifecycle.WorkerConfig, n)
	for i := range workers {
		workers[i] = lifecycle.WorkerConfig{Name: "w" + string(rune('1'+i)), Network: "unix"}
	}
	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: workers, Supervised: true})
	require.NoError(t, err)
	var log syncBuffer
	cfg.Pool = pool
	cfg.Command = []string{"sh", "-c", script, "{socket}", "{name}"}
	cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	if cfg.Env == nil {
		cfg.Env = []string{"PATH=" + os.Getenv("PATH"), "OBSPROXY_ADMIN_TOKEN=secret"}
	}
	s, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(s.Stop)
	return s, pool, &log
}

func eventually(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, d, 10*time.Millisecond, msg)
}

// A slot's life: start with placeholders and environment, a new endpoint
// generation per process, exact starts and exits in the pool, a restart
// after a crash, a stop with SIGTERM that removes sockets and the private
// socket directory.
func TestSupervisorSlotLifecycle(t *testing.T) {
	dir := t.TempDir()
	script := `echo "$1 $0 $OBSPROXY_WORKER_NAME token=$OBSPROXY_ADMIN_TOKEN"; : > "$0"; trap 'exit 0' TERM; while :; do sleep 0.05; done`
	s, pool, log := newTestSupervisor(t, 2, script, Config{SocketDir: dir, StopTimeout: 5 * time.Second})
	s.Start()
	w1 := pool.Workers()[0]
	eventually(t, 10*time.Second, func() bool { return s.Snapshot()[0].PID != 0 && s.Snapshot()[1].PID != 0 }, "both started")
	ep := w1.Endpoint()
	require.NotNil(t, ep)
	assert.Equal(t, filepath.Join(dir, "w1.1.sock"), ep.Address)
	assert.Equal(t, uint64(1), ep.Generation)
	eventually(t, 5*time.Second, func() bool { return strings.Contains(log.String(), `line="w1 `+ep.Address+` w1 token="`) }, "placeholders, name, no token")

	first := s.Snapshot()[0].PID
	assert.Equal(t, first, pool.Status().Workers[0].PID)
	require.NoError(t, syscall.Kill(first, syscall.SIGKILL))
	eventually(t, 10*time.Second, func() bool { p := s.Snapshot()[0].PID; return p != 0 && p != first }, "restarted")
	ep2 := w1.Endpoint()
	assert.Equal(t, filepath.Join(dir, "w1.2.sock"), ep2.Address, "a new socket path per process")
	assert.Equal(t, uint64(2), ep2.Generation)
	_, err := os.Stat(ep.Address)
	assert.True(t, os.IsNotExist(err), "the dead process's socket file is removed")
	st := pool.Status().Workers[0]
	assert.Equal(t, uint64(2), st.Started)
	assert.Equal(t, uint64(1), st.Stopped)
	f := s.Snapshot()[0]
	assert.Equal(t, uint64(1), f.Exits)
	assert.Equal(t, "killed by SIGKILL", f.LastExitReason)
	assert.Contains(t, log.String(), "out of memory?")

	pids := []int{s.Snapshot()[0].PID, s.Snapshot()[1].PID}
	s.Stop()
	for _, p := range pids {
		assert.Error(t, syscall.Kill(p, 0), "process %d reaped", p)
	}
	assert.Nil(t, w1.Endpoint())
	left, _ := filepath.Glob(filepath.Join(dir, "*.sock"))
	assert.Empty(t, left, "socket files removed")
	assert.Equal(t, uint64(2), pool.Status().Workers[0].Stopped)
	assert.Contains(t, log.String(), `reason=shutdown status="exit code 0"`)
}

// A process that is never found serving is killed at the start timeout; a
// stale socket file of a killed obsproxy does not stop a new start.
func TestSupervisorStartTimeoutAndStaleSocket(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "w1.1.sock")
	require.NoError(t, os.WriteFile(stale, nil, 0o600))
	s, _, log := newTestSupervisor(t, 1, `exec sleep 100`, Config{SocketDir: dir, StartTimeout: 300 * time.Millisecond})
	s.Start()
	eventually(t, 10*time.Second, func() bool { return s.Snapshot()[0].Exits >= 1 }, "killed")
	assert.Equal(t, "start_timeout, killed by SIGKILL", s.Snapshot()[0].LastExitReason)
	assert.NotContains(t, log.String(), "out of memory?", "obsproxy's own SIGKILL is no OOM")
	assert.Contains(t, log.String(), "address="+stale, "the stale file was taken over")
}

// A private socket directory is made under the temp dir and removed.
func TestSupervisorPrivateSocketDir(t *testing.T) {
	s, _, _ := newTestSupervisor(t, 1, `exec sleep 100`, Config{})
	dir := s.SocketDir()
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	assert.True(t, strings.HasPrefix(filepath.Base(dir), TempDirPattern))
	s.Start()
	eventually(t, 10*time.Second, func() bool { return s.Snapshot()[0].PID != 0 }, "started")
	s.Stop()
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err))
}

// TCP: every process gets a fresh port.
func TestSupervisorTCPFreshPorts(t *testing.T) {
	var ps portSet
	seen := map[int]bool{}
	for range 50 {
		p, err := ps.fresh()
		require.NoError(t, err)
		require.False(t, seen[p], "port %d handed out twice", p)
		seen[p] = true
	}
}

// The reaper kills the process groups still listed when its input ends
// without "bye" (obsproxy died), removes a private socket directory, and
// does nothing after "bye".
func TestRunReaper(t *testing.T) {
	startGroup := func() *exec.Cmd {
		cmd := exec.Command("sh", "-c", "sleep 100 & sleep 100; wait")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
		return cmd
	}
	listed, unlisted := startGroup(), startGroup()
	dir := filepath.Join(t.TempDir(), TempDirPattern+"123")
	require.NoError(t, os.Mkdir(dir, 0o700))
	in := fmt.Sprintf("+%d\n+%d\n-%d\nd %s\n", listed.Process.Pid, unlisted.Process.Pid, unlisted.Process.Pid, dir)
	require.Equal(t, 0, RunReaper(strings.NewReader(in)))
	err := listed.Wait()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "killed", "the listed group is killed")
	assert.NoError(t, syscall.Kill(unlisted.Process.Pid, 0), "a reaped (unlisted) group is left alone")
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "the private directory is removed")

	third := startGroup()
	require.Equal(t, 0, RunReaper(strings.NewReader(fmt.Sprintf("+%d\nbye\n", third.Process.Pid))))
	assert.NoError(t, syscall.Kill(third.Process.Pid, 0), "a clean shutdown kills nothing")
}
