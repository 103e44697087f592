package lifecycle

import "github.com/prometheus/client_golang/prometheus"

var (
	descWorkerUp = prometheus.NewDesc("obsproxy_worker_up",
		"1 while the worker receives traffic, else 0.", []string{"worker"}, nil)
	descWorkers = prometheus.NewDesc("obsproxy_workers",
		"Workers per lifecycle state (up, down, unknown, draining).", []string{"state"}, nil)
)

// Describe implements prometheus.Collector.
func (p *Pool) Describe(ch chan<- *prometheus.Desc) {
	ch <- descWorkerUp
	ch <- descWorkers
}

// Collect implements prometheus.Collector: obsproxy_worker_up per worker and
// obsproxy_workers per state, read at scrape time.
func (p *Pool) Collect(ch chan<- prometheus.Metric) {
	var perState [NumStates]int
	for _, w := range p.workers {
		s := w.State()
		perState[s]++
		up := 0.0
		if s == StateUp {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descWorkerUp, prometheus.GaugeValue, up, w.Name)
	}
	for s := State(0); s < NumStates; s++ {
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(perState[s]), s.String())
	}
}
