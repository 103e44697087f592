package admin

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// Diag is the /diag body (spec section 5, after seed 000): a small,
// non-sensitive picture of the process and the machine for troubleshooting
// without a shell. It never carries environment variables, tokens, worker
// addresses, host names or request data. Values that the platform does not
// offer (the /proc ones off Linux) are null.
type Diag struct {
	// Status is "ok" whenever /diag answers.
	Status    string    `json:"status"`
	Timestamp time.Time `json:"timestamp"`
	// UptimeSeconds is how long obsproxy has run.
	UptimeSeconds float64     `json:"uptime_seconds"`
	Process       DiagProcess `json:"process"`
	System        DiagSystem  `json:"system"`
	Queue         DiagQueue   `json:"queue"`
	Runtime       DiagRuntime `json:"runtime"`
}

// DiagProcess describes obsproxy's own process.
type DiagProcess struct {
	PID int `json:"pid"`
	// MemoryRSSBytes is the resident set size (/proc/self/status VmRSS).
	MemoryRSSBytes *uint64 `json:"memory_rss_bytes"`
	// CPUUserSeconds and CPUSystemSeconds are the CPU time used so far
	// (getrusage(2)).
	CPUUserSeconds   *float64 `json:"cpu_user_seconds"`
	CPUSystemSeconds *float64 `json:"cpu_system_seconds"`
	// OpenFDs counts /proc/self/fd.
	OpenFDs    *int `json:"open_fds"`
	Goroutines int  `json:"goroutines"`
	// Threads is the OS thread count (/proc/self/status Threads).
	Threads *int `json:"threads"`
}

// DiagSystem describes the machine (or container) obsproxy runs on.
type DiagSystem struct {
	CPUCount int `json:"cpu_count"`
	// LoadAverage is the 1, 5 and 15 minute load (/proc/loadavg).
	LoadAverage []float64 `json:"load_average"`
	// MemoryTotalBytes and MemoryAvailableBytes come from /proc/meminfo
	// (MemTotal, MemAvailable).
	MemoryTotalBytes     *uint64 `json:"memory_total_bytes"`
	MemoryAvailableBytes *uint64 `json:"memory_available_bytes"`
}

// DiagQueue is the work obsproxy holds now.
type DiagQueue struct {
	// InFlight is ordinary requests in flight to workers (streams
	// excluded); Streams the open WebSockets and event streams.
	InFlight          int64 `json:"in_flight"`
	ActiveConnections int64 `json:"active_connections"`
	Streams           int64 `json:"streams"`
	WorkersUp         int   `json:"workers_up"`
	WorkersTotal      int   `json:"workers_total"`
	// QueueDepth is the requests waiting in the admission queue for a
	// worker below its cap (obsproxy_queue_depth; always 0 without a cap),
	// MaxInFlight the cap per worker (0: none).
	QueueDepth  int64 `json:"queue_depth"`
	MaxInFlight int   `json:"max_in_flight"`
}

// DiagRuntime describes the Go runtime.
type DiagRuntime struct {
	GoVersion  string `json:"go_version"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// GCCycles counts completed GC cycles; HeapBytes is the memory held by
	// live and not yet swept heap objects.
	GCCycles  uint64 `json:"gc_cycles"`
	HeapBytes uint64 `json:"heap_bytes"`
}

// diag reads the process, the system and the sources now.
func (s *Sources) diag(now time.Time) Diag {
	d := Diag{Status: "ok", Timestamp: now.UTC(), UptimeSeconds: round3(now.Sub(s.Started).Seconds())}

	d.Process.PID = os.Getpid()
	d.Process.Goroutines = runtime.NumGoroutine()
	status := procFields("/proc/self/status")
	if kb, ok := status["VmRSS"]; ok {
		b := kb * 1024
		d.Process.MemoryRSSBytes = &b
	}
	if n, ok := status["Threads"]; ok {
		t := int(n)
		d.Process.Threads = &t
	}
	if entries, err := os.ReadDir("/proc/self/fd"); err == nil {
		n := len(entries)
		d.Process.OpenFDs = &n
	}
	d.Process.CPUUserSeconds, d.Process.CPUSystemSeconds = cpuTimes()

	d.System.CPUCount = runtime.NumCPU()
	d.System.LoadAverage = loadAverage()
	mem := procFields("/proc/meminfo")
	if kb, ok := mem["MemTotal"]; ok {
		b := kb * 1024
		d.System.MemoryTotalBytes = &b
	}
	if kb, ok := mem["MemAvailable"]; ok {
		b := kb * 1024
		d.System.MemoryAvailableBytes = &b
	}

	workers, _ := s.Proxy.Snapshot()
	for _, w := range workers {
		d.Queue.InFlight += w.InFlight
		d.Queue.Streams += w.Streams
	}
	d.Queue.ActiveConnections = s.Conns.Active()
	st := s.Pool.Status()
	d.Queue.WorkersUp, d.Queue.WorkersTotal = st.Up, st.Total
	if s.Queue != nil {
		d.Queue.QueueDepth, d.Queue.MaxInFlight = s.Queue.Depth(), s.Queue.MaxInFlight()
	}

	d.Runtime.GoVersion = runtime.Version()
	d.Runtime.GOMAXPROCS = runtime.GOMAXPROCS(0)
	samples := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(samples)
	if samples[0].Value.Kind() == metrics.KindUint64 {
		d.Runtime.GCCycles = samples[0].Value.Uint64()
	}
	if samples[1].Value.Kind() == metrics.KindUint64 {
		d.Runtime.HeapBytes = samples[1].Value.Uint64()
	}
	return d
}

// procFields reads a /proc file of "Name: value [kB]" lines (status,
// meminfo) into name → number; an absent file gives an empty map.
func procFields(path string) map[string]uint64 {
	out := map[string]uint64{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseUint(fields[0], 10, 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// loadAverage reads the 1, 5 and 15 minute load from /proc/loadavg; nil
// when it cannot.
func loadAverage() []float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return nil
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return nil
	}
	out := make([]float64, 3)
	for i := range out {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return nil
		}
		out[i] = v
	}
	return out
}
