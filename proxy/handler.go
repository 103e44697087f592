// Package proxy is obsproxy's public request path: an httputil.ReverseProxy
// per worker, a Handler that picks the worker, retries what may be retried,
// answers failures with fixed JSON bodies, and accounts every request to its
// worker without allocating (spec section 4 and the request rows of
// section 6).
package proxy

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/obsproxy/obsproxy/admission"
	"github.com/obsproxy/obsproxy/lifecycle"
)

// Config configures a Handler. Zero values are usable unless said otherwise.
type Config struct {
	// Pool is the worker pool; required.
	Pool *lifecycle.Pool
	// TrustedProxies are the peers whose X-Forwarded-* and Forwarded headers
	// are kept and extended (OBSPROXY_TRUSTED_PROXIES); nil trusts no one.
	TrustedProxies []netip.Prefix
	// DialTimeout bounds connecting to a worker (OBSPROXY_UPSTREAM_DIAL_TIMEOUT);
	// zero means no bound beyond the operating system's.
	DialTimeout time.Duration
	// ResponseTimeout bounds the wait for a worker's response headers
	// (OBSPROXY_UPSTREAM_RESPONSE_TIMEOUT); zero means no bound.
	ResponseTimeout time.Duration
	// IdleConnTimeout closes an idle upstream connection after this long;
	// zero means 4 s, below uvicorn's and hypercorn's 5 s keep-alive.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerWorker is the size of each worker's idle connection
	// pool; zero means 256.
	MaxIdleConnsPerWorker int
	// DurationBuckets are the request duration histogram's upper bounds in
	// seconds; nil means DefaultDurationBuckets.
	DurationBuckets []float64
	// Logger receives upstream errors (with details never sent to clients);
	// nil means slog.Default().
	Logger *slog.Logger
	// AccessLog, when non-nil, receives one record per finished request:
	// request id, method, path without query, status, bytes, duration,
	// worker and client address; never header values.
	AccessLog *slog.Logger
	// Transport, when non-nil, replaces each worker's tuned transport (for
	// tests and benchmarks); it is called once per worker at New.
	Transport func(*lifecycle.Worker) http.RoundTripper
	// OnConnectFailure, when non-nil, is called when a connection to a
	// worker could not be made, before the request is retried elsewhere
	// (spec section 4: obsproxy marks the worker down and probes it at
	// once). It runs on the request's goroutine: it must not block.
	OnConnectFailure func(*lifecycle.Worker)
	// Admission, when capped (admission.Queue.Capped), is consulted at
	// every pick: requests go only to workers below the cap and otherwise
	// wait in its queue (spec section 10); it also bounds
	// MaxIdleConnsPerWorker to the cap. nil or uncapped: no admission
	// control, nothing changes.
	Admission *admission.Queue
	// SpentWait is how long a request that finds every worker it could go
	// to spent (its process sent its OBSPROXY_WORKER_MAX_REQUESTS, spec
	// section 8) waits for a replacement process, after which it goes to a
	// spent one all the same; zero means 60 s. Set it to the supervisor's
	// start timeout: a replacement serves or fails within it.
	SpentWait time.Duration
}

// DefaultDurationBuckets are the default request duration histogram bounds,
// in seconds: from 1 ms (a fast ASGI endpoint behind a local proxy) to 60 s
// (the default upstream response timeout).
var DefaultDurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Handler proxies every request it is given to a worker of the pool. It is
// safe for concurrent use. It implements prometheus.Collector for the
// request, stream, error, retry and in-flight metrics of spec section 6.
type Handler struct {
	pool      *lifecycle.Pool
	trusted   []netip.Prefix
	workers   []*workerStats
	none      *workerStats
	proxies   []*httputil.ReverseProxy
	ids       *idGenerator
	onConnect func(*lifecycle.Worker)
	admission *admission.Queue // nil without a cap
	spentWait time.Duration    // how long a request waits when every worker is spent
	logger    *slog.Logger
	accessLog *slog.Logger
	exchanges sync.Pool
	buffers   bufferPool
	streams   streamSet
	durations *prometheus.HistogramVec
	descs     descs
}

// New returns a Handler over cfg.Pool. It fails when the pool is missing.
func New(cfg Config) (*Handler, error) {
	if cfg.Pool == nil {
		return nil, errors.New("creating proxy: no pool")
	}
	if cfg.IdleConnTimeout == 0 {
		cfg.IdleConnTimeout = 4 * time.Second
	}
	if cfg.MaxIdleConnsPerWorker == 0 {
		cfg.MaxIdleConnsPerWorker = 256
	}
	if cfg.Admission.Capped() {
		// Never more idle connections than the cap can use: uvicorn's
		// --limit-concurrency counts idle keep-alive connections.
		cfg.MaxIdleConnsPerWorker = min(cfg.MaxIdleConnsPerWorker, cfg.Admission.MaxInFlight())
	}
	if cfg.SpentWait <= 0 {
		cfg.SpentWait = time.Minute
	}
	if cfg.DurationBuckets == nil {
		cfg.DurationBuckets = DefaultDurationBuckets
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{
		pool:      cfg.Pool,
		trusted:   cfg.TrustedProxies,
		ids:       newIDGenerator(rand.Uint64()),
		onConnect: cfg.OnConnectFailure,
		logger:    cfg.Logger,
		accessLog: cfg.AccessLog,
		admission: admissionOf(cfg.Admission),
		spentWait: cfg.SpentWait,
		none:      &workerStats{name: "none"},
		descs:     newDescs(),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "obsproxy_request_duration_seconds",
			Help:    "Receipt to last byte of ordinary proxied requests (streams excluded), in seconds.",
			Buckets: cfg.DurationBuckets,
		}, []string{"worker"}),
	}
	words := cfg.Pool.TriedWords()
	h.exchanges.New = func() any { return &exchange{h: h, tried: make([]uint64, words)} }
	errorLog := log.New(io.Discard, "", 0)
	if cfg.Logger != nil {
		errorLog = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)
	}
	h.none.duration = h.durations.WithLabelValues("none")
	for _, w := range cfg.Pool.Workers() {
		ws := &workerStats{name: w.Name, worker: w, duration: h.durations.WithLabelValues(w.Name)}
		var rt http.RoundTripper
		if cfg.Transport != nil {
			rt = cfg.Transport(w)
		} else {
			rt = newTransport(w, cfg)
		}
		host := w.Address
		if w.Network == "unix" || host == "" { // a supervised worker's address changes per process
			host = "localhost"
		}
		h.workers = append(h.workers, ws)
		h.proxies = append(h.proxies, &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme = "http"
				pr.Out.URL.Host = host
				setForwarded(pr, h.trusted)
				if pr.In.Trailer != nil {
					// The request's announced trailer: ReverseProxy gives
					// pr.Out a copy of the map, made before the body is
					// read, so its values stay empty. The server fills the
					// inbound map when the body ends, before the transport
					// writes the trailer after the body, so sharing it
					// forwards the values.
					pr.Out.Trailer = pr.In.Trailer
				}
			},
			Transport:      &streamTransport{rt: rt, streams: &h.streams},
			BufferPool:     &h.buffers,
			ModifyResponse: echoRequestID,
			ErrorHandler:   h.upstreamError,
			ErrorLog:       errorLog,
		})
	}
	return h, nil
}

// InFlight returns the number of ordinary requests in flight to every worker
// (streams excluded).
func (h *Handler) InFlight() int64 {
	var n int64
	for _, ws := range h.workers {
		n += ws.worker.InFlight()
	}
	return n
}

// CloseStreams ends every open text/event-stream response, and every one
// that starts later, by closing its upstream body; the client sees its
// stream end. Shutdown calls it once ordinary requests have finished (spec
// section 7). WebSocket streams end when connstate closes their hijacked
// connections. It returns how many streams it closed.
func (h *Handler) CloseStreams() int { return h.streams.closeAll() }

// Snapshot returns every worker's request accounting, in pool order, and
// that of the requests no worker could take ("none").
func (h *Handler) Snapshot() (workers []WorkerSnapshot, none WorkerSnapshot) {
	now := time.Now()
	workers = make([]WorkerSnapshot, len(h.workers))
	for i, ws := range h.workers {
		workers[i] = ws.snapshot(now)
	}
	return workers, h.none.snapshot(now)
}

// Latency is the request duration histogram (obsproxy_request_duration_seconds)
// summed over every worker and "none": Bounds are the buckets' upper bounds
// in seconds, ascending; Counts[i] is the cumulative count of requests that
// took at most Bounds[i], and Counts[len(Bounds)] the count of all (the +Inf
// bucket). It reads the histogram like a scrape does and allocates; it is
// meant for the dashboard's sampler, not the request path. Safe for
// concurrent use.
func (h *Handler) Latency() (bounds []float64, counts []uint64) {
	var m dto.Metric
	add := func(ws *workerStats) {
		m.Reset()
		if err := ws.duration.(prometheus.Metric).Write(&m); err != nil || m.Histogram == nil {
			return
		}
		hist := m.Histogram
		if bounds == nil {
			bounds = make([]float64, len(hist.Bucket))
			counts = make([]uint64, len(hist.Bucket)+1)
			for i, b := range hist.Bucket {
				bounds[i] = b.GetUpperBound()
			}
		}
		for i, b := range hist.Bucket {
			if i < len(bounds) {
				counts[i] += b.GetCumulativeCount()
			}
		}
		counts[len(bounds)] += hist.GetSampleCount()
	}
	add(h.none)
	for _, ws := range h.workers {
		add(ws)
	}
	return bounds, counts
}

// ServeHTTP proxies r to a worker (spec section 4).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := h.exchanges.Get().(*exchange)
	e.start(w, r)
	defer h.finish(e)

	if ids := r.Header[hdrRequestID]; len(ids) == 1 && saneRequestID(ids[0]) {
		e.requestID = ids
	} else {
		e.requestID = []string{h.ids.next()}
		r.Header[hdrRequestID] = e.requestID
	}
	if r.Body != nil && r.Body != http.NoBody {
		e.body = &clientBody{ReadCloser: r.Body}
		r.Body = e.body
	}
	stripH2CUpgrade(r.Header)
	e.upgrade = isUpgrade(r.Header)
	worker, out := h.pick(e)
	if worker == nil {
		h.refuse(e, out)
		return
	}
	h.send(e, worker)
}

// send proxies e to w, a worker picked for it. upstreamError calls it again
// with another worker for a retry.
func (h *Handler) send(e *exchange, w *lifecycle.Worker) {
	lifecycle.MarkTried(e.tried, w.Index)
	e.ws = h.workers[w.Index]
	e.ws.begin(e)
	e.inFlight = true
	h.proxies[w.Index].ServeHTTP(e, e.in)
}

// upstreamError is every worker ReverseProxy's ErrorHandler: it classifies
// err, logs it with its details, and either retries the request on another
// worker or answers the client with a fixed JSON error (never the error text
// or an address).
//
// The retry rule is spec section 4's: a request whose connection could not
// be made (nothing was sent) is retried on another worker; one that may have
// reached the worker is retried only if its method is idempotent (RFC 9110
// section 9.2.2) and it has no body to replay.
func (h *Handler) upstreamError(rw http.ResponseWriter, _ *http.Request, err error) {
	e := rw.(*exchange)
	ws := e.ws
	if e.hijacked {
		// Writing the 101 to the client's raw connection failed: the
		// client is gone, the worker did nothing wrong.
		e.clientGone = true
		return
	}
	if e.in.Context().Err() != nil {
		// The client went away first (it closed or half-closed its
		// connection, or broke off its body): nginx's 499, not an upstream
		// error. Nothing has been written to the client; returning would
		// let net/http send its default 200, so abort the response instead
		// and the connection closes with nothing sent. finish counts the
		// 499 and lets the panic go on to the server.
		e.leaveFlight()
		e.clientGone = true
		panic(http.ErrAbortHandler)
	}
	if e.body != nil && e.body.failed.Load() {
		// The client's body could not be read (malformed chunked framing,
		// or a body that ended before its length): the client's fault, not
		// the worker's. The connection that carried the partial body was
		// closed by the transport, never pooled. Logged at debug only: any
		// client can send these, and must not be able to flood the log.
		e.leaveFlight()
		h.logger.Debug("client sent a malformed request body", "worker", ws.name,
			"request_id", e.requestID[0], "err", err)
		e.fail(http.StatusBadRequest, "bad request")
		return
	}
	reason := reasonOf(err)
	ws.errors[reason].Add(1)
	h.logger.Warn("upstream exchange failed", "worker", ws.name, "reason", reasonNames[reason],
		"request_id", e.requestID[0], "err", err)
	e.leaveFlight()
	if ws.worker.HeldByKilled(e.sentGen, e.sentAt) {
		// Its process was killed as stuck while it held the request (spec
		// section 8): a request that blocks workers is never sent to
		// another, or it would kill the pool one worker after another.
		e.fail(http.StatusBadGateway, "bad gateway")
		return
	}
	if reason == reasonConnect && h.onConnect != nil {
		h.onConnect(ws.worker)
	}
	if reason == reasonConnect || (retryable(e.in) && reason == reasonReset) {
		next, out := h.pick(e)
		if next != nil {
			ws.retries.Add(1)
			h.send(e, next)
			return
		}
		if out != admission.NoWorker {
			h.refuse(e, out)
			return
		}
	}
	if reason == reasonTimeout {
		e.fail(http.StatusGatewayTimeout, "gateway timeout")
		return
	}
	e.fail(http.StatusBadGateway, "bad gateway")
}

// retryable reports whether a request that may have reached a worker can be
// sent again: an idempotent method (RFC 9110 section 9.2.2) and no body.
func retryable(r *http.Request) bool {
	return idempotentMethod(r.Method) && bodyless(r) && !isUpgrade(r.Header)
}

// bodyless reports whether r has no body to send.
func bodyless(r *http.Request) bool {
	return r.ContentLength == 0 && (r.Body == nil || r.Body == http.NoBody)
}

// idempotentMethod reports whether method is idempotent (RFC 9110 section
// 9.2.2).
func idempotentMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// reasonOf classifies an upstream error: connect (the connection could not
// be made, so nothing was sent), timeout (no response headers in time),
// reset (the worker closed or reset the connection), or other.
func reasonOf(err error) int {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return reasonConnect
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return reasonTimeout
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, errStaleConn) {
		return reasonReset
	}
	return reasonOther
}

// statusClientClosed is nginx's 499: the client closed the connection before
// the response finished (spec section 6).
const statusClientClosed = 499

// finish accounts a finished exchange and returns it to the pool. When the
// request ended in a panic (http.ErrAbortHandler when the response copy
// fails), it is accounted first and the panic goes on, so that the server
// aborts the connection as ReverseProxy intends.
func (h *Handler) finish(e *exchange) {
	p := recover()
	if p != nil {
		if e.clientGone || e.in.Context().Err() != nil {
			e.code = statusClientClosed
		} else if e.stream == streamSSE && h.streams.closed.Load() {
			// Shutdown closed the stream (CloseStreams): not an error.
		} else if e.ws != nil && e.ws != h.none {
			// The worker broke off the response body mid-way.
			e.ws.errors[reasonReset].Add(1)
			h.logger.Warn("worker broke off a response", "worker", e.ws.name, "reason", reasonNames[reasonReset],
				"request_id", e.requestID[0], "status", e.code)
		}
	} else if e.clientGone {
		e.code = statusClientClosed
	}
	e.leaveFlight()
	ws := e.ws
	if ws == nil {
		ws = h.none
	}
	if e.code == 0 {
		e.code = http.StatusOK
	}
	ws.requests[methodIndex(e.in.Method)][codeIndex(e.code)].Add(1)
	elapsed := time.Since(e.received)
	if e.stream != streamNone {
		ws.streams[e.stream].Add(-1)
	} else {
		ws.duration.Observe(elapsed.Seconds())
	}
	if h.accessLog != nil {
		h.logAccess(e, ws, elapsed)
	}
	e.reset()
	h.exchanges.Put(e)
	if p != nil {
		panic(p)
	}
}

func (h *Handler) logAccess(e *exchange, ws *workerStats, elapsed time.Duration) {
	h.accessLog.LogAttrs(context.Background(), slog.LevelInfo, "request",
		slog.String("request_id", e.requestID[0]),
		slog.String("method", e.in.Method),
		slog.String("path", e.in.URL.Path),
		slog.Int("status", e.code),
		slog.Int64("bytes", e.written),
		slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		slog.String("worker", ws.name),
		slog.String("client", e.in.RemoteAddr),
	)
}
