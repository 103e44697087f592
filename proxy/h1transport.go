package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// h1Transport is obsproxy's lean HTTP/1.1 client for one worker: it writes
// the request and reads the response head on the calling goroutine, over a
// pooled connection with its own 4 KiB reader and writer. Where
// net/http.Transport hands every request to two goroutines per connection
// (readLoop and writeLoop) through channels, with a cancel context, a
// response-header timer and a look-ahead read after each body, h1Transport
// uses the connection's read deadline for the response timeout and gives
// the connection back to the pool when the body reaches its end
// (docs/performance.md, item 1 of the issue 6 profile).
//
// It takes only requests that have no body, ask for no protocol switch and
// carry no Expect header: the common GET, HEAD, OPTIONS and DELETE of an
// ASGI application. Every other request goes to fallback, a
// net/http.Transport with the same settings, which can send a body while it
// reads an early response and handles 100-continue and upgrades (h2c
// workers use that transport alone, see newTransport).
//
// Connections are kept last in, first out (a busy worker keeps few
// connections hot), at most maxIdle of them, each closed after idleTimeout
// unused. A pooled connection that the worker closed meanwhile (a restarted
// worker closes them all) is handled as net/http.Transport handles it: an
// idempotent request (RFC 9110 section 9.2.2) that got no response byte on a
// reused connection is sent again once on a new one, and before a
// non-idempotent request, or any request on a connection idle for
// peekAfterIdle or more, goes out on a reused connection, the connection is
// checked with a non-blocking peek.
type h1Transport struct {
	// worker is the worker whose current Endpoint is dialled; a
	// connection of an older generation (another process of a supervised
	// worker) is closed instead of pooled or reused.
	worker          *lifecycle.Worker
	dialer          net.Dialer
	fallback        http.RoundTripper
	responseTimeout time.Duration // time to the response head; 0 means none
	idleTimeout     time.Duration
	maxIdle         int

	mu         sync.Mutex
	idle       []*h1Conn // oldest first
	sweep      *time.Timer
	sweepArmed bool
}

// maxResponseHeadBytes bounds a worker's response head (status line and
// headers), as net/http.Transport's MaxResponseHeaderBytes does (10 MiB by
// default there); 1 MiB, net/http's default bound on a request head
// (http.DefaultMaxHeaderBytes), is ample for an ASGI worker's answer.
const maxResponseHeadBytes = 1 << 20

// peekAfterIdle is how long a pooled connection may have been idle before
// it is checked with a non-blocking peek even for an idempotent request. A
// worker may answer its own keep-alive timeout with an unsolicited 408 and
// close (RFC 9110 section 15.5.9 allows it); that response must not be read
// as the answer to the next request. Keep-alive timeouts are seconds (5 s in
// uvicorn and hypercorn), so a connection reused within this is never
// peeked, and under load that is nearly every connection.
const peekAfterIdle = 100 * time.Millisecond

// max1xxResponses bounds the informational responses read before the final
// one; a worker that sends more is broken.
const max1xxResponses = 8

var (
	errResponseHeadTooLarge = errors.New("worker response head exceeds 1 MiB")
	errTooMany1xx           = errors.New("worker sent too many 1xx responses")
	errUnexpectedSwitch     = errors.New("worker switched protocols without being asked")
	errStaleConn            = errors.New("pooled worker connection was closed by the worker")
)

// newH1Transport returns the lean transport for the worker at network
// ("tcp" or "unix") and address, a static worker. See newH1TransportFor.
func newH1Transport(network, address string, cfg Config, fallback http.RoundTripper) *h1Transport {
	w := &lifecycle.Worker{Name: address, Network: network, Address: address}
	w.SetEndpoint(network, address, 0, time.Time{})
	return newH1TransportFor(w, cfg, fallback)
}

// newH1TransportFor returns the lean transport for w: every dial goes to
// w's current Endpoint, and a connection made to an earlier generation is
// closed when it would go back to the pool or come out of it. It uses cfg's DialTimeout,
// ResponseTimeout, IdleConnTimeout (zero: 4 s) and MaxIdleConnsPerWorker
// (zero: 256); fallback takes every request the lean path does not.
func newH1TransportFor(w *lifecycle.Worker, cfg Config, fallback http.RoundTripper) *h1Transport {
	t := &h1Transport{
		worker:          w,
		dialer:          net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second},
		fallback:        fallback,
		responseTimeout: cfg.ResponseTimeout,
		idleTimeout:     cfg.IdleConnTimeout,
		maxIdle:         cfg.MaxIdleConnsPerWorker,
	}
	if t.idleTimeout <= 0 {
		t.idleTimeout = 4 * time.Second
	}
	if t.maxIdle <= 0 {
		t.maxIdle = 256
	}
	return t
}

// lean reports whether r can take the lean path: no body, no trailer, no
// protocol switch, no Expect, not CONNECT.
func lean(r *http.Request) bool {
	return bodyless(r) && len(r.TransferEncoding) == 0 && len(r.Trailer) == 0 && r.Method != http.MethodConnect &&
		len(r.Header["Upgrade"]) == 0 && len(r.Header["Expect"]) == 0
}

// idempotent reports whether a request with r's method and headers may be
// sent twice: RFC 9110 section 9.2.2, plus the Idempotency-Key header as
// net/http.Transport reads it.
func idempotent(r *http.Request) bool {
	return idempotentMethod(r.Method) || len(r.Header["Idempotency-Key"]) > 0 || len(r.Header["X-Idempotency-Key"]) > 0
}

// RoundTrip implements http.RoundTripper. Errors are the connection's own
// (a *net.OpError with Op "dial" when no connection could be made, a
// net.Error with Timeout() when the head did not arrive within the response
// timeout, io.EOF or io.ErrUnexpectedEOF when the worker closed the
// connection), or the request context's error once it is done.
func (t *h1Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !lean(r) {
		return t.fallback.RoundTrip(r)
	}
	ctx := r.Context()
	fresh := false
	for {
		c, err := t.conn(ctx, fresh)
		if err != nil {
			return nil, err
		}
		res, retry, err := c.roundTrip(ctx, r)
		if err == nil {
			return res, nil
		}
		if !retry || fresh || t.worker.HeldByKilled(c.gen, c.idleAt) {
			// Not a pooled connection the worker closed, or one to a
			// process killed as stuck (spec section 8: never resent).
			return nil, err
		}
		// The worker closed a pooled connection: it has likely closed
		// the others too (a restart), so start afresh.
		t.closeIdle()
		fresh = true
	}
}

// CloseIdleConnections closes every pooled connection, the fallback's too.
func (t *h1Transport) CloseIdleConnections() {
	t.closeIdle()
	if f, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		f.CloseIdleConnections()
	}
}

// closeIdle closes every connection in t's own pool.
func (t *h1Transport) closeIdle() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// closeStale closes the pooled connections to processes the worker moved
// on from (an older Endpoint generation), keeping the current ones.
func (t *h1Transport) closeStale() {
	var stale []*h1Conn
	t.mu.Lock()
	kept := t.idle[:0]
	for _, c := range t.idle {
		if t.worker.Current(c.gen) {
			kept = append(kept, c)
		} else {
			stale = append(stale, c)
		}
	}
	clear(t.idle[len(kept):])
	t.idle = kept
	t.mu.Unlock()
	for _, c := range stale {
		c.close()
	}
}

// idleConns returns the number of pooled connections.
func (t *h1Transport) idleConns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle)
}

// conn returns the newest pooled connection, or a new one when fresh is set
// or none is pooled.
func (t *h1Transport) conn(ctx context.Context, fresh bool) (*h1Conn, error) {
	for !fresh {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if !t.worker.Current(c.gen) {
			c.close() // a connection to a process the worker moved on from
			continue
		}
		c.reused = true
		return c, nil
	}
	nc, ep, err := t.worker.DialTracked(ctx, &t.dialer)
	if err != nil {
		return nil, err
	}
	c := &h1Conn{t: t, conn: nc, gen: ep.Generation}
	c.br = bufio.NewReaderSize(c, 4096)
	c.bw = bufio.NewWriterSize(nc, 4096)
	c.abort = c.close
	return c, nil
}

// put pools c, or closes it when the pool is full. The pool stays ordered
// by idleAt, oldest first, so the sweep only looks at its front.
func (t *h1Transport) put(c *h1Conn) {
	c.reused = false
	if !t.worker.Current(c.gen) {
		c.close() // the worker moved on to another process (issue 14's replacement)
		return
	}
	t.mu.Lock()
	if len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		c.close()
		return
	}
	c.idleAt = time.Now()
	t.idle = append(t.idle, c)
	if !t.sweepArmed {
		t.sweepArmed = true
		if t.sweep == nil {
			t.sweep = time.AfterFunc(t.idleTimeout, t.sweepIdle)
		} else {
			t.sweep.Reset(t.idleTimeout)
		}
	}
	t.mu.Unlock()
}

// sweepIdle closes the connections idle for idleTimeout and sets itself to
// run again when the oldest remaining one will be.
func (t *h1Transport) sweepIdle() {
	now := time.Now()
	t.mu.Lock()
	i := 0
	for i < len(t.idle) && now.Sub(t.idle[i].idleAt) >= t.idleTimeout {
		i++
	}
	expired := make([]*h1Conn, i)
	copy(expired, t.idle[:i])
	n := copy(t.idle, t.idle[i:])
	clear(t.idle[n:])
	t.idle = t.idle[:n]
	if n > 0 {
		t.sweep.Reset(t.idle[0].idleAt.Add(t.idleTimeout).Sub(now))
	} else {
		t.sweepArmed = false
	}
	t.mu.Unlock()
	for _, c := range expired {
		c.close()
	}
}

// h1Conn is one connection to the worker. It belongs to one request at a
// time; only close may be called from another goroutine.
type h1Conn struct {
	t      *h1Transport
	conn   net.Conn
	br     *bufio.Reader // reads through c, which counts and bounds
	bw     *bufio.Writer
	nread  int64 // bytes read from conn
	limit  int64 // when > 0, reading beyond nread == limit fails
	idleAt time.Time
	abort  func() // c.close, bound once so that arming it allocates nothing more
	reused bool   // taken from the pool for the current request
	gen    uint64 // the worker's Endpoint generation this connection was made to
}

// Read reads from the connection for br, counting bytes and enforcing the
// response head bound.
func (c *h1Conn) Read(p []byte) (int, error) {
	if c.limit > 0 {
		left := c.limit - c.nread
		if left <= 0 {
			return 0, errResponseHeadTooLarge
		}
		if int64(len(p)) > left {
			p = p[:left]
		}
	}
	n, err := c.conn.Read(p)
	c.nread += int64(n)
	return n, err
}

func (c *h1Conn) close() { c.conn.Close() }

// roundTrip sends r on c and reads the response head. On error c is closed;
// retry says whether r may be sent again on a new connection because the
// worker closed this pooled one before answering anything.
func (c *h1Conn) roundTrip(ctx context.Context, r *http.Request) (res *http.Response, retry bool, err error) {
	if c.reused && (!idempotent(r) || time.Since(c.idleAt) >= peekAfterIdle) && !c.alive() {
		c.close()
		return nil, true, errStaleConn
	}
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, c.abort)
	}
	// fail closes c and says whether r may be sent again on a new
	// connection: only when the request context is not done, c was
	// reused and unanswered (the worker closed it while pooled), and r is
	// idempotent.
	fail := func(err error, unanswered bool) (*http.Response, bool, error) {
		c.close()
		if stop != nil {
			stop()
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, false, ctxErr
		}
		return nil, unanswered && c.reused && idempotent(r), err
	}
	start := c.nread
	if err := c.writeHead(r); err != nil {
		return fail(err, true)
	}
	if c.t.responseTimeout > 0 {
		c.conn.SetReadDeadline(time.Now().Add(c.t.responseTimeout))
	}
	c.limit = c.nread + maxResponseHeadBytes
	res, err = c.readHead(r)
	c.limit = 0
	if err != nil {
		var ne net.Error
		timeout := errors.As(err, &ne) && ne.Timeout()
		return fail(err, c.nread == start && !timeout)
	}
	if c.t.responseTimeout > 0 {
		c.conn.SetReadDeadline(time.Time{})
	}
	keep := !res.Close
	if res.Body == http.NoBody {
		c.finish(stop, keep)
		return res, false, nil
	}
	res.Body = &h1Body{c: c, body: res.Body, ctx: ctx, stop: stop, keep: keep}
	return res, false, nil
}

// writeHead writes r's request line and header, as net/http.Transport
// would for a request without a body: no User-Agent unless r sets one (an
// empty one is not written), no Accept-Encoding added, Content-Length: 0 for
// POST, PUT and PATCH.
func (c *h1Conn) writeHead(r *http.Request) error {
	w := c.bw
	host := r.Host
	if host == "" {
		host = r.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return errors.New("invalid Host header for the worker")
	}
	w.WriteString(r.Method)
	w.WriteByte(' ')
	if u := r.URL; u.Opaque != "" || u.ForceQuery {
		w.WriteString(u.RequestURI())
	} else {
		path := u.EscapedPath()
		if path == "" {
			path = "/"
		}
		w.WriteString(path)
		if u.RawQuery != "" {
			w.WriteByte('?')
			w.WriteString(u.RawQuery)
		}
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	if ua, ok := r.Header["User-Agent"]; !ok {
		w.WriteString("User-Agent: Go-http-client/1.1\r\n")
	} else if len(ua) > 0 && ua[0] != "" {
		if !httpguts.ValidHeaderFieldValue(ua[0]) {
			return errors.New("invalid User-Agent header value")
		}
		w.WriteString("User-Agent: ")
		w.WriteString(textproto.TrimString(ua[0]))
		w.WriteString("\r\n")
	}
	for k, vs := range r.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return errors.New("invalid header field name")
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return errors.New("invalid header field value")
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(textproto.TrimString(v))
			w.WriteString("\r\n")
		}
	}
	if r.Close {
		w.WriteString("Connection: close\r\n")
	}
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		w.WriteString("Content-Length: 0\r\n")
	}
	w.WriteString("\r\n")
	return w.Flush()
}

// readHead reads the final response head for r, passing informational
// (1xx) responses to the request's ClientTrace.Got1xxResponse, as
// ReverseProxy expects to forward 103 Early Hints (RFC 8297).
func (c *h1Conn) readHead(r *http.Request) (*http.Response, error) {
	for n := 0; ; n++ {
		res, err := http.ReadResponse(c.br, r)
		if err != nil {
			return nil, err
		}
		code := res.StatusCode
		if code < 100 || code > 199 {
			return res, nil
		}
		if code == http.StatusSwitchingProtocols {
			return nil, errUnexpectedSwitch
		}
		if n == max1xxResponses {
			return nil, errTooMany1xx
		}
		if trace := httptrace.ContextClientTrace(r.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(res.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// alive reports whether the worker has not closed c while it was pooled,
// with a non-blocking peek that consumes nothing (c has no reader while
// pooled, so nothing else would notice).
func (c *h1Conn) alive() bool {
	if c.br.Buffered() > 0 {
		return false // unsolicited bytes: the connection is out of step
	}
	return peekAlive(c.conn)
}

// finish ends c's current request: back to the pool when keep is set, the
// response ended cleanly and nothing more was received, else closed. stop
// disarms the request context's abort; if the abort already ran, c is
// closed.
func (c *h1Conn) finish(stop func() bool, keep bool) {
	if stop != nil && !stop() {
		keep = false
	}
	if keep && c.br.Buffered() == 0 {
		c.t.put(c)
		return
	}
	c.close()
}

// h1Body is the body of a response read by h1Transport. It gives the
// connection back when the body reaches its end; Close before that closes
// the connection (it never drains: an event stream has no end). Close may
// be called from another goroutine than the one reading, and more than once.
type h1Body struct {
	c    *h1Conn
	body io.ReadCloser // from http.ReadResponse; its Close would drain, so it is never called
	ctx  context.Context
	stop func() bool
	keep bool
	done atomic.Bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err == nil {
		return n, nil
	}
	if b.done.CompareAndSwap(false, true) {
		b.c.finish(b.stop, b.keep && err == io.EOF)
	}
	if err != io.EOF {
		if ctxErr := b.ctx.Err(); ctxErr != nil {
			// The request's context closed the connection: say so, as
			// net/http does (ReverseProxy then logs nothing).
			return n, ctxErr
		}
	}
	return n, err
}

func (b *h1Body) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.c.finish(b.stop, false)
	}
	return nil
}
