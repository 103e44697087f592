package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTLSServesHTTP2AndHTTP11 runs obsproxy with a certificate made in the
// test in front of a real uvicorn: HTTP/2 and HTTP/1.1 by ALPN, curl
// --http2, SSE, WebSocket over wss://, a streamed upload, request ids,
// X-Forwarded-Proto: https, one connection for many HTTP/2 requests, and
// handshake failures counted, not logged (spec section 11).
func TestTLSServesHTTP2AndHTTP11(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM := ca.issue(t, leafOpts{serial: 1001})
	dir := t.TempDir()
	cf, kf := writePair(t, dir, certPEM, keyPEM)
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startTLSObsproxy(t, 0, []*worker{w}, ca.pool, "localhost",
		"OBSPROXY_TLS_CERT_FILE="+cf, "OBSPROXY_TLS_KEY_FILE="+kf)
	hostport := strings.TrimPrefix(in.url, "https://")
	in.client.CloseIdleConnections()
	eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_active_connections", nil) == 0 }, "readiness connections still open")
	base := map[string]float64{
		"h1": in.value(t, "obsproxy_client_requests_total", map[string]string{"protocol": "HTTP/1.1"}),
		"h2": in.value(t, "obsproxy_client_requests_total", map[string]string{"protocol": "HTTP/2.0"}),
	}

	headers := func(c *http.Client) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, in.url+"/headers", nil)
		req.Header.Set("X-Request-ID", "tls-chosen-id")
		resp, err := c.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var h map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
		return resp, h
	}

	t.Run("HTTP/2 and HTTP/1.1 by ALPN", func(t *testing.T) {
		resp, h := headers(in.client)
		assert.Equal(t, "HTTP/2.0", resp.Proto)
		assert.Equal(t, "h2", resp.TLS.NegotiatedProtocol)
		assert.Equal(t, "https", h["x-forwarded-proto"], "the worker must see X-Forwarded-Proto: https")
		assert.Equal(t, "tls-chosen-id", h["x-request-id"])
		assert.Equal(t, "tls-chosen-id", resp.Header.Get("X-Request-Id"))

		h1 := tlsClient(ca.pool, "localhost", false)
		defer h1.CloseIdleConnections()
		resp, h = headers(h1)
		assert.Equal(t, "HTTP/1.1", resp.Proto)
		assert.Equal(t, "https", h["x-forwarded-proto"])

		code, body := in.get(t, "/health")
		assert.Equal(t, http.StatusOK, code, body)
	})

	t.Run("curl --http2", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		require.NoError(t, err, "curl is installed by make deps")
		caFile := filepath.Join(dir, "ca.pem")
		require.NoError(t, os.WriteFile(caFile, ca.pem, 0o600))
		out, err := exec.Command(curl, "-sS", "--http2", "--cacert", caFile, "-o", "-", "-w", "\n%{http_code} %{http_version}",
			"https://localhost:"+strings.Split(hostport, ":")[1]+"/headers").CombinedOutput()
		require.NoError(t, err, string(out))
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		assert.Equal(t, "200 2", lines[len(lines)-1])
		var h map[string]any
		require.NoError(t, json.Unmarshal([]byte(lines[0]), &h))
		assert.Equal(t, "https", h["x-forwarded-proto"])
	})

	t.Run("SSE over HTTP/2 flushed per event", func(t *testing.T) {
		events, times := readSSE(t, in, "/sse?count=4&interval=0.5")
		require.Len(t, events, 4)
		for i := 1; i < len(times); i++ {
			gap := times[i].Sub(times[i-1])
			assert.Greater(t, gap, 300*time.Millisecond, "event %d arrived %v after the previous one: buffered, not streamed", i+1, gap)
		}
	})

	t.Run("WebSocket over wss", func(t *testing.T) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", hostport,
			&tls.Config{RootCAs: ca.pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
		require.NoError(t, err)
		assert.Equal(t, "http/1.1", c.ConnectionState().NegotiatedProtocol)
		ws, resp, err := upgradeWebSocket(c, hostport, "/ws")
		require.NoError(t, err)
		assert.NotEmpty(t, resp.Header.Get("X-Request-Id"))
		for _, msg := range []string{"hello", strings.Repeat("x", 70000)} {
			require.NoError(t, ws.sendText(msg))
			op, got, err := ws.readMessage()
			require.NoError(t, err)
			assert.Equal(t, byte(0x1), op)
			assert.Equal(t, msg, got)
		}
		assert.Equal(t, 1.0, in.value(t, "obsproxy_connections", map[string]string{"state": "hijacked"}))
		assert.Equal(t, 1.0, in.value(t, "obsproxy_streams_active", map[string]string{"kind": "websocket"}))
		ws.close()
		eventually(t, 5*time.Second, func() bool {
			return in.value(t, "obsproxy_connections", map[string]string{"state": "hijacked"}) == 0
		}, "the closed wss connection is still counted")
	})

	t.Run("upload streamed over HTTP/2", func(t *testing.T) {
		payload := make([]byte, 8<<20)
		rand.Read(payload)
		sum := sha256.Sum256(payload)
		req, err := http.NewRequest(http.MethodPost, in.url+"/upload", bytesReader(payload))
		require.NoError(t, err)
		resp, err := in.client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "HTTP/2.0", resp.Proto)
		var got struct {
			Bytes  int    `json:"bytes"`
			SHA256 string `json:"sha256"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		assert.Equal(t, len(payload), got.Bytes)
		assert.Equal(t, hex.EncodeToString(sum[:]), got.SHA256)
	})

	t.Run("an HTTP/2 connection is one connection with many requests", func(t *testing.T) {
		c := tlsClient(ca.pool, "localhost", true)
		defer c.CloseIdleConnections()
		accepted := in.value(t, "obsproxy_connections_accepted_total", nil)
		// One request first, so that the rest share its connection.
		resp, err := c.Get(in.url + "/")
		require.NoError(t, err)
		resp.Body.Close()
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(in.url + "/slow?seconds=0.3")
				if assert.NoError(t, err) {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					assert.Equal(t, "HTTP/2.0", resp.Proto)
				}
			}()
		}
		wg.Wait()
		assert.Equal(t, accepted+1, in.value(t, "obsproxy_connections_accepted_total", nil), "21 HTTP/2 requests, one connection")
	})

	t.Run("a plain HTTP request to the TLS port is refused cleanly and counted", func(t *testing.T) {
		before := in.value(t, "obsproxy_tls_handshake_errors_total", nil)
		c, err := net.DialTimeout("tcp", hostport, 5*time.Second)
		require.NoError(t, err)
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", hostport)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		body, _ := io.ReadAll(resp.Body)
		assert.Contains(t, string(body), "HTTP request to an HTTPS server")
		eventually(t, 5*time.Second, func() bool {
			return in.value(t, "obsproxy_tls_handshake_errors_total", nil) == before+1
		}, "the plain HTTP request is not counted as a failed handshake")
	})

	t.Run("a garbage handshake is counted, not logged at info", func(t *testing.T) {
		before := in.value(t, "obsproxy_tls_handshake_errors_total", nil)
		for range 5 {
			c, err := net.DialTimeout("tcp", hostport, 5*time.Second)
			require.NoError(t, err)
			garbage := make([]byte, 300)
			rand.Read(garbage)
			// A TLS handshake record header, then noise.
			c.Write(append([]byte{0x16, 0x03, 0x01, 0x01, 0x00}, garbage...))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			io.Copy(io.Discard, c) // obsproxy answers with an alert and closes
			c.Close()
		}
		// And a client that does not trust the certificate.
		_, err := tls.Dial("tcp", hostport, &tls.Config{ServerName: "localhost"})
		require.Error(t, err)
		eventually(t, 5*time.Second, func() bool {
			return in.value(t, "obsproxy_tls_handshake_errors_total", nil) == before+6
		}, "garbage handshakes are not counted")
		assert.NotContains(t, in.proc.out.String(), "TLS handshake error", "handshake errors must not be logged at info level")
	})

	t.Run("requests counted by protocol", func(t *testing.T) {
		h1 := in.value(t, "obsproxy_client_requests_total", map[string]string{"protocol": "HTTP/1.1"}) - base["h1"]
		h2 := in.value(t, "obsproxy_client_requests_total", map[string]string{"protocol": "HTTP/2.0"}) - base["h2"]
		// HTTP/1.1: the /headers request and the WebSocket upgrade; HTTP/2:
		// at least /headers, curl, SSE, upload, 21 on one connection.
		assert.GreaterOrEqual(t, h1, 2.0)
		assert.GreaterOrEqual(t, h2, 26.0)
	})
}

// TestTLSServerDrainsHTTP2OnSIGTERM checks the shutdown of spec section 7
// over HTTP/2: a request in flight on an HTTP/2 connection finishes, the
// connection is told to go away (GOAWAY) and obsproxy exits 0.
func TestTLSServerDrainsHTTP2OnSIGTERM(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM := ca.issue(t, leafOpts{serial: 7})
	cf, kf := writePair(t, t.TempDir(), certPEM, keyPEM)
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startTLSObsproxy(t, 0, []*worker{w}, ca.pool, "localhost",
		"OBSPROXY_TLS_CERT_FILE="+cf, "OBSPROXY_TLS_KEY_FILE="+kf, "OBSPROXY_SHUTDOWN_TIMEOUT=30s")
	type result struct {
		code  int
		proto string
		err   error
	}
	res := make(chan result, 3)
	for range 3 {
		go func() {
			resp, err := in.client.Get(in.url + "/slow?seconds=1.5")
			if err != nil {
				res <- result{err: err}
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			res <- result{code: resp.StatusCode, proto: resp.Proto, err: err}
		}()
	}
	eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_in_flight_requests", nil) == 3 }, "requests not in flight")
	assert.Equal(t, 1.0, in.value(t, "obsproxy_connections", map[string]string{"state": "active"}), "three HTTP/2 streams, one active connection")
	in.proc.signal(syscall.SIGTERM)
	for range 3 {
		r := <-res
		require.NoError(t, r.err, "no in-flight request may be cut")
		assert.Equal(t, http.StatusOK, r.code)
		assert.Equal(t, "HTTP/2.0", r.proto)
	}
	assert.Equal(t, 0, in.proc.wait(t, 15*time.Second))
}

// TestTLSConnectionCap: OBSPROXY_MAX_CONNECTIONS counts TLS connections
// (an HTTP/2 connection is one, whatever its streams): with a cap of 1 and
// one HTTP/2 connection open, a second client's handshake is not served
// until the first connection closes.
func TestTLSConnectionCap(t *testing.T) {
	ca := newTestCA(t)
	certPEM, keyPEM := ca.issue(t, leafOpts{serial: 11})
	cf, kf := writePair(t, t.TempDir(), certPEM, keyPEM)
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startTLSObsproxy(t, 0, []*worker{w}, ca.pool, "localhost",
		"OBSPROXY_TLS_CERT_FILE="+cf, "OBSPROXY_TLS_KEY_FILE="+kf, "OBSPROXY_MAX_CONNECTIONS=1")
	hostport := strings.TrimPrefix(in.url, "https://")
	eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_active_connections", nil) == 0 }, "readiness connection still open")

	first := tlsClient(ca.pool, "localhost", true)
	for range 5 {
		resp, err := first.Get(in.url + "/")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, "HTTP/2.0", resp.Proto)
	}
	assert.Equal(t, 1.0, in.value(t, "obsproxy_active_connections", nil), "five HTTP/2 requests, one connection")

	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", hostport) // the kernel accepts; obsproxy does not yet
	require.NoError(t, err)
	defer c.Close()
	tc := tls.Client(c, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
	c.SetDeadline(time.Now().Add(time.Second))
	err = tc.Handshake()
	var ne net.Error
	require.ErrorAs(t, err, &ne, "a second connection's handshake must wait while the cap is reached")
	assert.True(t, ne.Timeout())
	c.Close() // else it takes the freed slot before the next dial

	first.CloseIdleConnections()
	c2, err := tls.DialWithDialer(d, "tcp", hostport, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
	require.NoError(t, err, "a slot frees when the HTTP/2 connection closes")
	c2.Close()
}
