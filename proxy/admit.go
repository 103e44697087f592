package proxy

import (
	"net/http"

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
		return nil, admission.NoWorker
	}
	w, out := h.admission.Acquire(e.in.Context(), e.tried, e.upgrade)
	e.slot = w
	return w, out
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
