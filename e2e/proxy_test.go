package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

// whoami is the example app's answer to GET / and /anything/….
type whoami struct {
	Worker string `json:"worker"`
	Path   string `json:"path"`
}

func TestSpreadsOverThreeTCPWorkersAndCountsEach(t *testing.T) {
	ws := []*worker{startUvicorn(t, "u1"), startUvicorn(t, "u2"), startUvicorn(t, "u3")}
	waitReady(t, ws...)
	in := startObsproxy(t, ws)

	const n = 90
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		code, body := in.get(t, fmt.Sprintf("/anything/%d", i))
		require.Equal(t, http.StatusOK, code, body)
		var who whoami
		require.NoError(t, json.Unmarshal([]byte(body), &who))
		assert.Equal(t, fmt.Sprintf("/anything/%d", i), who.Path)
		seen[who.Worker]++
	}
	mfs := in.metrics(t)
	for _, name := range []string{"u1", "u2", "u3"} {
		assert.Greater(t, seen[name], 0, "worker %s got no traffic: %v", name, seen)
		assert.Equal(t, float64(seen[name]), metricstest.Sum(t, mfs, "obsproxy_requests_total", map[string]string{"worker": name}),
			"requests_total for %s equals what it answered", name)
		assert.Equal(t, 0.0, metricstest.Sum(t, mfs, "obsproxy_in_flight_requests", map[string]string{"worker": name}))
	}
	assert.Equal(t, float64(n), metricstest.Sum(t, mfs, "obsproxy_requests_total", map[string]string{"code": "200", "method": "GET"}))
	assert.Equal(t, float64(n), metricstest.Sum(t, mfs, "obsproxy_request_duration_seconds", nil))
}

func TestUnixSocketWorkers(t *testing.T) {
	dir := shortTempDir(t)
	ws := []*worker{startUvicornUnix(t, "s1", dir), startUvicornUnix(t, "s2", dir)}
	waitReady(t, ws...)
	in := startObsproxy(t, ws)

	seen := map[string]int{}
	for i := 0; i < 20; i++ {
		code, body := in.get(t, "/")
		require.Equal(t, http.StatusOK, code, body)
		var who whoami
		require.NoError(t, json.Unmarshal([]byte(body), &who))
		seen[who.Worker]++
	}
	assert.Equal(t, map[string]int{"s1": 10, "s2": 10}, seen, "idle workers take turns")
	mfs := in.metrics(t)
	assert.Equal(t, 10.0, metricstest.Sum(t, mfs, "obsproxy_requests_total", map[string]string{"worker": "s1"}))
	assert.Equal(t, 10.0, metricstest.Sum(t, mfs, "obsproxy_requests_total", map[string]string{"worker": "s2"}))
}

func TestH2CWorkerIsSpokenToInHTTP2(t *testing.T) {
	h := startHypercorn(t, "hc")
	waitReady(t, h)
	in := startObsproxy(t, []*worker{h})

	for i := 0; i < 5; i++ {
		resp, err := in.client.Get(in.url + "/")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		// hypercorn names the protocol it answered in.
		assert.Equal(t, "hypercorn-h2", resp.Header.Get("Server"))
		assert.Equal(t, "HTTP/1.1", resp.Proto, "the client still speaks HTTP/1.1 to obsproxy")
	}
	// Streams work over h2c too: SSE arrives event by event.
	events, _ := readSSE(t, in, "/sse?count=3&interval=0.2")
	assert.Len(t, events, 3)
	assert.Equal(t, 5.0+1, in.value(t, "obsproxy_requests_total", map[string]string{"worker": "hc", "code": "200"}))
}

// TestWorkerClosingPooledConnectionsLosesNothing: uvicorn with a 1 s
// keep-alive closes the connections obsproxy pooled (as a restarted worker
// does, before obsproxy's own 4 s idle timeout). The next GETs and a POST
// without a body still get 200 from the only worker, with no upstream error
// or retry counted: the GETs are sent again on new connections, the POST
// finds its pooled connection closed before sending.
func TestWorkerClosingPooledConnectionsLosesNothing(t *testing.T) {
	w := startUvicornOn(t, "u1", freePort(t), "--timeout-keep-alive", "1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	in.awaitHealth(t, "healthy", "")

	const concurrent = 8
	burst := func(round string) {
		var wg sync.WaitGroup
		codes := make([]int, concurrent)
		for i := range concurrent {
			wg.Add(1)
			go func() {
				defer wg.Done()
				codes[i], _ = in.proxiedStatus(t, "/slow?seconds=0.1")
			}()
		}
		wg.Wait()
		for i, code := range codes {
			assert.Equal(t, http.StatusOK, code, "%s: request %d", round, i)
		}
	}
	// awaitClosedByWorker waits until uvicorn has closed every connection
	// open to it now (obsproxy's pooled ones, after its 1 s keep-alive).
	awaitClosedByWorker := func() {
		open := establishedTo(t, w.port)
		require.NotEmpty(t, open, "obsproxy keeps connections to the worker")
		eventually(t, 10*time.Second, func() bool {
			now := establishedTo(t, w.port)
			for local := range open {
				if now[local] {
					return false
				}
			}
			return true
		}, "uvicorn closed the pooled connections")
	}
	burst("filling the pool")
	awaitClosedByWorker()
	burst("after the worker closed them")
	awaitClosedByWorker()
	for i := range 3 {
		req, err := http.NewRequest(http.MethodPost, in.url+"/control/checks/cache?ok=true", nil)
		require.NoError(t, err)
		resp, err := in.client.Do(req)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "POST %d", i)
	}

	u1 := map[string]string{"worker": "u1"}
	assert.Equal(t, 0.0, in.value(t, "obsproxy_upstream_errors_total", u1))
	assert.Equal(t, 0.0, in.value(t, "obsproxy_retries_total", u1))
	assert.Equal(t, float64(2*concurrent), in.value(t, "obsproxy_requests_total",
		map[string]string{"worker": "u1", "method": "GET", "code": "200"}))
	assert.Equal(t, 3.0, in.value(t, "obsproxy_requests_total",
		map[string]string{"worker": "u1", "method": "POST", "code": "200"}))
}

// establishedTo returns the local addresses (hex, as /proc/net/tcp writes
// them) of the established IPv4 TCP connections whose remote port is port:
// the client side of every connection to a loopback worker.
func establishedTo(t *testing.T, port int) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	require.NoError(t, err)
	suffix := fmt.Sprintf(":%04X", port)
	local := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line) // sl local_address rem_address st ...
		if len(f) > 3 && strings.HasSuffix(f[2], suffix) && f[3] == "01" {
			local[f[1]] = true
		}
	}
	return local
}

func TestInFlightFollowsConcurrentSlowRequests(t *testing.T) {
	ws := []*worker{startUvicorn(t, "u1"), startUvicorn(t, "u2")}
	waitReady(t, ws...)
	in := startObsproxy(t, ws)

	const n = 6
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, _ := in.get(t, "/slow?seconds=2")
			assert.Equal(t, http.StatusOK, code)
		}()
	}
	eventually(t, 5*time.Second, func() bool {
		return in.value(t, "obsproxy_in_flight_requests", nil) == n
	}, "in flight never reached %d", n)
	mfs := in.metrics(t)
	assert.Equal(t, n/2.0, metricstest.Sum(t, mfs, "obsproxy_in_flight_requests", map[string]string{"worker": "u1"}), "least_inflight spreads them evenly")
	assert.Equal(t, n/2.0, metricstest.Sum(t, mfs, "obsproxy_in_flight_requests", map[string]string{"worker": "u2"}))
	eventually(t, 5*time.Second, func() bool {
		return in.value(t, "obsproxy_oldest_in_flight_seconds", map[string]string{"worker": "u1"}) > 0.25
	}, "the oldest in-flight age does not grow")
	wg.Wait()
	mfs = in.metrics(t)
	assert.Equal(t, 0.0, metricstest.Sum(t, mfs, "obsproxy_in_flight_requests", nil))
	assert.Equal(t, 0.0, metricstest.Sum(t, mfs, "obsproxy_oldest_in_flight_seconds", nil))
	assert.Equal(t, float64(n), metricstest.Sum(t, mfs, "obsproxy_requests_total", map[string]string{"code": "200"}))
}

func TestActiveConnectionsFollowKeepAliveConnections(t *testing.T) {
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})
	hostport := strings.TrimPrefix(in.url, "http://")

	const n = 4
	// startObsproxy's readiness check opened one connection already.
	accepted0 := in.value(t, "obsproxy_connections_accepted_total", nil)
	var conns []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", hostport)
		require.NoError(t, err)
		conns = append(conns, c)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", hostport)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	eventually(t, 5*time.Second, func() bool {
		mfs := in.metrics(t)
		return metricstest.Sum(t, mfs, "obsproxy_active_connections", nil) == n && metricstest.Sum(t, mfs, "obsproxy_connections", map[string]string{"state": "idle"}) == n
	}, "%d idle keep-alive connections not counted", n)
	assert.Equal(t, accepted0+n, in.value(t, "obsproxy_connections_accepted_total", nil))

	conns[0].Close()
	conns[1].Close()
	eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_active_connections", nil) == n-2 }, "closing 2 connections")
	conns[2].Close()
	conns[3].Close()
	eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_active_connections", nil) == 0 }, "closing all connections")
	assert.Equal(t, accepted0+n, in.value(t, "obsproxy_connections_accepted_total", nil))
}

// readSSE reads a text/event-stream through obsproxy and returns each
// event's data with the time it arrived.
func readSSE(t *testing.T, in *instance, path string) ([]string, []time.Time) {
	t.Helper()
	resp, err := in.client.Get(in.url + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"))
	var events []string
	var times []time.Time
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, data)
			times = append(times, time.Now())
		}
	}
	require.NoError(t, sc.Err())
	return events, times
}

func TestSSEArrivesEventByEvent(t *testing.T) {
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})

	done := make(chan struct{})
	var events []string
	var times []time.Time
	go func() {
		defer close(done)
		events, times = readSSE(t, in, "/sse?count=4&interval=0.5")
	}()
	eventually(t, 5*time.Second, func() bool {
		return in.value(t, "obsproxy_streams_active", map[string]string{"worker": "u1", "kind": "sse"}) == 1
	}, "the SSE response is not counted as a stream")
	assert.Equal(t, 0.0, in.value(t, "obsproxy_in_flight_requests", map[string]string{"worker": "u1"}), "a stream is not an in-flight request")
	<-done
	require.Len(t, events, 4)
	for i := 1; i < len(times); i++ {
		gap := times[i].Sub(times[i-1])
		assert.Greater(t, gap, 300*time.Millisecond, "event %d arrived %v after the previous one: buffered, not streamed", i+1, gap)
	}
	eventually(t, 5*time.Second, func() bool {
		return in.value(t, "obsproxy_streams_active", map[string]string{"kind": "sse"}) == 0
	}, "the ended stream is still counted")
}

func TestWebSocketEchoIsAStreamAndAConnectionUntilClosed(t *testing.T) {
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})

	ws, resp, err := dialWebSocket(strings.TrimPrefix(in.url, "http://"), "/ws")
	require.NoError(t, err)
	assert.NotEmpty(t, resp.Header.Get("X-Request-Id"))
	for _, msg := range []string{"hello", strings.Repeat("x", 70000)} {
		require.NoError(t, ws.sendText(msg))
		op, got, err := ws.readMessage()
		require.NoError(t, err)
		assert.Equal(t, byte(0x1), op)
		assert.Equal(t, msg, got)
	}
	mfs := in.metrics(t)
	assert.Equal(t, 1.0, metricstest.Sum(t, mfs, "obsproxy_streams_active", map[string]string{"worker": "u1", "kind": "websocket"}))
	assert.Equal(t, 1.0, metricstest.Sum(t, mfs, "obsproxy_active_connections", nil))
	assert.Equal(t, 1.0, metricstest.Sum(t, mfs, "obsproxy_connections", map[string]string{"state": "hijacked"}))
	assert.Equal(t, 0.0, metricstest.Sum(t, mfs, "obsproxy_in_flight_requests", nil))

	ws.close()
	eventually(t, 5*time.Second, func() bool {
		mfs := in.metrics(t)
		return metricstest.Sum(t, mfs, "obsproxy_streams_active", nil) == 0 && metricstest.Sum(t, mfs, "obsproxy_active_connections", nil) == 0
	}, "the closed WebSocket is still counted")
	assert.Equal(t, 1.0, in.value(t, "obsproxy_requests_total", map[string]string{"worker": "u1", "code": "101"}))
}

func TestChunkedUploadArrivesIntact(t *testing.T) {
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})

	payload := make([]byte, 8<<20)
	rand.Read(payload)
	sum := sha256.Sum256(payload)
	// io.MultiReader hides the length, so the client sends it chunked.
	req, err := http.NewRequest(http.MethodPost, in.url+"/upload", io.MultiReader(strings.NewReader(""), bytesReader(payload)))
	require.NoError(t, err)
	require.Equal(t, int64(0), req.ContentLength)
	req.ContentLength = -1
	resp, err := in.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var got struct {
		Bytes  int    `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	assert.Equal(t, len(payload), got.Bytes)
	assert.Equal(t, hex.EncodeToString(sum[:]), got.SHA256)
}

type sliceReader struct{ b []byte }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func bytesReader(b []byte) io.Reader { return &sliceReader{b: b} }

func TestCurlHTTP2ThroughTheProxy(t *testing.T) {
	curl, err := exec.LookPath("curl")
	require.NoError(t, err, "curl is installed by make deps")
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})

	// curl --http2 on http:// offers `Upgrade: h2c`; uvicorn would answer
	// such a request with 400, so obsproxy must not forward the offer.
	out, err := exec.Command(curl, "-sS", "--http2", "-o", "-", "-w", "\n%{http_code} %{http_version}", in.url+"/headers").CombinedOutput()
	require.NoError(t, err, string(out))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	assert.Equal(t, "200 1.1", lines[len(lines)-1])
	var hdrs map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &hdrs))
	assert.NotContains(t, hdrs, "upgrade")
	assert.NotContains(t, hdrs, "http2-settings")
}

func TestOddMethodsCreateNoNewMethodLabel(t *testing.T) {
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})

	for i := 0; i < 20; i++ {
		req, err := http.NewRequest(fmt.Sprintf("ODD%02d", i), in.url+"/anything/x", nil)
		require.NoError(t, err)
		resp, err := in.client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	code, _ := in.get(t, "/")
	require.Equal(t, http.StatusOK, code)
	mfs := in.metrics(t)
	assert.Equal(t, map[string]bool{"GET": true, "other": true}, metricstest.LabelValues(t, mfs, "obsproxy_requests_total", "method"))
	assert.Equal(t, 20.0, metricstest.Sum(t, mfs, "obsproxy_requests_total", map[string]string{"method": "other"}))
}

func TestRequestIDAndForwardedHeadersReachTheWorker(t *testing.T) {
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w})

	req, _ := http.NewRequest(http.MethodGet, in.url+"/headers", nil)
	req.Header.Set("X-Request-ID", "e2e-chosen-id.1")
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	resp, err := in.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var hdrs map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&hdrs))
	assert.Equal(t, "e2e-chosen-id.1", resp.Header.Get("X-Request-Id"))
	assert.Equal(t, "e2e-chosen-id.1", hdrs["x-request-id"])
	assert.Equal(t, "127.0.0.1", hdrs["x-forwarded-for"], "an untrusted client's X-Forwarded-For is replaced")
	assert.Equal(t, "http", hdrs["x-forwarded-proto"])
}

// p95 returns the 95th percentile of ds.
func p95(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)*95+99)/100-1]
}

// TestLeastInFlightAvoidsABlockedWorker blocks one of three uvicorn workers
// with a long synchronous handler and sends fast requests meanwhile:
// least_inflight sends them around the blocked worker, round_robin queues a
// third of them behind it.
func TestLeastInFlightAvoidsABlockedWorker(t *testing.T) {
	ws := []*worker{startUvicorn(t, "u1"), startUvicorn(t, "u2"), startUvicorn(t, "u3")}
	waitReady(t, ws...)
	const block = 3 * time.Second
	results := map[string]time.Duration{}
	for _, policy := range []string{"least_inflight", "round_robin"} {
		t.Run(policy, func(t *testing.T) {
			in := startObsproxy(t, ws, "OBSPROXY_LB_POLICY="+policy)
			blocked := make(chan struct{})
			go func() {
				defer close(blocked)
				in.get(t, fmt.Sprintf("/block?seconds=%g", block.Seconds()))
			}()
			eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_in_flight_requests", nil) == 1 }, "the blocking request is not in flight")

			const n = 30
			lat := make([]time.Duration, n)
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					t0 := time.Now()
					code, _ := in.get(t, "/")
					lat[i] = time.Since(t0)
					assert.Equal(t, http.StatusOK, code)
				}(i)
				time.Sleep(50 * time.Millisecond)
			}
			wg.Wait()
			<-blocked
			results[policy] = p95(lat)
			t.Logf("%s: fast-request p95 %v with one of three workers blocked for %v", policy, p95(lat).Round(time.Millisecond), block)
		})
	}
	require.Len(t, results, 2)
	assert.Less(t, results["least_inflight"], 500*time.Millisecond, "least_inflight should route around the blocked worker")
	assert.Greater(t, results["round_robin"], time.Second, "round_robin should queue requests behind the blocked worker")
}

func TestSIGTERMFinishesInFlightRequestsThenClosesStreamsAndExitsZero(t *testing.T) {
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w}, "OBSPROXY_SHUTDOWN_TIMEOUT=30s")

	// Two streams that would never end by themselves.
	sse, err := in.client.Get(in.url + "/sse?count=1000&interval=1")
	require.NoError(t, err)
	defer sse.Body.Close()
	ws, _, err := dialWebSocket(strings.TrimPrefix(in.url, "http://"), "/ws")
	require.NoError(t, err)
	defer ws.c.Close()

	const n = 4
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			codes[i], _ = in.get(t, "/slow?seconds=1.5")
		}(i)
	}
	eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_in_flight_requests", nil) == n }, "requests not in flight")
	in.proc.signal(syscall.SIGTERM)
	t0 := time.Now()
	wg.Wait()
	assert.Equal(t, []int{200, 200, 200, 200}, codes, "no in-flight request may be cut")

	// Then the streams are closed, and obsproxy exits 0 long before the
	// 30 s shutdown timeout.
	io.Copy(io.Discard, sse.Body)
	ws.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, ws.br)
	assert.NoError(t, err, "the WebSocket is closed by obsproxy (EOF), not left to time out")
	assert.Equal(t, 0, in.proc.wait(t, 10*time.Second))
	t.Logf("exit 0 after %v with 4 slow requests (1.5 s), one SSE stream and one WebSocket open", time.Since(t0).Round(10*time.Millisecond))
	assert.Less(t, time.Since(t0), 10*time.Second)
}

func TestMaxConnectionsCapsOpenClientConnections(t *testing.T) {
	w := startUvicorn(t, "u1")
	waitReady(t, w)
	in := startObsproxy(t, []*worker{w}, "OBSPROXY_MAX_CONNECTIONS=2")
	hostport := strings.TrimPrefix(in.url, "http://")
	// The readiness check's connection must be gone before counting slots.
	eventually(t, 5*time.Second, func() bool { return in.value(t, "obsproxy_active_connections", nil) == 0 }, "readiness connection still open")

	request := func(c net.Conn) (*http.Response, error) {
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", hostport)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", hostport)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = request(c)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	third, err := net.Dial("tcp", hostport) // the kernel accepts; obsproxy does not yet
	require.NoError(t, err)
	t.Cleanup(func() { third.Close() })
	third.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err = request(third)
	var ne net.Error
	require.ErrorAs(t, err, &ne, "a third connection must wait while two are open")
	assert.True(t, ne.Timeout())
	assert.Equal(t, 2.0, in.value(t, "obsproxy_active_connections", nil))

	conns[0].Close()
	third.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	require.NoError(t, err, "the waiting request is served once a slot frees")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}
