package proxy

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// bufferPool is the httputil.BufferPool shared by every worker's proxy:
// 32 KiB copy buffers, reused across requests. It pools pointers to arrays,
// so that neither Get nor Put allocates (pooling a *[]byte would allocate
// the slice header on every Put).
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[copyBufferSize]byte); ok {
		return v[:]
	}
	return new([copyBufferSize]byte)[:]
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	b.p.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
}

type descs struct {
	inFlight, requests, streams, errors, retries, oldest *prometheus.Desc
}

func newDescs() descs {
	return descs{
		inFlight: prometheus.NewDesc("obsproxy_in_flight_requests",
			"Requests in flight to the worker (sent, response not finished; streams excluded).", []string{"worker"}, nil),
		requests: prometheus.NewDesc("obsproxy_requests_total",
			"Finished proxied requests; worker=\"none\" when no worker could be picked, code=\"499\" when the client went away first.",
			[]string{"worker", "code", "method"}, nil),
		streams: prometheus.NewDesc("obsproxy_streams_active",
			"Open streams (WebSocket connections and text/event-stream responses).", []string{"worker", "kind"}, nil),
		errors: prometheus.NewDesc("obsproxy_upstream_errors_total",
			"Failed upstream exchanges by reason (connect, timeout, reset, other).", []string{"worker", "reason"}, nil),
		retries: prometheus.NewDesc("obsproxy_retries_total",
			"Requests retried away from the worker after it failed them.", []string{"worker"}, nil),
		oldest: prometheus.NewDesc("obsproxy_oldest_in_flight_seconds",
			"Age of the oldest request in flight to the worker, 0 when none: the stuck-worker signal.", []string{"worker"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (h *Handler) Describe(ch chan<- *prometheus.Desc) {
	d := h.descs
	for _, desc := range []*prometheus.Desc{d.inFlight, d.requests, d.streams, d.errors, d.retries, d.oldest} {
		ch <- desc
	}
	h.durations.Describe(ch)
}

// Collect implements prometheus.Collector: it reads the per-worker atomics at
// scrape time. requests_total has a series per (code, method) seen; the
// other per-worker series exist for every worker from the start, so that
// rate() and alerts see zeros rather than gaps.
func (h *Handler) Collect(ch chan<- prometheus.Metric) {
	d := h.descs
	now := time.Now()
	for _, ws := range h.workers {
		ch <- prometheus.MustNewConstMetric(d.inFlight, prometheus.GaugeValue, float64(ws.worker.InFlight()), ws.name)
		ch <- prometheus.MustNewConstMetric(d.oldest, prometheus.GaugeValue, ws.oldest(now).Seconds(), ws.name)
		ch <- prometheus.MustNewConstMetric(d.retries, prometheus.CounterValue, float64(ws.retries.Load()), ws.name)
		h.collectShared(ch, ws)
	}
	h.collectShared(ch, h.none)
	h.durations.Collect(ch)
}

// collectShared sends the series that "none" has too.
func (h *Handler) collectShared(ch chan<- prometheus.Metric, ws *workerStats) {
	d := h.descs
	for m := range ws.requests {
		for c := range ws.requests[m] {
			if n := ws.requests[m][c].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(d.requests, prometheus.CounterValue, float64(n), ws.name, codeNames[c], methodNames[m])
			}
		}
	}
	if ws.worker == nil {
		return
	}
	for kind := streamWebSocket; kind < len(streamNames); kind++ {
		ch <- prometheus.MustNewConstMetric(d.streams, prometheus.GaugeValue, float64(ws.streams[kind].Load()), ws.name, streamNames[kind])
	}
	for r := range ws.errors {
		ch <- prometheus.MustNewConstMetric(d.errors, prometheus.CounterValue, float64(ws.errors[r].Load()), ws.name, reasonNames[r])
	}
}
