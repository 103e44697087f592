//go:build linux

package sockio_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/nettest"

	"github.com/obsproxy/obsproxy/sockio"
)

// rawConn is a net.Conn whose Read and Write go through sockio, as
// connstate.Conn's and the proxy's worker connections do.
type rawConn struct {
	net.Conn
	io sockio.IO
}

func (c *rawConn) Read(p []byte) (int, error)  { return c.io.Read(p) }
func (c *rawConn) Write(p []byte) (int, error) { return c.io.Write(p) }

func wrap(t testing.TB, c net.Conn) *rawConn {
	t.Helper()
	rc := &rawConn{Conn: c}
	require.True(t, rc.io.Init(c), "Init on %s", c.LocalAddr().Network())
	return rc
}

// pair returns two connected sockets of network ("tcp" on 127.0.0.1 or
// "unix"), each wrapped when raw is set.
func pair(t testing.TB, network string, raw bool) (net.Conn, net.Conn) {
	t.Helper()
	var ln net.Listener
	var err error
	if network == "unix" {
		ln, err = net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c1, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	require.NoError(t, err)
	c2 := <-accepted
	require.NotNil(t, c2)
	if !raw {
		return c1, c2
	}
	return wrap(t, c1), wrap(t, c2)
}

// TestConnConformance runs x/net's net.Conn conformance suite (basic I/O,
// ping-pong, past/present/future deadlines, Close unblocking, concurrent
// methods) on raw connections of both kinds.
func TestConnConformance(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
				c1, c2 := pair(t, network, true)
				return c1, c2, func() { c1.Close(); c2.Close() }, nil
			})
		})
	}
}

func TestInitRefusesWhatHasNoSocket(t *testing.T) {
	var x sockio.IO
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	assert.False(t, x.Init(a), "net.Pipe has no file descriptor")
	assert.False(t, x.Init(nil))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer pc.Close()
	uc, err := net.Dial("udp", pc.LocalAddr().String())
	require.NoError(t, err)
	defer uc.Close()
	assert.False(t, x.Init(uc), "a datagram socket is not a stream")
}

// TestErrorsHaveNetConnShapes checks each error a caller (net/http,
// httputil.ReverseProxy, the proxy's retry logic) tells apart.
func TestErrorsHaveNetConnShapes(t *testing.T) {
	t.Run("eof after the peer closes, data first", func(t *testing.T) {
		c1, c2 := pair(t, "tcp", true)
		defer c1.Close()
		_, err := c2.Write([]byte("bye"))
		require.NoError(t, err)
		require.NoError(t, c2.Close())
		got, err := io.ReadAll(c1)
		require.NoError(t, err, "ReadAll stops at io.EOF")
		assert.Equal(t, "bye", string(got))
		n, err := c1.Read(make([]byte, 8))
		assert.Equal(t, 0, n)
		assert.Equal(t, io.EOF, err)
	})
	t.Run("deadline", func(t *testing.T) {
		c1, c2 := pair(t, "tcp", true)
		defer c1.Close()
		defer c2.Close()
		require.NoError(t, c1.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		_, err := c1.Read(make([]byte, 8))
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, "read", oe.Op)
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		assert.True(t, ne.Timeout())
	})
	t.Run("reset", func(t *testing.T) {
		c1, c2 := pair(t, "tcp", true)
		defer c1.Close()
		require.NoError(t, c2.(*rawConn).Conn.(*net.TCPConn).SetLinger(0)) // close sends RST
		require.NoError(t, c2.Close())
		_, err := c1.Read(make([]byte, 8))
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, "read", oe.Op)
		var se *os.SyscallError
		require.ErrorAs(t, err, &se)
		assert.ErrorIs(t, err, syscall.ECONNRESET)
	})
	t.Run("write after the peer reset", func(t *testing.T) {
		c1, c2 := pair(t, "tcp", true)
		defer c1.Close()
		require.NoError(t, c2.(*rawConn).Conn.(*net.TCPConn).SetLinger(0))
		require.NoError(t, c2.Close())
		var err error
		for range 100 { // the first write may be accepted before the RST is seen
			if _, err = c1.Write(make([]byte, 1024)); err != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		assert.Equal(t, "write", oe.Op)
		assert.True(t, errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET), "%v", err)
	})
	t.Run("close unblocks a read", func(t *testing.T) {
		c1, c2 := pair(t, "unix", true)
		defer c2.Close()
		done := make(chan error, 1)
		go func() {
			_, err := c1.Read(make([]byte, 8))
			done <- err
		}()
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, c1.Close())
		select {
		case err := <-done:
			assert.ErrorIs(t, err, net.ErrClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock Read")
		}
	})
}

// TestLargeWriteWaitsForASlowReader writes more than the socket buffers
// hold, so Write must wait for writability (EAGAIN) and resume where it
// stopped; every byte arrives in order.
func TestLargeWriteWaitsForASlowReader(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			c1, c2 := pair(t, network, true)
			defer c1.Close()
			defer c2.Close()
			payload := make([]byte, 16<<20)
			for i := range payload {
				payload[i] = byte(i * 7 / 13)
			}
			errc := make(chan error, 1)
			go func() {
				n, err := c1.Write(payload)
				if err == nil && n != len(payload) {
					err = io.ErrShortWrite
				}
				c1.Close()
				errc <- err
			}()
			h := sha256.New()
			buf := make([]byte, 64<<10)
			total := 0
			for {
				n, err := c2.Read(buf)
				h.Write(buf[:n])
				total += n
				if total < 1<<20 {
					time.Sleep(time.Millisecond) // slow at first, so the writer fills the buffers
				}
				if err == io.EOF {
					break
				}
				require.NoError(t, err)
			}
			require.NoError(t, <-errc)
			assert.Equal(t, len(payload), total)
			want := sha256.Sum256(payload)
			assert.True(t, bytes.Equal(want[:], h.Sum(nil)), "the bytes arrive intact and in order")
		})
	}
}

// TestReadAndWriteAllocateNothing pins the request path's cost: raw I/O
// allocates only at Init.
func TestReadAndWriteAllocateNothing(t *testing.T) {
	c1, c2 := pair(t, "tcp", true)
	defer c1.Close()
	defer c2.Close()
	msg := []byte("GET / HTTP/1.1\r\n\r\n")
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c1.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c2, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	assert.Equal(t, 0.0, allocs)
}

// BenchmarkPingPong compares a 64-byte round trip over loopback TCP through
// net.Conn and through sockio, 0 allocations expected for both.
func BenchmarkPingPong(b *testing.B) {
	for _, raw := range []bool{false, true} {
		name := "netconn"
		if raw {
			name = "sockio"
		}
		b.Run(name, func(b *testing.B) {
			c1, c2 := pair(b, "tcp", raw)
			defer c1.Close()
			defer c2.Close()
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(c2, buf); err != nil {
						return
					}
					if _, err := c2.Write(buf); err != nil {
						return
					}
				}
			}()
			msg := make([]byte, 64)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c1.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c1, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
