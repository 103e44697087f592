package proxy

import (
	"net/http"
	"time"

	"github.com/obsproxy/obsproxy/admission"
	"github.com/obsproxy/obsproxy/lifecycle"
)

// admissionOf returns q when it caps in-flight requests, else nil: without
// a cap the handler picks as it always did.
func admissionOf(q *admission.Queue) *admission.Queue {
	if q.Capped() {
		return q
	}
	return nil
}

// pick chooses e's next worker among those not tried yet. Without a cap it
// is the pool's pick (NoWorker when none is up). With one it goes through
// admission control (spec section 10), first pick and retries alike: it
// may wait in the queue, and on success e holds a slot on the worker until
// it leaves flight.
func (h *Handler) pick(e *exchange) (*lifecycle.Worker, admission.Outcome) {
	if h.admission == nil {
		if w := h.pool.PickExcept(e.tried, e.upgrade); w != nil {
			return w, admission.Admitted
		}
		if h.pool.SpentOnly(e.tried, e.upgrade) {
			return h.awaitReplacement(e)
		}
		return nil, admission.NoWorker
	}
	w, out := h.admission.Acquire(e.in.Context(), e.tried, e.upgrade)
	e.slot = w
	return w, out
}

// awaitReplacement waits for a worker to take e when every worker it could
// go to is spent (spec section 8: a process is sent no request past its
// limit while another process can take it): its replacement serves soon,
// as gunicorn's arbiter's requests wait in the listen backlog. After
// SpentWait, or when no worker is up any more, it goes to a spent one all
// the same; a client that leaves meanwhile is a 499. Only this slow path
// allocates (a timer).
func (h *Handler) awaitReplacement(e *exchange) (*lifecycle.Worker, admission.Outcome) {
	t := time.NewTimer(h.spentWait)
	defer t.Stop()
	for {
		changed := h.pool.Changed()
		if w := h.pool.PickExcept(e.tried, e.upgrade); w != nil {
			return w, admission.Admitted
		}
		if !h.pool.SpentOnly(e.tried, e.upgrade) {
			break
		}
		select {
		case <-changed:
			continue
		case <-t.C:
		case <-e.in.Context().Done():
			return nil, admission.Canceled
		}
		break
	}
	if w := h.pool.PickSpent(e.tried, e.upgrade); w != nil {
		return w, admission.Admitted
	}
	return nil, admission.NoWorker
}

// refuse answers a request that no worker took, counted under "none":
// 503 overloaded with Retry-After for a full queue or a timeout (spec
// section 10), nothing at all (499) for a client that left while queued,
// 503 no healthy upstream when no worker could take it (section 4).
func (h *Handler) refuse(e *exchange, out admission.Outcome) {
	e.ws = h.none
	switch out {
	case admission.Full, admission.TimedOut:
		e.rw.Header()["Retry-After"] = retryAfter
		e.fail(http.StatusServiceUnavailable, "overloaded")
	case admission.Canceled:
		e.code = statusClientClosed
	default:
		e.fail(http.StatusServiceUnavailable, "no healthy upstream")
	}
}

var retryAfter = []string{"1"}

// releaseSlot gives back e's admission slot, once; the queue hands it to the
// oldest waiting request.
func (e *exchange) releaseSlot() {
	if e.slot != nil {
		w := e.slot
		e.slot = nil
		e.h.admission.Release(w)
	}
}
