package admin

import (
	"time"
)

// Snapshot is the body of GET /admin/api/observability and of every event
// of its SSE stream (spec section 5): the state behind the dashboard at one
// moment. Durations are seconds, latencies milliseconds; counters count
// since obsproxy started. It may name worker addresses and error texts, so
// it is served on the admin plane only.
type Snapshot struct {
	Timestamp time.Time `json:"timestamp"`
	Version   string    `json:"version"`
	// UptimeSeconds is how long obsproxy has run.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// SampleIntervalSeconds is OBSPROXY_SAMPLE_INTERVAL: the SSE period
	// and the history's step.
	SampleIntervalSeconds float64         `json:"sample_interval_seconds"`
	Health                HealthView      `json:"health"`
	Pool                  PoolView        `json:"pool"`
	Connections           ConnectionsView `json:"connections"`
	Requests              RequestsView    `json:"requests"`
	Queue                 QueueView       `json:"queue"`
	Workers               []WorkerView    `json:"workers"`
	Events                []EventView     `json:"events"`
	History               []Point         `json:"history,omitempty"`
	// TLS is the public listener's certificates and handshake failures
	// (spec section 11); null when the listener is plain.
	TLS *TLSView `json:"tls"`
	// Supervised is true in supervisor mode (spec section 8: obsproxy
	// runs the workers, Sources.Processes is set), false in static mode.
	// The dashboard shows its "Restart workers" button only when true.
	Supervised bool `json:"supervised"`
}

// HealthView is the public /health verdict (spec section 3) as the
// dashboard shows it.
type HealthView struct {
	// Status is healthy, degraded or unhealthy.
	Status string `json:"status"`
	// Detail is why it is not healthy (healthgate's vocabulary); null
	// when healthy.
	Detail *string `json:"detail"`
	// Draining is true once shutdown began.
	Draining bool `json:"draining"`
}

// PoolView is the pool as a whole.
type PoolView struct {
	// Policy is the balancing policy (least_inflight, round_robin).
	Policy string `json:"policy"`
	Up     int    `json:"up"`
	Total  int    `json:"total"`
	// MinUp is OBSPROXY_MIN_HEALTHY_WORKERS.
	MinUp int `json:"min_up"`
	// UptimeSeconds is obsproxy_pool_uptime_seconds: how long the pool has
	// had at least MinUp workers up without a break.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// States counts workers per state (up, down, unknown, draining).
	States map[string]int `json:"states"`
	// RSSBytes is the resident memory of every worker process and their
	// descendants, summed; null in static mode or without /proc.
	RSSBytes *uint64 `json:"rss_bytes"`
}

// ConnectionsView counts client connections on the public listener.
type ConnectionsView struct {
	// Active is every open client connection, upgraded ones included
	// (obsproxy_active_connections).
	Active int64 `json:"active"`
	// ByState counts open connections by http.ConnState: new, active (a
	// request in progress), idle and hijacked (obsproxy_connections).
	ByState map[string]int64 `json:"by_state"`
	// AcceptedTotal counts connections accepted since start
	// (obsproxy_connections_accepted_total).
	AcceptedTotal uint64 `json:"accepted_total"`
	// RequestsByProtocol counts client requests by protocol: HTTP/1.0,
	// HTTP/1.1, HTTP/2.0 (obsproxy_client_requests_total).
	RequestsByProtocol map[string]uint64 `json:"requests_by_protocol"`
}

// RequestsView sums the proxied requests over the pool.
type RequestsView struct {
	// Total is every finished request, "none" (no worker could take it)
	// included.
	Total uint64 `json:"total"`
	// PerSecond is finished requests per second over the last sample
	// period of this reader (the sampler's for the JSON snapshot, the
	// stream's own for SSE); null before there are two readings.
	PerSecond *float64 `json:"per_second"`
	InFlight  int64    `json:"in_flight"`
	Streams   int64    `json:"streams"`
	// ErrorsTotal counts failed upstream exchanges; RetriesTotal requests
	// retried away from a worker; NoWorkerTotal requests answered 503
	// because no worker could take them.
	ErrorsTotal   uint64 `json:"errors_total"`
	RetriesTotal  uint64 `json:"retries_total"`
	NoWorkerTotal uint64 `json:"no_worker_total"`
	// LatencyP50MS and LatencyP95MS estimate the request duration
	// quantiles over the same period as PerSecond, from the duration
	// histogram's buckets (as histogram_quantile would); null when no
	// request finished in it.
	LatencyP50MS *float64 `json:"latency_p50_ms"`
	LatencyP95MS *float64 `json:"latency_p95_ms"`
}

// WorkerView is one row of the per-worker table.
type WorkerView struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// State is up, down, unknown or draining (traffic state).
	State string `json:"state"`
	// Health is the last probe's verdict: unknown, healthy, degraded or
	// unhealthy.
	Health string `json:"health"`
	// Detail is the last probe's detail (an error text or the worker's
	// own status); DownReason why the worker left traffic.
	Detail     string `json:"detail,omitempty"`
	DownReason string `json:"down_reason,omitempty"`
	// Running is true while the worker's process is known to run.
	Running  bool  `json:"running"`
	InFlight int64 `json:"in_flight"`
	// OldestInFlightSeconds is the age of the oldest request in flight
	// (the stuck-worker signal); 0 when none.
	OldestInFlightSeconds float64 `json:"oldest_in_flight_seconds"`
	Requests              uint64  `json:"requests"`
	// RequestsPerSecond is over the same period as RequestsView.PerSecond;
	// null before there are two readings.
	RequestsPerSecond *float64 `json:"requests_per_second"`
	Errors            uint64   `json:"errors"`
	Retries           uint64   `json:"retries"`
	Streams           int64    `json:"streams"`
	// UptimeSeconds is obsproxy_worker_uptime_seconds; Started and
	// Stopped its lifecycle counters; PID the last reported process id
	// (omitted when unknown).
	UptimeSeconds float64 `json:"uptime_seconds"`
	Started       uint64  `json:"started"`
	Stopped       uint64  `json:"stopped"`
	PID           int     `json:"pid,omitempty"`
	// LastProbeLatencyMS and LastProbeAgeSeconds describe the last probe;
	// null before the first.
	LastProbeLatencyMS  *float64 `json:"last_probe_latency_ms"`
	LastProbeAgeSeconds *float64 `json:"last_probe_age_seconds"`
	// MetricsUp is whether the last fetch of the worker's own metrics
	// succeeded (obsproxy_worker_metrics_up, spec section 9); null while
	// OBSPROXY_WORKER_METRICS_PATH is unset and before the first fetch
	// (fetches happen only when /metrics is scraped or pushed).
	MetricsUp *bool `json:"metrics_up"`
	// CapUsage is the share of the worker's in-flight cap in use, 0 to 1
	// (admission control's slots over OBSPROXY_WORKER_MAX_IN_FLIGHT);
	// null without a cap.
	CapUsage *float64 `json:"cap_usage"`
	// The process fields of supervisor mode (spec section 8), null in
	// static mode; rss_bytes, cpu_seconds and cpu_percent also without
	// /proc or before the first sample. RSSBytes is the resident memory
	// of the process and its descendants, CPUSeconds their CPU so far
	// (all the worker's processes), CPUPercent the current process's
	// share of one core over the last sample, Exits the ended processes,
	// LastExitReason the last one's reason ("exit code 1", "killed by
	// SIGKILL"; null before any), BackoffSeconds the delay before the
	// next start (0 while a process runs), StartingPID a replacement
	// process starting beside the current one (rolling restart,
	// recycling; null when none), DrainingPIDs the replaced processes
	// still finishing their requests and streams (empty when none).
	RSSBytes       *uint64  `json:"rss_bytes"`
	CPUSeconds     *float64 `json:"cpu_seconds"`
	CPUPercent     *float64 `json:"cpu_percent"`
	Exits          *uint64  `json:"exits"`
	LastExitReason *string  `json:"last_exit_reason"`
	BackoffSeconds *float64 `json:"backoff_seconds"`
	StartingPID    *int     `json:"starting_pid"`
	DrainingPIDs   []int    `json:"draining_pids"`
}

// EventView is one lifecycle event (lifecycle.Event).
type EventView struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Worker string    `json:"worker"`
	Kind   string    `json:"kind"`
	Reason string    `json:"reason"`
}

// Point is one step of the rolling charts' history: t is the Unix time in
// milliseconds; the rest as in RequestsView and ConnectionsView.
type Point struct {
	T            int64    `json:"t"`
	PerSecond    *float64 `json:"per_second"`
	InFlight     int64    `json:"in_flight"`
	Connections  int64    `json:"connections"`
	Streams      int64    `json:"streams"`
	WorkersUp    int      `json:"workers_up"`
	LatencyP50MS *float64 `json:"latency_p50_ms"`
	LatencyP95MS *float64 `json:"latency_p95_ms"`
	// QueueDepth is the requests waiting for a worker below its cap.
	QueueDepth int64 `json:"queue_depth"`
}

// maxEvents is how many of the newest lifecycle events a Snapshot carries.
const maxEvents = 100

// snapshot renders r with its rates rt.
func (s *Sources) snapshot(r reading, rt rates, interval time.Duration) Snapshot {
	total, errs, retries, inFlight, streams := r.totals()
	snap := Snapshot{
		Timestamp:             r.at.UTC(),
		Version:               s.Version,
		UptimeSeconds:         round3(r.at.Sub(s.Started).Seconds()),
		SampleIntervalSeconds: interval.Seconds(),
		Health: HealthView{
			Status: r.health.Status, Detail: r.health.Detail, Draining: s.Gate.Draining(),
		},
		Pool: PoolView{
			Policy: s.Pool.Policy().String(), Up: r.pool.Up, Total: r.pool.Total, MinUp: r.pool.MinUp,
			UptimeSeconds: round3(r.pool.Uptime.Seconds()), States: map[string]int{},
		},
		Connections: ConnectionsView{
			Active: r.active, AcceptedTotal: r.accept,
			ByState: map[string]int64{"new": r.conns[0], "active": r.conns[1], "idle": r.conns[2], "hijacked": r.conns[3]},
		},
		Requests: RequestsView{
			Total: total, InFlight: inFlight, Streams: streams,
			ErrorsTotal: errs, RetriesTotal: retries, NoWorkerTotal: r.none.Requests,
			LatencyP50MS: rt.p50, LatencyP95MS: rt.p95,
		},
		Queue:   r.queue.view(),
		Workers: make([]WorkerView, len(r.pool.Workers)),
		Events:  make([]EventView, 0, min(len(r.events), maxEvents)),
		TLS:     s.tlsView(r.at),
	}
	snap.Supervised = s.Processes != nil
	h10, h11, h2 := s.Conns.Requests()
	snap.Connections.RequestsByProtocol = map[string]uint64{"HTTP/1.0": h10, "HTTP/1.1": h11, "HTTP/2.0": h2}
	if rt.valid {
		v := round3(rt.perSecond)
		snap.Requests.PerSecond = &v
	}
	for _, st := range []string{"up", "down", "unknown", "draining"} {
		snap.Pool.States[st] = 0
	}
	for i, ws := range r.pool.Workers {
		row := WorkerView{
			Name: ws.Name, Address: ws.Address, State: ws.State.String(), Health: ws.Health.String(),
			Detail: ws.Detail, DownReason: ws.DownReason, Running: ws.Running,
			UptimeSeconds: round3(ws.Uptime.Seconds()), Started: ws.Started, Stopped: ws.Stopped, PID: ws.PID,
			CapUsage: r.queue.capUsage(i),
		}
		if ws.Network == "unix" {
			row.Address = "unix:" + ws.Address
		}
		snap.Pool.States[row.State]++
		if i < len(r.workers) {
			pw := r.workers[i]
			row.InFlight, row.Requests, row.Errors, row.Retries, row.Streams = pw.InFlight, pw.Requests, pw.Errors, pw.Retries, pw.Streams
			row.OldestInFlightSeconds = round3(pw.OldestInFlight.Seconds())
		}
		if rt.valid && i < len(rt.perWorker) {
			v := round3(rt.perWorker[i])
			row.RequestsPerSecond = &v
		}
		if !ws.LastProbe.IsZero() {
			ms := round3(float64(ws.Latency) / float64(time.Millisecond))
			age := round3(max(0, r.at.Sub(ws.LastProbe).Seconds()))
			row.LastProbeLatencyMS, row.LastProbeAgeSeconds = &ms, &age
		}
		if s.WorkerMetrics != nil {
			if up, known := s.WorkerMetrics.MetricsUp(i); known {
				row.MetricsUp = &up
			}
		}
		if i < len(r.procs) {
			addProcess(&row, &snap.Pool, r.procs[i])
		}
		snap.Workers[i] = row
	}
	// Newest first: the event log reads top down.
	for i := len(r.events) - 1; i >= 0 && len(snap.Events) < maxEvents; i-- {
		e := r.events[i]
		snap.Events = append(snap.Events, EventView{Seq: e.Seq, Time: e.Time.UTC(), Worker: e.Worker, Kind: e.Kind, Reason: e.Reason})
	}
	return snap
}

// point is the history step for r with its rates rt.
func point(r reading, rt rates) Point {
	_, _, _, inFlight, streams := r.totals()
	p := Point{
		T: r.at.UnixMilli(), InFlight: inFlight, Connections: r.active, Streams: streams, WorkersUp: r.pool.Up,
		LatencyP50MS: rt.p50, LatencyP95MS: rt.p95, QueueDepth: r.queue.depth,
	}
	if rt.valid {
		v := round3(rt.perSecond)
		p.PerSecond = &v
	}
	return p
}

// addProcess fills row's supervisor-mode fields from f and adds its memory
// to the pool's total.
func addProcess(row *WorkerView, pool *PoolView, f ProcessFigures) {
	row.PID = f.PID
	exits, backoff := f.Exits, round3(f.Backoff.Seconds())
	row.Exits, row.BackoffSeconds = &exits, &backoff
	if f.LastExitReason != "" {
		reason := f.LastExitReason
		row.LastExitReason = &reason
	}
	if f.StartingPID != 0 {
		pid := f.StartingPID
		row.StartingPID = &pid
	}
	row.DrainingPIDs = append([]int{}, f.DrainingPIDs...)
	if f.HasFigures && f.PID != 0 {
		rss, cpu, pct := f.RSSBytes, round3(f.CPUSeconds), round3(f.CPUPercent)
		row.RSSBytes, row.CPUSeconds, row.CPUPercent = &rss, &cpu, &pct
		if pool.RSSBytes == nil {
			pool.RSSBytes = new(uint64)
		}
		*pool.RSSBytes += rss
	}
}
