package supervisor

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Figures is one worker's process figures at one moment, for the admin
// plane (Supervisor.Snapshot).
type Figures struct {
	// Worker is the worker's name.
	Worker string
	// PID is the process taking the worker's new requests; 0 while none runs.
	PID int
	// HasProc is true where the process figures exist (Linux) and one
	// sample of the current process was taken.
	HasProc bool
	// RSSBytes is the resident memory of the process and its descendants.
	RSSBytes uint64
	// CPUSeconds is user + system CPU of every process the worker has had
	// (and their descendants), a counter.
	CPUSeconds float64
	// CPUPercent is the current process tree's CPU use between the last
	// two samples, in percent of one core.
	CPUPercent float64
	// Exits counts the worker's ended processes; LastExitReason is the last
	// one's lifecycle reason ("exit code 1", "killed by SIGKILL"), empty
	// before any.
	Exits          uint64
	LastExitReason string
	// Backoff is the delay before the next start while the worker waits to
	// be restarted; 0 while a process runs.
	Backoff time.Duration
	// StartingPID is a replacement process starting beside PID (spec
	// section 8); 0 when none. DrainingPIDs are replaced processes that
	// finish what they hold before they stop; nil when none.
	StartingPID  int
	DrainingPIDs []int
}

// Snapshot returns every worker's figures, in pool order. Safe for
// concurrent use.
func (s *Supervisor) Snapshot() []Figures {
	out := make([]Figures, len(s.slots))
	for i, sl := range s.slots {
		sl.mu.Lock()
		f := Figures{Worker: sl.w.Name, LastExitReason: sl.lastReason, Backoff: sl.backoffNow,
			RSSBytes: sl.rss, CPUSeconds: sl.cpuSeconds(), CPUPercent: sl.cpuPct,
			HasProc: procFigures && !sl.sampledAt.IsZero()}
		if sl.proc != nil {
			f.PID = sl.proc.pid
		}
		for _, o := range sl.old {
			if o.ep == nil {
				f.StartingPID = o.pid // never published: a replacement starting
			} else {
				f.DrainingPIDs = append(f.DrainingPIDs, o.pid)
			}
		}
		for _, n := range sl.exits {
			f.Exits += n
		}
		sl.mu.Unlock()
		out[i] = f
	}
	return out
}

// metrics are the supervisor-mode metrics of spec section 8, read at
// scrape time.
type metrics struct {
	s                                   *Supervisor
	pid, rss, cpu, exits, back, reloads *prometheus.Desc
}

func newMetrics(s *Supervisor) *metrics {
	w := []string{"worker"}
	return &metrics{
		s:   s,
		pid: prometheus.NewDesc("obsproxy_worker_pid", "The process that takes the worker's new requests; 0 while none runs.", w, nil),
		rss: prometheus.NewDesc("obsproxy_worker_resident_memory_bytes",
			"Resident memory of the worker's process and its descendants, in bytes (sampled every OBSPROXY_SAMPLE_INTERVAL).", w, nil),
		cpu: prometheus.NewDesc("obsproxy_worker_cpu_seconds_total",
			"User and system CPU of the worker's processes and their descendants, in seconds.", w, nil),
		exits: prometheus.NewDesc("obsproxy_worker_exits_total",
			"Worker processes that ended, by reason (crash, exited, start_timeout, stuck, max_requests, max_rss, max_lifetime, reload, shutdown).",
			[]string{"worker", "reason"}, nil),
		back: prometheus.NewDesc("obsproxy_worker_backoff_seconds",
			"The delay chosen before the next start of a failing worker, in seconds; 0 while a process runs.", w, nil),
		reloads: prometheus.NewDesc("obsproxy_reloads_total",
			"Rolling restarts of the workers (SIGHUP, POST /admin/api/workers/restart), by result (success, failure).",
			[]string{"result"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (s *Supervisor) Describe(ch chan<- *prometheus.Desc) {
	m := s.metrics
	ch <- m.pid
	if procFigures {
		ch <- m.rss
		ch <- m.cpu
	}
	ch <- m.exits
	ch <- m.back
	ch <- m.reloads
}

// Collect implements prometheus.Collector: the supervisor-mode metrics of
// spec section 8. The memory and CPU metrics exist only where /proc does
// (Linux).
func (s *Supervisor) Collect(ch chan<- prometheus.Metric) {
	m := s.metrics
	for _, sl := range s.slots {
		sl.mu.Lock()
		pid := 0
		if sl.proc != nil {
			pid = sl.proc.pid
		}
		rss, cpu, back := float64(sl.rss), sl.cpuSeconds(), sl.backoffNow.Seconds()
		var exits [9]float64
		for i, r := range exitReasons {
			exits[i] = float64(sl.exits[r])
		}
		sl.mu.Unlock()
		name := sl.w.Name
		ch <- prometheus.MustNewConstMetric(m.pid, prometheus.GaugeValue, float64(pid), name)
		if procFigures {
			ch <- prometheus.MustNewConstMetric(m.rss, prometheus.GaugeValue, rss, name)
			ch <- prometheus.MustNewConstMetric(m.cpu, prometheus.CounterValue, cpu, name)
		}
		for i, r := range exitReasons {
			ch <- prometheus.MustNewConstMetric(m.exits, prometheus.CounterValue, exits[i], name, r)
		}
		ch <- prometheus.MustNewConstMetric(m.back, prometheus.GaugeValue, back, name)
	}
	ch <- prometheus.MustNewConstMetric(m.reloads, prometheus.CounterValue, float64(s.reloads[0].Load()), "success")
	ch <- prometheus.MustNewConstMetric(m.reloads, prometheus.CounterValue, float64(s.reloads[1].Load()), "failure")
}
