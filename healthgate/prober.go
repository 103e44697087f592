package healthgate

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// ProberConfig configures a Prober. Zero values are usable unless said
// otherwise.
type ProberConfig struct {
	// Pool is the pool whose workers are probed and told the results;
	// required.
	Pool *lifecycle.Pool
	// Path is the path probed on every worker
	// (OBSPROXY_UPSTREAM_HEALTH_PATH); empty means "/health".
	Path string
	// Interval is the time from the start of one probe of a worker to the
	// start of the next (OBSPROXY_HEALTH_INTERVAL); zero means 2 s. A probe
	// that outlasts it is followed at once by the next: a worker never has
	// two probes in flight.
	Interval time.Duration
	// Timeout bounds one probe, connection included
	// (OBSPROXY_HEALTH_TIMEOUT); zero means 1 s.
	Timeout time.Duration
	// UserAgent is sent with every probe; empty means "obsproxy-probe".
	UserAgent string
	// Transport, when non-nil, replaces each worker's probe transport (for
	// tests); it is called once per worker.
	Transport func(*lifecycle.Worker) http.RoundTripper
	// Logger receives probes that panicked; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock for result times; nil is time.Now.
	Now func() time.Time
}

// Prober probes every worker of a pool concurrently, each on its own
// schedule, and reports each result to the pool (lifecycle.Pool.ObserveProbe).
// It implements prometheus.Collector for obsproxy_probe_duration_seconds and
// obsproxy_probes_total (spec section 6). Its methods are safe for
// concurrent use.
type Prober struct {
	cfg       ProberConfig
	workers   []*probed
	firstDone atomic.Int64 // workers with at least one result
	durations *prometheus.HistogramVec
	descTotal *prometheus.Desc
}

// probed is one worker's probing state.
type probed struct {
	w        *lifecycle.Worker
	client   *http.Client
	url      string
	kick     chan struct{}
	duration prometheus.Observer
	results  [3]atomic.Uint64 // healthy, degraded, unhealthy
}

// ProbeDurationBuckets are the probe latency histogram's upper bounds, in
// seconds: from 1 ms (a local worker answering from memory) to 10 s.
var ProbeDurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// NewProber returns a Prober over cfg.Pool; it probes nothing until Run. It
// fails when the pool is missing.
func NewProber(cfg ProberConfig) (*Prober, error) {
	if cfg.Pool == nil {
		return nil, errors.New("creating prober: no pool")
	}
	if cfg.Path == "" {
		cfg.Path = "/health"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "obsproxy-probe"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Prober{
		cfg: cfg,
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "obsproxy_probe_duration_seconds",
			Help:    "Latency of health probes to the worker, in seconds.",
			Buckets: ProbeDurationBuckets,
		}, []string{"worker"}),
		descTotal: prometheus.NewDesc("obsproxy_probes_total",
			"Health probes of the worker by verdict (healthy, degraded, unhealthy).", []string{"worker", "result"}, nil),
	}
	for _, w := range cfg.Pool.Workers() {
		var rt http.RoundTripper
		if cfg.Transport != nil {
			rt = cfg.Transport(w)
		} else {
			rt = probeTransport(w, cfg.Timeout)
		}
		host := w.Address
		if w.Network == "unix" || host == "" {
			host = "localhost"
		}
		p.workers = append(p.workers, &probed{
			w:        w,
			client:   &http.Client{Transport: rt, CheckRedirect: noRedirects},
			url:      "http://" + host + cfg.Path,
			kick:     make(chan struct{}, 1),
			duration: p.durations.WithLabelValues(w.Name),
		})
	}
	return p, nil
}

// probeTransport dials the worker's current address (lifecycle.Endpoint:
// fixed in static mode, the current process's in supervisor mode) for every
// probe: a new connection each time, so that a probe also proves the worker
// still accepts connections, and a restarted process is never mistaken for
// the old one through a kept-alive connection. A supervised worker without
// a process fails at once with lifecycle.ErrNoProcess (a refusal).
func probeTransport(w *lifecycle.Worker, timeout time.Duration) http.RoundTripper {
	d := &net.Dialer{Timeout: timeout}
	t := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, _, err := w.DialContext(ctx, d)
			return c, err
		},
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	if w.H2C {
		t.Protocols = new(http.Protocols)
		t.Protocols.SetUnencryptedHTTP2(true)
	}
	return t
}

// noRedirects makes a redirect the probe's answer (a non-2xx: unhealthy)
// rather than something to follow.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Run probes every worker at once, then each every Interval, until ctx is
// done; it returns when every probe has stopped.
func (p *Prober) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, pw := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.loop(ctx, pw)
		}()
	}
	wg.Wait()
}

func (p *Prober) loop(ctx context.Context, pw *probed) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	first := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-pw.kick:
			// Since Go 1.23 a stopped timer's channel holds no stale
			// value: no drain (which would block here for ever).
			timer.Stop()
		}
		began := time.Now()
		p.probeOnce(ctx, pw)
		if ctx.Err() != nil {
			return
		}
		if first {
			first = false
			p.firstDone.Add(1)
		}
		timer.Reset(max(0, p.cfg.Interval-time.Since(began)))
	}
}

// probeOnce probes one worker and reports the result to the pool. A panic
// is logged and counts as an unhealthy probe, and probing goes on.
func (p *Prober) probeOnce(ctx context.Context, pw *probed) {
	began := time.Now()
	var res lifecycle.ProbeResult
	func() {
		defer func() {
			if v := recover(); v != nil {
				p.cfg.Logger.Error("probe panicked", "worker", pw.w.Name, "panic", v)
				res = lifecycle.ProbeResult{Health: lifecycle.Unhealthy, Detail: "probe failed"}
			}
		}()
		res = p.probe(ctx, pw)
	}()
	if ctx.Err() != nil {
		return // stopping: not the worker's fault
	}
	res.Latency = time.Since(began)
	res.At = p.cfg.Now()
	pw.duration.Observe(res.Latency.Seconds())
	pw.results[resultIndex(res.Health)].Add(1)
	p.cfg.Pool.ObserveProbe(pw.w, res)
}

func (p *Prober) probe(ctx context.Context, pw *probed) lifecycle.ProbeResult {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pw.url, nil)
	if err != nil {
		return classifyError(err)
	}
	req.Header.Set("User-Agent", p.cfg.UserAgent)
	req.Header.Set("Accept", "application/json")
	resp, err := pw.client.Do(req)
	if err != nil {
		return classifyError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		res := classifyError(err)
		res.Answered = true // it answered, then failed mid-body
		return res
	}
	return Classify(resp.StatusCode, resp.Header.Get("Content-Type"), body)
}

func resultIndex(h lifecycle.Health) int {
	switch h {
	case lifecycle.Healthy:
		return 0
	case lifecycle.Degraded:
		return 1
	default:
		return 2
	}
}

// Kick asks for a probe of w now, instead of at its next turn: the proxy
// calls it when it could not connect to w (spec section 4). Kicks while a
// probe is pending or in flight are merged into one. It never blocks.
func (p *Prober) Kick(w *lifecycle.Worker) {
	if w == nil || w.Index >= len(p.workers) {
		return
	}
	select {
	case p.workers[w.Index].kick <- struct{}{}:
	default:
	}
}

// FirstRoundDone reports whether every worker has had at least one probe
// result: until then /health says "starting" (spec section 3).
func (p *Prober) FirstRoundDone() bool { return p.firstDone.Load() >= int64(len(p.workers)) }

// Interval returns the probe period (ProberConfig.Interval, 2 s when zero).
func (p *Prober) Interval() time.Duration { return p.cfg.Interval }

var resultNames = [3]string{"healthy", "degraded", "unhealthy"}

// Describe implements prometheus.Collector.
func (p *Prober) Describe(ch chan<- *prometheus.Desc) {
	p.durations.Describe(ch)
	ch <- p.descTotal
}

// Collect implements prometheus.Collector.
func (p *Prober) Collect(ch chan<- prometheus.Metric) {
	p.durations.Collect(ch)
	for _, pw := range p.workers {
		for i := range pw.results {
			ch <- prometheus.MustNewConstMetric(p.descTotal, prometheus.CounterValue,
				float64(pw.results[i].Load()), pw.w.Name, resultNames[i])
		}
	}
}
