package admin

import (
	"time"

	"github.com/obsproxy/obsproxy/admission"
	"github.com/obsproxy/obsproxy/connstate"
	"github.com/obsproxy/obsproxy/healthgate"
	"github.com/obsproxy/obsproxy/lifecycle"
	"github.com/obsproxy/obsproxy/proxy"
)

// Sources are the running parts the admin plane reads. Every field is
// required for the dashboard and /diag; they are read through their own
// concurrency-safe accessors, never while writing to a client.
type Sources struct {
	Pool  *lifecycle.Pool
	Proxy *proxy.Handler
	Conns *connstate.Tracker
	Gate  *healthgate.Gate
	// Queue is admission control (spec section 10); nil shows no cap.
	Queue *admission.Queue
	// Started is when obsproxy started; Version its version string.
	Started time.Time
	Version string
	// WorkerMetrics reports the workers' own metrics fetches (spec
	// section 9); nil while OBSPROXY_WORKER_METRICS_PATH is unset.
	WorkerMetrics WorkerMetricsSource
	// TLS is the public listener's TLS; nil when it is plain.
	TLS TLSSource
	// Processes, in supervisor mode (spec section 8), returns every
	// worker's process figures in pool order; nil in static mode, where
	// the process fields of the JSON are null. It must be safe for
	// concurrent use.
	Processes func() []ProcessFigures
	// RestartWorkers, in supervisor mode, starts a rolling restart of
	// every worker's process in the background (spec section 8) and
	// returns true, or returns false, starting nothing, while one is
	// already running. It is called only by POST
	// /admin/api/workers/restart after the admin access rules and the
	// cross-site check passed, and must return at once and be safe for
	// concurrent use. nil (static mode, or a supervisor without the
	// restart) makes that route answer 404.
	RestartWorkers func() bool
}

// WorkerMetricsSource reports whether the last fetch of a worker's own
// metrics succeeded (workermetrics.Gatherer implements it). MetricsUp
// takes the worker's pool index and returns known false before the
// worker's first fetch; it must be safe for concurrent use.
type WorkerMetricsSource interface {
	MetricsUp(worker int) (up, known bool)
}

// ProcessFigures is one supervised worker's process, as the supervisor
// samples it (package supervisor; cmd/obsproxy adapts its Snapshot).
type ProcessFigures struct {
	// PID is the process taking the worker's new requests; 0 while none runs.
	PID int
	// HasFigures is true where memory and CPU are sampled (Linux /proc)
	// and a sample of the current process exists.
	HasFigures bool
	// RSSBytes is resident memory of the process and its descendants.
	RSSBytes uint64
	// CPUSeconds is user + system CPU of all the worker's processes so
	// far; CPUPercent the current one's use of a core over the last sample.
	CPUSeconds, CPUPercent float64
	// Exits counts ended processes; LastExitReason is the last one's
	// ("exit code 1", "killed by SIGKILL"), empty before any.
	Exits          uint64
	LastExitReason string
	// Backoff is the delay before the next start; 0 while a process runs.
	Backoff time.Duration
	// StartingPID is a replacement starting beside PID, 0 when none;
	// DrainingPIDs the replaced processes still finishing their requests.
	StartingPID  int
	DrainingPIDs []int
}

// reading is everything the admin plane shows, copied at one moment: the
// raw counters from which a Snapshot and its rates are computed.
type reading struct {
	at      time.Time
	health  healthgate.Report
	pool    lifecycle.PoolStatus
	workers []proxy.WorkerSnapshot
	none    proxy.WorkerSnapshot
	bounds  []float64
	latency []uint64 // cumulative, +Inf last (proxy.Handler.Latency)
	events  []lifecycle.Event
	procs   []ProcessFigures // nil in static mode
	conns   [4]int64         // new, active, idle, hijacked
	active  int64
	accept  uint64
	queue   queueReading
}

// read copies the sources' state. Each source holds its own lock only
// while copying.
func (s *Sources) read(now time.Time) reading {
	r := reading{at: now}
	r.health = s.Gate.Report(false)
	r.pool = s.Pool.Status()
	r.workers, r.none = s.Proxy.Snapshot()
	r.bounds, r.latency = s.Proxy.Latency()
	r.events = s.Pool.Events()
	if s.Processes != nil {
		r.procs = s.Processes()
	}
	r.conns[0], r.conns[1], r.conns[2], r.conns[3] = s.Conns.Counts()
	r.active = s.Conns.Active()
	r.accept = s.Conns.Accepted()
	r.queue = readQueue(s.Queue, len(r.pool.Workers), now)
	return r
}

// totals returns the finished requests over all workers and "none", and
// the in-flight requests and open streams.
func (r *reading) totals() (requests, errors, retries uint64, inFlight, streams int64) {
	requests, errors, retries = r.none.Requests, r.none.Errors, r.none.Retries
	for _, w := range r.workers {
		requests += w.Requests
		errors += w.Errors
		retries += w.Retries
		inFlight += w.InFlight
		streams += w.Streams
	}
	return requests, errors, retries, inFlight, streams
}

// rates are what a Snapshot shows per second or per window, computed from
// two readings.
type rates struct {
	valid     bool      // false for the first reading of a series
	perSecond float64   // finished requests per second, pool-wide
	perWorker []float64 // per worker, pool order
	p50, p95  *float64  // latency quantiles in ms; nil when no request finished
}

// rater computes rates between consecutive readings of one series (the
// sampler's, or one SSE stream's), so that readers never share state.
type rater struct {
	prev    reading
	hasPrev bool
}

// next returns the rates from the previous reading to r and keeps r.
func (rt *rater) next(r reading) rates {
	defer func() { rt.prev, rt.hasPrev = r, true }()
	if !rt.hasPrev {
		return rates{}
	}
	return between(rt.prev, r)
}

// between computes the rates from a to b, b being the later reading.
func between(a, b reading) rates {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return rates{}
	}
	out := rates{valid: true}
	ta, _, _, _, _ := a.totals()
	tb, _, _, _, _ := b.totals()
	out.perSecond = float64(sub(tb, ta)) / secs
	out.perWorker = make([]float64, len(b.workers))
	for i := range b.workers {
		if i < len(a.workers) {
			out.perWorker[i] = float64(sub(b.workers[i].Requests, a.workers[i].Requests)) / secs
		}
	}
	if len(a.latency) == len(b.latency) && len(b.latency) > 0 {
		delta := make([]uint64, len(b.latency))
		for i := range delta {
			delta[i] = sub(b.latency[i], a.latency[i])
		}
		if v, ok := Quantile(0.50, b.bounds, delta); ok {
			ms := round3(v * 1000)
			out.p50 = &ms
		}
		if v, ok := Quantile(0.95, b.bounds, delta); ok {
			ms := round3(v * 1000)
			out.p95 = &ms
		}
	}
	return out
}

// sub is b-a for counters, 0 if the counter went backwards.
func sub(b, a uint64) uint64 {
	if b < a {
		return 0
	}
	return b - a
}

// Quantile estimates the q-quantile (0 ≤ q ≤ 1) of a histogram the way
// Prometheus' histogram_quantile does: counts are cumulative per upper
// bound, counts[len(bounds)] being the +Inf bucket (the total); the value is
// interpolated linearly inside the bucket that holds the rank, the first
// bucket starting at 0. A rank in the +Inf bucket returns the highest
// finite bound. ok is false when the histogram is empty or malformed.
func Quantile(q float64, bounds []float64, counts []uint64) (v float64, ok bool) {
	if len(counts) != len(bounds)+1 || len(bounds) == 0 || q < 0 || q > 1 {
		return 0, false
	}
	total := counts[len(bounds)]
	if total == 0 {
		return 0, false
	}
	rank := q * float64(total)
	for i, upper := range bounds {
		c := float64(counts[i])
		if c < rank || counts[i] == 0 {
			continue
		}
		lower, below := 0.0, 0.0
		if i > 0 {
			lower, below = bounds[i-1], float64(counts[i-1])
		}
		if c == below {
			return upper, true
		}
		return lower + (upper-lower)*(rank-below)/(c-below), true
	}
	return bounds[len(bounds)-1], true
}

func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }
