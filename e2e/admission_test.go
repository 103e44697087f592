package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/internal/metricstest"
)

// concurrency is examples/app's GET /concurrency, asked of the worker
// directly.
type concurrency struct {
	Current int `json:"current"`
	Max     int `json:"max"`
	Total   int `json:"total"`
}

func (w *worker) concurrency(t *testing.T, reset bool) concurrency {
	t.Helper()
	resp, err := w.client.Get(w.base + fmt.Sprintf("/concurrency?reset=%v", reset))
	require.NoError(t, err)
	defer resp.Body.Close()
	var c concurrency
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&c))
	return c
}

type answer struct {
	code       int
	body       string
	retryAfter string
	err        error
}

// fire sends n concurrent GETs of path through obsproxy, each on its own
// connection, and returns their answers once all are in.
func (in *instance) fire(n int, path string) []answer {
	out := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get(in.url + path)
			if err != nil {
				out[i].err = err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			out[i] = answer{code: resp.StatusCode, body: string(b), retryAfter: resp.Header.Get("Retry-After"), err: err}
		}()
	}
	wg.Wait()
	return out
}

// TestAdmissionCapsRealWorkers: with a cap of 2 on 2 uvicorn workers, 12
// concurrent one-second requests all succeed, the app never has more than 2
// at once, and the queue is visible while they wait (spec section 10).
func TestAdmissionCapsRealWorkers(t *testing.T) {
	w1, w2 := startUvicorn(t, "w1"), startUvicorn(t, "w2")
	waitReady(t, w1, w2)
	in := startObsproxy(t, []*worker{w1, w2}, "OBSPROXY_WORKER_MAX_IN_FLIGHT=2", "OBSPROXY_HEALTH_INTERVAL=500ms")
	for _, w := range []*worker{w1, w2} {
		w.concurrency(t, true)
	}
	assert.Equal(t, 2.0, in.value(t, "obsproxy_worker_max_in_flight", nil))

	began := time.Now()
	answers := make(chan []answer, 1)
	go func() { answers <- in.fire(12, "/slow?seconds=1") }()

	// While they wait: 4 at the workers, 8 in the queue, visible in the
	// metrics, the dashboard's JSON and the wait of the oldest.
	var sawDepth float64
	var sawOldest float64
	var sawUsage bool
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && (sawDepth < 8 || sawOldest <= 0 || !sawUsage) && time.Since(began) < 3*time.Second {
		if d := in.value(t, "obsproxy_queue_depth", nil); d > sawDepth {
			sawDepth = d
		}
		var snap struct {
			Queue struct {
				Depth             int64   `json:"depth"`
				OldestWaitSeconds float64 `json:"oldest_wait_seconds"`
			} `json:"queue"`
			Workers []struct {
				CapUsage *float64 `json:"cap_usage"`
			} `json:"workers"`
		}
		resp, err := http.Get(in.admin + "/admin/api/observability")
		require.NoError(t, err)
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&snap))
		resp.Body.Close()
		if snap.Queue.Depth > 0 && snap.Queue.OldestWaitSeconds > sawOldest {
			sawOldest = snap.Queue.OldestWaitSeconds
		}
		if len(snap.Workers) == 2 && snap.Workers[0].CapUsage != nil && *snap.Workers[0].CapUsage == 1 &&
			snap.Workers[1].CapUsage != nil && *snap.Workers[1].CapUsage == 1 {
			sawUsage = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	// All 12 arrive within milliseconds, so 8 wait at once; on a very
	// loaded machine a late one may arrive after the first round ended.
	assert.LessOrEqual(t, sawDepth, 8.0, "never more than 12 minus 4 slots wait")
	assert.GreaterOrEqual(t, sawDepth, 4.0, "the waiting requests show in obsproxy_queue_depth")
	assert.Positive(t, sawOldest, "the oldest wait shows while requests wait")
	assert.True(t, sawUsage, "each worker's cap usage reaches 1")

	got := <-answers
	elapsed := time.Since(began)
	for i, a := range got {
		require.NoError(t, a.err, "request %d", i)
		assert.Equal(t, http.StatusOK, a.code, "request %d: %s", i, a.body)
	}
	// Three rounds of four one-second requests: never less than 3 s.
	assert.GreaterOrEqual(t, elapsed, 2900*time.Millisecond)
	for _, w := range []*worker{w1, w2} {
		c := w.concurrency(t, false)
		assert.LessOrEqual(t, c.Max, 2, "worker %s saw %d requests at once", w.upstream, c.Max)
		assert.Equal(t, 2, c.Max, "worker %s was kept at its cap", w.upstream)
	}
	m := in.metrics(t)
	waited := metricstest.Sum(t, m, "obsproxy_queue_wait_seconds", nil)
	assert.GreaterOrEqual(t, waited, 8.0, "every request that waited is in the wait histogram")
	assert.Equal(t, 12.0, metricstest.Sum(t, m, "obsproxy_requests_total", map[string]string{"code": "200"}))
	assert.Equal(t, 0.0, metricstest.Sum(t, m, "obsproxy_queue_depth", nil))
	assert.Equal(t, 0.0, metricstest.Sum(t, m, "obsproxy_in_flight_requests", nil))
}

// TestAdmissionRejectsOverflow: with 4 slots, a queue of 2 and a 500 ms
// queue timeout, 10 concurrent two-second requests make 4 successes, 2
// timeouts and 4 "full" rejections, all 503 overloaded with Retry-After;
// /health answers fast the whole time.
func TestAdmissionRejectsOverflow(t *testing.T) {
	w1, w2 := startUvicorn(t, "w1"), startUvicorn(t, "w2")
	waitReady(t, w1, w2)
	in := startObsproxy(t, []*worker{w1, w2}, "OBSPROXY_WORKER_MAX_IN_FLIGHT=2", "OBSPROXY_QUEUE_SIZE=2",
		"OBSPROXY_QUEUE_TIMEOUT=500ms")

	// /health is timed every 20 ms throughout.
	stop := make(chan struct{})
	healthDone := make(chan []time.Duration, 1)
	go func() {
		c := &http.Client{Timeout: 5 * time.Second}
		var lat []time.Duration
		for {
			select {
			case <-stop:
				healthDone <- lat
				return
			default:
			}
			t0 := time.Now()
			resp, err := c.Get(in.url + "/health")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(t0))
			} else {
				lat = append(lat, time.Hour) // counted as slow
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	got := in.fire(10, "/slow?seconds=2")
	close(stop)
	lat := <-healthDone

	var ok, overloaded int
	for i, a := range got {
		require.NoError(t, a.err, "request %d", i)
		switch a.code {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			overloaded++
			assert.Equal(t, "1", a.retryAfter)
			var body struct {
				Error     string `json:"error"`
				RequestID string `json:"request_id"`
			}
			require.NoError(t, json.Unmarshal([]byte(a.body), &body), a.body)
			assert.Equal(t, "overloaded", body.Error)
			assert.Len(t, body.RequestID, 32)
		default:
			t.Errorf("request %d: unexpected %d %s", i, a.code, a.body)
		}
	}
	assert.Equal(t, 4, ok)
	assert.Equal(t, 6, overloaded)
	// All ten arrive within a few milliseconds: 2 wait and time out, 4
	// find the queue full. A request delayed past the first timeouts (a
	// very loaded machine) finds room and times out instead: the sum is
	// exact, and both reasons are counted.
	m := in.metrics(t)
	full := metricstest.Sum(t, m, "obsproxy_queue_rejected_total", map[string]string{"reason": "full"})
	timeout := metricstest.Sum(t, m, "obsproxy_queue_rejected_total", map[string]string{"reason": "timeout"})
	t.Logf("rejected: %v full, %v timeout", full, timeout)
	assert.Equal(t, 6.0, full+timeout)
	assert.GreaterOrEqual(t, full, 1.0)
	assert.GreaterOrEqual(t, timeout, 2.0)
	assert.Equal(t, 6.0, metricstest.Sum(t, m, "obsproxy_requests_total", map[string]string{"worker": "none", "code": "503"}))

	// Tolerant: the machine is shared (and make test runs every package at
	// once), so one slow answer in ten is forgiven. A /health that waited
	// in the queue would take the 500 ms queue timeout or the 2 s of a
	// slot every time, so the median catches that.
	require.NotEmpty(t, lat)
	slices.Sort(lat)
	slow := 0
	for _, d := range lat {
		if d >= 100*time.Millisecond {
			slow++
		}
	}
	t.Logf("/health: %d answers during the overload, median %v, max %v", len(lat), lat[len(lat)/2], lat[len(lat)-1])
	assert.Less(t, lat[len(lat)/2], 100*time.Millisecond)
	assert.LessOrEqual(t, slow, len(lat)/10, "/health answers in under 100 ms while the queue rejects")
}

// TestQueuedClientThatLeavesIsNeverSent: a request whose client goes away
// while it waits is counted 499 under worker="none" and never reaches the
// worker (the app's count of /slow requests begun does not move).
func TestQueuedClientThatLeavesIsNeverSent(t *testing.T) {
	w1 := startUvicorn(t, "w1")
	waitReady(t, w1)
	in := startObsproxy(t, []*worker{w1}, "OBSPROXY_WORKER_MAX_IN_FLIGHT=1")

	held := make(chan []answer, 1)
	go func() { held <- in.fire(1, "/slow?seconds=2") }()
	eventually(t, 10*time.Second, func() bool { return w1.concurrency(t, false).Current == 1 }, "the slot taken")

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/slow?seconds=0", nil)
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	eventually(t, 10*time.Second, func() bool { return in.value(t, "obsproxy_queue_depth", nil) == 1 }, "the request queued")
	cancel()
	require.Error(t, <-errc)
	eventually(t, 10*time.Second, func() bool {
		return in.value(t, "obsproxy_requests_total", map[string]string{"worker": "none", "code": "499"}) == 1
	}, "the 499 counted")
	a := <-held
	require.NoError(t, a[0].err)
	assert.Equal(t, http.StatusOK, a[0].code)
	// Give a wrongly sent request every chance to arrive: another request
	// through the same single slot finishes after it would have.
	code, _ := in.get(t, "/slow?seconds=0")
	assert.Equal(t, http.StatusOK, code)

	c := w1.concurrency(t, false)
	assert.Equal(t, 2, c.Total, "the worker saw the held request and the last one, never the one that left")
	assert.Equal(t, 2.0, in.value(t, "obsproxy_requests_total", map[string]string{"worker": "w1"}))
}
