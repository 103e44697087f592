package proxy

import (
	"net/http"
	"sync"
	"time"
)

// flushDelay is how long what has been written of a response with a
// Content-Length (its head, or part of its body) may wait in the server's
// buffers for the next piece before it is flushed to the client on its own.
// A worker that sends its head and body back to back, or a long body in
// quick reads, gets them out in as few writes as without any flushing; a
// slow body reaches the client at most this late after the worker sent each
// piece (spec section 4: bodies stream without buffering). It is
// httputil.ReverseProxy's FlushInterval, without the allocations and the
// goroutine per response of its maxLatencyWriter. 1 ms is far below what a
// client notices and above the gap between a fast worker's writes on
// loopback.
const flushDelay = time.Millisecond

// pendingFlush flushes a response from a timer when nothing more has been
// written to it for flushDelay. It belongs to one pooled exchange for its
// whole life (the timer is made once) and is shared between the request's
// goroutine and the timer's: rw and pending are guarded by mu, and the timer
// touches rw only while pending, that is between arm and disarm, when the
// request's goroutine is waiting for the worker and not writing.
type pendingFlush struct {
	mu      sync.Mutex
	rw      http.ResponseWriter
	pending bool
	t       *time.Timer
}

// arm schedules a flush of rw; the caller will call disarm before it
// writes to rw again.
func (f *pendingFlush) arm(rw http.ResponseWriter) {
	f.mu.Lock()
	f.rw, f.pending = rw, true
	f.mu.Unlock()
	if f.t == nil {
		f.t = time.AfterFunc(flushDelay, f.fire)
	} else {
		f.t.Reset(flushDelay)
	}
}

// disarm cancels the flush, or waits for one under way to finish; after it
// the timer no longer touches rw.
func (f *pendingFlush) disarm() {
	f.t.Stop()
	f.mu.Lock()
	f.rw, f.pending = nil, false
	f.mu.Unlock()
}

func (f *pendingFlush) fire() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.pending {
		return
	}
	f.pending = false
	if fl, ok := f.rw.(http.Flusher); ok {
		fl.Flush()
	}
}
