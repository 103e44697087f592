//go:build !linux

package supervisor

import "syscall"

// sysProcAttr puts the process in its own process group. Without Linux's
// Pdeathsig, workers outlive an obsproxy killed with SIGKILL.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
