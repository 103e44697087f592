package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"mvdan.cc/sh/v3/shell"

	"github.com/obsproxy/obsproxy/supervisor"
)

// maxWorkers is the largest OBSPROXY_WORKERS (spec section 8).
const maxWorkers = 256

// supervised reports whether cfg is supervisor mode: a command after "--" or
// OBSPROXY_WORKER_COMMAND (spec section 8).
func (c *Config) supervised() bool { return c.WorkerArgv != nil || c.WorkerCommand != "" }

// supervisor checks the settings of spec section 8 and, in supervisor mode,
// fills WorkerArgv and the pool w1..wN (Workers). The rules, each an exit 2
// before anything listens: no OBSPROXY_UPSTREAMS beside a command; a
// program found in PATH; the placeholder the transport needs; 1..256
// workers; a socket directory that can be created and written, with room
// for every socket path in sun_path (108 bytes with its NUL).
//
// The "--" form wins over OBSPROXY_WORKER_COMMAND. The variable is split as
// a shell would (mvdan.cc/sh/v3/shell.Fields: quotes, escapes, $VAR and
// ${VAR} from obsproxy's environment); globs and command substitution are
// not run, and nothing runs through a shell.
func (v *validator) supervisor() error {
	c := v.cfg
	// The settings that need no command are checked in static mode too,
	// so that a typo is caught before the day they matter.
	transport, err := supervisor.ParseTransport(c.WorkerTransport)
	if err != nil {
		return v.invalid("WORKER_TRANSPORT", c.WorkerTransport, "")
	}
	raw := v.vars[envPrefix+"WORKERS"]
	if raw != "" && (c.NumWorkers < 1 || c.NumWorkers > maxWorkers) {
		return v.invalid("WORKERS", raw, "")
	}
	for _, d := range []struct {
		name string
		val  time.Duration
		min  time.Duration
	}{
		{"WORKER_START_TIMEOUT", c.WorkerStartTimeout, 1},
		{"WORKER_STOP_TIMEOUT", c.WorkerStopTimeout, 1},
		{"WORKER_BACKOFF_MAX", c.WorkerBackoffMax, supervisor.BackoffMin},
	} {
		if d.val < d.min {
			return v.invalid(d.name, v.raw(d.name), "")
		}
	}
	if !c.supervised() {
		c.WorkerEnv = nil
		return nil
	}
	if raw == "" {
		c.NumWorkers = min(runtime.NumCPU(), maxWorkers)
	}
	shown := c.WorkerCommand
	if c.WorkerArgv != nil {
		shown = strings.Join(c.WorkerArgv, " ")
		if len(c.WorkerArgv) == 0 {
			return v.invalid("WORKER_COMMAND", "", "nothing after --")
		}
	} else {
		argv, err := shell.Fields(c.WorkerCommand, lookupIn(c.WorkerEnv))
		if err != nil {
			return v.invalid("WORKER_COMMAND", shown, "cannot split it like a shell: "+err.Error())
		}
		if len(argv) == 0 {
			return v.invalid("WORKER_COMMAND", shown, "no program")
		}
		c.WorkerArgv = argv
	}
	if raw, ok := v.vars[envPrefix+"UPSTREAMS"]; ok && raw != "" {
		return v.invalid("UPSTREAMS", raw, "a worker command is given too (supervisor mode starts its own workers); set one or the other")
	}
	if _, err := exec.LookPath(c.WorkerArgv[0]); err != nil {
		where := " in PATH"
		if strings.Contains(c.WorkerArgv[0], "/") {
			where = " or not executable"
		}
		return v.invalid("WORKER_COMMAND", shown, fmt.Sprintf("program %q not found%s", c.WorkerArgv[0], where))
	}
	if ph := transport.Placeholder(); !hasPlaceholder(c.WorkerArgv, ph) {
		return v.invalid("WORKER_COMMAND", shown, fmt.Sprintf("no %s in the command, which OBSPROXY_WORKER_TRANSPORT=%s needs", ph, transport))
	}
	if transport == supervisor.Unix {
		if err := v.socketDir(); err != nil {
			return err
		}
	}
	c.Workers = make([]workerSpec, c.NumWorkers)
	for i := range c.Workers {
		c.Workers[i] = workerSpec{Name: "w" + strconv.Itoa(i+1), Network: transport.Network(), H2C: transport == supervisor.H2C}
	}
	return nil
}

// hasPlaceholder reports whether any argument contains ph.
func hasPlaceholder(argv []string, ph string) bool {
	for _, a := range argv {
		if strings.Contains(a, ph) {
			return true
		}
	}
	return false
}

// socketDir checks OBSPROXY_WORKER_SOCKET_DIR: it is created 0700 when
// missing, must be a directory obsproxy can write, and its longest socket
// path must fit in sun_path. The default (empty) is a fresh directory
// under os.TempDir() made at start; its path length is checked here.
func (v *validator) socketDir() error {
	c := v.cfg
	longest := supervisor.MaxSocketName(c.NumWorkers)
	if c.WorkerSocketDir == "" {
		dir := filepath.Join(os.TempDir(), supervisor.TempDirPattern+"0123456789")
		if n := len(dir) + 1 + longest; n > supervisor.MaxSocketPath {
			return v.invalid("WORKER_SOCKET_DIR", "", fmt.Sprintf("the default directory under %s makes socket paths of %d bytes, over the kernel's %d; set a shorter directory", os.TempDir(), n, supervisor.MaxSocketPath))
		}
		return nil
	}
	dir, err := filepath.Abs(c.WorkerSocketDir)
	if err != nil {
		return v.invalid("WORKER_SOCKET_DIR", c.WorkerSocketDir, err.Error())
	}
	if n := len(dir) + 1 + longest; n > supervisor.MaxSocketPath {
		return v.invalid("WORKER_SOCKET_DIR", c.WorkerSocketDir, fmt.Sprintf("socket paths in it would be %d bytes, over the kernel's %d", n, supervisor.MaxSocketPath))
	}
	if err := supervisor.PrepareSocketDir(dir); err != nil {
		return v.invalid("WORKER_SOCKET_DIR", c.WorkerSocketDir, err.Error())
	}
	c.WorkerSocketDir = dir
	return nil
}

// lookupIn returns a lookup of environ's (KEY=VALUE) variables; a missing
// one is "".
func lookupIn(environ []string) func(string) string {
	return func(name string) string {
		for i := len(environ) - 1; i >= 0; i-- {
			if k, val, ok := strings.Cut(environ[i], "="); ok && k == name {
				return val
			}
		}
		return ""
	}
}
