package e2e

// `make run` is scripts/run.sh: obsproxy supervising three uvicorn workers
// of examples/app (README.md, quick start and walk-throughs).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMakeRunScript runs scripts/run.sh as `make run` does (only the
// listen addresses and the socket directory moved aside) and walks the
// README: three workers w1..w3 answer under their names, a worker killed
// with SIGKILL is replaced by obsproxy with nothing typed, and Ctrl-C
// (SIGINT) stops obsproxy with exit 0 and leaves no worker and no socket.
// It needs supervisor mode (issue 13) in the obsproxy built from this tree.
func TestMakeRunScript(t *testing.T) {
	if !helpSettings(t)["OBSPROXY_WORKER_COMMAND"] {
		t.Skip("this obsproxy has no supervisor mode: obsproxy --help lists no OBSPROXY_WORKER_COMMAND")
	}
	port, adminPort := freePort(t), freePort(t)
	sockets := filepath.Join(shortTempDir(t), "s")
	// run.sh execs obsproxy: this process becomes obsproxy, as under make.
	p := start(t, []string{
		fmt.Sprintf("OBSPROXY_LISTEN_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("OBSPROXY_ADMIN_ADDR=127.0.0.1:%d", adminPort),
		"OBSPROXY_WORKER_SOCKET_DIR=" + sockets,
	}, filepath.Join(repoRoot, "scripts/run.sh"), obsproxyBinary(t))
	in := &instance{proc: p, url: fmt.Sprintf("http://127.0.0.1:%d", port), admin: fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	alive := func() {
		select {
		case <-p.done:
			t.Fatalf("make run's obsproxy exited:\n%s", p.out.String())
		default:
		}
	}
	eventually(t, 60*time.Second, func() bool {
		alive()
		resp, err := in.client.Get(in.url + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "/health 200")
	info, err := os.Stat(sockets)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), info.Mode().Perm(), "the socket directory is private")

	seen := map[string]bool{}
	eventually(t, 30*time.Second, func() bool {
		code, body := in.get(t, "/")
		require.Equal(t, http.StatusOK, code, body)
		var ans struct{ Worker string }
		require.NoError(t, json.Unmarshal([]byte(body), &ans), body)
		seen[ans.Worker] = true
		return len(seen) >= 3
	}, "answers from three workers")
	assert.Equal(t, map[string]bool{"w1": true, "w2": true, "w3": true}, seen, "workers named by OBSPROXY_WORKER_NAME")

	pids := map[string]int{}
	for _, w := range []string{"w1", "w2", "w3"} {
		pids[w] = int(in.value(t, "obsproxy_worker_pid", map[string]string{"worker": w}))
		require.Positive(t, pids[w], "obsproxy_worker_pid of %s", w)
	}

	// The README's walk-through: kill -9 w2, and obsproxy starts a new one.
	require.NoError(t, syscall.Kill(pids["w2"], syscall.SIGKILL))
	var replacement int
	eventually(t, 30*time.Second, func() bool {
		alive()
		replacement = int(in.value(t, "obsproxy_worker_pid", map[string]string{"worker": "w2"}))
		return replacement > 0 && replacement != pids["w2"]
	}, "a new w2 process")
	assert.Equal(t, 1.0, in.value(t, "obsproxy_worker_exits_total", map[string]string{"worker": "w2", "reason": "crash"}))
	assert.Equal(t, 2.0, in.value(t, "obsproxy_worker_started_total", map[string]string{"worker": "w2"}))
	eventually(t, 30*time.Second, func() bool {
		resp, err := in.client.Get(in.url + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK && in.value(t, "obsproxy_worker_up", map[string]string{"worker": "w2"}) == 1
	}, "the new w2 serving")

	// Ctrl-C: obsproxy stops its workers, exits 0, and leaves nothing behind.
	p.signal(syscall.SIGINT)
	assert.Equal(t, 0, p.wait(t, 90*time.Second), "exit code after Ctrl-C:\n%s", p.out.String())
	for _, pid := range []int{pids["w1"], replacement, pids["w3"]} {
		assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "worker process %d still exists after obsproxy exited", pid)
	}
	left, err := filepath.Glob(filepath.Join(sockets, "*"))
	require.NoError(t, err)
	assert.Empty(t, left, "obsproxy removes the sockets it made")
}
