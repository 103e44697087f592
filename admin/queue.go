package admin

import (
	"time"

	"github.com/obsproxy/obsproxy/admission"
)

// QueueView is admission control (spec section 10) as the dashboard shows
// it. Without a cap every figure is 0 and nothing ever waits.
type QueueView struct {
	// MaxInFlight is OBSPROXY_WORKER_MAX_IN_FLIGHT, the cap per worker
	// (obsproxy_worker_max_in_flight); 0 means no cap.
	MaxInFlight int `json:"max_in_flight"`
	// Depth is the requests waiting now (obsproxy_queue_depth).
	Depth int64 `json:"depth"`
	// OldestWaitSeconds is how long the oldest waiting request has waited;
	// 0 when none waits.
	OldestWaitSeconds float64 `json:"oldest_wait_seconds"`
	// RejectedFullTotal and RejectedTimeoutTotal count the requests
	// answered 503 overloaded (obsproxy_queue_rejected_total by reason).
	RejectedFullTotal    uint64 `json:"rejected_full_total"`
	RejectedTimeoutTotal uint64 `json:"rejected_timeout_total"`
}

// queueReading is the queue's part of a reading.
type queueReading struct {
	max           int
	depth         int64
	oldest        time.Duration
	full, timeout uint64
	inUse         []int64 // slots held per worker, pool order
}

// readQueue copies the queue's state; zero when there is no queue.
func readQueue(q *admission.Queue, workers int, now time.Time) queueReading {
	if q == nil {
		return queueReading{}
	}
	r := queueReading{max: q.MaxInFlight(), depth: q.Depth(), oldest: q.OldestWait(now), inUse: make([]int64, workers)}
	r.full, r.timeout = q.Rejected()
	for i := range r.inUse {
		r.inUse[i] = q.InUse(i)
	}
	return r
}

func (r queueReading) view() QueueView {
	return QueueView{
		MaxInFlight: r.max, Depth: r.depth, OldestWaitSeconds: round3(r.oldest.Seconds()),
		RejectedFullTotal: r.full, RejectedTimeoutTotal: r.timeout,
	}
}

// capUsage is worker i's share of its cap in use (0..1), nil without a cap.
func (r queueReading) capUsage(i int) *float64 {
	if r.max <= 0 || i >= len(r.inUse) {
		return nil
	}
	v := round3(float64(r.inUse[i]) / float64(r.max))
	return &v
}
