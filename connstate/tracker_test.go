package connstate

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

// serve starts an http.Server on a tracked loopback listener.
func serve(t *testing.T, tr *Tracker, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: h, ConnState: tr.ConnState}
	go srv.Serve(tr.Listen(ln))
	t.Cleanup(func() { srv.Close(); tr.CloseHijacked() })
	return ln.Addr().String()
}

func counts(tr *Tracker) [4]int64 {
	n, a, i, h := tr.Counts()
	return [4]int64{n, a, i, h}
}

func TestKeepAliveConnectionsAreCountedUntilClosed(t *testing.T) {
	tr := New()
	addr := serve(t, tr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))

	var conns []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		conns = append(conns, c)
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
	}
	require.Eventually(t, func() bool { return counts(tr) == [4]int64{0, 0, 3, 0} }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, int64(3), tr.Active())
	assert.Equal(t, uint64(3), tr.Accepted())

	for _, c := range conns {
		c.Close()
	}
	require.Eventually(t, func() bool { return tr.Active() == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, [4]int64{0, 0, 0, 0}, counts(tr))
	assert.Equal(t, uint64(3), tr.Accepted())
}

func TestHijackedConnectionStaysCountedUntilItCloses(t *testing.T) {
	tr := New()
	hijacked := make(chan net.Conn, 1)
	addr := serve(t, tr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		hijacked <- c
	}))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "HTTP/1.1 101"))
	sc := <-hijacked
	assert.Equal(t, [4]int64{0, 0, 0, 1}, counts(tr))
	assert.Equal(t, int64(1), tr.Active(), "http.Server forgets a hijacked connection; the tracker does not")

	sc.Close()
	sc.Close() // a second close must not uncount twice
	assert.Equal(t, [4]int64{0, 0, 0, 0}, counts(tr))
	assert.Equal(t, int64(0), tr.Active())
}

func TestCloseHijacked(t *testing.T) {
	tr := New()
	addr := serve(t, tr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n\r\n")
		brw.Flush()
		_ = c // the handler leaves the connection open, as a WebSocket proxy does
	}))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
	br := bufio.NewReader(c)
	_, err = br.ReadString('\n')
	require.NoError(t, err)
	require.Eventually(t, func() bool { return tr.Active() == 1 }, 5*time.Second, 5*time.Millisecond)

	assert.Equal(t, 1, tr.CloseHijacked())
	assert.Equal(t, int64(0), tr.Active())
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(br)
	assert.NoError(t, err, "the client sees EOF: the server side was closed")
}

func TestCollect(t *testing.T) {
	tr := New()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(tr)
	addr := serve(t, tr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.Eventually(t, func() bool { return tr.Active() == 1 }, 5*time.Second, 5*time.Millisecond)
	v, ok := metricstest.Value(t, reg, "obsproxy_active_connections", nil)
	assert.True(t, ok)
	assert.Equal(t, 1.0, v)
	v, _ = metricstest.Value(t, reg, "obsproxy_connections", map[string]string{"state": "new"})
	assert.Equal(t, 1.0, v)
	v, _ = metricstest.Value(t, reg, "obsproxy_connections_accepted_total", nil)
	assert.Equal(t, 1.0, v)
	assert.Equal(t, map[string]bool{"new": true, "active": true, "idle": true, "hijacked": true},
		metricstest.LabelValues(t, reg, "obsproxy_connections", "state"))
}

func TestStateTransitionsAllocateNothing(t *testing.T) {
	tr := New()
	c := &Conn{t: tr}
	tr.open[stateIdle].Add(1)
	c.state.Store(stateIdle)
	assert.Equal(t, 0.0, testing.AllocsPerRun(1000, func() {
		tr.ConnState(c, http.StateActive)
		tr.ConnState(c, http.StateIdle)
	}))
}

// TestAcceptedConnectionsUseRawIO: what the server reads and writes goes
// through sockio on TCP and unix listeners (the public listener may be
// either).
func TestAcceptedConnectionsUseRawIO(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer tcp.Close()
	unix, err := net.Listen("unix", filepath.Join(t.TempDir(), "p.sock"))
	require.NoError(t, err)
	defer unix.Close()
	for _, ln := range []net.Listener{tcp, unix} {
		t.Run(ln.Addr().Network(), func(t *testing.T) {
			tr := New()
			tl := tr.Listen(ln)
			go func() {
				c, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
				if err == nil {
					io.WriteString(c, "ping")
					io.Copy(io.Discard, c)
					c.Close()
				}
			}()
			c, err := tl.Accept()
			require.NoError(t, err)
			defer c.Close()
			assert.True(t, c.(*Conn).Raw())
			buf := make([]byte, 4)
			_, err = io.ReadFull(c, buf)
			require.NoError(t, err)
			assert.Equal(t, "ping", string(buf))
			_, err = c.Write([]byte("pong"))
			require.NoError(t, err)
		})
	}
}
