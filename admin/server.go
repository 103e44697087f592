// Package admin is obsproxy's admin listener (spec section 5): the
// Prometheus exposition at /metrics, the live dashboard at /admin/ with its
// JSON snapshot and SSE stream, and the gated diagnostics at /diag. It is
// meant for loopback; off loopback, every route but /diag is guarded by a
// bearer token or an IP allowlist (Access), and /diag has its own gate.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures the admin Server.
type Config struct {
	// Gatherer is the registry served at /metrics; required. A
	// ContextGatherer gathers within the scrape's deadline (90 % of the
	// scraper's X-Prometheus-Scrape-Timeout-Seconds, scrape.go).
	Gatherer prometheus.Gatherer
	// Sources are the running parts behind the dashboard, its API and
	// /diag; nil serves /metrics only (the other routes answer 404).
	Sources *Sources
	// Access guards every route but /diag (OBSPROXY_ADMIN_TOKEN,
	// OBSPROXY_ADMIN_IP_ALLOWLIST). An unconfigured Access admits
	// everyone: the caller (cmd/obsproxy) refuses to start such a listener
	// off loopback.
	Access Access
	// DiagEnabled turns /diag on (OBSPROXY_DIAG_ENABLED); while false it
	// answers 404, like an unknown route.
	DiagEnabled bool
	// DiagAccess is /diag's own gate (OBSPROXY_DIAG_AUTH_TOKEN,
	// OBSPROXY_DIAG_IP_ALLOWLIST, OBSPROXY_DIAG_TRUST_FORWARDED_FOR). An
	// unconfigured DiagAccess admits nobody (403), after seed 000.
	DiagAccess Access
	// SampleInterval is the SSE period and the chart history's step
	// (OBSPROXY_SAMPLE_INTERVAL); zero means 1s.
	SampleInterval time.Duration
	// MaxStreams caps the concurrent SSE streams; more get 503. Zero
	// means 32.
	MaxStreams int
	// Logger receives errors from the exposition and the streams; nil
	// means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server is the admin listener's handler. Run feeds the dashboard's chart
// history; ServeHTTP is safe for concurrent use.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	sampler *sampler
	streams atomic.Int64
}

// New returns the admin Server. It fails when cfg.Gatherer is nil or
// cfg.SampleInterval is negative.
func New(cfg Config) (*Server, error) {
	if cfg.Gatherer == nil {
		return nil, errors.New("creating admin server: no gatherer")
	}
	if cfg.SampleInterval < 0 {
		return nil, fmt.Errorf("creating admin server: negative sample interval %s", cfg.SampleInterval)
	}
	if cfg.SampleInterval == 0 {
		cfg.SampleInterval = time.Second
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = 32
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	metricsOpts := promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}
	if cg, ok := cfg.Gatherer.(ContextGatherer); ok {
		s.mux.Handle("GET /metrics", metricsHandler(cg, metricsOpts))
	} else {
		s.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, metricsOpts))
	}
	if cfg.Sources != nil {
		s.sampler = newSampler(cfg.Sources, cfg.SampleInterval, cfg.Now)
		s.mux.HandleFunc("GET /admin/api/observability", s.serveSnapshot)
		s.mux.HandleFunc("GET /admin/api/observability/sse", s.serveSSE)
		s.mux.HandleFunc("GET /diag", s.serveDiag)
		assets, err := fs.Sub(dashboardFS, "ui")
		if err != nil {
			return nil, fmt.Errorf("creating admin server: dashboard assets: %w", err)
		}
		s.mux.Handle("GET /admin/", dashboardHeaders(http.StripPrefix("/admin/", http.FileServerFS(assets))))
	}
	return s, nil
}

// Run samples the sources every SampleInterval for the dashboard's chart
// history until ctx ends. Without Sources it returns at once.
func (s *Server) Run(ctx context.Context) {
	if s.sampler != nil {
		s.sampler.run(ctx)
	}
}

// ServeHTTP serves the admin routes: /diag behind its own gate, every
// other route behind Config.Access. Every route but POST
// /admin/api/workers/restart (restart.go) only reads. Refusals name no
// secret: 401 (with a Basic challenge, so a browser asks for the token as
// password) when a token is configured and the request did not carry it,
// else 403.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.URL.Path == "/diag" {
		s.mux.ServeHTTP(w, r)
		return
	}
	if a := s.cfg.Access; a.Configured() && !a.Admits(r) {
		code := http.StatusForbidden
		if a.Token != "" {
			code = http.StatusUnauthorized
			w.Header().Set("WWW-Authenticate", `Basic realm="obsproxy admin", charset="UTF-8"`)
		}
		writeError(w, code)
		return
	}
	if r.URL.Path == restartPath {
		// Outside the mux: "GET /admin/" would conflict with a pattern
		// for every method, and the route answers its own 404 and 405.
		s.serveRestart(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// writeError answers code with a fixed JSON body.
func writeError(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, "{\"error\":%q}\n", http.StatusText(code))
}

// writeJSON answers 200 with v, marshalled before anything is written so
// that no lock is held (none is: v is a copy) and an encoding failure can
// still become a 500.
func (s *Server) writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.cfg.Logger.Error("encoding admin response", "err", err)
		writeError(w, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(body, '\n'))
}

// serveDiag is GET /diag (spec section 5, seed 000): 404 while disabled, so
// its existence is not advertised; 403 when enabled without a token or an
// allowlist, or when the request passes neither; else the Diag body.
func (s *Server) serveDiag(w http.ResponseWriter, r *http.Request) {
	switch {
	case !s.cfg.DiagEnabled:
		http.NotFound(w, r)
	case !s.cfg.DiagAccess.Configured() || !s.cfg.DiagAccess.Admits(r):
		writeError(w, http.StatusForbidden)
	default:
		s.writeJSON(w, s.cfg.Sources.diag(s.cfg.Now()))
	}
}

// serveSnapshot is GET /admin/api/observability: the state now, with the
// rates of the sampler's last step and the chart history.
func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	rt, _ := s.sampler.latest()
	snap := s.cfg.Sources.snapshot(s.cfg.Sources.read(s.cfg.Now()), rt, s.cfg.SampleInterval)
	snap.History = s.sampler.history()
	s.writeJSON(w, snap)
}

// sseWriteTimeout bounds one SSE write, so that a client that stopped
// reading cannot hold a stream open.
const sseWriteTimeout = 10 * time.Second

// serveSSE is GET /admin/api/observability/sse: a text/event-stream with
// one `snapshot` event per SampleInterval, each a Snapshot without history
// whose rates are computed between this stream's own readings, so that
// streams do not disturb each other (the first event carries the
// sampler's rates). It ends when the client goes or the listener closes.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request) {
	if s.streams.Add(1) > int64(s.cfg.MaxStreams) {
		s.streams.Add(-1)
		writeError(w, http.StatusServiceUnavailable)
		return
	}
	defer s.streams.Add(-1)

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}

	var series rater
	first := s.cfg.Sources.read(s.cfg.Now())
	series.next(first)
	firstRates, _ := s.sampler.latest()
	id := uint64(0)
	send := func(rd reading, rt rates) bool {
		id++
		body, err := json.Marshal(s.cfg.Sources.snapshot(rd, rt, s.cfg.SampleInterval))
		if err != nil {
			s.cfg.Logger.Error("encoding admin snapshot", "err", err)
			return false
		}
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if id == 1 {
			fmt.Fprintf(w, "retry: %d\n\n", max(1000, s.cfg.SampleInterval.Milliseconds()))
		}
		if _, err := fmt.Fprintf(w, "event: snapshot\nid: %d\ndata: %s\n\n", id, body); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(first, firstRates) {
		return
	}
	t := time.NewTicker(s.cfg.SampleInterval)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			rd := s.cfg.Sources.read(s.cfg.Now())
			if !send(rd, series.next(rd)) {
				return
			}
		}
	}
}
