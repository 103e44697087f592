// Package workermetrics brings the workers' own Prometheus metrics into
// obsproxy's exposition (spec section 9): on each gather it fetches
// OBSPROXY_WORKER_METRICS_PATH from every worker of the pool in parallel,
// adds a `worker` label to every series and merges the families with
// obsproxy's own, so that an application keeps prometheus_client's ordinary
// single-process registry instead of PROMETHEUS_MULTIPROC_DIR.
//
// Nothing is cached between gathers and no value is summed: each worker's
// series stay its own, so a worker's restart is a counter reset in its own
// series, which rate() handles.
package workermetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/obsproxy/obsproxy/lifecycle"
)

const (
	// DefaultTimeout is the per-fetch timeout when Config.Timeout is zero
	// (OBSPROXY_WORKER_METRICS_TIMEOUT's default, spec section 2).
	DefaultTimeout = 2 * time.Second
	// DefaultMaxBytes is the body limit when Config.MaxBytes is zero
	// (OBSPROXY_WORKER_METRICS_MAX_BYTES's default, 8 MiB).
	DefaultMaxBytes = 8 << 20
	// DefaultMaxSeries is the per-worker series limit when Config.MaxSeries
	// is zero: 20,000 sample lines, ten times what a large Python service
	// exposes. Like Prometheus' sample_limit it counts sample lines, so a
	// histogram with 10 buckets counts 12 (buckets with +Inf, _sum, _count).
	// It bounds the memory one worker can make obsproxy spend on a parse.
	DefaultMaxSeries = 20000
)

// Dialer opens a connection to worker w, within ctx. It is the only way
// the package reaches a worker: cmd/obsproxy wires it to the worker's
// current network and address (which supervisor mode changes on every
// restart).
type Dialer func(ctx context.Context, w *lifecycle.Worker) (net.Conn, error)

// Config configures a Gatherer. Zero values mean the documented defaults.
type Config struct {
	// Base is obsproxy's own registry; its families come first, so their
	// HELP and TYPE win (spec section 9). Required.
	Base prometheus.Gatherer
	// Pool holds the workers fetched from, in pool order. Required.
	Pool *lifecycle.Pool
	// Dial connects to a worker. Required.
	Dial Dialer
	// Path is fetched from every worker (OBSPROXY_WORKER_METRICS_PATH); it
	// must start with "/". Required.
	Path string
	// Timeout bounds each fetch, dialling included
	// (OBSPROXY_WORKER_METRICS_TIMEOUT); zero means DefaultTimeout. A
	// caller's context with an earlier deadline (the scraper's timeout)
	// shortens it.
	Timeout time.Duration
	// MaxBytes is the most a worker's body may have after decompression
	// (OBSPROXY_WORKER_METRICS_MAX_BYTES), in bytes; zero means
	// DefaultMaxBytes.
	MaxBytes int64
	// MaxSeries is the most sample lines a worker's body may have; zero
	// means DefaultMaxSeries.
	MaxSeries int
	// UserAgent is sent with every fetch; empty means "obsproxy".
	UserAgent string
	// Logger receives fetch failures (debug each, warn when a worker's
	// metrics go down, info when they come back); nil means slog.Default().
	Logger *slog.Logger
}

// Gatherer is a prometheus.Gatherer that serves Config.Base merged with the
// workers' own metrics, fetched anew on every gather, and the metrics of
// spec section 9 about those fetches. It is safe for concurrent use:
// concurrent gathers fetch independently and the "last fetch" values are
// whichever finished last.
type Gatherer struct {
	cfg     Config
	workers []*workerState
}

// workerState is one worker's fetch client and the counters behind the
// metrics of spec section 9.
type workerState struct {
	w      *lifecycle.Worker
	client *http.Client
	// stats is guarded by mu; a gather updates it once per fetch.
	mu    sync.Mutex
	stats stats
}

// stats is one worker's fetch record.
type stats struct {
	fetched  bool // a fetch has finished (up is meaningful)
	up       bool
	duration time.Duration
	errors   [numReasons]uint64
}

// New returns a Gatherer for cfg. It fails when a required field is
// missing or a limit is negative.
func New(cfg Config) (*Gatherer, error) {
	switch {
	case cfg.Base == nil || cfg.Pool == nil || cfg.Dial == nil:
		return nil, errors.New("creating worker metrics gatherer: base, pool and dial are required")
	case !strings.HasPrefix(cfg.Path, "/"):
		return nil, fmt.Errorf("creating worker metrics gatherer: path %q does not start with /", cfg.Path)
	case cfg.Timeout < 0 || cfg.MaxBytes < 0 || cfg.MaxSeries < 0:
		return nil, errors.New("creating worker metrics gatherer: negative timeout or limit")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxSeries == 0 {
		cfg.MaxSeries = DefaultMaxSeries
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "obsproxy"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Gatherer{cfg: cfg}
	for _, w := range cfg.Pool.Workers() {
		g.workers = append(g.workers, &workerState{w: w, client: newClient(w, cfg.Dial)})
	}
	return g, nil
}

// Gather implements prometheus.Gatherer: GatherContext without a deadline
// of its own (each fetch is still bounded by Config.Timeout).
func (g *Gatherer) Gather() ([]*dto.MetricFamily, error) {
	return g.GatherContext(context.Background())
}

// GatherContext fetches every worker's metrics in parallel within ctx and
// Config.Timeout, gathers Config.Base meanwhile, and returns the merged
// families sorted by name (spec section 9). A worker that fails
// contributes no series and is counted; the returned error is Base's only,
// so obsproxy's own metrics are always served. ctx is usually the scrape
// request's, with the scraper's timeout as deadline.
func (g *Gatherer) GatherContext(ctx context.Context) ([]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	results := make([]fetchResult, len(g.workers))
	var wg sync.WaitGroup
	for i, ws := range g.workers {
		wg.Go(func() { results[i] = g.fetch(ctx, ws) })
	}
	base, err := g.cfg.Base.Gather()
	wg.Wait()

	m := newMerger(base, len(g.workers))
	for i, ws := range g.workers {
		r := &results[i]
		if r.reason == reasonNone {
			r.conflicts = m.add(r.families)
		}
		g.record(ws, r)
	}
	m.addOwn(g.ownFamilies())
	return m.result(), err
}

// record updates ws's stats with one fetch result and logs a change of
// its metrics' state.
func (g *Gatherer) record(ws *workerState, r *fetchResult) {
	ws.mu.Lock()
	wasUp, fetched := ws.stats.up, ws.stats.fetched
	ws.stats.fetched = true
	ws.stats.up = r.reason == reasonNone
	ws.stats.duration = r.duration
	if r.reason != reasonNone {
		ws.stats.errors[r.reason]++
	}
	ws.stats.errors[reasonConflict] += uint64(r.conflicts)
	ws.mu.Unlock()

	log := g.cfg.Logger
	if r.reason != reasonNone {
		args := []any{"worker", ws.w.Name, "reason", r.reason.String(), "err", r.err}
		if wasUp || !fetched {
			log.Warn("worker metrics fetch failed", args...)
		} else {
			log.Debug("worker metrics fetch failed", args...)
		}
		return
	}
	if fetched && !wasUp {
		log.Info("worker metrics fetch succeeds again", "worker", ws.w.Name)
	}
	if r.conflicts > 0 {
		log.Debug("worker metric families dropped: TYPE differs", "worker", ws.w.Name, "families", r.conflicts)
	}
}

// MetricsUp reports whether the last metrics fetch from the worker at
// index i (lifecycle.Worker.Index) succeeded; known is false before its
// first fetch and for an index outside the pool. It is what the
// dashboard's worker row shows.
func (g *Gatherer) MetricsUp(i int) (up, known bool) {
	if i < 0 || i >= len(g.workers) {
		return false, false
	}
	ws := g.workers[i]
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.stats.up, ws.stats.fetched
}

// Close closes the idle connections kept to the workers for the next
// fetch. A gather after Close still works (it dials anew); call it once
// nothing gathers any more, on shutdown.
func (g *Gatherer) Close() {
	if g == nil {
		return
	}
	for _, ws := range g.workers {
		ws.client.CloseIdleConnections()
	}
}
