package proxy

import (
	"net/http"
	"sync"
	"time"
)

// headFlushDelay is how long a response head with a Content-Length waits
// for the first piece of its body before it is sent alone. A body that
// follows its head within this (the usual case: an ASGI server writes the
// two back to back) goes out with it in one write; a slow body's head
// reaches the client this late at most instead of with the body's first
// byte (spec section 4: bodies stream without buffering). 1 ms is far
// below what a client notices and far above the gap between a fast
// worker's head and body on loopback.
const headFlushDelay = time.Millisecond

// headFlusher sends a response head that is waiting for its body, from a
// timer. It belongs to one pooled exchange for its whole life (the timer
// is made once), and is shared between the request's goroutine and the
// timer's: rw and pending are guarded by mu, and rw is touched by the timer
// only while pending, that is between arm and disarm, while the request's
// goroutine is waiting for the worker and not writing.
type headFlusher struct {
	mu      sync.Mutex
	rw      http.ResponseWriter
	pending bool
	t       *time.Timer
}

// arm schedules a flush of rw's head; the caller has written the head and
// will call disarm before it writes to rw again.
func (f *headFlusher) arm(rw http.ResponseWriter) {
	f.mu.Lock()
	f.rw, f.pending = rw, true
	f.mu.Unlock()
	if f.t == nil {
		f.t = time.AfterFunc(headFlushDelay, f.fire)
	} else {
		f.t.Reset(headFlushDelay)
	}
}

// disarm cancels the flush, or waits for one under way to finish; after it
// the timer no longer touches rw.
func (f *headFlusher) disarm() {
	f.t.Stop()
	f.mu.Lock()
	f.rw, f.pending = nil, false
	f.mu.Unlock()
}

func (f *headFlusher) fire() {
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
