//go:build linux

package sockio_test

import (
	"fmt"
	"io"
	"net"

	"github.com/obsproxy/obsproxy/sockio"
)

// conn embeds sockio.IO the way connstate.Conn does: raw I/O when Init
// allows it, the connection's own methods otherwise.
type conn struct {
	net.Conn
	raw bool
	io  sockio.IO
}

func (c *conn) Read(p []byte) (int, error) {
	if c.raw {
		return c.io.Read(p)
	}
	return c.Conn.Read(p)
}

func Example() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		s, _ := ln.Accept()
		s.Write([]byte("hello"))
		s.Close()
	}()
	nc, _ := net.Dial("tcp", ln.Addr().String())
	c := &conn{Conn: nc}
	c.raw = c.io.Init(nc)
	defer c.Close()
	b, err := io.ReadAll(c)
	fmt.Println(c.raw, string(b), err)
	// Output: true hello <nil>
}
