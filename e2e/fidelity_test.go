package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 12, proxy fidelity, against real uvicorn: obsproxy never invents,
// holds back or alters what the worker or the client said.

// rawExchange sends request (raw bytes) to addr and returns every byte
// received until the peer closes (20 s at most). halfClose shuts the
// sending side after the request, as `nc -N` does.
func rawExchange(t *testing.T, addr, request string, halfClose bool) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, request)
	require.NoError(t, err)
	if halfClose {
		require.NoError(t, c.(*net.TCPConn).CloseWrite())
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !strings.Contains(err.Error(), "connection reset") {
		require.NoError(t, err)
	}
	return string(b)
}

func hostOf(base string) string { return strings.TrimPrefix(base, "http://") }

// parsedResponse is what a client can tell of a response: the parts that
// must match between a worker's answer and obsproxy's.
type parsedResponse struct {
	StatusCode       int
	Header           http.Header
	TransferEncoding []string
	ContentLength    int64
	Body             string
	Trailer          http.Header
}

// notCompared are the headers left out of the comparison: Connection and
// Keep-Alive are per connection (RFC 9110 section 7.6.1), X-Request-Id is
// obsproxy's (spec section 4), Date is only required on both (the second
// may turn between the two fetches). Header names are compared
// canonicalised, and the status line by its code: net/http writes its own
// reason phrase and header name case (docs/servers.md, "What obsproxy
// changes in a response").
var notCompared = []string{"Connection", "Keep-Alive", "X-Request-Id", "Date"}

func parseRaw(t *testing.T, raw, method string) parsedResponse {
	t.Helper()
	req, _ := http.NewRequest(method, "http://x/", nil)
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), req)
	require.NoError(t, err, "raw response %q", raw)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NotEmpty(t, resp.Header.Get("Date"), "a Date header in %q", raw)
	for _, k := range notCompared {
		resp.Header.Del(k)
	}
	return parsedResponse{StatusCode: resp.StatusCode, Header: resp.Header, TransferEncoding: resp.TransferEncoding,
		ContentLength: resp.ContentLength, Body: string(body), Trailer: resp.Trailer}
}

// TestDifferentialDirectAndThroughObsproxy fetches a set of real uvicorn
// responses directly and through obsproxy and requires them to be the same,
// hop-by-hop headers and X-Request-Id aside: status line, every header
// (repeated ones and their order included), framing and body bytes.
func TestDifferentialDirectAndThroughObsproxy(t *testing.T) {
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	for _, tc := range []struct {
		method, path string
		headers      string
	}{
		{"GET", "/", ""},
		{"GET", "/status/204", ""},
		{"GET", "/status/304", ""},
		{"GET", "/status/418", ""},
		{"GET", "/status/503", ""},
		{"GET", "/notype", ""},
		{"HEAD", "/", ""},
		{"HEAD", "/range", ""},
		{"GET", "/range", ""},
		{"GET", "/range", "Range: bytes=10-19\r\n"},
		{"GET", "/range", "Range: bytes=-5\r\n"},
		{"GET", "/range", "Range: bytes=95-\r\n"},
		{"GET", "/range", "Range: bytes=200-300\r\n"},
		{"GET", "/gzip", "Accept-Encoding: gzip\r\n"},
		{"GET", "/gzip", ""},
		{"GET", "/cookies", ""},
		{"GET", "/stream?chunks=3", ""},
		{"GET", "/stream?chunks=3&length=true", ""},
		{"GET", "/slowlength?bytes=3&interval=0.05", ""},
		{"OPTIONS", "/anything/x", ""},
		{"DELETE", "/anything/x", ""},
		{"GET", "/nowhere", ""},
	} {
		t.Run(tc.method+" "+tc.path+" "+strings.TrimSpace(tc.headers), func(t *testing.T) {
			req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: app.example\r\nUser-Agent: fidelity\r\n%sConnection: close\r\n\r\n", tc.method, tc.path, tc.headers)
			direct := rawExchange(t, hostOf(w.base), req, false)
			proxied := rawExchange(t, hostOf(in.url), req, false)
			d, p := parseRaw(t, direct, tc.method), parseRaw(t, proxied, tc.method)
			assert.Equal(t, d, p, "direct:\n%s\nthrough obsproxy:\n%s", direct, proxied)
			assert.Contains(t, proxied, "\r\nX-Request-Id: ")
		})
	}
	assert.Equal(t, 0.0, in.value(t, "obsproxy_upstream_errors_total", nil))
}

// TestHalfClosedClientGetsNothingMadeUp is defect 1 of issue 12 against
// uvicorn: a complete request followed by shutdown(SHUT_WR) while the
// worker thinks gets no byte (never a 200 the worker did not send), and is
// counted as a 499, not an upstream error.
func TestHalfClosedClientGetsNothingMadeUp(t *testing.T) {
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	got := rawExchange(t, hostOf(in.url), "GET /slow?seconds=2 HTTP/1.1\r\nHost: h\r\n\r\n", true)
	assert.Equal(t, "", got)
	got = rawExchange(t, hostOf(in.url), "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("x", 40), true)
	assert.Equal(t, "", got, "a truncated body gets nothing either")
	eventually(t, 10*time.Second, func() bool {
		return in.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "499"}) == 2
	}, "two 499s")
	assert.Equal(t, 0.0, in.value(t, "obsproxy_upstream_errors_total", nil))
	assert.Equal(t, 2.0, in.value(t, "obsproxy_requests_total", nil), "nothing else counted")
}

// TestMalformedChunkedBodyIsA400 is defect 2 of issue 12 against uvicorn:
// the client gets 400 JSON with its request id, the worker is not blamed,
// and the worker keeps serving.
func TestMalformedChunkedBodyIsA400(t *testing.T) {
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	bodies := []string{"5g\r\nhello\r\n0\r\n\r\n", "-5\r\nhello\r\n0\r\n\r\n", "5\r\nhello\r\n3\r\nhello\r\n0\r\n\r\n", "5\nhello\n0\n\n"}
	for i, body := range bodies {
		id := fmt.Sprintf("bad-%d", i)
		got := rawExchange(t, hostOf(in.url), "POST /upload HTTP/1.1\r\nHost: h\r\nX-Request-ID: "+id+"\r\nTransfer-Encoding: chunked\r\n\r\n"+body, false)
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
		require.NoError(t, err, "%q", got)
		b, _ := io.ReadAll(resp.Body)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%q", got)
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		assert.Equal(t, id, resp.Header.Get("X-Request-Id"))
		assert.Equal(t, `{"error":"bad request","request_id":"`+id+`"}`+"\n", string(b))
	}
	assert.Equal(t, float64(len(bodies)), in.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "400", "method": "POST"}))
	assert.Equal(t, 0.0, in.value(t, "obsproxy_upstream_errors_total", nil))
	code, body := in.get(t, "/")
	assert.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, 1.0, in.value(t, "obsproxy_worker_up", map[string]string{"worker": "w1"}))
}

// TestNoSniffedContentType is defect 3 of issue 12 against uvicorn: an HTML
// body sent without Content-Type gets none through obsproxy.
func TestNoSniffedContentType(t *testing.T) {
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	resp, err := in.client.Get(in.url + "/notype")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	assert.Equal(t, "<html><body>no type</body></html>", string(b))
	assert.NotContains(t, resp.Header, "Content-Type")
}

// TestSlowContentLengthBodyArrivesAsSent is defect 4 of issue 12 against
// uvicorn: /slowlength sends 5 bytes 0.4 s apart with a Content-Length; the
// head and the first byte must arrive while the worker still has 1.6 s of
// sleeping to do, so the rest takes at least about that long after them.
// (A held-back body arrives all at once: the rest takes no time.)
func TestSlowContentLengthBodyArrivesAsSent(t *testing.T) {
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	c, err := net.Dial("tcp", hostOf(in.url))
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET /slowlength?bytes=5&interval=0.4 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(5), resp.ContentLength)
	first := make([]byte, 1)
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err)
	firstAt := time.Now()
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, "xxxxx", string(first)+string(rest))
	assert.GreaterOrEqual(t, time.Since(firstAt), time.Second,
		"4 more bytes 0.4 s apart follow the first: held back, they would all arrive at once")
}

// TestForwardedHeaderReachesUvicorn is defect 5 of issue 12 against
// uvicorn: an untrusted client's Forwarded is replaced by obsproxy's own
// element.
func TestForwardedHeaderReachesUvicorn(t *testing.T) {
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	got := rawExchange(t, hostOf(in.url), "GET /headers HTTP/1.1\r\nHost: app.example:8080\r\nForwarded: for=6.6.6.6\r\nConnection: close\r\n\r\n", false)
	assert.Contains(t, got, `"forwarded":"for=127.0.0.1;host=\"app.example:8080\";proto=http"`)
	assert.NotContains(t, got, "6.6.6.6")
}

// TestOptionsAsteriskIsForwarded: OPTIONS * reaches the worker (spec
// section 3) instead of being answered by net/http.
func TestOptionsAsteriskIsForwarded(t *testing.T) {
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	req := "OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
	direct := rawExchange(t, hostOf(w.base), req, false)
	proxied := rawExchange(t, hostOf(in.url), req, false)
	d, p := parseRaw(t, direct, "OPTIONS"), parseRaw(t, proxied, "OPTIONS")
	assert.Equal(t, d, p, "direct:\n%s\nthrough obsproxy:\n%s", direct, proxied)
	assert.Equal(t, "uvicorn", p.Header.Get("Server"), "the answer is the worker's")
	assert.Equal(t, 1.0, in.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "method": "OPTIONS"}))
}

// TestClientLeavingWhileUvicornThinksIs499: a client that closes while
// the worker sleeps is a 499, not an upstream error, and the worker's
// connection is closed (uvicorn then sees the disconnect).
func TestClientLeavingWhileUvicornThinksIs499(t *testing.T) {
	w := startUvicorn(t, "w1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	c, err := net.Dial("tcp", hostOf(in.url))
	require.NoError(t, err)
	_, err = io.WriteString(c, "GET /slow?seconds=5 HTTP/1.1\r\nHost: h\r\n\r\n")
	require.NoError(t, err)
	eventually(t, 10*time.Second, func() bool {
		return in.value(t, "obsproxy_in_flight_requests", map[string]string{"worker": "w1"}) == 1
	}, "the request in flight")
	require.NoError(t, c.Close())
	eventually(t, 10*time.Second, func() bool {
		return in.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1", "code": "499"}) == 1
	}, "a 499")
	assert.Equal(t, 0.0, in.value(t, "obsproxy_upstream_errors_total", nil))
	assert.Equal(t, 0.0, in.value(t, "obsproxy_in_flight_requests", nil))
}

// TestMalformedChunkedBodyToAnH2CWorkerIsA400: the same over HTTP/2 to
// hypercorn, where net/http.Transport resets the stream instead of closing
// a connection: still the client's 400, never the worker's error.
func TestMalformedChunkedBodyToAnH2CWorkerIsA400(t *testing.T) {
	w := startHypercorn(t, "h1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	got := rawExchange(t, hostOf(in.url), "POST /upload HTTP/1.1\r\nHost: h\r\nX-Request-ID: bad-h2\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5g\r\nhello\r\n0\r\n\r\n", false)
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
	require.NoError(t, err, "%q", got)
	b, _ := io.ReadAll(resp.Body)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%q", got)
	assert.Equal(t, `{"error":"bad request","request_id":"bad-h2"}`+"\n", string(b))
	assert.Equal(t, 1.0, in.value(t, "obsproxy_requests_total", map[string]string{"worker": "h1", "code": "400", "method": "POST"}))
	assert.Equal(t, 0.0, in.value(t, "obsproxy_upstream_errors_total", nil))
	code, body := in.get(t, "/")
	assert.Equal(t, http.StatusOK, code, body)
}
