package sockio

import "net"

// Conn is a net.Conn that reads and writes through IO when the connection
// allows it, and through the connection's own methods otherwise. Embed it
// (by value) in a connection wrapper and call Init once; every other
// net.Conn method is the wrapped connection's. Safe for concurrent use as
// net.Conn is.
type Conn struct {
	net.Conn
	raw bool
	io  IO
}

// Init makes c wrap nc, with raw I/O when IO.Init allows it. It allocates a
// few small objects, once per connection.
func (c *Conn) Init(nc net.Conn) {
	c.Conn = nc
	c.raw = c.io.Init(nc)
}

// Raw reports whether Read and Write use raw I/O.
func (c *Conn) Raw() bool { return c.raw }

// Read reads as net.Conn's Read.
func (c *Conn) Read(p []byte) (int, error) {
	if c.raw {
		return c.io.Read(p)
	}
	return c.Conn.Read(p)
}

// Write writes as net.Conn's Write.
func (c *Conn) Write(p []byte) (int, error) {
	if c.raw {
		return c.io.Write(p)
	}
	return c.Conn.Write(p)
}
