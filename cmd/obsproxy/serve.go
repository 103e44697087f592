package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/net/netutil"

	"github.com/obsproxy/obsproxy/admin"
	"github.com/obsproxy/obsproxy/admission"
	"github.com/obsproxy/obsproxy/connstate"
	"github.com/obsproxy/obsproxy/healthgate"
	"github.com/obsproxy/obsproxy/lifecycle"
	"github.com/obsproxy/obsproxy/proxy"
	"github.com/obsproxy/obsproxy/supervisor"
	"github.com/obsproxy/obsproxy/workermetrics"
)

// newLogger builds the structured logger on stderr from OBSPROXY_LOG_LEVEL
// and OBSPROXY_LOG_FORMAT (validated already).
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// app is obsproxy wired together: what serve runs and the tests inspect.
type app struct {
	started  time.Time
	pool     *lifecycle.Pool
	tracker  *connstate.Tracker
	proxy    *proxy.Handler
	prober   *healthgate.Prober
	gate     *healthgate.Gate
	queue    *admission.Queue
	registry *prometheus.Registry
	// gatherer is what /metrics serves and push sends: the registry,
	// merged with the workers' own metrics when workerMetrics is set.
	gatherer prometheus.Gatherer
	// workerMetrics fetches the workers' own metrics (spec section 9); nil
	// while OBSPROXY_WORKER_METRICS_PATH is unset.
	workerMetrics *workermetrics.Gatherer
	public        *http.Server
	admin         *http.Server
	// adminPlane is the admin listener's handler; nil when it is off.
	adminPlane *admin.Server
	logger     *slog.Logger
	// pusher pushes the registry to OBSPROXY_PUSH_URL; nil when unset.
	pusher *pusher
	// tls is the public listener's TLS; nil when it is plain.
	tls *clientTLS
	// supervisor runs the workers in supervisor mode; nil in static mode.
	supervisor *supervisor.Supervisor
}

// newApp builds every part from cfg; nothing listens yet.
func newApp(cfg Config, logger *slog.Logger) (*app, error) {
	a := &app{started: time.Now(), tracker: connstate.New(), logger: logger}
	policy, err := lifecycle.ParsePolicy(cfg.LBPolicy)
	if err != nil {
		return nil, err
	}
	// Every worker starts unknown: no traffic until a probe says it serves
	// (fail closed, spec section 3).
	a.pool, err = lifecycle.NewPool(lifecycle.Config{
		Workers: cfg.Workers, Policy: policy,
		Rise: cfg.HealthRise, Fall: cfg.HealthFall, MinUp: cfg.MinHealthyWorkers,
		OnEvent: func(e lifecycle.Event) {
			logEvent(logger, e)
			switch e.Kind {
			case lifecycle.EventUp, lifecycle.EventReplaced, lifecycle.EventReplaceFailed:
				// A worker back up, or one whose spent process was replaced
				// or may serve on, has free slots for the waiting requests.
				a.queue.Kick()
			}
		},
		Supervised: cfg.supervised(),
	})
	if err != nil {
		return nil, err
	}
	a.queue, err = admission.New(admission.Config{
		Pool: a.pool, MaxInFlight: cfg.WorkerMaxInFlight, Size: cfg.QueueSize, Timeout: cfg.QueueTimeout,
	})
	if err != nil {
		return nil, err
	}
	a.prober, err = healthgate.NewProber(healthgate.ProberConfig{
		Pool: a.pool, Path: cfg.UpstreamHealthPath, Interval: cfg.HealthInterval, Timeout: cfg.HealthTimeout,
		UserAgent: "obsproxy/" + version + " probe", Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	a.gate, err = healthgate.NewGate(healthgate.GateConfig{
		Pool: a.pool, Probes: a.prober, Verbose: cfg.HealthVerbose,
		Version: version, Started: a.started,
	})
	if err != nil {
		return nil, err
	}
	var accessLog *slog.Logger
	if cfg.AccessLog {
		accessLog = logger.With("log", "access")
	}
	a.proxy, err = proxy.New(proxy.Config{
		Pool:            a.pool,
		TrustedProxies:  cfg.TrustedProxyPrefixes,
		DialTimeout:     cfg.UpstreamDialTimeout,
		ResponseTimeout: cfg.UpstreamResponseTimeout,
		Logger:          logger,
		AccessLog:       accessLog,
		Admission:       a.queue,
		SpentWait:       cfg.WorkerStartTimeout,
		// A worker that refuses connections leaves traffic at once and is
		// probed now; probes alone bring it back (spec section 4).
		OnConnectFailure: func(w *lifecycle.Worker) {
			if a.pool.MarkDown(w, "connect failed") {
				a.prober.Kick(w)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		a.tracker, a.proxy, a.pool, a.prober, a.gate, a.queue,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "obsproxy_uptime_seconds", Help: "Seconds since obsproxy started.",
		}, func() float64 { return time.Since(a.started).Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "obsproxy_build_info", Help: "Always 1; the labels say which obsproxy this is.",
			ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
		}, func() float64 { return 1 }),
	)
	a.gatherer = a.registry
	var metricsSource admin.WorkerMetricsSource
	if cfg.WorkerMetricsPath != "" {
		a.workerMetrics, err = workermetrics.New(workermetrics.Config{
			Base: a.registry, Pool: a.pool, Dial: workerDialer(cfg.UpstreamDialTimeout),
			Path: cfg.WorkerMetricsPath, Timeout: cfg.WorkerMetricsTimeout, MaxBytes: int64(cfg.WorkerMetricsMaxBytes),
			UserAgent: "obsproxy/" + version + " metrics", Logger: logger,
		})
		if err != nil {
			return nil, err
		}
		a.gatherer, metricsSource = a.workerMetrics, a.workerMetrics
	}
	if cfg.PushURL != "" {
		a.pusher, err = newPusher(pushConfig{URL: cfg.PushURL, Interval: cfg.PushInterval, Labels: cfg.PushLabels,
			Gatherer: a.gatherer, Registerer: a.registry, Logger: logger})
		if err != nil {
			return nil, err
		}
	}
	if cfg.supervised() {
		if err := a.newSupervisor(cfg); err != nil {
			return nil, err
		}
	}
	errorLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	if a.tls, err = newClientTLS(cfg, a.registry, logger); err != nil {
		return nil, err
	}
	a.public = &http.Server{
		Handler:           a.tracker.CountRequests(workermetrics.HidePath(cfg.WorkerMetricsPath, a.gate.Handler(cfg.HealthPath, cfg.LivenessPath, a.proxy))),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ConnState:         a.tracker.ConnState,
		ErrorLog:          serverErrorLog(logger),
		Protocols:         protocols(cfg, a.tls != nil),
		// OPTIONS * goes to a worker like every other request (spec
		// section 3), not answered by net/http itself.
		DisableGeneralOptionsHandler: true,
	}
	if a.tls != nil {
		a.public.TLSConfig = a.tls.config
	}
	if cfg.AdminAddr != "" {
		a.adminPlane, err = admin.New(admin.Config{
			Gatherer: a.gatherer,
			Sources: &admin.Sources{
				Pool: a.pool, Proxy: a.proxy, Conns: a.tracker, Gate: a.gate, Queue: a.queue, Started: a.started, Version: version,
				WorkerMetrics: metricsSource, TLS: a.tls.source(), Processes: a.processFigures(),
				RestartWorkers: a.restartWorkers(),
			},
			Access:      admin.Access{Token: cfg.AdminToken, Allow: cfg.AdminAllowPrefixes},
			DiagEnabled: cfg.DiagEnabled,
			DiagAccess: admin.Access{
				Token: cfg.DiagAuthToken, Allow: cfg.DiagAllowPrefixes, TrustForwardedFor: cfg.DiagTrustForwarded,
			},
			SampleInterval: cfg.SampleInterval,
			Logger:         logger,
		})
		if err != nil {
			return nil, err
		}
		a.admin = &http.Server{
			Handler:           a.adminPlane,
			ReadHeaderTimeout: cfg.ReadHeaderTimeout,
			IdleTimeout:       cfg.IdleTimeout,
			ErrorLog:          errorLog,
		}
	}
	return a, nil
}

// workerDialer dials a worker's current network and address within
// timeout (OBSPROXY_UPSTREAM_DIAL_TIMEOUT), for the workers' metrics
// fetches; the only place outside the proxy that reads them.
func workerDialer(timeout time.Duration) workermetrics.Dialer {
	d := &net.Dialer{Timeout: timeout}
	return func(ctx context.Context, w *lifecycle.Worker) (net.Conn, error) {
		// The worker's current endpoint: in supervisor mode it changes with
		// every process (lifecycle.Endpoint).
		c, _, err := w.DialContext(ctx, d)
		return c, err
	}
}

// logEvent logs a lifecycle event: starts, ups, replacements and planned
// exits at info, a failed rolling restart at error, the rest at warn.
func logEvent(logger *slog.Logger, e lifecycle.Event) {
	level := slog.LevelWarn
	switch e.Kind {
	case lifecycle.EventUp, lifecycle.EventStarted, lifecycle.EventPoolUp,
		lifecycle.EventReplacing, lifecycle.EventReplaced, lifecycle.EventReload:
		level = slog.LevelInfo
	case lifecycle.EventStopped:
		// A planned exit (a replaced process, the shutdown) is no warning.
		if strings.HasPrefix(e.Reason, "reload,") || strings.HasPrefix(e.Reason, "max_") || strings.HasPrefix(e.Reason, "shutdown,") {
			level = slog.LevelInfo
		}
	}
	if e.Kind == lifecycle.EventReload && strings.HasPrefix(e.Reason, "failed") {
		level = slog.LevelError
	}
	attrs := []slog.Attr{slog.String("kind", e.Kind)}
	if e.Worker != "" {
		attrs = append(attrs, slog.String("worker", e.Worker))
	}
	if e.Reason != "" {
		attrs = append(attrs, slog.String("reason", e.Reason))
	}
	logger.LogAttrs(context.Background(), level, "worker lifecycle", attrs...)
}

// serve runs obsproxy until a signal (spec section 7) and returns the exit
// code: 0 after a clean shutdown, 1 on a runtime failure or a second signal.
func serve(cfg Config, stderr io.Writer) int {
	logger := newLogger(cfg, stderr)
	a, err := newApp(cfg, logger)
	if err != nil {
		logger.Error("starting", "err", err)
		return exitFailure
	}
	// Every way out stops the workers (a no-op after the shutdown did), so
	// that a failure to listen leaves no socket directory behind.
	defer a.stopWorkers()
	// Signals are caught before listening, so that a SIGTERM right after
	// start still shuts down cleanly.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer func() {
		signal.Stop(hups)
		close(hups) // nothing sends after Stop: ends reloadOn
	}()
	go a.reloadOn(hups)

	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		logger.Error("listening on public address", "addr", cfg.ListenAddr, "err", err)
		return exitFailure
	}
	if cfg.MaxConnections > 0 {
		ln = netutil.LimitListener(ln, cfg.MaxConnections)
	}
	ln = a.tls.listen(a.tracker.Listen(ln))
	var adminLn net.Listener
	if a.admin != nil {
		if adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			ln.Close()
			logger.Error("listening on admin address", "addr", cfg.AdminAddr, "err", err)
			return exitFailure
		}
	}

	probeCtx, stopProbes := context.WithCancel(context.Background())
	probesDone := make(chan struct{})
	go func() {
		defer close(probesDone)
		a.prober.Run(probeCtx)
	}()
	// The dashboard's sampler runs and stops with the probes.
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		if a.adminPlane != nil {
			a.adminPlane.Run(probeCtx)
		}
	}()
	// Certificate file polling runs and stops with the probes too.
	tlsDone := make(chan struct{})
	go func() {
		defer close(tlsDone)
		a.tls.run(probeCtx)
	}()
	defer func() {
		stopProbes()
		<-probesDone
		<-samplerDone
		if a.tls == nil || a.tls.acme == nil {
			// An ACME order at start is bounded by autocert's own timeout
			// and cannot be cancelled; nothing waits for it at exit.
			<-tlsDone
		}
	}()

	errc := make(chan error, 2)
	go func() { errc <- fmt.Errorf("public listener: %w", a.public.Serve(ln)) }()
	if a.admin != nil {
		go func() { errc <- fmt.Errorf("admin listener: %w", a.admin.Serve(adminLn)) }()
	}
	for _, v := range cfg.UnknownVars {
		logger.Warn("ignoring unknown setting (a typo?)", "variable", v)
	}
	logger.Info("obsproxy started", "version", version, "listen", ln.Addr().String(), "tls", a.tls != nil, "h2c", cfg.H2C,
		"admin", addrOf(adminLn), "workers", len(a.pool.Workers()), "lb_policy", a.pool.Policy().String(),
		"supervisor", a.supervisor != nil)
	a.pusher.Start()
	if a.supervisor != nil {
		a.supervisor.Start()
	}

	select {
	case err := <-errc:
		logger.Error("serving", "err", err)
		a.closeAll()
		a.pusher.Stop()
		a.stopWorkers()
		return exitFailure
	case sig := <-sigs:
		// Readiness off first, at once (spec section 7).
		a.gate.Drain()
		logger.Info("shutting down: /health reports draining", "signal", sig.String(), "drain_delay", cfg.DrainDelay.String())
	}
	return a.shutdown(cfg, sigs)
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// shutdown is spec section 7's order, readiness being off already: drain
// delay; stop accepting; let in-flight requests finish within the shutdown
// timeout (a fresh context, never the signal's); then close the streams
// (event streams, and the upgraded connections that Server.Shutdown does not
// track); then send the final metrics push. A second signal exits at once
// with 1.
func (a *app) shutdown(cfg Config, sigs <-chan os.Signal) int {
	done := make(chan int, 1)
	go func() {
		if cfg.DrainDelay > 0 {
			time.Sleep(cfg.DrainDelay)
		}
		ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		shutdownErr := make(chan error, 1)
		go func() { shutdownErr <- a.public.Shutdown(ctx) }()

		// Streams would hold Shutdown until the timeout: close them once
		// the ordinary requests are done.
		tick := time.NewTicker(10 * time.Millisecond)
		for a.proxy.InFlight() > 0 && ctx.Err() == nil {
			<-tick.C
		}
		tick.Stop()
		sse, ws := a.proxy.CloseStreams(), a.tracker.CloseHijacked()
		if sse+ws > 0 {
			a.logger.Info("closed streams", "sse", sse, "websocket", ws)
		}

		code := exitOK
		if err := <-shutdownErr; err != nil {
			a.logger.Error("in-flight requests did not finish in time", "timeout", cfg.ShutdownTimeout.String(), "err", err)
			a.public.Close()
			code = exitFailure
		}
		if a.admin != nil {
			a.admin.Close()
		}
		// The last push, after the streams are closed (spec section 7).
		a.pusher.Final()
		a.workerMetrics.Close()
		// Then the workers: SIGTERM, SIGKILL after the stop timeout,
		// every process reaped (spec section 8).
		a.stopWorkers()
		done <- code
	}()
	select {
	case code := <-done:
		a.logger.Info("obsproxy stopped", "exit_code", code)
		return code
	case sig := <-sigs:
		a.logger.Error("second signal: exiting at once", "signal", sig.String())
		if a.supervisor != nil {
			a.supervisor.Kill()
		}
		return exitFailure
	}
}

func (a *app) closeAll() {
	a.public.Close()
	a.tracker.CloseHijacked()
	if a.admin != nil {
		a.admin.Close()
	}
}

// healthcheck GETs the local public health endpoint (for a Docker
// HEALTHCHECK in an image without curl): exit 0 on 200, 1 otherwise.
func healthcheck(cfg Config, stdout, stderr io.Writer) int {
	host, port, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		fmt.Fprintf(stderr, "obsproxy healthcheck: %v\n", err)
		return exitFailure
	}
	// A wildcard listener is reached on loopback; a specific address as is.
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: healthcheckTransport(cfg)}
	resp, err := client.Get(healthcheckScheme(cfg) + "://" + net.JoinHostPort(host, port) + cfg.HealthPath)
	if err != nil {
		fmt.Fprintf(stderr, "obsproxy healthcheck: %v\n", err)
		return exitFailure
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	stdout.Write(body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "obsproxy healthcheck: %s\n", resp.Status)
		return exitFailure
	}
	return exitOK
}
