package proxy

import (
	"bufio"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// exchange is one client request on its way through obsproxy: the
// ResponseWriter handed to httputil.ReverseProxy, and the request's
// accounting state. Exchanges are pooled, so a request costs no allocation
// for observability. An exchange belongs to one ServeHTTP call and is not
// shared between goroutines, except that its in-flight list links are
// guarded by the worker's mutex.
type exchange struct {
	h  *Handler
	rw http.ResponseWriter
	in *http.Request

	ws        *workerStats
	flush     *pendingFlush     // kept across reuse; armed while written bytes wait for more
	body      *clientBody       // the client's request body, nil when it has none
	slot      *lifecycle.Worker // holds an admission slot on this worker
	requestID []string
	tried     []uint64
	received  time.Time // when obsproxy received the request
	sentAt    time.Time // when it was sent to its current worker
	sentGen   uint64    // that worker's Endpoint generation then (0: static mode, or no process)
	code      int
	written   int64
	length    int64 // the response's Content-Length, -1 when unknown
	stream    int

	flushArmed  bool // flush has a flush pending
	flushable   bool // a response with a Content-Length that ReverseProxy does not flush itself
	upgrade     bool // the request asks for a protocol switch
	inFlight    bool // on ws's in-flight list
	wroteHeader bool
	hijacked    bool
	clientGone  bool // a write to the client failed

	prev, next *exchange // ws's in-flight list, oldest first
}

func (e *exchange) start(w http.ResponseWriter, r *http.Request) {
	e.rw, e.in, e.received = w, r, time.Now()
}

// reset clears e for reuse, keeping the tried bit set's storage and the
// pending flush.
func (e *exchange) reset() {
	e.disarmFlush()
	clear(e.tried)
	tried, h, flush := e.tried, e.h, e.flush
	*e = exchange{h: h, tried: tried, flush: flush}
}

// armFlush has what was written so far flushed in flushDelay unless more
// is written first.
func (e *exchange) armFlush() {
	if e.flush == nil {
		e.flush = new(pendingFlush)
	}
	e.flush.arm(e.rw)
	e.flushArmed = true
}

// disarmFlush cancels a pending flush, if any.
func (e *exchange) disarmFlush() {
	if e.flushArmed {
		e.flushArmed = false
		e.flush.disarm()
	}
}

// leaveFlight takes e off its worker's in-flight list, once, and gives
// back its admission slot.
func (e *exchange) leaveFlight() {
	if e.inFlight {
		e.inFlight = false
		e.ws.leave(e)
	}
	e.releaseSlot()
}

// beginStream turns e from an in-flight request into a stream of kind: it
// leaves the in-flight count (a long-lived stream is not a stuck request) and
// is counted in obsproxy_streams_active until it ends.
func (e *exchange) beginStream(kind int) {
	e.leaveFlight()
	e.stream = kind
	e.ws.streams[kind].Add(1)
}

// fail answers the client with a fixed JSON error body (spec section 4): the
// message comes from a fixed vocabulary ("no healthy upstream", "bad
// gateway", "gateway timeout", and "bad request" for a client's malformed
// body, docs/servers.md), and the request id is made of
// [A-Za-z0-9._-] only, so it needs no escaping.
func (e *exchange) fail(code int, msg string) {
	h := e.rw.Header()
	h[hdrContentType] = jsonContentType
	h["Cache-Control"] = noStore
	h[hdrRequestID] = e.requestID
	e.code, e.wroteHeader = code, true
	e.rw.WriteHeader(code)
	n, err := e.rw.Write([]byte(`{"error":"` + msg + `","request_id":"` + e.requestID[0] + "\"}\n"))
	e.written += int64(n)
	if err != nil {
		e.clientGone = true
	}
}

var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// Header implements http.ResponseWriter.
func (e *exchange) Header() http.Header { return e.rw.Header() }

// WriteHeader implements http.ResponseWriter. It records the status and
// starts an SSE stream for a text/event-stream response.
func (e *exchange) WriteHeader(code int) {
	if code == http.StatusContinue {
		// The worker's 100 Continue is not passed on: net/http's server
		// sends its own when the transport first reads the client's body,
		// which it does once the worker's 100 arrived (or
		// ExpectContinueTimeout passed). Passing this one on too would
		// race with that and could send the client two.
		return
	}
	if code > 100 && code < 200 {
		// Other informational responses (103 Early Hints) pass through
		// and do not end the exchange.
		e.rw.WriteHeader(code)
		return
	}
	if e.wroteHeader {
		return
	}
	e.code, e.wroteHeader = code, true
	h := e.rw.Header()
	e.length = -1
	if cl := h[hdrContentLength]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			e.length = n
		}
	}
	ct, hasCT := h[hdrContentType]
	eventStream := false
	if !hasCT {
		// The worker sent no Content-Type: a nil entry keeps net/http's
		// server from sniffing one (it sniffs only when the key is absent)
		// and writes nothing.
		h[hdrContentType] = nil
	} else if len(ct) > 0 && isEventStream(ct[0]) {
		eventStream = true
		if e.ws != nil && e.inFlight {
			e.beginStream(streamSSE)
		}
	}
	e.rw.WriteHeader(code)
	// An event stream or a response with a trailer is flushed by
	// ReverseProxy itself, from its own timer goroutine for the former:
	// flushing here too would flush from two goroutines.
	e.flushable = e.length > 0 && e.in.Method != http.MethodHead && !eventStream && len(h["Trailer"]) == 0
	if e.flushable {
		// The head waits flushDelay for the body's first piece.
		e.armFlush()
	}
}

// isEventStream reports whether a Content-Type is text/event-stream (the SSE
// media type of the WHATWG HTML standard, section 9.2), parameters aside.
func isEventStream(ct string) bool {
	const es = "text/event-stream"
	if len(ct) < len(es) || !strings.EqualFold(ct[:len(es)], es) {
		return false
	}
	if len(ct) == len(es) {
		return true
	}
	base, _, err := mime.ParseMediaType(ct)
	return err == nil && base == es
}

// Write implements http.ResponseWriter: it sends p to the client at once
// (spec section 4: bodies stream without buffering, so a slow body with a
// Content-Length reaches the client as the worker sends it, headers first)
// and notes a failed write to the client, which makes the request a 499.
//
// httputil.ReverseProxy flushes responses of unknown length (so event
// streams and chunked bodies) after each write itself. For a body with a
// Content-Length, WriteHeader and each Write that leaves some of the body
// to come arm a flush in flushDelay (pendingFlush), which the next Write
// cancels: a slow body goes out piece by piece, a fast one costs no write
// to the client more than before, and a body read in one piece is sent
// when the handler returns, after the request is accounted, as before.
// docs/performance.md has the measured cost.
func (e *exchange) Write(p []byte) (int, error) {
	if !e.wroteHeader {
		e.WriteHeader(http.StatusOK)
	}
	e.disarmFlush()
	n, err := e.rw.Write(p)
	e.written += int64(n)
	if err != nil {
		e.clientGone = true
	} else if e.flushable && e.written < e.length {
		e.armFlush()
	}
	return n, err
}

// clientBody is a client's request body on its way to a worker. It notes a
// read that failed: the server reads the body from the client's connection,
// so any error but io.EOF is the client's doing (malformed chunked framing,
// RFC 9112 section 7.1; a body shorter than its Content-Length; a broken
// connection), never the worker's. It is allocated per request that has a
// body, not pooled with the exchange, because net/http.Transport may still
// read it from its write loop after the handler has returned.
type clientBody struct {
	io.ReadCloser
	failed atomic.Bool
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.failed.Store(true)
	}
	return n, err
}

// Hijack takes over the client connection for a protocol switch
// (httputil.ReverseProxy calls it through http.ResponseController for a 101
// response): the exchange becomes a WebSocket stream until the handler
// returns, and the connection stays counted by connstate until it closes.
func (e *exchange) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(e.rw).Hijack()
	if err != nil {
		return nil, nil, err
	}
	e.hijacked, e.wroteHeader, e.code = true, true, http.StatusSwitchingProtocols
	if e.inFlight {
		e.beginStream(streamWebSocket)
	}
	return c, brw, nil
}

// Unwrap returns the server's ResponseWriter, so that http.ResponseController
// reaches its Flush, deadlines and EnableFullDuplex.
func (e *exchange) Unwrap() http.ResponseWriter { return e.rw }
