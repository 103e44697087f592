package admission

import "github.com/prometheus/client_golang/prometheus"

type descs struct {
	depth, rejected, maxInFlight *prometheus.Desc
}

func newDescs() descs {
	return descs{
		depth: prometheus.NewDesc("obsproxy_queue_depth",
			"Requests waiting now in the admission queue for a worker below its in-flight cap.", nil, nil),
		rejected: prometheus.NewDesc("obsproxy_queue_rejected_total",
			"Requests answered 503 overloaded: the queue was full (full) or they waited past OBSPROXY_QUEUE_TIMEOUT (timeout).",
			[]string{"reason"}, nil),
		maxInFlight: prometheus.NewDesc("obsproxy_worker_max_in_flight",
			"The configured cap on requests in flight per worker (OBSPROXY_WORKER_MAX_IN_FLIGHT; 0: none), for saturation ratios.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (q *Queue) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.descs.depth
	ch <- q.descs.rejected
	ch <- q.descs.maxInFlight
	q.wait.Describe(ch)
}

// Collect implements prometheus.Collector: the metrics of spec section 10,
// read from the queue's atomics at scrape time. Every series exists from
// the start (zero without a cap), so that rate() and alerts see zeros
// rather than gaps.
func (q *Queue) Collect(ch chan<- prometheus.Metric) {
	d := q.descs
	full, timeout := q.Rejected()
	ch <- prometheus.MustNewConstMetric(d.depth, prometheus.GaugeValue, float64(q.Depth()))
	ch <- prometheus.MustNewConstMetric(d.rejected, prometheus.CounterValue, float64(full), Full.String())
	ch <- prometheus.MustNewConstMetric(d.rejected, prometheus.CounterValue, float64(timeout), TimedOut.String())
	ch <- prometheus.MustNewConstMetric(d.maxInFlight, prometheus.GaugeValue, float64(q.max))
	q.wait.Collect(ch)
}
