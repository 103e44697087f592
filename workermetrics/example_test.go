package workermetrics_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obsproxy/obsproxy/lifecycle"
	"github.com/obsproxy/obsproxy/workermetrics"
)

// Two workers serve their own prometheus_client registry; the Gatherer
// exposes both beside obsproxy's registry, each series with its worker.
func ExampleGatherer() {
	var workers []lifecycle.WorkerConfig
	for i, served := range []int{7, 3} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\napp_requests_total{route=\"/\"} %d\n", served)
		}))
		defer srv.Close()
		workers = append(workers, lifecycle.WorkerConfig{Name: fmt.Sprintf("w%d", i+1), Network: "tcp", Address: srv.Listener.Addr().String()})
	}
	pool, _ := lifecycle.NewPool(lifecycle.Config{Workers: workers})
	g, err := workermetrics.New(workermetrics.Config{
		Base: prometheus.NewRegistry(), // obsproxy's own registry
		Pool: pool,
		Dial: func(ctx context.Context, w *lifecycle.Worker) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, w.Network, w.Address)
		},
		Path:   "/metrics",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	defer g.Close()
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "app_requests_total" && mf.GetName() != "obsproxy_worker_metrics_up" {
			continue // the fetch durations vary; the errors are all 0 here
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			fmt.Printf("%s{%s} %g\n", mf.GetName(), strings.Join(labels, ","), v)
		}
	}
	// Output:
	// app_requests_total{route=/,worker=w1} 7
	// app_requests_total{route=/,worker=w2} 3
	// obsproxy_worker_metrics_up{worker=w1} 1
	// obsproxy_worker_metrics_up{worker=w2} 1
}
