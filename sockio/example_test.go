//go:build linux

package sockio_test

import (
	"fmt"
	"io"
	"net"

	"github.com/obsproxy/obsproxy/sockio"
)

// A connection wrapper (connstate.Conn, the proxy's worker connections)
// embeds sockio.Conn by value and calls Init once: raw I/O where the socket
// allows it, the connection's own methods otherwise.
func Example() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		s, _ := ln.Accept()
		s.Write([]byte("hello"))
		s.Close()
	}()
	nc, _ := net.Dial("tcp", ln.Addr().String())
	var c sockio.Conn
	c.Init(nc)
	defer c.Close()
	b, err := io.ReadAll(&c)
	fmt.Println(c.Raw(), string(b), err)
	// Output: true hello <nil>
}
