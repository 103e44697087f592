package admission

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/lifecycle"
)

func newPool(t testing.TB, n int) *lifecycle.Pool {
	t.Helper()
	var ws []lifecycle.WorkerConfig
	for i := range n {
		ws = append(ws, lifecycle.WorkerConfig{Name: fmt.Sprintf("w%d", i+1), Network: "tcp", Address: fmt.Sprintf("127.0.0.1:%d", i+1)})
	}
	p, err := lifecycle.NewPool(lifecycle.Config{Workers: ws, InitialState: lifecycle.StateUp})
	require.NoError(t, err)
	return p
}

func newQueue(t testing.TB, pool *lifecycle.Pool, maxInFlight, size int, timeout time.Duration) *Queue {
	t.Helper()
	q, err := New(Config{Pool: pool, MaxInFlight: maxInFlight, Size: size, Timeout: timeout})
	require.NoError(t, err)
	return q
}

// await polls cond until it holds or a generous deadline passes.
func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type result struct {
	id  int
	w   *lifecycle.Worker
	out Outcome
}

// enqueue starts a request that will have to wait, and returns once it is
// in the line (depth grew to want).
func enqueue(t *testing.T, q *Queue, ctx context.Context, id int, want int64, results chan<- result) {
	t.Helper()
	go func() {
		w, out := q.Acquire(ctx, nil, false)
		results <- result{id, w, out}
	}()
	await(t, fmt.Sprintf("depth %d", want), func() bool { return q.Depth() == want })
}

func TestNewRejectsBadConfig(t *testing.T) {
	pool := newPool(t, 1)
	for _, cfg := range []Config{
		{},
		{Pool: pool, MaxInFlight: -1, Timeout: time.Second},
		{Pool: pool, MaxInFlight: 1, Size: -1, Timeout: time.Second},
		{Pool: pool, MaxInFlight: 1},
	} {
		_, err := New(cfg)
		assert.Error(t, err, "%+v", cfg)
	}
	q, err := New(Config{Pool: pool})
	require.NoError(t, err)
	assert.False(t, q.Capped())
}

func TestUncontendedPathTakesSlotsByPolicy(t *testing.T) {
	pool := newPool(t, 2)
	q := newQueue(t, pool, 2, 10, time.Second)
	ctx := context.Background()
	var got []*lifecycle.Worker
	for range 4 {
		w, out := q.Acquire(ctx, nil, false)
		require.Equal(t, Admitted, out)
		got = append(got, w)
		w.AddInFlight(1) // as the proxy does, for least_inflight
	}
	assert.EqualValues(t, 2, q.InUse(0))
	assert.EqualValues(t, 2, q.InUse(1))
	for _, w := range got {
		w.AddInFlight(-1)
		q.Release(w)
	}
	assert.EqualValues(t, 0, q.InUse(0)+q.InUse(1))
}

func TestUncontendedPathAllocatesNothing(t *testing.T) {
	q := newQueue(t, newPool(t, 3), 4, 10, time.Second)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		w, _ := q.Acquire(ctx, nil, false)
		q.Release(w)
	})
	assert.Zero(t, allocs)
}

func TestFIFOOrder(t *testing.T) {
	pool := newPool(t, 1)
	q := newQueue(t, pool, 1, 100, time.Minute)
	ctx := context.Background()
	holder, out := q.Acquire(ctx, nil, false)
	require.Equal(t, Admitted, out)

	results := make(chan result, 10)
	for i := range 10 {
		enqueue(t, q, ctx, i, int64(i+1), results)
	}
	// Each freed slot goes to the oldest waiter, in arrival order.
	w := holder
	for i := range 10 {
		q.Release(w)
		r := <-results
		require.Equal(t, Admitted, r.out)
		assert.Equal(t, i, r.id, "slot %d went out of order", i)
		w = r.w
	}
	q.Release(w)
	assert.EqualValues(t, 0, q.Depth())
	assert.EqualValues(t, 0, q.InUse(0))
}

func TestNewArrivalQueuesBehindWaiters(t *testing.T) {
	q := newQueue(t, newPool(t, 1), 1, 10, time.Minute)
	ctx := context.Background()
	holder, _ := q.Acquire(ctx, nil, false)
	results := make(chan result, 2)
	enqueue(t, q, ctx, 0, 1, results)
	// A slot frees and, before the waiter runs, a newcomer arrives: the
	// slot is the waiter's, so the newcomer waits too.
	q.Release(holder)
	enqueue(t, q, ctx, 1, 1, results)
	r := <-results
	assert.Equal(t, 0, r.id)
	q.Release(r.w)
	r = <-results
	assert.Equal(t, 1, r.id)
	q.Release(r.w)
}

func TestFullAndTimeoutRejections(t *testing.T) {
	q := newQueue(t, newPool(t, 1), 1, 2, time.Second)
	ctx := context.Background()
	holder, _ := q.Acquire(ctx, nil, false)
	results := make(chan result, 2)
	enqueue(t, q, ctx, 0, 1, results)
	enqueue(t, q, ctx, 1, 2, results)
	_, out := q.Acquire(ctx, nil, false)
	assert.Equal(t, Full, out)
	for range 2 {
		assert.Equal(t, TimedOut, (<-results).out)
	}
	full, timeout := q.Rejected()
	assert.EqualValues(t, 1, full)
	assert.EqualValues(t, 2, timeout)
	assert.EqualValues(t, 0, q.Depth())

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(q))
	assert.NoError(t, testutil.GatherAndCompare(reg, stringsReader(`
# HELP obsproxy_queue_rejected_total Requests answered 503 overloaded: the queue was full (full) or they waited past OBSPROXY_QUEUE_TIMEOUT (timeout).
# TYPE obsproxy_queue_rejected_total counter
obsproxy_queue_rejected_total{reason="full"} 1
obsproxy_queue_rejected_total{reason="timeout"} 2
# HELP obsproxy_worker_max_in_flight The configured cap on requests in flight per worker (OBSPROXY_WORKER_MAX_IN_FLIGHT; 0: none), for saturation ratios.
# TYPE obsproxy_worker_max_in_flight gauge
obsproxy_worker_max_in_flight 1
# HELP obsproxy_queue_depth Requests waiting now in the admission queue for a worker below its in-flight cap.
# TYPE obsproxy_queue_depth gauge
obsproxy_queue_depth 0
`), "obsproxy_queue_rejected_total", "obsproxy_worker_max_in_flight", "obsproxy_queue_depth"))
	q.Release(holder)
	_, out = q.Acquire(ctx, nil, false)
	assert.Equal(t, Admitted, out)
}

func TestZeroSizeRejectsAtOnce(t *testing.T) {
	q := newQueue(t, newPool(t, 1), 1, 0, time.Minute)
	holder, _ := q.Acquire(context.Background(), nil, false)
	_, out := q.Acquire(context.Background(), nil, false)
	assert.Equal(t, Full, out)
	q.Release(holder)
}

func TestCancellationLeavesTheLine(t *testing.T) {
	q := newQueue(t, newPool(t, 1), 1, 10, time.Minute)
	holder, _ := q.Acquire(context.Background(), nil, false)
	results := make(chan result, 2)
	ctx, cancel := context.WithCancel(context.Background())
	enqueue(t, q, ctx, 0, 1, results)
	enqueue(t, q, context.Background(), 1, 2, results)
	cancel()
	r := <-results
	assert.Equal(t, Canceled, r.out)
	assert.Nil(t, r.w)
	assert.EqualValues(t, 1, q.Depth())
	// The canceled request is not counted as a rejection, and the next
	// slot goes to the one behind it.
	full, timeout := q.Rejected()
	assert.Zero(t, full+timeout)
	q.Release(holder)
	r = <-results
	assert.Equal(t, 1, r.id)
	assert.Equal(t, Admitted, r.out)
	q.Release(r.w)
	assert.EqualValues(t, 0, q.InUse(0))
}

// TestNoLostWakeUpWhenTimeoutMeetsRelease frees the only slot at about the
// moment the first waiter times out, many times with jitter. Whatever wins
// the race, the slot is never lost: either the first waiter is admitted, or
// the slot goes to the second (whose deadline is later), and afterwards the
// slot is free.
func TestNoLostWakeUpWhenTimeoutMeetsRelease(t *testing.T) {
	const timeout = 150 * time.Millisecond
	q := newQueue(t, newPool(t, 1), 1, 10, timeout)
	ctx := context.Background()
	var firstWon, secondWon, raced int
	for i := range 40 {
		holder, out := q.Acquire(ctx, nil, false)
		require.Equal(t, Admitted, out, "round %d: slot lost in an earlier round", i)
		results := make(chan result, 2)
		began := time.Now()
		for id := range 2 {
			if id == 1 {
				time.Sleep(40 * time.Millisecond) // the second waiter's deadline is later
			}
			go func() {
				w, out := q.Acquire(ctx, nil, false)
				results <- result{id, w, out}
			}()
			// In line, or (on a very slow machine) already timed out.
			await(t, "the waiter in line", func() bool { return q.Depth() == int64(id+1) || time.Since(began) > timeout })
		}
		jitter := time.Duration(rand.IntN(6000)-3000) * time.Microsecond
		time.Sleep(time.Until(began.Add(timeout + jitter)))
		q.Release(holder)
		got := map[int]result{}
		for range 2 {
			r := <-results
			got[r.id] = r
		}
		for _, r := range got {
			if r.out == Admitted {
				q.Release(r.w)
			}
		}
		switch {
		case got[0].out == Admitted:
			firstWon++
			assert.NotEqual(t, Admitted, got[1].out, "round %d: two admitted on one slot", i)
		case got[1].out == Admitted:
			secondWon++
		default:
			raced++ // the machine was too slow: the release came after both deadlines
		}
		require.EqualValues(t, 0, q.InUse(0), "round %d", i)
		require.EqualValues(t, 0, q.Depth(), "round %d", i)
	}
	t.Logf("first waiter admitted %d times, second %d times, neither %d times", firstWon, secondWon, raced)
}

// TestNoLostWakeUpUnderContention runs many requests through a small cap
// with short holds, timeouts and cancellations, and watches that no request
// waits while a slot is free for long; at the end every slot is back.
func TestNoLostWakeUpUnderContention(t *testing.T) {
	pool := newPool(t, 2)
	q := newQueue(t, pool, 2, 1000, 50*time.Millisecond)
	var stop atomic.Bool
	var stuck atomic.Int64
	watch := make(chan struct{})
	go func() {
		defer close(watch)
		var since time.Time
		for !stop.Load() {
			// A waiter while some worker has a free slot must be transient.
			if q.Depth() > 0 && (q.InUse(0) < 2 || q.InUse(1) < 2) {
				if since.IsZero() {
					since = time.Now()
				} else if time.Since(since) > 2*time.Second {
					stuck.Add(1)
				}
			} else {
				since = time.Time{}
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	var wg sync.WaitGroup
	var admitted, rejected, canceled atomic.Int64
	for g := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 150 {
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(10) == 0 {
					time.AfterFunc(time.Duration(rng.IntN(2000))*time.Microsecond, cancel)
				}
				w, out := q.Acquire(ctx, nil, false)
				switch out {
				case Admitted:
					admitted.Add(1)
					if n := q.InUse(w.Index); n > 2 || n < 1 {
						t.Errorf("worker %s holds %d slots, cap 2", w.Name, n)
					}
					time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
					q.Release(w)
				case Canceled:
					canceled.Add(1)
				default:
					rejected.Add(1)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	<-watch
	t.Logf("admitted %d, rejected %d, canceled %d", admitted.Load(), rejected.Load(), canceled.Load())
	assert.Zero(t, stuck.Load(), "a request waited while a slot was free")
	assert.EqualValues(t, 0, q.InUse(0))
	assert.EqualValues(t, 0, q.InUse(1))
	assert.EqualValues(t, 0, q.Depth())
	assert.EqualValues(t, 24*150, admitted.Load()+rejected.Load()+canceled.Load())
}

func TestWorkerGoingDownWhileRequestsWait(t *testing.T) {
	pool := newPool(t, 2)
	w1, w2 := pool.Workers()[0], pool.Workers()[1]
	q := newQueue(t, pool, 1, 10, time.Minute)
	ctx := context.Background()
	a, _ := q.Acquire(ctx, nil, false)
	b, _ := q.Acquire(ctx, nil, false)
	require.ElementsMatch(t, []*lifecycle.Worker{w1, w2}, []*lifecycle.Worker{a, b})
	results := make(chan result, 3)
	for i := range 3 {
		enqueue(t, q, ctx, i, int64(i+1), results)
	}
	// w1 goes down with its request still in flight; when that request
	// ends, its slot is not handed to anyone: w1 takes no traffic.
	w1.SetState(lifecycle.StateDown)
	q.Release(w1)
	select {
	case r := <-results:
		t.Fatalf("request %d admitted to a down worker %s", r.id, r.w.Name)
	case <-time.After(50 * time.Millisecond):
	}
	assert.EqualValues(t, 3, q.Depth())
	// w2's slot goes to the oldest.
	q.Release(w2)
	r := <-results
	assert.Equal(t, 0, r.id)
	assert.Same(t, w2, r.w)
	// w1 comes back: Kick hands its free slot to the next in line.
	w1.SetState(lifecycle.StateUp)
	q.Kick()
	r2 := <-results
	assert.Equal(t, 1, r2.id)
	assert.Same(t, w1, r2.w)
	q.Release(r.w)
	r3 := <-results
	assert.Equal(t, 2, r3.id)
	q.Release(r2.w)
	q.Release(r3.w)
	assert.EqualValues(t, 0, q.InUse(0)+q.InUse(1))
}

func TestNoWorkerUpWaitsForOne(t *testing.T) {
	pool := newPool(t, 1)
	w1 := pool.Workers()[0]
	w1.SetState(lifecycle.StateDown)
	q := newQueue(t, pool, 1, 10, time.Minute)
	results := make(chan result, 1)
	enqueue(t, q, context.Background(), 0, 1, results)
	w1.SetState(lifecycle.StateUp)
	q.Kick()
	r := <-results
	assert.Equal(t, Admitted, r.out)
	q.Release(r.w)
}

func TestTriedWorkersAreSkippedAndDoNotBlockTheLine(t *testing.T) {
	pool := newPool(t, 2)
	w1, w2 := pool.Workers()[0], pool.Workers()[1]
	q := newQueue(t, pool, 1, 10, time.Minute)
	ctx := context.Background()
	// Every worker tried: nothing to wait for.
	all := []uint64{0b11}
	_, out := q.Acquire(ctx, all, false)
	assert.Equal(t, NoWorker, out)

	a, _ := q.Acquire(ctx, nil, false)
	b, _ := q.Acquire(ctx, nil, false)
	results := make(chan result, 2)
	// A retry that must avoid w1 waits first; a fresh request behind it.
	go func() {
		w, out := q.Acquire(ctx, []uint64{0b01}, false)
		results <- result{0, w, out}
	}()
	await(t, "depth 1", func() bool { return q.Depth() == 1 })
	enqueue(t, q, ctx, 1, 2, results)
	// w1's slot frees: the retry cannot use it, the fresh request can.
	q.Release(w1)
	r := <-results
	assert.Equal(t, 1, r.id)
	assert.Same(t, w1, r.w)
	q.Release(w2)
	r = <-results
	assert.Equal(t, 0, r.id)
	assert.Same(t, w2, r.w)
	_ = a
	_ = b
	q.Release(w1)
	q.Release(w2)
	assert.EqualValues(t, 0, q.InUse(0)+q.InUse(1))
}

func TestOldestWait(t *testing.T) {
	q := newQueue(t, newPool(t, 1), 1, 10, time.Minute)
	assert.Zero(t, q.OldestWait(time.Now()))
	holder, _ := q.Acquire(context.Background(), nil, false)
	results := make(chan result, 1)
	enqueue(t, q, context.Background(), 0, 1, results)
	assert.Greater(t, q.OldestWait(time.Now().Add(time.Second)), 500*time.Millisecond)
	q.Release(holder)
	r := <-results
	q.Release(r.w)
	assert.Zero(t, q.OldestWait(time.Now()))
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

// A request that has waited longer than the queue timeout gets no slot,
// even when its timer has not fired yet (timers run late on a busy CPU):
// under sustained overload a late timer used to let 15 % of the admitted
// requests wait more than the timeout. Here the waiter's timer fires while
// the test holds the queue's lock, and a slot frees after the deadline,
// before the waiter can leave the line.
func TestNoSlotAfterTheDeadline(t *testing.T) {
	const timeout = 50 * time.Millisecond
	q := newQueue(t, newPool(t, 1), 1, 10, timeout)
	holder, out := q.Acquire(context.Background(), nil, false)
	require.Equal(t, Admitted, out)
	results := make(chan result, 1)
	enqueue(t, q, context.Background(), 1, 1, results)

	q.mu.Lock()
	time.Sleep(2 * timeout) // the deadline passes; the waiter's timer fires and it waits for the lock
	q.slots[holder.Index].n.Add(-1)
	q.dispatchLocked() // what Release does, the line still holding the waiter
	q.mu.Unlock()

	r := <-results
	assert.Equal(t, TimedOut, r.out, "no slot for a request past its deadline")
	assert.Nil(t, r.w)
	assert.EqualValues(t, 0, q.InUse(0), "the slot stays free")
	assert.EqualValues(t, 0, q.Depth())
	_, timedOut := q.Rejected()
	assert.EqualValues(t, 1, timedOut)

	// A request within its deadline is still handed a freed slot.
	holder, out = q.Acquire(context.Background(), nil, false)
	require.Equal(t, Admitted, out)
	enqueue(t, q, context.Background(), 2, 1, results)
	q.Release(holder)
	r = <-results
	require.Equal(t, Admitted, r.out)
	q.Release(r.w)
	assert.EqualValues(t, 0, q.InUse(0))
}
