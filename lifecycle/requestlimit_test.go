package lifecycle

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A process's request limit is exact across its start (spec section 8,
// OBSPROXY_WORKER_MAX_REQUESTS): picks racing SetRequestLimit, as when a
// replacement takes over while requests arrive, never get past the new
// limit. Clearing the limit first in the reset let a pick between the
// stores go uncounted. The race needs luck, so two goroutines pick without
// pause while the limit is reset again and again for 2 s: every reset may
// let through exactly limit picks, no more.
func TestRequestLimitExactAcrossReset(t *testing.T) {
	const limit = 2
	p := testPool(t, RoundRobin, 1)
	w := p.workers[0]
	p.SetRequestLimit(w, limit)
	for w.countRequest(false) { // the first process is spent
	}
	var picked atomic.Int64
	var stop atomic.Bool
	var done sync.WaitGroup
	for range 2 {
		done.Add(1)
		go func() {
			defer done.Done()
			for !stop.Load() {
				if p.PickExcept(nil, false) != nil {
					picked.Add(1)
				}
				runtime.Gosched()
			}
		}()
	}
	resets := int64(0)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); resets++ {
		p.SetRequestLimit(w, limit)
		for !w.Spent() {
			runtime.Gosched()
		}
	}
	stop.Store(true)
	done.Wait()
	if got := picked.Load(); got != resets*limit {
		t.Fatalf("%d resets to a limit of %d let %d picks through, want %d", resets, limit, got, resets*limit)
	}
	t.Logf("%d resets, %d picks: exact", resets, picked.Load())
}
