package workermetrics

import (
	dto "github.com/prometheus/client_model/go"
)

// The metrics of spec section 9 about the fetches. They are built by the
// Gatherer after the merge, so that a scrape shows its own fetches and
// conflicts, and are never taken from a worker (ownNames).
const (
	nameUp       = "obsproxy_worker_metrics_up"
	nameDuration = "obsproxy_worker_metrics_fetch_duration_seconds"
	nameErrors   = "obsproxy_worker_metrics_errors_total"
)

// ownNames are the family names a worker's exposition may not use.
var ownNames = map[string]bool{nameUp: true, nameDuration: true, nameErrors: true}

const (
	helpUp       = "1 when the worker's last metrics fetch (OBSPROXY_WORKER_METRICS_PATH) succeeded, else 0."
	helpDuration = "Seconds the worker's last metrics fetch took."
	helpErrors   = "Failed worker metrics fetches by reason (timeout, connect, status, too_large, parse), and worker metric families dropped (conflict)."
)

// ownFamilies renders every worker's stats: one series per worker for up
// and duration, one per worker and reason for errors (zeros included, so
// that rate() and increase() see each series from the start). A worker
// not fetched yet shows up 0 and duration 0.
func (g *Gatherer) ownFamilies() []*dto.MetricFamily {
	up := family(nameUp, helpUp, dto.MetricType_GAUGE, len(g.workers))
	dur := family(nameDuration, helpDuration, dto.MetricType_GAUGE, len(g.workers))
	errs := family(nameErrors, helpErrors, dto.MetricType_COUNTER, len(g.workers)*int(numReasons))
	for _, ws := range g.workers {
		ws.mu.Lock()
		st := ws.stats
		ws.mu.Unlock()
		wl := labelPair(workerLabel, ws.w.Name)
		v := 0.0
		if st.up {
			v = 1
		}
		up.Metric = append(up.Metric, &dto.Metric{Label: []*dto.LabelPair{wl}, Gauge: &dto.Gauge{Value: &v}})
		d := st.duration.Seconds()
		dur.Metric = append(dur.Metric, &dto.Metric{Label: []*dto.LabelPair{wl}, Gauge: &dto.Gauge{Value: &d}})
		for r := range numReasons {
			n := float64(st.errors[r])
			errs.Metric = append(errs.Metric, &dto.Metric{
				Label:   []*dto.LabelPair{labelPair("reason", reasonNames[r]), wl},
				Counter: &dto.Counter{Value: &n},
			})
		}
	}
	return []*dto.MetricFamily{up, dur, errs}
}

func family(name, help string, typ dto.MetricType, n int) *dto.MetricFamily {
	return &dto.MetricFamily{Name: &name, Help: &help, Type: &typ, Metric: make([]*dto.Metric, 0, n)}
}

func labelPair(name, value string) *dto.LabelPair {
	return &dto.LabelPair{Name: &name, Value: &value}
}
