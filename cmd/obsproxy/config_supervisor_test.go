package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// The exit-2 rows of spec section 8 (issue 13): each names the variable,
// the value and what is accepted.
func TestLoadConfigSupervisorErrors(t *testing.T) {
	path := "PATH=" + os.Getenv("PATH")
	readOnly := filepath.Join(t.TempDir(), "ro")
	require.NoError(t, os.Mkdir(readOnly, 0o500))
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	long := "/tmp/" + strings.Repeat("d", 100)
	const acceptCmd = "want a command line with {socket} (unix transport) or {port} (tcp, h2c), e.g. uvicorn app:app --uds {socket}"
	const acceptDir = "want a directory obsproxy can create and write, short enough for a socket path (108 bytes)"
	tests := []struct {
		name    string
		environ []string
		args    []string
		want    string
	}{
		{"command and OBSPROXY_UPSTREAMS", []string{path, "OBSPROXY_UPSTREAMS=http://127.0.0.1:8001"}, []string{"--", "sh", "{socket}"},
			`invalid OBSPROXY_UPSTREAMS="http://127.0.0.1:8001": a worker command is given too (supervisor mode starts its own workers); set one or the other; want comma-separated [name=]URL, URL one of http://host:port, h2c://host:port, unix:/path.sock`},
		{"variable command and --upstreams", []string{path, "OBSPROXY_WORKER_COMMAND=sh {socket}"}, []string{"--upstreams=unix:/a.sock"},
			`invalid OBSPROXY_UPSTREAMS="unix:/a.sock": a worker command is given too`},
		{"program not in PATH", []string{path}, []string{"--", "no-such-program-obsproxy", "{socket}"},
			`invalid OBSPROXY_WORKER_COMMAND="no-such-program-obsproxy {socket}": program "no-such-program-obsproxy" not found in PATH; ` + acceptCmd},
		{"program path missing", []string{path, "OBSPROXY_WORKER_COMMAND=/nonexistent/uvicorn app:app --uds {socket}"}, nil,
			`invalid OBSPROXY_WORKER_COMMAND="/nonexistent/uvicorn app:app --uds {socket}": program "/nonexistent/uvicorn" not found or not executable`},
		{"nothing after --", []string{path}, []string{"--"}, `invalid OBSPROXY_WORKER_COMMAND="": nothing after --; ` + acceptCmd},
		{"unbalanced quote", []string{path, `OBSPROXY_WORKER_COMMAND=sh "{socket}`}, nil, `invalid OBSPROXY_WORKER_COMMAND="sh \"{socket}": cannot split it like a shell:`},
		{"unix without {socket}", []string{path}, []string{"--", "sh", "--port", "{port}"},
			`invalid OBSPROXY_WORKER_COMMAND="sh --port {port}": no {socket} in the command, which OBSPROXY_WORKER_TRANSPORT=unix needs; ` + acceptCmd},
		{"tcp without {port}", []string{path, "OBSPROXY_WORKER_TRANSPORT=tcp"}, []string{"--", "sh", "{socket}"},
			`invalid OBSPROXY_WORKER_COMMAND="sh {socket}": no {port} in the command, which OBSPROXY_WORKER_TRANSPORT=tcp needs`},
		{"h2c without {port}", []string{path}, []string{"--worker-transport=h2c", "--", "sh", "{name}"},
			`invalid OBSPROXY_WORKER_COMMAND="sh {name}": no {port} in the command, which OBSPROXY_WORKER_TRANSPORT=h2c needs`},
		{"unknown transport", []string{path, "OBSPROXY_WORKER_TRANSPORT=quic"}, []string{"--", "sh", "{socket}"},
			`invalid OBSPROXY_WORKER_TRANSPORT="quic": want unix, tcp or h2c`},
		{"zero workers", []string{path, "OBSPROXY_WORKERS=0"}, []string{"--", "sh", "{socket}"}, `invalid OBSPROXY_WORKERS="0": want an integer from 1 to 256`},
		{"257 workers", []string{path}, []string{"--workers=257", "--", "sh", "{socket}"}, `invalid OBSPROXY_WORKERS="257": want an integer from 1 to 256`},
		{"workers not a number", []string{path, "OBSPROXY_WORKERS=four"}, []string{"--", "sh", "{socket}"}, `invalid OBSPROXY_WORKERS="four": want an integer from 1 to 256`},
		{"socket dir not creatable", []string{path, "OBSPROXY_WORKER_SOCKET_DIR=" + filepath.Join(readOnly, "sub")}, []string{"--", "sh", "{socket}"},
			`invalid OBSPROXY_WORKER_SOCKET_DIR="` + filepath.Join(readOnly, "sub") + `": cannot create it: permission denied; ` + acceptDir},
		{"socket dir not writable", []string{path, "OBSPROXY_WORKER_SOCKET_DIR=" + readOnly}, []string{"--", "sh", "{socket}"},
			`invalid OBSPROXY_WORKER_SOCKET_DIR="` + readOnly + `": cannot write in it: permission denied; ` + acceptDir},
		{"socket dir is a file", []string{path, "OBSPROXY_WORKER_SOCKET_DIR=" + file}, []string{"--", "sh", "{socket}"},
			`invalid OBSPROXY_WORKER_SOCKET_DIR="` + file + `": cannot create it: not a directory`},
		{"socket path too long", []string{path, "OBSPROXY_WORKER_SOCKET_DIR=" + long}, []string{"--workers=12", "--", "sh", "{socket}"},
			`invalid OBSPROXY_WORKER_SOCKET_DIR="` + long + `": socket paths in it would be 125 bytes, over the kernel's 107; ` + acceptDir},
		{"socket dir on a read-only file system (root too)", []string{path, "OBSPROXY_WORKER_SOCKET_DIR=/sys/obsproxy-sockets"}, []string{"--", "sh", "{socket}"},
			`invalid OBSPROXY_WORKER_SOCKET_DIR="/sys/obsproxy-sockets": cannot create it: `},
		{"start timeout zero", []string{path, "OBSPROXY_WORKER_START_TIMEOUT=0s"}, nil, `invalid OBSPROXY_WORKER_START_TIMEOUT="0s": want a positive Go duration`},
		{"backoff max below 100ms", []string{path, "OBSPROXY_WORKER_BACKOFF_MAX=50ms"}, nil, `invalid OBSPROXY_WORKER_BACKOFF_MAX="50ms": want a Go duration of at least 100ms`},
		{"min healthy above the workers", []string{path, "OBSPROXY_MIN_HEALTHY_WORKERS=3"}, []string{"--workers=2", "--", "sh", "{socket}"},
			`invalid OBSPROXY_MIN_HEALTHY_WORKERS="3": only 2 workers are configured`},
	}
	if os.Geteuid() == 0 {
		t.Log("running as root: the permission rows cannot fail and are skipped")
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if os.Geteuid() == 0 && strings.Contains(tc.want, "permission denied") {
				t.Skip("root may write anywhere")
			}
			_, err := loadConfig(tc.args, tc.environ)
			require.Error(t, err)
			var ce *configError
			require.ErrorAs(t, err, &ce, "a configuration error: exit 2")
			assert.True(t, strings.HasPrefix(err.Error(), tc.want), "got  %s\nwant %s…", err, tc.want)
		})
	}
	_, err := os.Stat(filepath.Join(readOnly, "sub"))
	assert.True(t, os.IsNotExist(err))
}

func TestLoadConfigSupervisor(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "socks")
	environ := []string{"PATH=" + os.Getenv("PATH"), "APP=examples.app:app", "OBSPROXY_WORKERS=3",
		"OBSPROXY_WORKER_SOCKET_DIR=" + dir,
		`OBSPROXY_WORKER_COMMAND=uvicorn-missing "$APP" --uds '{socket}' --log-level "warning"`}

	// The -- form wins over the variable.
	cfg, err := loadConfig([]string{"--", "sh", "-c", "exec x --uds {socket}", "{name}"}, environ)
	require.NoError(t, err)
	assert.Equal(t, []string{"sh", "-c", "exec x --uds {socket}", "{name}"}, cfg.WorkerArgv)
	assert.Equal(t, []workerSpec{{Name: "w1", Network: "unix"}, {Name: "w2", Network: "unix"}, {Name: "w3", Network: "unix"}}, cfg.Workers)
	assert.True(t, cfg.supervised())
	fi, err := os.Stat(dir)
	require.NoError(t, err, "the socket directory is created")
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	assert.Contains(t, cfg.WorkerEnv, "APP=examples.app:app", "the workers' environment")

	// The variable is split like a shell: quotes, $VAR from the environment.
	environ[len(environ)-1] = `OBSPROXY_WORKER_COMMAND=sh "$APP" --uds '{socket}' --log-level "warn ing"`
	cfg, err = loadConfig(nil, environ)
	require.NoError(t, err)
	assert.Equal(t, []string{"sh", "examples.app:app", "--uds", "{socket}", "--log-level", "warn ing"}, cfg.WorkerArgv)

	// h2c over tcp; the default worker count is the number of CPUs.
	cfg, err = loadConfig([]string{"--worker-transport=h2c", "--", "sh", "--bind", "127.0.0.1:{port}"}, []string{"PATH=" + os.Getenv("PATH")})
	require.NoError(t, err)
	require.Len(t, cfg.Workers, min(runtime.NumCPU(), 256))
	assert.Equal(t, lifecycle.WorkerConfig{Name: "w1", Network: "tcp", H2C: true}, cfg.Workers[0])

	// Static mode keeps its workers and no worker environment.
	cfg, err = loadConfig(nil, []string{"OBSPROXY_UPSTREAMS=http://127.0.0.1:8001", "OBSPROXY_WORKERS=4"})
	require.NoError(t, err)
	assert.False(t, cfg.supervised())
	assert.Nil(t, cfg.WorkerEnv)
	assert.Equal(t, "127.0.0.1:8001", cfg.Workers[0].Name)
}
