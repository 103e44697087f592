// Command profproxy is obsproxy wired as cmd/obsproxy wires it (pool,
// prober, health gate, connection tracker, proxy.Handler, registry, admin
// listener with its sampler) with net/http/pprof on a third loopback
// listener, for profiling under load (bench/profile.sh). obsproxy itself
// has no pprof endpoint. Settings are the defaults of cmd/obsproxy; it
// listens on loopback only and runs until SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/obsproxy/obsproxy/admin"
	"github.com/obsproxy/obsproxy/connstate"
	"github.com/obsproxy/obsproxy/healthgate"
	"github.com/obsproxy/obsproxy/lifecycle"
	"github.com/obsproxy/obsproxy/proxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "public listener")
	adminAddr := flag.String("admin", "127.0.0.1:9090", "admin listener (/metrics, dashboard)")
	pprofAddr := flag.String("pprof", "127.0.0.1:6060", "net/http/pprof listener")
	upstreams := flag.String("upstreams", "127.0.0.1:8000", "comma-separated worker host:port")
	h2c := flag.Bool("h2c", false, "speak h2c (prior knowledge) to the workers")
	policy := flag.String("lb-policy", "least_inflight", "least_inflight or round_robin")
	mutexRate := flag.Int("mutex-fraction", 0, "runtime.SetMutexProfileFraction (0: off)")
	blockRate := flag.Int("block-rate", 0, "runtime.SetBlockProfileRate in ns (0: off)")
	flag.Parse()
	runtime.SetMutexProfileFraction(*mutexRate)
	runtime.SetBlockProfileRate(*blockRate)
	for _, a := range []string{*listen, *adminAddr, *pprofAddr} {
		if host, _, err := net.SplitHostPort(a); err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
			slog.Error("profproxy listens on loopback only", "addr", a)
			os.Exit(2)
		}
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	started := time.Now()

	var workers []lifecycle.WorkerConfig
	for i, a := range strings.Split(*upstreams, ",") {
		workers = append(workers, lifecycle.WorkerConfig{Name: "w" + strconv.Itoa(i+1), Network: "tcp", Address: a, H2C: *h2c})
	}
	pol, err := lifecycle.ParsePolicy(*policy)
	must(err)
	pool, err := lifecycle.NewPool(lifecycle.Config{Workers: workers, Policy: pol})
	must(err)
	prober, err := healthgate.NewProber(healthgate.ProberConfig{Pool: pool, Path: "/health", Interval: 2 * time.Second,
		Timeout: time.Second, UserAgent: "obsproxy/profproxy probe", Logger: logger})
	must(err)
	gate, err := healthgate.NewGate(healthgate.GateConfig{Pool: pool, Probes: prober, Version: "profproxy", Started: started})
	must(err)
	tracker := connstate.New()
	handler, err := proxy.New(proxy.Config{
		Pool: pool, DialTimeout: 2 * time.Second, ResponseTimeout: 60 * time.Second, Logger: logger,
		OnConnectFailure: func(w *lifecycle.Worker) {
			if pool.MarkDown(w, "connect failed") {
				prober.Kick(w)
			}
		},
	})
	must(err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		tracker, handler, pool, prober, gate)
	adminPlane, err := admin.New(admin.Config{
		Gatherer: reg,
		Sources:  &admin.Sources{Pool: pool, Proxy: handler, Conns: tracker, Gate: gate, Started: started, Version: "profproxy"},
		Logger:   logger,
	})
	must(err)

	errorLog := slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	public := &http.Server{Handler: gate.Handler("/health", "/livez", handler), ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout: 120 * time.Second, ConnState: tracker.ConnState, ErrorLog: errorLog}
	adminSrv := &http.Server{Handler: adminPlane, ReadHeaderTimeout: 10 * time.Second, ErrorLog: errorLog}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	pprofSrv := &http.Server{Handler: mux, ErrorLog: errorLog}

	ln, err := net.Listen("tcp", *listen)
	must(err)
	adminLn, err := net.Listen("tcp", *adminAddr)
	must(err)
	pprofLn, err := net.Listen("tcp", *pprofAddr)
	must(err)
	ctx, stop := context.WithCancel(context.Background())
	go prober.Run(ctx)
	go adminPlane.Run(ctx)
	go public.Serve(tracker.Listen(ln))
	go adminSrv.Serve(adminLn)
	go pprofSrv.Serve(pprofLn)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	stop()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range []*http.Server{public, adminSrv, pprofSrv} {
		s.Shutdown(shutdown)
	}
}

func must(err error) {
	if err != nil {
		io.WriteString(os.Stderr, "profproxy: "+err.Error()+"\n")
		os.Exit(1)
	}
}
