// Package e2e runs obsproxy, built from this tree, in front of real uvicorn
// and hypercorn processes serving examples/app, and checks what a user sees:
// responses, metrics and exit codes. Everything listens on loopback or unix
// sockets; every process a test starts is ended by its PID in t.Cleanup.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

// python and hypercorn are the project venv's (.venv, built by scripts/deps.sh
// from examples/app/requirements.txt), so the tests run the pinned current
// releases of uvicorn, hypercorn, granian and FastAPI; TestMain sets them.
var python, hypercorn, granian string

var (
	repoRoot   string
	binaryPath string
	buildOnce  sync.Once
	buildErr   error
)

func TestMain(m *testing.M) {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Dir(filepath.Dir(file))
	venv := filepath.Join(repoRoot, ".venv", "bin")
	python, hypercorn, granian = filepath.Join(venv, "python"), filepath.Join(venv, "hypercorn"), filepath.Join(venv, "granian")
	if _, err := os.Stat(python); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: no project venv at .venv: run scripts/deps.sh (make deps) first:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "obsproxy-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binaryPath = filepath.Join(dir, "obsproxy")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// obsproxyBinary builds cmd/obsproxy once per test run.
func obsproxyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binaryPath, "./cmd/obsproxy")
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building obsproxy: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binaryPath
}

// freePort returns a loopback TCP port that was free a moment ago and that
// no earlier call of this test binary returned: the kernel may offer a
// port again as soon as it is closed, and two calls in a row (a public
// and an admin port) once got the same one.
func freePort(t *testing.T) int {
	t.Helper()
	handedOut.mu.Lock()
	defer handedOut.mu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
	t.Fatal("freePort: the kernel kept offering ports already handed out")
	return 0
}

// handedOut is every port freePort returned.
var handedOut = struct {
	mu    sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// shortTempDir returns a temporary directory with a path short enough for a
// unix socket (108 bytes on Linux), removed at cleanup.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "op")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// process is a child process a test started; stop ends it by its PID.
type process struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func start(t *testing.T, env []string, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = repoRoot
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LANG=C.UTF-8"}, env...)
	p := &process{cmd: cmd, out: &lockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// Its own process group, so that stop also ends the processes it forks
	// (uvicorn --workers N), which would otherwise hold the output pipe.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	require.NoError(t, cmd.Start(), "starting %s", name)
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("output of %s (pid %d):\n%s", filepath.Base(name), cmd.Process.Pid, p.out.String())
		}
	})
	return p
}

// stop kills the process by PID, with the process group it leads (the
// children it forked), and waits for it.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	// The group is the process's own while it is unreaped: its PID is
	// still taken, so no other process can lead a group of that number.
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// signal sends sig to the process.
func (p *process) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// wait waits up to d for the process to exit and returns its exit code.
func (p *process) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("process %d did not exit within %v", p.cmd.Process.Pid, d)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	require.NoError(t, p.err)
	return 0
}

// worker is one real ASGI worker process.
type worker struct {
	proc *process
	// upstream is its OBSPROXY_UPSTREAMS entry.
	upstream string
	// dial reaches the worker directly, bypassing obsproxy.
	client *http.Client
	base   string
	// port is its TCP port (0 for a unix socket).
	port int
}

// startUvicorn starts examples/app under uvicorn on a loopback port.
func startUvicorn(t *testing.T, name string) *worker {
	t.Helper()
	port := freePort(t)
	return startUvicornOn(t, name, port)
}

// startUvicornOn starts examples/app under uvicorn on port, with extra
// uvicorn arguments.
func startUvicornOn(t *testing.T, name string, port int, extra ...string) *worker {
	t.Helper()
	args := append([]string{"-m", "uvicorn", "app:app", "--app-dir", "examples/app",
		"--host", "127.0.0.1", "--port", fmt.Sprint(port), "--log-level", "warning"}, extra...)
	p := start(t, []string{"WORKER_NAME=" + name}, python, args...)
	w := &worker{proc: p, upstream: fmt.Sprintf("%s=http://127.0.0.1:%d", name, port),
		client: &http.Client{Timeout: 5 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", port), port: port}
	return w
}

// startUvicornUnix starts examples/app under uvicorn on a unix socket.
func startUvicornUnix(t *testing.T, name, dir string) *worker {
	t.Helper()
	sock := filepath.Join(dir, name+".sock")
	p := start(t, []string{"WORKER_NAME=" + name}, python, "-m", "uvicorn", "app:app", "--app-dir", "examples/app",
		"--uds", sock, "--log-level", "warning")
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	return &worker{proc: p, upstream: name + "=unix:" + sock,
		client: &http.Client{Timeout: 5 * time.Second, Transport: tr}, base: "http://localhost"}
}

// startHypercorn starts examples/app under hypercorn, which speaks HTTP/1.1
// and HTTP/2 cleartext with prior knowledge on one port.
func startHypercorn(t *testing.T, name string) *worker {
	t.Helper()
	port := freePort(t)
	p := start(t, []string{"WORKER_NAME=" + name}, hypercorn, "--bind", fmt.Sprintf("127.0.0.1:%d", port),
		"--log-level", "warning", "examples/app/app.py:app")
	return &worker{proc: p, upstream: fmt.Sprintf("%s=h2c://127.0.0.1:%d", name, port),
		client: &http.Client{Timeout: 5 * time.Second}, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
}

// waitReady polls the workers' health endpoints until all answer.
func waitReady(t *testing.T, ws ...*worker) {
	t.Helper()
	for _, w := range ws {
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := w.client.Get(w.base + "/api/v1/health")
			if err == nil {
				resp.Body.Close()
				break
			}
			select {
			case <-w.proc.done:
				t.Fatalf("worker %s exited early:\n%s", w.upstream, w.proc.out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("worker %s not ready: %v\n%s", w.upstream, err, w.proc.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// instance is a running obsproxy.
type instance struct {
	proc   *process
	url    string // public base URL
	admin  string // admin base URL
	client *http.Client
}

// startObsproxy starts obsproxy in front of workers with extra settings in
// env (VAR=value), and waits until both listeners answer and the first probe
// round has finished (/health no longer says "starting"), so that the
// workers that answer their probes take traffic.
func startObsproxy(t *testing.T, workers []*worker, env ...string) *instance {
	t.Helper()
	in := launchObsproxy(t, workers, env...)
	once := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	eventually(t, 10*time.Second, func() bool {
		resp, err := once.Get(in.url + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return !strings.Contains(string(b), `"detail":"starting"`)
	}, "first probe round")
	return in
}

// launchObsproxy starts obsproxy like startObsproxy but returns as soon as
// both listeners answer, before any probe may have finished.
func launchObsproxy(t *testing.T, workers []*worker, env ...string) *instance {
	t.Helper()
	var ups []string
	for _, w := range workers {
		ups = append(ups, w.upstream)
	}
	port, adminPort := freePort(t), freePort(t)
	env = append([]string{
		fmt.Sprintf("OBSPROXY_LISTEN_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("OBSPROXY_ADMIN_ADDR=127.0.0.1:%d", adminPort),
		"OBSPROXY_UPSTREAMS=" + strings.Join(ups, ","),
		"OBSPROXY_LOG_FORMAT=text",
	}, env...)
	p := start(t, env, obsproxyBinary(t))
	in := &instance{proc: p, url: fmt.Sprintf("http://127.0.0.1:%d", port), admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	t.Cleanup(in.client.CloseIdleConnections)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(in.admin + "/metrics")
		if err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", strings.TrimPrefix(in.url, "http://")); err == nil {
				c.Close()
				return in
			}
		}
		select {
		case <-p.done:
			t.Fatalf("obsproxy exited early:\n%s", p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("obsproxy not ready:\n%s", p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get sends GET path through obsproxy and returns status and body.
func (in *instance) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := in.client.Get(in.url + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// metrics scrapes the admin /metrics.
func (in *instance) metrics(t *testing.T) prometheus.Gatherer {
	t.Helper()
	resp, err := http.Get(in.admin + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return metricstest.Parse(t, resp.Body)
}

// value returns the sum of the series of name whose labels include labels,
// from a fresh scrape.
func (in *instance) value(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return metricstest.Sum(t, in.metrics(t), name, labels)
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: "+msg, append([]any{d}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
