package lifecycle

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDialTrackedUsesRawIOAndCountsOnlySupervised: every connection the
// proxy dials reads and writes through sockio (static and supervised, TCP
// and unix), and only a supervised process's connections are counted in
// its Endpoint's OpenConns, once, however often Close is called.
func TestDialTrackedUsesRawIOAndCountsOnlySupervised(t *testing.T) {
	echo := func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { tcp.Close() })
	go echo(tcp)
	unix, err := net.Listen("unix", filepath.Join(t.TempDir(), "w.sock"))
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close() })
	go echo(unix)

	static, err := NewPool(Config{Workers: []WorkerConfig{{Name: "w1", Network: "tcp", Address: tcp.Addr().String()}}})
	require.NoError(t, err)
	supervised, err := NewPool(Config{Supervised: true, Workers: []WorkerConfig{{Name: "w1", Network: "unix"}}})
	require.NoError(t, err)
	sw := supervised.Workers()[0]
	sw.SetEndpoint("unix", unix.Addr().String(), 100, time.Now())

	for _, tc := range []struct {
		name    string
		w       *Worker
		counted bool
	}{{"static tcp", static.Workers()[0], false}, {"supervised unix", sw, true}} {
		t.Run(tc.name, func(t *testing.T) {
			var d net.Dialer
			c, ep, err := tc.w.DialTracked(context.Background(), &d)
			require.NoError(t, err)
			tr, ok := c.(*trackedConn)
			require.True(t, ok, "wrapped")
			assert.True(t, tr.Raw(), "raw socket I/O")
			want := int64(0)
			if tc.counted {
				want = 1
			}
			assert.Equal(t, want, ep.OpenConns())
			_, err = c.Write([]byte("ping"))
			require.NoError(t, err)
			buf := make([]byte, 4)
			_, err = io.ReadFull(c, buf)
			require.NoError(t, err)
			assert.Equal(t, "ping", string(buf))
			require.NoError(t, c.Close())
			c.Close()
			assert.Equal(t, int64(0), ep.OpenConns())
		})
	}
}
