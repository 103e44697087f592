//go:build linux

package sockio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// IO is raw I/O on one stream socket. The zero value is unusable until
// Init returns true. Read and Write are safe for concurrent use with each
// other, with Close and with the deadline setters of the connection; two
// Reads (or two Writes) at once are serialized, as net.Conn's are.
type IO struct {
	rc    syscall.RawConn
	laddr net.Addr
	raddr net.Addr

	rmu    sync.Mutex
	readFn func(fd uintptr) bool // x.read, bound once: no allocation per call
	rp     []byte
	rn     int
	rerr   syscall.Errno

	wmu     sync.Mutex
	writeFn func(fd uintptr) bool
	wp      []byte
	wn      int
	werr    syscall.Errno
}

// Init prepares x for c and reports whether raw I/O is possible: c must be
// a TCP or unix stream connection that exposes its file descriptor
// (syscall.Conn). When it returns false, x must not be used; call c's own
// Read and Write. It allocates a few small objects, once per connection.
func (x *IO) Init(c net.Conn) bool {
	if c == nil {
		return false
	}
	switch c.LocalAddr().Network() {
	case "tcp", "tcp4", "tcp6", "unix":
	default:
		return false
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	x.rc, x.laddr, x.raddr = rc, c.LocalAddr(), c.RemoteAddr()
	x.readFn, x.writeFn = x.read, x.write
	return true
}

// read is one readiness attempt: false means "would block, wait".
func (x *IO) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&x.rp[0])), uintptr(len(x.rp)))
		switch e {
		case 0:
			x.rn = int(n)
			return true
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			x.rerr = e
			return true
		}
	}
}

// write writes what is left of x.wp until done, an error, or the socket's
// buffer is full (false: wait for writability).
func (x *IO) write(fd uintptr) bool {
	for x.wn < len(x.wp) {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&x.wp[x.wn])), uintptr(len(x.wp)-x.wn))
		switch e {
		case 0:
			x.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			x.werr = e
			return true
		}
	}
	return true
}

// maxRW caps one call, as internal/poll does, so that a huge buffer cannot
// hold the thread in one system call (1 GiB).
const maxRW = 1 << 30

// Read reads into p as net.Conn's Read does: at least one byte, io.EOF
// once the peer has closed, and a *net.OpError (Op "read") for a deadline
// (os.ErrDeadlineExceeded), a closed connection (net.ErrClosed) or a
// system error (*os.SyscallError, such as ECONNRESET).
func (x *IO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	x.rmu.Lock()
	x.rp, x.rn, x.rerr = p, 0, 0
	err := x.rc.Read(x.readFn)
	n, e := x.rn, x.rerr
	x.rp = nil
	x.rmu.Unlock()
	switch {
	case err != nil:
		return 0, x.opError("read", err)
	case e != 0:
		return 0, x.opError("read", os.NewSyscallError("read", e))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p as net.Conn's Write does, waiting while the
// socket's buffer is full; on an error it returns how much was written and
// a *net.OpError (Op "write").
func (x *IO) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	written := 0
	x.wmu.Lock()
	defer x.wmu.Unlock()
	for len(p) > 0 {
		chunk := p
		if len(chunk) > maxRW {
			chunk = chunk[:maxRW]
		}
		x.wp, x.wn, x.werr = chunk, 0, 0
		err := x.rc.Write(x.writeFn)
		n, e := x.wn, x.werr
		x.wp = nil
		written += n
		switch {
		case err != nil:
			return written, x.opError("write", err)
		case e != 0:
			return written, x.opError("write", os.NewSyscallError("write", e))
		}
		p = p[n:]
	}
	return written, nil
}

// opError shapes err as net.Conn's errors: the raw connection's own
// *net.OpError (Op "raw-read"/"raw-write", fresh per call) is renamed, so
// that callers matching Op "read" (net/http does) see what they expect.
func (x *IO) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
		return oe
	}
	return &net.OpError{Op: op, Net: x.laddr.Network(), Source: x.laddr, Addr: x.raddr, Err: err}
}
