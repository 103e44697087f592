package proxy

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// Method label values (spec section 6: label values are bounded, an unknown
// method counts as "other").
var methodNames = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "other"}

const (
	numMethods  = len(methodNames)
	methodOther = numMethods - 1
)

// methodIndex maps a request method to its label index without allocating.
func methodIndex(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodPut:
		return 3
	case http.MethodPatch:
		return 4
	case http.MethodDelete:
		return 5
	case http.MethodOptions:
		return 6
	case http.MethodConnect:
		return 7
	case http.MethodTrace:
		return 8
	}
	return methodOther
}

// Status codes 100..599 have a slot each; anything else shares codeOther.
const (
	minCode   = 100
	numCodes  = 600 - minCode + 1
	codeOther = numCodes - 1
)

var codeNames = func() (names [numCodes]string) {
	for i := 0; i < codeOther; i++ {
		names[i] = strconv.Itoa(i + minCode)
	}
	names[codeOther] = "other"
	return names
}()

func codeIndex(code int) int {
	if code < minCode || code >= minCode+codeOther {
		return codeOther
	}
	return code - minCode
}

// Upstream error reasons, the `reason` label of obsproxy_upstream_errors_total.
const (
	reasonConnect = iota
	reasonTimeout
	reasonReset
	reasonOther
	numReasons
)

var reasonNames = [numReasons]string{"connect", "timeout", "reset", "other"}

// Stream kinds, the `kind` label of obsproxy_streams_active.
const (
	streamNone = iota
	streamWebSocket
	streamSSE
)

var streamNames = [...]string{streamWebSocket: "websocket", streamSSE: "sse"}

// workerStats is the proxy's accounting for one worker (or for "none", the
// requests that found no worker). Everything the request path touches is an
// atomic or a short per-worker critical section; Collect reads it at scrape
// time.
type workerStats struct {
	name     string
	worker   *lifecycle.Worker // nil for "none"
	requests [numMethods][numCodes]atomic.Uint64
	errors   [numReasons]atomic.Uint64
	retries  atomic.Uint64
	streams  [len(streamNames)]atomic.Int64
	duration prometheus.Observer

	// mu guards the in-flight list, oldest first: exchanges are appended
	// when sent to this worker, so the head is the oldest.
	mu         sync.Mutex
	head, tail *exchange
}

// begin puts e in flight on this worker.
func (s *workerStats) begin(e *exchange) {
	e.sentAt = time.Now()
	e.sentGen = 0
	if s.worker != nil {
		if ep := s.worker.Endpoint(); ep != nil {
			e.sentGen = ep.Generation
		}
	}
	s.mu.Lock()
	e.prev, e.next = s.tail, nil
	if s.tail != nil {
		s.tail.next = e
	} else {
		s.head = e
	}
	s.tail = e
	s.mu.Unlock()
	s.worker.AddInFlight(1)
}

// leave takes e out of flight on this worker: its response finished, it
// failed, it moved to another worker, or it became a stream.
func (s *workerStats) leave(e *exchange) {
	s.mu.Lock()
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		s.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = nil, nil
	s.mu.Unlock()
	s.worker.AddInFlight(-1)
}

// oldest returns the age of the oldest request in flight, 0 when none.
func (s *workerStats) oldest(now time.Time) time.Duration {
	s.mu.Lock()
	var age time.Duration
	if s.head != nil {
		age = now.Sub(s.head.sentAt)
	}
	s.mu.Unlock()
	if age < 0 {
		age = 0
	}
	return age
}

// WorkerSnapshot is one worker's request accounting at one moment, for the
// dashboard and tests.
type WorkerSnapshot struct {
	// Name is the worker label.
	Name string
	// InFlight is the number of ordinary requests in flight (streams excluded).
	InFlight int64
	// Requests is the number of finished requests, all codes and methods.
	Requests uint64
	// Errors is the number of failed upstream exchanges, all reasons.
	Errors uint64
	// Retries is the number of requests retried away from this worker.
	Retries uint64
	// Streams is the number of open streams (WebSocket and SSE).
	Streams int64
	// OldestInFlight is the age of the oldest request in flight, 0 when none.
	OldestInFlight time.Duration
}

func (s *workerStats) snapshot(now time.Time) WorkerSnapshot {
	ws := WorkerSnapshot{Name: s.name, Retries: s.retries.Load()}
	for m := range s.requests {
		for c := range s.requests[m] {
			ws.Requests += s.requests[m][c].Load()
		}
	}
	for i := range s.errors {
		ws.Errors += s.errors[i].Load()
	}
	for i := range s.streams {
		ws.Streams += s.streams[i].Load()
	}
	if s.worker != nil {
		ws.InFlight = s.worker.InFlight()
		ws.OldestInFlight = s.oldest(now)
	}
	return ws
}
