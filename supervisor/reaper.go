package supervisor

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// ReaperArg is the first argument that makes the obsproxy binary run as the
// reaper (RunReaper) instead of as obsproxy; cmd/obsproxy dispatches on it.
const ReaperArg = "__obsproxy-reaper"

// The reaper is a small process, obsproxy's own binary in its own process
// group, that outlives an obsproxy killed with SIGKILL just long enough to
// kill what the kernel's parent-death signal cannot reach: the children of
// a worker process (granian's per-worker processes), which are reparented
// to init when their parent dies. obsproxy tells it, on its stdin, every
// process group it starts ("+PGID") and reaps ("-PGID"), and its private
// socket directory ("d PATH"). When stdin ends without "bye" (obsproxy is
// gone: only obsproxy holds the pipe's write end), the reaper sends SIGKILL
// to every group still listed and removes the directory. A clean shutdown
// writes "bye" and closes the pipe.

// RunReaper reads the protocol above from in until it ends, then kills the
// groups still listed (unless "bye" came) and returns 0. It is what the
// obsproxy binary runs with ReaperArg.
func RunReaper(in io.Reader) int {
	groups := map[int]bool{}
	var dir string
	clean := false
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "bye":
			clean = true
		case strings.HasPrefix(line, "d "):
			dir = strings.TrimPrefix(line, "d ")
		case len(line) > 1 && (line[0] == '+' || line[0] == '-'):
			pgid, err := strconv.Atoi(line[1:])
			if err != nil || pgid <= 1 {
				continue
			}
			if line[0] == '+' {
				groups[pgid] = true
			} else {
				delete(groups, pgid)
			}
		}
	}
	if clean {
		return 0
	}
	for pgid := range groups {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
	if dir != "" && strings.Contains(dir, TempDirPattern) {
		os.RemoveAll(dir)
	}
	return 0
}

// reaper is obsproxy's end of the reaper: a pipe to its stdin.
type reaper struct {
	mu   sync.Mutex
	cmd  *exec.Cmd
	w    *os.File
	done chan struct{}
}

// startReaper starts argv (the obsproxy binary with ReaperArg) as the
// reaper, in its own process group so that a signal to obsproxy's group
// (Ctrl-C in a terminal, a test harness killing the group) does not reach
// it.
func startReaper(argv []string) (*reaper, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = r
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("starting the reaper: %w", err)
	}
	r.Close()
	rp := &reaper{cmd: cmd, w: w, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(rp.done) }()
	return rp, nil
}

// tell writes one protocol line; nil-safe, errors ignored (a dead reaper
// only loses the safety net).
func (r *reaper) tell(line string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil {
		_, _ = r.w.WriteString(line + "\n")
	}
}

// close ends the reaper after a clean shutdown and waits for it.
func (r *reaper) close() {
	if r == nil {
		return
	}
	r.tell("bye")
	r.mu.Lock()
	r.w.Close()
	r.w = nil
	r.mu.Unlock()
	<-r.done
}
