package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/obsproxy/obsproxy/admin"
)

const (
	// maxPushTimeout caps the time one periodic push may take; below it a
	// push may take up to the push interval, so two never overlap.
	maxPushTimeout = time.Minute
	// finalPushTimeout bounds the push sent on shutdown (spec section 7),
	// so that an unreachable receiver delays the exit by this much at most.
	finalPushTimeout = 5 * time.Second
	// pushMethod is the HTTP method of a push. VictoriaMetrics'
	// /api/v1/import/prometheus reads the body whatever the method; POST is
	// the one that proxies and other receivers expect with a body (the
	// library's default, GET, is not).
	pushMethod = "POST"
	// maxPushErrorLen caps the error text logged for a failed push: the
	// library quotes the receiver's whole answer body in it.
	maxPushErrorLen = 512
)

// pushConfig configures a pusher (spec section 2, OBSPROXY_PUSH_*).
type pushConfig struct {
	// URL is the import URL, an absolute http or https URL (validated by
	// loadConfig); a user and password in it are sent as HTTP basic
	// authentication and never logged. Required.
	URL string
	// Interval is the period between pushes; must be positive
	// (OBSPROXY_PUSH_INTERVAL, default 10s, at least 1s).
	Interval time.Duration
	// Labels are added to every pushed series (OBSPROXY_PUSH_EXTRA_LABELS);
	// nil adds none.
	Labels []labelPair
	// Gatherer is what is pushed: the registry that /metrics serves. Required.
	Gatherer prometheus.Gatherer
	// Registerer receives obsproxy_pushes_total. Required.
	Registerer prometheus.Registerer
	// Logger receives push failures (warn); nil means slog.Default().
	Logger *slog.Logger
}

// pusher sends the metrics of a Gatherer in the Prometheus text format
// (0.0.4) to a VictoriaMetrics-compatible import URL
// (…/api/v1/import/prometheus) with github.com/VictoriaMetrics/metrics'
// PushMetricsExt: at Start, then every interval until Stop, and once more
// at Final (spec section 7). A failed push is logged and counted in
// obsproxy_pushes_total{result="failure"}, never fatal.
//
// The methods of a nil *pusher do nothing (push disabled). Start, Stop and
// Final are meant to be called in that order, from one goroutine or
// goroutines ordered by the caller; Stop may be called more than once.
type pusher struct {
	url      string
	shown    string // url with the password redacted, for logs
	password string // scrubbed from logged error texts; "" when none
	interval time.Duration
	timeout  time.Duration // of one periodic push
	// finalTimeout bounds the push of Final: finalPushTimeout.
	finalTimeout time.Duration
	opts         *metrics.PushOptions
	gatherer     prometheus.Gatherer
	logger       *slog.Logger

	success prometheus.Counter
	failure prometheus.Counter

	// failing is true after a failed push until one succeeds; only the
	// pushing goroutine (the loop, then Final) touches it.
	failing bool

	stopOnce sync.Once
	cancel   context.CancelFunc // nil before Start
	done     chan struct{}      // closed when the loop has returned
}

// newPusher checks c, registers obsproxy_pushes_total (both results at 0,
// so that both series exist from the first scrape) on c.Registerer and
// returns a pusher that has not pushed yet.
func newPusher(c pushConfig) (*pusher, error) {
	switch {
	case c.Gatherer == nil || c.Registerer == nil:
		return nil, errors.New("metrics push: gatherer and registerer are required")
	case c.Interval <= 0:
		return nil, fmt.Errorf("metrics push: interval %v is not positive", c.Interval)
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, errors.New("metrics push: the URL does not parse")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	p := &pusher{
		url:          c.URL,
		shown:        u.Redacted(),
		interval:     c.Interval,
		timeout:      min(c.Interval, maxPushTimeout),
		finalTimeout: finalPushTimeout,
		opts:         &metrics.PushOptions{ExtraLabels: extraLabelsText(c.Labels), Method: pushMethod},
		gatherer:     c.Gatherer,
		logger:       c.Logger,
	}
	if u.User != nil {
		p.password, _ = u.User.Password()
	}
	pushes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "obsproxy_pushes_total",
		Help: "Metrics pushes to OBSPROXY_PUSH_URL, by result (success: answered 2xx).",
	}, []string{"result"})
	p.success, p.failure = pushes.WithLabelValues("success"), pushes.WithLabelValues("failure")
	if err := c.Registerer.Register(pushes); err != nil {
		return nil, fmt.Errorf("metrics push: registering obsproxy_pushes_total: %w", err)
	}
	return p, nil
}

// extraLabelsText writes labels as the library's ExtraLabels wants them,
// `name="value",name2="value2"`, escaping values as the Prometheus text
// format does (backslash, double quote, line feed).
func extraLabelsText(labels []labelPair) string {
	escape := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	var b strings.Builder
	for i, l := range labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(l.Name)
		b.WriteString(`="`)
		escape.WriteString(&b, l.Value)
		b.WriteByte('"')
	}
	return b.String()
}

// Start pushes once at once, then every interval, in a goroutine of its
// own, until Stop or Final.
func (p *pusher) Start() {
	if p == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go p.run(ctx)
}

// Stop ends the push loop, abandoning a push under way (neither a success
// nor a failure), and waits for it to return. It does nothing before Start
// and after the first call.
func (p *pusher) Stop() {
	if p == nil || p.cancel == nil {
		return
	}
	p.stopOnce.Do(func() {
		p.cancel()
		<-p.done
	})
}

// Final stops the loop and sends one last push within finalPushTimeout
// (spec section 7: after the streams are closed, before exit). Its failure
// is logged and counted like any other.
func (p *pusher) Final() {
	if p == nil {
		return
	}
	p.Stop()
	if p.push(context.Background(), p.finalTimeout) {
		p.logger.Info("final metrics push sent", "url", p.shown)
	}
}

// run is the push loop; it returns when ctx is done.
func (p *pusher) run(ctx context.Context) {
	defer close(p.done)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	for {
		p.push(ctx, p.timeout)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// push gathers and sends the metrics once, within timeout, and counts the
// result; it reports whether the push succeeded. A push abandoned because
// parent was cancelled is not counted.
func (p *pusher) push(parent context.Context, timeout time.Duration) (ok bool) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	// A panic here (a collector's, or the library's on a line it cannot
	// parse) must not end obsproxy.
	defer func() {
		if r := recover(); r != nil {
			p.fail(fmt.Errorf("panic: %v", r))
			ok = false
		}
	}()
	body, err := p.gather(ctx)
	if err != nil {
		// Like /metrics (promhttp.ContinueOnError): send what was gathered.
		p.logger.Warn("gathering metrics to push", "err", err)
	}
	err = metrics.PushMetricsExt(ctx, p.url, func(w io.Writer) { w.Write(body) }, p.opts)
	if err == nil && errors.Is(ctx.Err(), context.Canceled) {
		// The library answers nil for a push cut short by cancellation;
		// it is neither sent nor failed.
		p.logger.Debug("metrics push abandoned: stopping", "url", p.shown)
		return false
	}
	if err != nil {
		p.fail(err)
		return false
	}
	p.success.Inc()
	if p.failing {
		p.failing = false
		p.logger.Info("metrics push succeeds again", "url", p.shown)
	}
	return true
}

// fail counts and logs a failed push, the password scrubbed from err's
// text (the library and net/http redact it from URLs already; this also
// covers a receiver that echoes it back in its answer).
func (p *pusher) fail(err error) {
	p.failure.Inc()
	p.failing = true
	msg := err.Error()
	if p.password != "" {
		msg = strings.ReplaceAll(msg, p.password, "xxxxx")
	}
	if len(msg) > maxPushErrorLen {
		n := maxPushErrorLen
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n] + "…"
	}
	p.logger.Warn("metrics push failed", "url", p.shown, "err", msg)
}

// gather encodes every metric of the gatherer in the Prometheus text
// format, without timestamps (the receiver stamps the samples), as
// PushMetricsExt requires. A gatherer that takes a context (the workers'
// own metrics, admin.ContextGatherer) gathers within ctx, the push's own
// deadline. On a gathering error it returns what was gathered and the
// error.
func (p *pusher) gather(ctx context.Context) ([]byte, error) {
	var mfs []*dto.MetricFamily
	var gatherErr error
	if cg, ok := p.gatherer.(admin.ContextGatherer); ok {
		mfs, gatherErr = cg.GatherContext(ctx)
	} else {
		mfs, gatherErr = p.gatherer.Gather()
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		// The library adds the extra labels before the last blank of a
		// line without labels, which a timestamp would follow.
		for _, m := range mf.GetMetric() {
			m.TimestampMs = nil
		}
		if err := enc.Encode(mf); err != nil {
			return buf.Bytes(), errors.Join(gatherErr, fmt.Errorf("encoding %s: %w", mf.GetName(), err))
		}
	}
	return buf.Bytes(), gatherErr
}
