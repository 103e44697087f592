package healthgate

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// The /health detail vocabulary (spec section 3). Degraded reasons are
// obsproxy's addition to it: the spec fixes only the unhealthy ones.
const (
	DetailStarting          = "starting"
	DetailDraining          = "draining"
	DetailNoHealthyWorker   = "no healthy worker"
	DetailUpstreamUnhealthy = "upstream reports unhealthy"
	DetailProbesStale       = "probes stale"
	DetailUnreachable       = "upstream unreachable"
	DetailWorkerDown        = "worker down"
	DetailUpstreamDegraded  = "upstream degraded"
)

// The three /health statuses, in the order of obsproxy_health_status.
const (
	StatusHealthy   = "healthy"
	StatusDegraded  = "degraded"
	StatusUnhealthy = "unhealthy"
)

// GateConfig configures a Gate.
type GateConfig struct {
	// Pool is the pool whose state /health reports; required.
	Pool *lifecycle.Pool
	// Probes tells whether the first probe round has finished, and the
	// probe period: results older than three periods are stale (spec
	// section 3); required (a *Prober).
	Probes interface {
		FirstRoundDone() bool
		Interval() time.Duration
	}
	// Verbose adds the per-worker "workers" array, with addresses, to the
	// public body (OBSPROXY_HEALTH_VERBOSE).
	Verbose bool
	// Version is obsproxy's version, reported in the body.
	Version string
	// Started is when obsproxy started, for uptime_seconds; zero means now.
	Started time.Time
	// Now is the clock for uptime and staleness; nil is time.Now.
	Now func() time.Time
}

// Gate answers the public /health and /livez (spec section 3) and exports
// obsproxy_health_status. Its methods are safe for concurrent use.
type Gate struct {
	cfg        GateConfig
	draining   atomic.Bool
	descStatus *prometheus.Desc
}

// NewGate returns a Gate; it fails when the pool or Probes is missing.
func NewGate(cfg GateConfig) (*Gate, error) {
	if cfg.Pool == nil || cfg.Probes == nil {
		return nil, errors.New("creating health gate: no pool or prober")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Started.IsZero() {
		cfg.Started = cfg.Now()
	}
	return &Gate{cfg: cfg, descStatus: prometheus.NewDesc("obsproxy_health_status",
		"1 for the current /health status (healthy, degraded, unhealthy), 0 for the others.", []string{"status"}, nil)}, nil
}

// Drain turns /health unhealthy ("draining") for good, at once: the first
// step of shutdown (spec section 7). /livez is unaffected.
func (g *Gate) Drain() { g.draining.Store(true) }

// Draining reports whether Drain was called.
func (g *Gate) Draining() bool { return g.draining.Load() }

// Report is the /health body (spec section 3).
type Report struct {
	Status string `json:"status"`
	// Detail is why the status is not healthy, from the fixed vocabulary
	// (Detail… constants); null when healthy.
	Detail        *string  `json:"detail"`
	Version       string   `json:"version"`
	UptimeSeconds float64  `json:"uptime_seconds"`
	Checks        Checks   `json:"checks"`
	Workers       []Worker `json:"workers,omitempty"`
}

// Checks are the three checks of the /health body.
type Checks struct {
	Proxy    Check         `json:"proxy"`
	Workers  WorkersCheck  `json:"workers"`
	Upstream UpstreamCheck `json:"upstream"`
}

// Check is a check's status (ok, degraded, error) and detail.
type Check struct {
	Status string  `json:"status"`
	Detail *string `json:"detail"`
}

// WorkersCheck says how many workers are up.
type WorkersCheck struct {
	Status string  `json:"status"`
	Up     int     `json:"up"`
	Total  int     `json:"total"`
	Detail *string `json:"detail"`
}

// UpstreamCheck summarises what the workers answered; LatencyMS is the
// slowest last probe, in milliseconds (null before any).
type UpstreamCheck struct {
	Status    string   `json:"status"`
	LatencyMS *float64 `json:"latency_ms"`
	Detail    *string  `json:"detail"`
}

// Worker is one worker's detail: only in the verbose public body and on
// the admin plane, since it names addresses and carries error texts.
type Worker struct {
	Name          string          `json:"name"`
	Address       string          `json:"address"`
	State         string          `json:"state"`
	Health        string          `json:"health"`
	Detail        string          `json:"detail,omitempty"`
	LatencyMS     float64         `json:"latency_ms"`
	ProbeAge      *float64        `json:"last_probe_age_seconds"`
	UptimeSeconds float64         `json:"uptime_seconds"`
	PID           int             `json:"pid,omitempty"`
	Started       uint64          `json:"started"`
	Stopped       uint64          `json:"stopped"`
	InFlight      int64           `json:"in_flight"`
	Checks        json.RawMessage `json:"checks,omitempty"`
}

// Report evaluates the pool now. The status rules, in order (spec section 3):
//
//  1. unhealthy: draining; the first probe round not finished ("starting");
//     no probe result younger than three intervals ("probes stale"); every
//     worker that answered reported unhealthy ("upstream reports
//     unhealthy"); fewer than the minimum of workers up ("no healthy
//     worker");
//  2. degraded: some worker not up ("worker down"), or some up worker
//     reporting degraded ("upstream degraded");
//  3. healthy otherwise.
//
// verbose adds the per-worker detail.
func (g *Gate) Report(verbose bool) Report {
	st := g.cfg.Pool.Status()
	now := g.cfg.Now()
	firstRound := g.cfg.Probes.FirstRoundDone()
	var answered, reportsUnhealthy int
	var degradedUp bool
	var slowest time.Duration
	var probed bool
	var freshest time.Time
	for _, w := range st.Workers {
		if w.LastProbe.IsZero() {
			continue
		}
		probed = true
		slowest = max(slowest, w.Latency)
		if w.LastProbe.After(freshest) {
			freshest = w.LastProbe
		}
		if w.Answered {
			answered++
			if w.Health == lifecycle.Unhealthy {
				reportsUnhealthy++
			}
		}
		if w.State == lifecycle.StateUp && w.Health == lifecycle.Degraded {
			degradedUp = true
		}
	}
	stale := firstRound && now.Sub(freshest) > 3*g.cfg.Probes.Interval()
	allUnhealthy := answered > 0 && reportsUnhealthy == answered

	r := Report{
		Version:       g.cfg.Version,
		UptimeSeconds: round3(now.Sub(g.cfg.Started).Seconds()),
	}
	// The checks.
	r.Checks.Proxy = Check{Status: "ok"}
	switch {
	case g.Draining():
		r.Checks.Proxy = Check{Status: "error", Detail: detail(DetailDraining)}
	case !firstRound:
		r.Checks.Proxy = Check{Status: "error", Detail: detail(DetailStarting)}
	}
	r.Checks.Workers = WorkersCheck{Status: "ok", Up: st.Up, Total: st.Total}
	switch {
	case st.Up < st.MinUp:
		r.Checks.Workers.Status, r.Checks.Workers.Detail = "error", detail(DetailNoHealthyWorker)
	case st.Up < st.Total:
		r.Checks.Workers.Status = "degraded"
	}
	r.Checks.Upstream = UpstreamCheck{Status: "ok"}
	if probed {
		ms := round3(float64(slowest) / float64(time.Millisecond))
		r.Checks.Upstream.LatencyMS = &ms
	}
	switch {
	case !probed && !firstRound:
		r.Checks.Upstream.Status, r.Checks.Upstream.Detail = "error", detail(DetailStarting)
	case stale:
		r.Checks.Upstream.Status, r.Checks.Upstream.Detail = "error", detail(DetailProbesStale)
	case answered == 0:
		r.Checks.Upstream.Status, r.Checks.Upstream.Detail = "error", detail(DetailUnreachable)
	case allUnhealthy:
		r.Checks.Upstream.Status, r.Checks.Upstream.Detail = "error", detail(DetailUpstreamUnhealthy)
	case degradedUp:
		r.Checks.Upstream.Status = "degraded"
	}
	// The verdict.
	r.Status = StatusUnhealthy
	switch {
	case g.Draining():
		r.Detail = detail(DetailDraining)
	case !firstRound:
		r.Detail = detail(DetailStarting)
	case stale:
		r.Detail = detail(DetailProbesStale)
	case allUnhealthy:
		r.Detail = detail(DetailUpstreamUnhealthy)
	case st.Up < st.MinUp:
		r.Detail = detail(DetailNoHealthyWorker)
	case st.Up < st.Total:
		r.Status, r.Detail = StatusDegraded, detail(DetailWorkerDown)
	case degradedUp:
		r.Status, r.Detail = StatusDegraded, detail(DetailUpstreamDegraded)
	default:
		r.Status = StatusHealthy
	}
	if verbose {
		r.Workers = workerDetails(st, now)
	}
	return r
}

func workerDetails(st lifecycle.PoolStatus, now time.Time) []Worker {
	out := make([]Worker, len(st.Workers))
	for i, w := range st.Workers {
		addr := w.Address
		if w.Network == "unix" {
			addr = "unix:" + addr
		}
		out[i] = Worker{
			Name: w.Name, Address: addr, State: w.State.String(), Health: w.Health.String(),
			Detail: w.Detail, LatencyMS: round3(float64(w.Latency) / float64(time.Millisecond)),
			UptimeSeconds: round3(w.Uptime.Seconds()), PID: w.PID,
			Started: w.Started, Stopped: w.Stopped, InFlight: w.InFlight, Checks: w.Checks,
		}
		if w.State != lifecycle.StateUp && w.DownReason != "" && w.Detail == "" {
			out[i].Detail = w.DownReason
		}
		if !w.LastProbe.IsZero() {
			age := round3(now.Sub(w.LastProbe).Seconds())
			out[i].ProbeAge = &age
		}
	}
	return out
}

func detail(s string) *string { return &s }

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// Code is the HTTP status for a /health status: 200 for healthy and
// degraded, 503 for unhealthy.
func Code(status string) int {
	if status == StatusUnhealthy {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// ServeHealth answers GET and HEAD of the health path with the Report as
// JSON (per-worker detail only when GateConfig.Verbose) and
// Cache-Control: no-store; 503 when unhealthy. Other methods get 405.
func (g *Gate) ServeHealth(w http.ResponseWriter, r *http.Request) {
	if !allowed(w, r) {
		return
	}
	rep := g.Report(g.cfg.Verbose)
	writeJSON(w, r, Code(rep.Status), rep)
}

// ServeLiveness answers GET and HEAD of the liveness path: 200 while the
// process serves, draining included (spec section 3). Other methods get 405.
func (g *Gate) ServeLiveness(w http.ResponseWriter, r *http.Request) {
	if !allowed(w, r) {
		return
	}
	writeJSON(w, r, http.StatusOK, struct {
		Status string `json:"status"`
	}{"ok"})
}

// Handler answers healthPath and livenessPath itself and hands every other
// request to next (the proxy).
func (g *Gate) Handler(healthPath, livenessPath string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case healthPath:
			g.ServeHealth(w, r)
		case livenessPath:
			g.ServeLiveness(w, r)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func allowed(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeJSON(w, r, http.StatusMethodNotAllowed, struct {
		Error string `json:"error"`
	}{"method not allowed"})
	return false
}

func writeJSON(w http.ResponseWriter, r *http.Request, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		code, body = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// Describe implements prometheus.Collector.
func (g *Gate) Describe(ch chan<- *prometheus.Desc) { ch <- g.descStatus }

// Collect implements prometheus.Collector: obsproxy_health_status, 1 for
// the status /health would answer now.
func (g *Gate) Collect(ch chan<- prometheus.Metric) {
	status := g.Report(false).Status
	for _, s := range []string{StatusHealthy, StatusDegraded, StatusUnhealthy} {
		v := 0.0
		if s == status {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(g.descStatus, prometheus.GaugeValue, v, s)
	}
}
