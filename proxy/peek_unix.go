//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// peekAlive reports whether the peer of conn has neither closed it nor sent
// anything: a recv with MSG_PEEK|MSG_DONTWAIT that would block (EAGAIN)
// means alive; 0 bytes (end of stream), data or an error mean not. A
// connection without a raw file descriptor counts as alive.
func peekAlive(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait for readiness
	})
	return err == nil && alive
}
