package lifecycle

import "time"

// Event kinds in the lifecycle event log. A worker's traffic state moves
// through up and down; its process through started, stopped and restarted.
// Pool events have an empty Worker.
const (
	// EventUp: the worker receives traffic again (Reason: its probe verdict).
	EventUp = "up"
	// EventDown: the worker receives no traffic (Reason: why: a probe
	// verdict, "connect failed", "exited").
	EventDown = "down"
	// EventStarted: the worker's process was seen starting (first answer,
	// or first answer after it stopped), or a supervisor reported it.
	EventStarted = "started"
	// EventStopped: the worker's process was seen gone (connection refused,
	// no socket), or a supervisor reported its exit.
	EventStopped = "stopped"
	// EventRestarted: between two answers the worker's reported
	// uptime_seconds went backwards, or its pid changed to a younger
	// process: one stop and one start that no probe saw (Reason: "uptime
	// reset" or "pid changed").
	EventRestarted = "restarted"
	// EventPoolUp: the pool has at least its minimum of workers up again.
	EventPoolUp = "pool_up"
	// EventPoolDown: the pool has fewer than its minimum of workers up.
	EventPoolDown = "pool_down"
)

// Event is one entry of the pool's lifecycle event log.
type Event struct {
	// Seq numbers events from 1 in the order they happened, so a reader
	// polling Events can tell which ones it has already seen.
	Seq uint64 `json:"seq"`
	// Time is when the event happened (the probe's or report's time).
	Time time.Time `json:"time"`
	// Worker is the worker's name; empty for pool events.
	Worker string `json:"worker"`
	// Kind is one of the Event… constants.
	Kind string `json:"kind"`
	// Reason says why, in a few words; it may carry a worker's address or
	// error text, so it belongs on the admin plane only.
	Reason string `json:"reason"`
}

// eventRing is a bounded log of the newest events; not safe for concurrent
// use (the pool's mutex guards it).
type eventRing struct {
	buf  []Event
	next uint64 // Seq of the next event
}

func newEventRing(size int) eventRing { return eventRing{buf: make([]Event, 0, size), next: 1} }

func (r *eventRing) add(e Event) Event {
	e.Seq = r.next
	r.next++
	if len(r.buf) < cap(r.buf) {
		r.buf = append(r.buf, e)
	} else {
		r.buf[int((e.Seq-1)%uint64(cap(r.buf)))] = e
	}
	return e
}

// list returns the kept events, oldest first, in a new slice.
func (r *eventRing) list() []Event {
	out := make([]Event, 0, len(r.buf))
	if len(r.buf) < cap(r.buf) {
		return append(out, r.buf...)
	}
	start := int((r.next - 1) % uint64(cap(r.buf)))
	out = append(out, r.buf[start:]...)
	return append(out, r.buf[:start]...)
}
