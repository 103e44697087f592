package supervisor

import "syscall"

// sysProcAttr puts the process in its own process group (so that a signal
// reaches its children too: granian runs one per worker) and asks the
// kernel to SIGKILL it when the thread that started it exits. The thread,
// not the process (golang/go#27505): startAndWait therefore starts and
// waits each process from one goroutine locked to its OS thread, which
// lives exactly as long as the process, and dies with obsproxy.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
