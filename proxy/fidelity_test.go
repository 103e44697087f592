package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
	"github.com/obsproxy/obsproxy/lifecycle"
)

// The raw-socket tests of issue 12: a client that writes bytes to obsproxy
// and reads bytes back, in front of a worker that is a TCP listener the test
// controls, so that what the client receives, what the worker receives and
// what the metrics count are each asserted exactly.

// rawWorker is a worker made of a loopback listener: serve runs on its own
// goroutine for each accepted connection (numbered from 1) and the
// connection is closed when it returns. Every connection and goroutine ends
// at cleanup.
type rawWorker struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newRawWorker(t *testing.T, serve func(n int, c net.Conn, br *bufio.Reader)) (*rawWorker, lifecycle.WorkerConfig) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w := &rawWorker{ln: ln}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for n := 1; n < 1000; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			w.mu.Lock()
			w.conns = append(w.conns, c)
			w.mu.Unlock()
			w.wg.Add(1)
			go func() {
				defer w.wg.Done()
				defer c.Close()
				serve(n, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		w.mu.Lock()
		for _, c := range w.conns {
			c.Close()
		}
		w.mu.Unlock()
		w.wg.Wait()
	})
	return w, lifecycle.WorkerConfig{Name: "w1", Network: "tcp", Address: ln.Addr().String()}
}

// accepted returns how many connections the worker has accepted.
func (w *rawWorker) accepted() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.conns)
}

// received is what a raw worker read of one request.
type received struct {
	conn    int
	req     *http.Request
	body    []byte
	bodyErr error
}

// readRequest reads one request and its whole body from br; bodyErr says
// how the body ended when it did not end cleanly.
func readRequest(n int, br *bufio.Reader) (received, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return received{conn: n}, err
	}
	body, err := io.ReadAll(req.Body)
	return received{conn: n, req: req, body: body, bodyErr: err}, nil
}

// rawClient connects to the proxy under test and speaks raw bytes.
type rawClient struct {
	t *testing.T
	c *net.TCPConn
}

func dialRaw(t *testing.T, f *fixture) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(f.srv.URL, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c.(*net.TCPConn)}
}

func (r *rawClient) send(s string) {
	r.t.Helper()
	_, err := io.WriteString(r.c, s)
	require.NoError(r.t, err)
}

// halfClose shuts the client's sending side, as `nc -N` does after its
// input.
func (r *rawClient) halfClose() { require.NoError(r.t, r.c.CloseWrite()) }

// readAll reads until the proxy closes the connection (10 s at most).
func (r *rawClient) readAll() string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(r.c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "connection reset") {
		require.NoError(r.t, err)
	}
	return string(b)
}

// readN reads exactly n bytes (10 s at most).
func (r *rawClient) readN(n int) string {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	_, err := io.ReadFull(r.c, b)
	require.NoError(r.t, err, "read so far: %q", b)
	return string(b)
}

// nothingFor asserts that nothing arrives for d.
func (r *rawClient) nothingFor(d time.Duration) {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	n, err := r.c.Read(b[:])
	var ne net.Error
	require.True(r.t, errors.As(err, &ne) && ne.Timeout(), "expected silence, got %q, %v", b[:n], err)
}

// awaitValue polls a metric until it equals want (10 s at most).
func (f *fixture) awaitValue(t *testing.T, want float64, name string, labels map[string]string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := metricstest.Value(t, f.reg, name, labels)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			require.Equal(t, want, got, "%s%v", name, labels)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noUpstreamErrors asserts that no upstream error of any reason is counted.
func (f *fixture) noUpstreamErrors(t *testing.T) {
	t.Helper()
	assert.Equal(t, 0.0, metricstest.Sum(t, f.reg, "obsproxy_upstream_errors_total", nil))
}

// requestsOf returns obsproxy_requests_total summed over every label but
// code.
func (f *fixture) requestsOf(t *testing.T, code string) float64 {
	return metricstest.Sum(t, f.reg, "obsproxy_requests_total", map[string]string{"code": code})
}

// TestHalfClosedOrGoneClientGetsNoMadeUpResponse is defect 1 of issue 12: a
// client that half-closes after a complete request, or leaves with its body
// unfinished, is a client gone (docs/servers.md): the connection closes with
// not one byte sent (never net/http's default 200) and a 499 is counted, no
// upstream error.
func TestHalfClosedOrGoneClientGetsNoMadeUpResponse(t *testing.T) {
	for _, tc := range []struct {
		name, request string
		stall         bool // the client stalls before half-closing
		mayNotArrive  bool // obsproxy may see the client leave before it sends the request
		wantBody      string
		wantBodyErr   bool
	}{
		{name: "complete GET", request: "GET /a HTTP/1.1\r\nHost: h\r\n\r\n", mayNotArrive: true},
		{name: "complete POST", request: "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", wantBody: "hello"},
		{name: "Content-Length 100 with 40 bytes", request: "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 40),
			wantBody: strings.Repeat("x", 40), wantBodyErr: true},
		{name: "Content-Length 100 with 40 bytes, a stall", request: "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("x", 40),
			stall: true, wantBody: strings.Repeat("x", 40), wantBodyErr: true},
		{name: "unfinished chunked body", request: "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
			wantBody: "hello", wantBodyErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan received, 1)
			_, wc := newRawWorker(t, func(n int, c net.Conn, br *bufio.Reader) {
				rec, err := readRequest(n, br)
				if err != nil {
					return
				}
				got <- rec
				// The worker thinks for longer than the test waits: only
				// obsproxy closing the connection ends this.
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				io.Copy(io.Discard, br)
			})
			f := newFixture(t, Config{Pool: defaultPool(t)}, wc)
			cl := dialRaw(t, f)
			cl.send(tc.request)
			if tc.stall {
				cl.nothingFor(300 * time.Millisecond)
			}
			cl.halfClose()
			assert.Equal(t, "", cl.readAll(), "not one byte: no status the worker never sent")
			select {
			case rec := <-got:
				assert.Equal(t, "/a", rec.req.URL.Path)
				// What the worker got is what the client sent, maybe cut
				// short: obsproxy may see the client leave while it is
				// still sending the body. A truncated body never looks
				// complete to the worker.
				assert.True(t, strings.HasPrefix(tc.wantBody, string(rec.body)), "the worker got %q", rec.body)
				if tc.wantBodyErr {
					assert.Error(t, rec.bodyErr, "the worker's body must end early")
				}
			case <-time.After(2 * time.Second):
				if !tc.mayNotArrive {
					t.Fatal("the worker never got the request")
				}
			}
			f.awaitValue(t, 1, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "499"})
			assert.Equal(t, 1.0, metricstest.Sum(t, f.reg, "obsproxy_requests_total", nil), "one request, counted once")
			f.noUpstreamErrors(t)
			f.awaitValue(t, 0, "obsproxy_in_flight_requests", map[string]string{"worker": "w1"})
		})
	}
}

// TestMalformedChunkedBodyIsTheClientsFault is defect 2 of issue 12: a
// chunked request body that breaks RFC 9112 section 7.1 is answered 400
// with the JSON error body of spec section 4, counted as a 400 of the
// worker it went to (docs/metrics.md), never as an upstream error or a 5xx;
// the worker connection that carried the partial body is closed, and the
// next request goes on a new one.
func TestMalformedChunkedBodyIsTheClientsFault(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"size 5g", "5g\r\nhello\r\n0\r\n\r\n"},
		{"size 0x5", "0x5\r\nhello\r\n0\r\n\r\n"},
		{"size -5", "-5\r\nhello\r\n0\r\n\r\n"},
		{"size 5 5", "5 5\r\nhello\r\n0\r\n\r\n"},
		{"overflowing size", "5\r\nhello\r\n10000000000000000\r\nhello\r\n0\r\n\r\n"},
		{"4096 hex digits", "5\r\nhello\r\n" + strings.Repeat("0", 4095) + "5\r\nhello\r\n0\r\n\r\n"},
		{"data longer than its chunk", "5\r\nhello\r\n3\r\nhello\r\n0\r\n\r\n"},
		{"bare LF framing", "5\nhello\n0\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan received, 4)
			w, wc := newRawWorker(t, func(n int, c net.Conn, br *bufio.Reader) {
				for {
					rec, err := readRequest(n, br)
					if err != nil {
						return
					}
					got <- rec
					if rec.bodyErr != nil {
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
				}
			})
			f := newFixture(t, Config{Pool: defaultPool(t)}, wc)
			cl := dialRaw(t, f)
			cl.send("POST /up HTTP/1.1\r\nHost: h\r\nX-Request-Id: bad-body-1\r\nTransfer-Encoding: chunked\r\n\r\n" + tc.body)
			resp := cl.readAll()
			head, body, _ := strings.Cut(resp, "\r\n\r\n")
			assert.True(t, strings.HasPrefix(head, "HTTP/1.1 400 Bad Request\r\n"), "got %q", resp)
			assert.Contains(t, head, "\r\nContent-Type: application/json\r\n")
			assert.Contains(t, head, "\r\nX-Request-Id: bad-body-1\r\n")
			assert.Equal(t, `{"error":"bad request","request_id":"bad-body-1"}`+"\n", body)

			// The worker got the request and the part of the body before
			// the bad framing, then its connection closed.
			select {
			case rec := <-got:
				assert.Equal(t, "/up", rec.req.URL.Path)
				assert.Error(t, rec.bodyErr, "the worker's body must end early, never look complete")
			case <-time.After(10 * time.Second):
				t.Fatal("the worker never got the request")
			}
			assert.Equal(t, 1.0, f.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "400", "method": "POST"}))
			assert.Equal(t, 1.0, metricstest.Sum(t, f.reg, "obsproxy_requests_total", nil))
			f.noUpstreamErrors(t)

			// The next request is served on a new worker connection.
			cl2 := dialRaw(t, f)
			cl2.send("POST /next HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
			assert.Contains(t, cl2.readAll(), "\r\n\r\nok")
			select {
			case rec := <-got:
				assert.Equal(t, 2, rec.conn, "a connection that carried a partial body is never reused")
				assert.Equal(t, "hi", string(rec.body))
			case <-time.After(10 * time.Second):
				t.Fatal("the worker never got the second request")
			}
			assert.Equal(t, 2, w.accepted())
		})
	}
}

// TestResponseWithoutContentTypeIsNotSniffed is defect 3 of issue 12: a
// response the worker sent without Content-Type reaches the client without
// one, byte for byte as the worker sent it plus X-Request-Id.
func TestResponseWithoutContentTypeIsNotSniffed(t *testing.T) {
	_, wc := newRawWorker(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(n, br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 418 I'm a teapot\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 14\r\n\r\n<html>x</html>")
	})
	f := newFixture(t, Config{Pool: defaultPool(t)}, wc)
	cl := dialRaw(t, f)
	cl.send("GET /status/418 HTTP/1.1\r\nHost: h\r\nX-Request-Id: tea-1\r\nConnection: close\r\n\r\n")
	assert.Equal(t, "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 14\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nX-Request-Id: tea-1\r\nConnection: close\r\n\r\n<html>x</html>",
		cl.readAll())
	assert.Equal(t, 1.0, f.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "418", "method": "GET"}))
}

// TestSlowContentLengthBodyStreams is defect 4 of issue 12: a body with a
// Content-Length reaches the client as the worker sends it, headers first.
// The worker sends its next byte only once the client has received the
// previous one, so the test needs no timing: held-back bytes deadlock it.
func TestSlowContentLengthBodyStreams(t *testing.T) {
	const body = "abcde"
	next := make(chan struct{})
	_, wc := newRawWorker(t, func(n int, c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(n, br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n")
		for i := 0; i < len(body); i++ {
			select {
			case <-next:
			case <-time.After(20 * time.Second):
				return
			}
			c.Write([]byte{body[i]})
		}
	})
	f := newFixture(t, Config{Pool: defaultPool(t)}, wc)
	cl := dialRaw(t, f)
	cl.send("GET /slowlength HTTP/1.1\r\nHost: h\r\nX-Request-Id: slow-1\r\n\r\n")
	head := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nX-Request-Id: slow-1\r\n\r\n"
	assert.Equal(t, head, cl.readN(len(head)), "the head arrives before any of the body")
	for i := 0; i < len(body); i++ {
		next <- struct{}{}
		assert.Equal(t, body[i:i+1], cl.readN(1), "byte %d arrives as soon as the worker sent it", i)
	}
	f.awaitValue(t, 1, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "200", "method": "GET"})
}

// TestForwardedFollowsTheTrustRule is defect 5 of issue 12: Forwarded (RFC
// 7239) is replaced by obsproxy's element for an untrusted peer, and kept
// and extended for a trusted one, like X-Forwarded-For.
func TestForwardedFollowsTheTrustRule(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		want    string
	}{
		{"untrusted peer", nil, `for=127.0.0.1;host="h:8080";proto=http`},
		{"trusted peer", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			`for=192.0.2.60;proto=https, for="[2001:db8::1]", for=127.0.0.1;host="h:8080";proto=http`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan received, 1)
			_, wc := newRawWorker(t, func(n int, c net.Conn, br *bufio.Reader) {
				rec, err := readRequest(n, br)
				if err != nil {
					return
				}
				got <- rec
				io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
			})
			f := newFixture(t, Config{Pool: defaultPool(t), TrustedProxies: tc.trusted}, wc)
			cl := dialRaw(t, f)
			cl.send("GET / HTTP/1.1\r\nHost: h:8080\r\nForwarded: for=192.0.2.60;proto=https\r\nForwarded: for=\"[2001:db8::1]\"\r\nConnection: close\r\n\r\n")
			assert.True(t, strings.HasPrefix(cl.readAll(), "HTTP/1.1 204 No Content\r\n"))
			rec := <-got
			assert.Equal(t, []string{tc.want}, rec.req.Header["Forwarded"])
		})
	}
}

func TestForwardedElement(t *testing.T) {
	for _, tc := range []struct {
		peer, host, want string
		tls              bool
	}{
		{"127.0.0.1", "example.org", "for=127.0.0.1;host=example.org;proto=http", false},
		{"127.0.0.1", "example.org", "for=127.0.0.1;host=example.org;proto=https", true},
		{"::1", "example.org:8080", `for="[::1]";host="example.org:8080";proto=http`, false},
		{"2001:db8::1", "[2001:db8::2]:80", `for="[2001:db8::1]";host="[2001:db8::2]:80";proto=http`, false},
		{"", "h", "for=unknown;host=h;proto=http", false},
		{"@", "h", `for="@";host=h;proto=http`, false},
		{"10.0.0.1", `a"b\c`, `for=10.0.0.1;host="a\"b\\c";proto=http`, false},
		{"10.0.0.1", "", `for=10.0.0.1;host="";proto=http`, false},
	} {
		assert.Equal(t, tc.want, forwardedElement(tc.peer, tc.host, tc.tls), "peer %q host %q tls %v", tc.peer, tc.host, tc.tls)
	}
}

// TestInformationalResponsesPass covers 103 Early Hints and Expect:
// 100-continue: each informational response reaches the client before the
// final one, and the worker gets the body only after it asked for it.
func TestInformationalResponsesPass(t *testing.T) {
	t.Run("103 Early Hints", func(t *testing.T) {
		_, wc := newRawWorker(t, func(n int, c net.Conn, br *bufio.Reader) {
			if _, err := readRequest(n, br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
		})
		f := newFixture(t, Config{Pool: defaultPool(t)}, wc)
		cl := dialRaw(t, f)
		cl.send("GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: hints-1\r\nConnection: close\r\n\r\n")
		assert.Equal(t, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nX-Request-Id: hints-1\r\nConnection: close\r\n\r\nok",
			cl.readAll())
		assert.Equal(t, 1.0, f.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "200"}))
		assert.Equal(t, 0.0, f.requestsOf(t, "103"), "an informational response ends no request")
	})
	t.Run("Expect 100-continue", func(t *testing.T) {
		got := make(chan received, 1)
		_, wc := newRawWorker(t, func(n int, c net.Conn, br *bufio.Reader) {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Header.Get("Expect") != "100-continue" || br.Buffered() > 0 {
				io.WriteString(c, "HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
				return
			}
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
			body, err := io.ReadAll(req.Body)
			got <- received{conn: n, req: req, body: body, bodyErr: err}
			io.WriteString(c, "HTTP/1.1 201 Created\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n")
		})
		f := newFixture(t, Config{Pool: defaultPool(t)}, wc)
		cl := dialRaw(t, f)
		cl.send("PUT /f HTTP/1.1\r\nHost: h\r\nX-Request-Id: cont-1\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
		assert.Equal(t, "HTTP/1.1 100 Continue\r\n\r\n", cl.readN(len("HTTP/1.1 100 Continue\r\n\r\n")), "the client hears 100 Continue before it sends")
		cl.send("hello")
		assert.Equal(t, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nX-Request-Id: cont-1\r\nConnection: close\r\n\r\n", cl.readAll())
		rec := <-got
		assert.Equal(t, "hello", string(rec.body))
		assert.NoError(t, rec.bodyErr)
		assert.Equal(t, 1.0, f.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "201", "method": "PUT"}))
	})
}

// TestTrailersPassBothWays: a chunked request's trailer reaches the worker,
// a chunked response's trailer reaches the client.
func TestTrailersPassBothWays(t *testing.T) {
	got := make(chan received, 1)
	_, wc := newRawWorker(t, func(n int, c net.Conn, br *bufio.Reader) {
		rec, err := readRequest(n, br)
		if err != nil {
			return
		}
		got <- rec
		io.WriteString(c, "HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: text/plain\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"2\r\nok\r\n0\r\nX-Sum: 42\r\n\r\n")
	})
	f := newFixture(t, Config{Pool: defaultPool(t)}, wc)
	cl := dialRaw(t, f)
	cl.send("POST / HTTP/1.1\r\nHost: h\r\nX-Request-Id: tr-1\r\nTrailer: X-Check\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Check: 7\r\n\r\n")
	assert.Equal(t, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nTrailer: X-Sum\r\nX-Request-Id: tr-1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"2\r\nok\r\n0\r\nX-Sum: 42\r\n\r\n", cl.readAll())
	rec := <-got
	assert.Equal(t, "hello", string(rec.body))
	assert.Equal(t, "7", rec.req.Trailer.Get("X-Check"))
}

// TestPipelinedRequestsAreAnsweredInOrder: two requests in one write get
// their two answers in order, each from the worker.
func TestPipelinedRequestsAreAnsweredInOrder(t *testing.T) {
	_, wc := newRawWorker(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			rec, err := readRequest(n, br)
			if err != nil {
				return
			}
			p := rec.req.URL.Path
			io.WriteString(c, "HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"+p[1:])
		}
	})
	f := newFixture(t, Config{Pool: defaultPool(t)}, wc)
	cl := dialRaw(t, f)
	cl.send("GET /p1 HTTP/1.1\r\nHost: h\r\nX-Request-Id: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: h\r\nX-Request-Id: b\r\nConnection: close\r\n\r\n")
	assert.Equal(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nX-Request-Id: a\r\n\r\np1"+
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nX-Request-Id: b\r\nConnection: close\r\n\r\np2",
		cl.readAll())
	assert.Equal(t, 2.0, f.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "200"}))
}

// TestConflictingFramingHeaders: two different Content-Lengths are refused
// by obsproxy's server before any worker sees them; Content-Length with
// Transfer-Encoding: chunked is framed by the chunked coding (RFC 9112
// section 6.3) and reaches the worker without the Content-Length.
func TestConflictingFramingHeaders(t *testing.T) {
	got := make(chan received, 2)
	w, wc := newRawWorker(t, func(n int, c net.Conn, br *bufio.Reader) {
		for {
			rec, err := readRequest(n, br)
			if err != nil {
				return
			}
			got <- rec
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	f := newFixture(t, Config{Pool: defaultPool(t)}, wc)

	cl := dialRaw(t, f)
	cl.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
	assert.True(t, strings.HasPrefix(cl.readAll(), "HTTP/1.1 400 Bad Request\r\n"))
	assert.Equal(t, 0, w.accepted(), "the worker never saw it")
	assert.Equal(t, 0.0, metricstest.Sum(t, f.reg, "obsproxy_requests_total", nil), "not a proxied request")

	cl = dialRaw(t, f)
	cl.send("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	resp := cl.readAll()
	assert.True(t, strings.HasPrefix(resp, "HTTP/1.1 200 OK\r\n"), "got %q", resp)
	assert.True(t, strings.HasSuffix(resp, "\r\n\r\nok"))
	rec := <-got
	assert.Equal(t, "hello", string(rec.body))
	assert.Equal(t, []string{"chunked"}, rec.req.TransferEncoding)
	assert.NotContains(t, rec.req.Header, "Content-Length")
	f.noUpstreamErrors(t)
}

// TestClientAbortAtEachStage: a client that closes its connection before
// its request head is complete reaches no worker and counts nothing; one
// that closes while the worker thinks, or in the middle of the response
// body, is a 499 and no upstream error, and the worker's connection is
// closed (the worker is not left working for nobody).
func TestClientAbortAtEachStage(t *testing.T) {
	t.Run("before the head reached the worker", func(t *testing.T) {
		w, wc := newRawWorker(t, func(int, net.Conn, *bufio.Reader) {})
		f := newFixture(t, Config{Pool: defaultPool(t)}, wc)
		cl := dialRaw(t, f)
		cl.send("GET / HTTP/1.1\r\nHost: h\r\n")
		cl.halfClose()
		resp := cl.readAll()
		assert.NotContains(t, resp, "200", "got %q", resp)
		assert.Equal(t, 0, w.accepted())
		assert.Equal(t, 0.0, metricstest.Sum(t, f.reg, "obsproxy_requests_total", nil))
	})
	for _, stage := range []string{"while the worker thinks", "mid-response body"} {
		t.Run(stage, func(t *testing.T) {
			closed := make(chan error, 1)
			_, wc := newRawWorker(t, func(n int, c net.Conn, br *bufio.Reader) {
				if _, err := readRequest(n, br); err != nil {
					return
				}
				if stage == "mid-response body" {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello")
				}
				c.SetReadDeadline(time.Now().Add(20 * time.Second))
				_, err := br.ReadByte()
				closed <- err
			})
			f := newFixture(t, Config{Pool: defaultPool(t)}, wc)
			cl := dialRaw(t, f)
			cl.send("GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: gone-1\r\n\r\n")
			if stage == "mid-response body" {
				head := cl.readN(len("HTTP/1.1 200 OK\r\n"))
				assert.Equal(t, "HTTP/1.1 200 OK\r\n", head)
				// The rest of the head and the first 5 body bytes.
				rest := readUntil(t, cl, "hello")
				assert.Contains(t, rest, "X-Request-Id: gone-1\r\n")
			} else {
				cl.nothingFor(200 * time.Millisecond)
			}
			require.NoError(t, cl.c.Close())
			select {
			case err := <-closed:
				assert.ErrorIs(t, err, io.EOF, "obsproxy closed the worker's connection")
			case <-time.After(10 * time.Second):
				t.Fatal("the worker's connection stayed open")
			}
			f.awaitValue(t, 1, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "499"})
			f.noUpstreamErrors(t)
		})
	}
}

// readUntil reads until what was read ends with suffix (10 s at most).
func readUntil(t *testing.T, cl *rawClient, suffix string) string {
	t.Helper()
	cl.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var buf bytes.Buffer
	b := make([]byte, 1)
	for !strings.HasSuffix(buf.String(), suffix) {
		_, err := cl.c.Read(b)
		require.NoError(t, err, "read so far: %q", buf.String())
		buf.Write(b)
	}
	return buf.String()
}
