//go:build unix

package admin

import "syscall"

// cpuTimes returns the process's user and system CPU seconds from
// getrusage(2); nil when it fails.
func cpuTimes() (user, system *float64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return nil, nil
	}
	u := float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6
	s := float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
	return &u, &s
}
