//go:build !linux

package sockio

import "net"

// IO is raw I/O on one stream socket; on this platform Init always reports
// false and callers use the connection's own Read and Write.
type IO struct{}

// Init reports false: raw I/O is implemented for Linux only.
func (x *IO) Init(c net.Conn) bool { return false }

// Read is never called: Init reports false.
func (x *IO) Read(p []byte) (int, error) { panic("sockio: IO used without Init") }

// Write is never called: Init reports false.
func (x *IO) Write(p []byte) (int, error) { panic("sockio: IO used without Init") }
