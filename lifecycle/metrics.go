package lifecycle

import "github.com/prometheus/client_golang/prometheus"

var (
	descWorkerUp = prometheus.NewDesc("obsproxy_worker_up",
		"1 while the worker receives traffic, else 0.", []string{"worker"}, nil)
	descWorkers = prometheus.NewDesc("obsproxy_workers",
		"Workers per lifecycle state (up, down, unknown, draining).", []string{"state"}, nil)
	descWorkerUptime = prometheus.NewDesc("obsproxy_worker_uptime_seconds",
		"Seconds since the worker's process last started (its own reported uptime when it gives one); 0 while it is not running.",
		[]string{"worker"}, nil)
	descWorkerStarted = prometheus.NewDesc("obsproxy_worker_started_total",
		"Starts of the worker's process seen by obsproxy; a restart seen through a reset of its reported uptime_seconds or a changed pid counts one start and one stop.",
		[]string{"worker"}, nil)
	descWorkerStopped = prometheus.NewDesc("obsproxy_worker_stopped_total",
		"Stops of the worker's process seen by obsproxy (connection refused after answers, or a restart).",
		[]string{"worker"}, nil)
	descPoolUptime = prometheus.NewDesc("obsproxy_pool_uptime_seconds",
		"Seconds the pool has had at least OBSPROXY_MIN_HEALTHY_WORKERS workers up without a break.", nil, nil)
)

// Describe implements prometheus.Collector.
func (p *Pool) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWorkerUp, descWorkers, descWorkerUptime, descWorkerStarted, descWorkerStopped, descPoolUptime} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the worker and pool lifecycle
// metrics of spec section 6, read at scrape time from one Status copy.
func (p *Pool) Collect(ch chan<- prometheus.Metric) {
	st := p.Status()
	var perState [NumStates]int
	for _, w := range st.Workers {
		perState[w.State]++
		up := 0.0
		if w.State == StateUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descWorkerUp, prometheus.GaugeValue, up, w.Name)
		ch <- prometheus.MustNewConstMetric(descWorkerUptime, prometheus.GaugeValue, w.Uptime.Seconds(), w.Name)
		ch <- prometheus.MustNewConstMetric(descWorkerStarted, prometheus.CounterValue, float64(w.Started), w.Name)
		ch <- prometheus.MustNewConstMetric(descWorkerStopped, prometheus.CounterValue, float64(w.Stopped), w.Name)
	}
	for s := State(0); s < NumStates; s++ {
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(perState[s]), s.String())
	}
	ch <- prometheus.MustNewConstMetric(descPoolUptime, prometheus.GaugeValue, st.Uptime.Seconds())
}
