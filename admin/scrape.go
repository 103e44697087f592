package admin

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// ContextGatherer is a prometheus.Gatherer whose gathering takes the
// scrape's context: its deadline (scrapeContext) bounds the work done for
// one scrape, such as fetching the workers' own metrics (spec section 9,
// package workermetrics). When Config.Gatherer implements it, /metrics
// calls GatherContext instead of Gather.
type ContextGatherer interface {
	prometheus.Gatherer
	GatherContext(ctx context.Context) ([]*dto.MetricFamily, error)
}

// scrapeTimeoutHeader is the header in which Prometheus sends its scrape
// timeout, in seconds.
const scrapeTimeoutHeader = "X-Prometheus-Scrape-Timeout-Seconds"

// scrapeShare is the part of the scraper's timeout that gathering may use;
// the rest is left for encoding and the network, so that the scraper gets
// an answer (with obsproxy's own metrics) before it gives up.
const scrapeShare = 0.9

// scrapeContext returns r's context, with a deadline of scrapeShare (90%)
// of the scraper's timeout when r carries a positive, finite
// X-Prometheus-Scrape-Timeout-Seconds (a value that does not parse is
// ignored). The caller must call cancel.
func scrapeContext(r *http.Request) (ctx context.Context, cancel context.CancelFunc) {
	secs, err := strconv.ParseFloat(r.Header.Get(scrapeTimeoutHeader), 64)
	if err != nil || !(secs > 0) || secs > 1e6 {
		return context.WithCancel(r.Context())
	}
	return context.WithTimeout(r.Context(), time.Duration(secs*scrapeShare*float64(time.Second)))
}

// metricsHandler serves g's exposition per request, each gather bounded by
// the request's scrapeContext.
func metricsHandler(g ContextGatherer, opts promhttp.HandlerOpts) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := scrapeContext(r)
		defer cancel()
		promhttp.HandlerFor(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
			return g.GatherContext(ctx)
		}), opts).ServeHTTP(w, r)
	})
}
