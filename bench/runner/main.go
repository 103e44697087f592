// Command runner is `make bench` (issue 6): it starts a fast upstream, a
// bare httputil.ReverseProxy, obsproxy (observability on), nginx, HAProxy
// and Caddy on loopback, loads them with wrk in interleaved rounds, and
// prints the tables that docs/performance.md reproduces. bench/run.sh
// installs the peers, builds the binaries and calls it.
//
// Everything listens on 127.0.0.1. The load generator is pinned to one CPU
// and every server to the other (taskset); ratios are taken within a round
// because the machine is shared. Every process it starts is stopped by its
// PID (and its process group) before it returns, on SIGINT/SIGTERM too.
//
// Settings (environment): ROUNDS (5), DURATION (10s), CONNS (64),
// IDLE_CONNS (5000), STUCK_DURATION (15s), STUCK_CONNS (8), BLOCK_SECONDS
// (5), STUCK_ROUNDS (1), PHASES (idle,rounds,stuck; tls and overload on
// request: overload.go runs admission control under an open-loop load, with
// its own OVERLOAD_* settings), LOAD_CPU (0), SERVER_CPU (1), VARIANT_ENV
// (unset: space-separated VAR=value pairs; when
// set, a target "obsproxy-variant" runs obsproxy with them, for an A/B of a
// runtime setting such as GOGC=400 within the same rounds). The target
// "obsproxy-supervised" is obsproxy in supervisor mode running its own copy
// of the upstream (one worker, tcp).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
)

// settings are the run's knobs, from the environment.
type settings struct {
	rounds, conns, idleConns, stuckConns, blockSeconds, stuckRounds int
	duration, warmup, stuckDuration                                 time.Duration
	variantEnv                                                      []string
	phases                                                          map[string]bool
	loadCPU, serverCPU                                              string
	nofile                                                          uint64

	obsproxy, upstream, bareproxy, benchclient string
	tmp, repo, python                          string
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 { // plain seconds
		return time.Duration(n) * time.Second
	}
	return def
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() { os.Exit(run()) }

func run() int {
	var s settings
	flag.StringVar(&s.obsproxy, "obsproxy", "bin/obsproxy", "obsproxy binary")
	flag.StringVar(&s.upstream, "upstream", "", "bench/upstream binary")
	flag.StringVar(&s.bareproxy, "bareproxy", "", "bench/bareproxy binary")
	flag.StringVar(&s.benchclient, "benchclient", "", "bench/benchclient binary")
	flag.StringVar(&s.tmp, "tmp", "", "temporary directory for configs and logs (required)")
	flag.StringVar(&s.repo, "repo", ".", "repository root (for examples/app)")
	flag.StringVar(&s.python, "python", ".venv/bin/python", "Python with uvicorn and FastAPI (the project venv of scripts/deps.sh)")
	flag.Parse()
	if s.tmp == "" || s.upstream == "" || s.bareproxy == "" || s.benchclient == "" {
		fmt.Fprintln(os.Stderr, "runner: -tmp, -upstream, -bareproxy and -benchclient are required")
		return 2
	}
	s.rounds = envInt("ROUNDS", 5)
	s.duration = envDuration("DURATION", 10*time.Second)
	s.warmup = min(2*time.Second, s.duration)
	s.conns = envInt("CONNS", 64)
	s.idleConns = envInt("IDLE_CONNS", 5000)
	s.stuckDuration = envDuration("STUCK_DURATION", 15*time.Second)
	s.stuckConns = envInt("STUCK_CONNS", 8)
	s.blockSeconds = envInt("BLOCK_SECONDS", 5)
	s.stuckRounds = envInt("STUCK_ROUNDS", 1)
	s.loadCPU = envString("LOAD_CPU", "0")
	s.serverCPU = envString("SERVER_CPU", "1")
	s.variantEnv = strings.Fields(os.Getenv("VARIANT_ENV"))
	s.phases = map[string]bool{}
	for _, p := range strings.Split(envString("PHASES", "idle,rounds,stuck"), ",") {
		s.phases[strings.TrimSpace(p)] = true
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		s.nofile = lim.Max
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "runner: %v: stopping every process it started\n", sig)
		stopAll()
		os.Exit(130)
	}()
	defer stopAll()

	b := &bench{s: s, began: time.Now()}
	if err := b.run(); err != nil {
		fmt.Fprintln(os.Stderr, "runner:", err)
		return 1
	}
	return 0
}

// --- processes -----------------------------------------------------------------------------

// proc is a process the runner started; stop ends it (and its process
// group) by PID.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

var (
	procsMu sync.Mutex
	procs   []*proc
)

// start runs args pinned to cpu, in its own process group, output to a log
// file in dir. taskset execs the command, so the PID is the server's own.
func start(dir, name, cpu string, env []string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", append([]string{"-c", cpu}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); logFile.Close(); close(p.done) }()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the process group the process leads (its PID),
// then SIGKILL after 5 s, and waits for it.
func (p *proc) stop() {
	if !p.alive() {
		return
	}
	syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// Load generators and helpers (wrk, benchclient) run in their own process
// groups; an interrupt kills the running ones by PID.
var (
	auxMu   sync.Mutex
	auxCmds = map[*exec.Cmd]bool{}
)

func startAux(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	auxMu.Lock()
	auxCmds[cmd] = true
	auxMu.Unlock()
	return nil
}

func waitAux(cmd *exec.Cmd) error {
	err := cmd.Wait()
	auxMu.Lock()
	delete(auxCmds, cmd)
	auxMu.Unlock()
	return err
}

// loadCommand returns a command for a load generator: pinned to the load
// CPU, in its own process group, and killed with that group when ctx ends.
func (b *bench) loadCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "taskset", append([]string{"-c", b.s.loadCPU, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

func runAux(cmd *exec.Cmd) error {
	if err := startAux(cmd); err != nil {
		return err
	}
	return waitAux(cmd)
}

// stopAll stops the running load generators, then every server, last
// started first.
func stopAll() {
	auxMu.Lock()
	for cmd := range auxCmds {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	auxMu.Unlock()
	procsMu.Lock()
	ps := slices.Clone(procs)
	procsMu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop()
	}
}

// freePort returns a loopback TCP port that was free a moment ago and that
// no earlier call returned (the kernel may offer a closed port again at
// once: a public and an admin port must differ).
func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !portsHandedOut[port] {
			portsHandedOut[port] = true
			return port, nil
		}
	}
	return 0, errors.New("finding a free port: the kernel kept offering ports already handed out")
}

var (
	portsMu        sync.Mutex
	portsHandedOut = map[int]bool{}
)

var probeClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// waitOK polls url until it answers 200, p exits, or 30 s pass.
func waitOK(p *proc, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := probeClient.Get(url)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		if !p.alive() {
			return fmt.Errorf("%s exited:\n%s", p.name, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s: %v\n%s", p.name, url, err, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rssKiB is the resident set of pid and its descendants (nginx's master
// and worker), in KiB, from /proc/<pid>/status.
func rssKiB(pid int) int64 {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so cut at the last ')'.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) > 1 {
			if pp, err := strconv.Atoi(f[1]); err == nil {
				children[pp] = append(children[pp], n)
			}
		}
	}
	var total int64
	var walk func(int)
	walk = func(p int) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
					n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
					total += n
				}
			}
		}
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	return total
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// --- wrk ------------------------------------------------------------------------------------

// wrkScript prints wrk's summary in one parseable line; it defines only
// done(), so wrk keeps its fast path (no Lua per request).
const wrkScript = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%.0f duration_us=%.0f p50=%.0f p95=%.0f p99=%.0f connect=%.0f read=%.0f write=%.0f status=%.0f timeout=%.0f\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
`

// result is one wrk run: throughput and latency percentiles in µs.
type result struct {
	rps           float64
	p50, p95, p99 float64
	requests      int64
	errors        int64 // socket errors and timeouts
	non2xx        int64
}

func (b *bench) wrk(url string, conns int, d time.Duration, extra ...string) (result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+45*time.Second)
	defer cancel()
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := append([]string{"-t1", "-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(secs) + "s", "--timeout", "30s", "-s", b.script}, extra...)
	cmd := b.loadCommand(ctx, "wrk", append(args, url)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := runAux(cmd)
	out := buf.Bytes()
	if err != nil {
		return result{}, fmt.Errorf("wrk %s: %v\n%s", url, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		rest, ok := strings.CutPrefix(line, "RESULT ")
		if !ok {
			continue
		}
		kv := map[string]float64{}
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(f, "=")
			kv[k], _ = strconv.ParseFloat(v, 64)
		}
		r := result{
			requests: int64(kv["requests"]), p50: kv["p50"], p95: kv["p95"], p99: kv["p99"],
			errors: int64(kv["connect"] + kv["read"] + kv["write"] + kv["timeout"]), non2xx: int64(kv["status"]),
		}
		if kv["duration_us"] > 0 {
			r.rps = kv["requests"] / (kv["duration_us"] / 1e6)
		}
		return r, nil
	}
	return result{}, fmt.Errorf("wrk %s: no RESULT line:\n%s", url, out)
}

// --- the benchmark --------------------------------------------------------------------------

type target struct {
	name string
	base string // http://127.0.0.1:port
	p    *proc
}

type bench struct {
	s       settings
	began   time.Time
	script  string
	targets []*target
	loads   []string
	out     strings.Builder
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%5.0fs] %s\n", time.Since(b.began).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) printf(format string, args ...any) { fmt.Fprintf(&b.out, format, args...) }

func (b *bench) run() error {
	b.script = filepath.Join(b.s.tmp, "summary.lua")
	if err := os.WriteFile(b.script, []byte(wrkScript), 0o644); err != nil {
		return err
	}
	b.logf("load average at start: %s; settings: ROUNDS=%d DURATION=%s CONNS=%d IDLE_CONNS=%d PHASES=%v, wrk on CPU %s, servers on CPU %s, nofile %d",
		loadavg(), b.s.rounds, b.s.duration, b.s.conns, b.s.idleConns, keys(b.s.phases), b.s.loadCPU, b.s.serverCPU, b.s.nofile)
	b.loads = append(b.loads, loadavg())
	b.printf("## obsproxy benchmark, %s\n\n%s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine())
	if b.s.phases["idle"] || b.s.phases["rounds"] {
		if err := b.startThroughputTargets(); err != nil {
			return err
		}
		if b.s.phases["idle"] {
			b.idlePhase()
		}
		if b.s.phases["rounds"] {
			if err := b.rounds(); err != nil {
				return err
			}
		}
		for _, t := range b.targets {
			if t.p != nil {
				t.p.stop()
			}
		}
	}
	if b.s.phases["tls"] {
		if err := b.tlsPhase(); err != nil {
			b.logf("TLS phase failed: %v", err)
			b.printf("\nTLS phase failed: %v\n", err)
		}
	}
	if b.s.phases["stuck"] {
		if err := b.stuckPhase(); err != nil {
			b.logf("stuck-worker test failed: %v", err)
			b.printf("\nstuck-worker test failed: %v\n", err)
		}
	}
	if b.s.phases["overload"] {
		if err := b.overloadPhase(); err != nil {
			b.logf("overload test failed: %v", err)
			b.printf("\noverload test failed: %v\n", err)
		}
	}
	b.loads = append(b.loads, loadavg())
	b.printf("\nLoad average (1/5/15 min) seen at start, at each round and at the end: %s\n", strings.Join(b.loads, " | "))
	b.printf("Wall time: %s\n", time.Since(b.began).Round(time.Second))
	fmt.Print(b.out.String())
	return nil
}

// machine describes the host and the peers' versions for the report.
func machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	version := func(name string, args ...string) string {
		out, _ := exec.Command(name, args...).CombinedOutput()
		return firstLine(strings.TrimSpace(string(out)))
	}
	return fmt.Sprintf("Machine: %d CPUs (%s), kernel %s, %s.\nPeers: %s; %s; caddy %s; %s.\n",
		runtime.NumCPU(), model, strings.TrimSpace(string(kernel)), runtime.Version(),
		version("nginx", "-v"), version("haproxy", "-v"), version("caddy", "version"), version("wrk", "-v"))
}

func keys(m map[string]bool) []string {
	var ks []string
	for k, v := range m {
		if v {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

// startThroughputTargets starts the upstream and every proxy in front of
// it. A peer that cannot start (not installed) is left out with a note.
func (b *bench) startThroughputTargets() error {
	dir := b.s.tmp
	up, err := freePort()
	if err != nil {
		return err
	}
	h2c, err := freePort()
	if err != nil {
		return err
	}
	upstream := fmt.Sprintf("127.0.0.1:%d", up)
	p, err := start(dir, "upstream", b.s.serverCPU, nil, b.s.upstream, "-addr", upstream, "-h2c-addr", fmt.Sprintf("127.0.0.1:%d", h2c))
	if err != nil {
		return err
	}
	direct := &target{name: "direct", base: "http://" + upstream, p: p}
	if err := waitOK(p, direct.base+"/small"); err != nil {
		return err
	}
	b.targets = append(b.targets, direct)

	type starter func(port int) (*proc, error)
	starters := []struct {
		name string
		fn   starter
	}{
		{"bare", func(port int) (*proc, error) {
			return start(dir, "bare", b.s.serverCPU, nil, b.s.bareproxy, "-listen", fmt.Sprintf("127.0.0.1:%d", port), "-upstream", "http://"+upstream)
		}},
		{"obsproxy", func(port int) (*proc, error) {
			return b.startObsproxy("obsproxy", port, "w1=http://"+upstream, "least_inflight")
		}},
		{"obsproxy-h2c", func(port int) (*proc, error) {
			return b.startObsproxy("obsproxy-h2c", port, fmt.Sprintf("w1=h2c://127.0.0.1:%d", h2c), "least_inflight")
		}},
		{"obsproxy-supervised", func(port int) (*proc, error) {
			return b.startSupervisedObsproxy("obsproxy-supervised", port)
		}},
		{"obsproxy-variant", func(port int) (*proc, error) {
			if len(b.s.variantEnv) == 0 {
				return nil, errNotRequested
			}
			return b.startObsproxy("obsproxy-variant", port, "w1=http://"+upstream, "least_inflight", b.s.variantEnv...)
		}},
		{"nginx", func(port int) (*proc, error) { return b.startNginx("nginx", port, []string{upstream}) }},
		{"haproxy", func(port int) (*proc, error) {
			return b.startHAProxy("haproxy", port, []string{upstream}, "roundrobin", false)
		}},
		{"caddy", func(port int) (*proc, error) { return b.startCaddy("caddy", port, upstream) }},
	}
	for _, st := range starters {
		port, err := freePort()
		if err != nil {
			return err
		}
		p, err := st.fn(port)
		if errors.Is(err, errNotRequested) {
			continue
		}
		t := &target{name: st.name, base: fmt.Sprintf("http://127.0.0.1:%d", port), p: p}
		if err == nil {
			err = waitOK(p, t.base+"/small")
		}
		if err != nil {
			b.logf("leaving out %s: %v", st.name, err)
			b.printf("note: %s left out: %v\n", st.name, firstLine(err.Error()))
			if p != nil {
				p.stop()
			}
			continue
		}
		b.targets = append(b.targets, t)
	}
	b.logf("targets: %s", strings.Join(targetNames(b.targets), ", "))
	return nil
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

func targetNames(ts []*target) []string {
	var n []string
	for _, t := range ts {
		n = append(n, t.name)
	}
	return n
}

func (b *bench) target(name string) *target {
	for _, t := range b.targets {
		if t.name == name {
			return t
		}
	}
	return nil
}

// startObsproxy runs bin/obsproxy with every observability feature on: the
// admin listener (/metrics, dashboard sampler), probes of every worker's
// /health, request ids and X-Forwarded-*; no access log (as for the peers).
// errNotRequested leaves out a target the settings did not ask for.
var errNotRequested = errors.New("not requested")

func (b *bench) startObsproxy(name string, port int, upstreams, policy string, extraEnv ...string) (*proc, error) {
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	return start(b.s.tmp, name, b.s.serverCPU, append([]string{
		fmt.Sprintf("OBSPROXY_LISTEN_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("OBSPROXY_ADMIN_ADDR=127.0.0.1:%d", admin),
		"OBSPROXY_UPSTREAMS=" + upstreams,
		"OBSPROXY_LB_POLICY=" + policy,
		"OBSPROXY_LOG_LEVEL=warn",
		"OBSPROXY_LOG_FORMAT=text",
	}, extraEnv...), b.s.obsproxy)
}

// startSupervisedObsproxy runs bin/obsproxy in supervisor mode (issue 13)
// with one worker: the bench upstream on a 127.0.0.1 port of its own, so
// that the row compares with "obsproxy" (static mode, the shared upstream).
func (b *bench) startSupervisedObsproxy(name string, port int) (*proc, error) {
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	return start(b.s.tmp, name, b.s.serverCPU, []string{
		fmt.Sprintf("OBSPROXY_LISTEN_ADDR=127.0.0.1:%d", port),
		fmt.Sprintf("OBSPROXY_ADMIN_ADDR=127.0.0.1:%d", admin),
		"OBSPROXY_WORKERS=1",
		"OBSPROXY_WORKER_TRANSPORT=tcp",
		"OBSPROXY_LOG_LEVEL=warn",
		"OBSPROXY_LOG_FORMAT=text",
	}, b.s.obsproxy, "--", b.s.upstream, "-addr", "127.0.0.1:{port}")
}

func (b *bench) startNginx(name string, port int, upstreams []string) (*proc, error) {
	return b.startNginxWith(name, port, upstreams, nginxOptions{})
}

// nginxOptions are what differs between the phases' nginx configurations.
type nginxOptions struct {
	tls *tlsFiles // terminate TLS with these files (HTTP/2 and HTTP/1.1 by ALPN); nil: plain HTTP/1.1
}

// startNginxWith writes the one nginx configuration of the benchmark (one
// worker process, keep-alive to the upstreams, the X-Forwarded-* headers
// obsproxy sets) with o's variations, and starts nginx on it.
func (b *bench) startNginxWith(name string, port int, upstreams []string, o nginxOptions) (*proc, error) {
	dir := filepath.Join(b.s.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // workers run as the user that started the benchmark
	}
	var servers strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&servers, "    server %s;\n", u)
	}
	listen, httpExtra := fmt.Sprintf("listen 127.0.0.1:%d;", port), ""
	if o.tls != nil {
		listen = fmt.Sprintf("listen 127.0.0.1:%d ssl http2;\n    ssl_certificate %s;\n    ssl_certificate_key %s;\n    ssl_protocols TLSv1.2 TLSv1.3;",
			port, o.tls.cert, o.tls.key)
		httpExtra = "  http2_max_requests 1000000;\n"
	}
	nofile := min(b.s.nofile, 65536)
	conf := fmt.Sprintf(`# written by bench/runner
%s
worker_processes 1;
daemon off;
master_process on;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
worker_rlimit_nofile %[3]d;
events { worker_connections %[4]d; }
http {
  access_log off;
  client_body_temp_path %[2]s/body;
  proxy_temp_path %[2]s/proxy;
  fastcgi_temp_path %[2]s/fastcgi;
  uwsgi_temp_path %[2]s/uwsgi;
  scgi_temp_path %[2]s/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
%[7]s  upstream workers {
%[5]s    keepalive 256;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
  }
  server {
    %[6]s
    location / {
      proxy_pass http://workers;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`, user, dir, nofile, nofile/2, servers.String(), listen, httpExtra)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return start(b.s.tmp, name, b.s.serverCPU, nil, "nginx", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
}

func (b *bench) startHAProxy(name string, port int, upstreams []string, balance string, checks bool) (*proc, error) {
	return b.startHAProxyWith(name, port, upstreams, haproxyOptions{balance: balance, checks: checks})
}

// haproxyOptions are what the phases set differently in HAProxy's
// configuration.
type haproxyOptions struct {
	balance string // roundrobin, leastconn
	// checks runs the same probe as obsproxy's: GET /health every 2 s, 1 s
	// timeout, one failure takes the worker out, one success back.
	checks bool
	// maxconn, when > 0, caps each server's requests in flight, and
	// queueTimeout bounds the wait in HAProxy's queue (its admission
	// control, the overload phase).
	maxconn      int
	queueTimeout time.Duration
}

// startHAProxyWith writes HAProxy's configuration for o and runs it.
func (b *bench) startHAProxyWith(name string, port int, upstreams []string, o haproxyOptions) (*proc, error) {
	dir := filepath.Join(b.s.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	global := min(10000, (int(min(b.s.nofile, 65536))-200)/2)
	var servers strings.Builder
	server := ""
	if o.checks {
		servers.WriteString("  option httpchk\n  http-check send meth GET uri /health\n")
		server = " check inter 2s fall 1 rise 1"
	}
	if o.maxconn > 0 {
		server = fmt.Sprintf(" maxconn %d%s", o.maxconn, server)
	}
	for i, u := range upstreams {
		fmt.Fprintf(&servers, "  server w%d %s%s\n", i+1, u, server)
	}
	queue := ""
	if o.queueTimeout > 0 {
		queue = fmt.Sprintf("  timeout queue %dms\n", o.queueTimeout.Milliseconds())
	}
	conf := fmt.Sprintf(`# written by bench/runner
global
  nbthread 1
  maxconn %[1]d
  pidfile %[2]s/haproxy.pid
defaults
  mode http
  maxconn %[1]d
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  timeout check 1s
%[6]s  option http-keep-alive
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:%[3]d
  default_backend workers
backend workers
  balance %[4]s
%[5]s`, global, dir, port, o.balance, servers.String(), queue)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return start(b.s.tmp, name, b.s.serverCPU, nil, "haproxy", "-db", "-f", path)
}

func (b *bench) startCaddy(name string, port int, upstream string) (*proc, error) {
	dir := filepath.Join(b.s.tmp, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`{
  "admin": {"disabled": true, "config": {"persist": false}},
  "logging": {"logs": {"default": {"level": "ERROR"}}},
  "apps": {"http": {"servers": {"bench": {
    "listen": ["127.0.0.1:%d"],
    "automatic_https": {"disable": true},
    "routes": [{"handle": [{
      "handler": "reverse_proxy",
      "transport": {"protocol": "http", "keep_alive": {"enabled": true, "max_idle_conns": 1024, "max_idle_conns_per_host": 1024, "idle_timeout": "120s"}},
      "upstreams": [{"dial": %q}]
    }]}]
  }}}}
}
`, port, upstream)
	path := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	return start(b.s.tmp, name, b.s.serverCPU, env, "caddy", "run", "--config", path)
}

// --- idle connections -----------------------------------------------------------------------

type idleResult struct {
	name          string
	before, after int64 // KiB
	ok, failed    int
	perConnKiB    float64
	err           error
}

// idlePhase measures each server's resident memory before and after
// IDLE_CONNS keep-alive connections that did one request each and idle.
func (b *bench) idlePhase() {
	var rows []idleResult
	for _, t := range b.targets {
		if t.name == "obsproxy-h2c" || t.name == "obsproxy-supervised" {
			continue // the supervised target's RSS would include its upstream
		}
		r := b.idleOne(t)
		if r.err != nil {
			b.logf("idle %s: %v", t.name, r.err)
		} else {
			b.logf("idle %s: %d KiB -> %d KiB over %d connections (%d failed): %.2f KiB each", t.name, r.before, r.after, r.ok, r.failed, r.perConnKiB)
		}
		rows = append(rows, r)
	}
	b.printf("\n### Idle keep-alive connections: RSS per connection (%d connections, one request each, then idle)\n\n", b.s.idleConns)
	tw := tabwriter.NewWriter(&b.out, 0, 0, 2, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| target\t RSS before (KiB)\t RSS after (KiB)\t connections held\t KiB per connection\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t")
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(tw, "| %s\t error: %s\t\t\t\t\n", r.name, firstLine(r.err.Error()))
			continue
		}
		fmt.Fprintf(tw, "| %s\t %d\t %d\t %d (%d failed)\t %.2f\t\n", r.name, r.before, r.after, r.ok, r.failed, r.perConnKiB)
	}
	tw.Flush()
	fixTable(&b.out)
}

func (b *bench) idleOne(t *target) idleResult {
	r := idleResult{name: t.name}
	time.Sleep(time.Second)
	r.before = rssKiB(t.p.pid())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := b.loadCommand(ctx, b.s.benchclient, "idle", "-url", t.base+"/small",
		"-n", strconv.Itoa(b.s.idleConns), "-hold", "2m")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		r.err = err
		return r
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.err = err
		return r
	}
	cmd.Stderr = os.Stderr
	if err := startAux(cmd); err != nil {
		r.err = err
		return r
	}
	defer func() { stdin.Close(); waitAux(cmd); time.Sleep(time.Second) }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		r.err = fmt.Errorf("benchclient: %v", err)
		return r
	}
	if _, err := fmt.Sscanf(line, "ready %d %d", &r.ok, &r.failed); err != nil || r.ok == 0 {
		r.err = fmt.Errorf("benchclient said %q", strings.TrimSpace(line))
		return r
	}
	time.Sleep(2 * time.Second)
	r.after = rssKiB(t.p.pid())
	r.perConnKiB = float64(r.after-r.before) / float64(r.ok)
	return r
}

// --- interleaved rounds ---------------------------------------------------------------------

type workload struct {
	name  string
	path  string
	conns int
}

func (b *bench) rounds() error {
	workloads := []workload{
		{fmt.Sprintf("c=%d, 100-byte body", b.s.conns), "/small", b.s.conns},
		{fmt.Sprintf("c=%d, 16 KiB body", b.s.conns), "/large", b.s.conns},
		{"c=1, 100-byte body", "/small", 1},
	}
	// results[workload][target][round]
	results := make([]map[string][]result, len(workloads))
	for i := range results {
		results[i] = map[string][]result{}
	}
	b.logf("warm-up: %s per target", b.s.warmup)
	for _, t := range b.targets {
		if _, err := b.wrk(t.base+"/small", b.s.conns, b.s.warmup); err != nil {
			return err
		}
	}
	for round := 1; round <= b.s.rounds; round++ {
		la := loadavg()
		b.loads = append(b.loads, la)
		b.logf("round %d/%d (load average %s)", round, b.s.rounds, la)
		for wi, w := range workloads {
			for _, t := range b.targets {
				r, err := b.wrk(t.base+w.path, w.conns, b.s.duration)
				if err != nil {
					return err
				}
				flag := ""
				if r.errors > 0 || r.non2xx > 0 {
					flag = fmt.Sprintf("  (!) %d socket errors, %d non-2xx", r.errors, r.non2xx)
				}
				b.logf("  %-22s %-13s %9.0f req/s  p50 %7.0f µs  p99 %7.0f µs%s", w.name, t.name, r.rps, r.p50, r.p99, flag)
				results[wi][t.name] = append(results[wi][t.name], r)
			}
		}
	}
	b.reportRounds(workloads, results)
	b.checkObservability()
	return nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// spread formats a median and the range of v.
func spread(v []float64, format string) string {
	if len(v) == 0 {
		return "–"
	}
	return fmt.Sprintf(format+" ["+format+"–"+format+"]", median(v), slices.Min(v), slices.Max(v))
}

// ratios returns a[i]/b[i] for every round.
func ratios(a, b []result) []float64 {
	var out []float64
	for i := range min(len(a), len(b)) {
		if b[i].rps > 0 {
			out = append(out, a[i].rps/b[i].rps)
		}
	}
	return out
}

func (b *bench) reportRounds(workloads []workload, results []map[string][]result) {
	peers := []string{"bare", "nginx", "haproxy", "caddy"}
	for wi, w := range workloads[:2] {
		res := results[wi]
		b.printf("\n### Throughput, %s (%d rounds × %s, interleaved)\n\n", w.name, b.s.rounds, b.s.duration)
		tw := tabwriter.NewWriter(&b.out, 0, 0, 2, ' ', tabwriter.Debug)
		fmt.Fprintln(tw, "| target\t ÷ direct, median [min–max]\t req/s, median [min–max]\t p99 ms, median\t errors\t")
		fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t")
		for _, t := range b.targets {
			rs := res[t.name]
			var rps, p99 []float64
			var errs int64
			for _, r := range rs {
				rps, p99 = append(rps, r.rps), append(p99, r.p99/1000)
				errs += r.errors + r.non2xx
			}
			fmt.Fprintf(tw, "| %s\t %s\t %s\t %.2f\t %d\t\n", t.name, spread(ratios(rs, res["direct"]), "%.3f"), spread(rps, "%.0f"), median(p99), errs)
		}
		tw.Flush()
		fixTable(&b.out)
		b.printf("\nobsproxy ÷ peer, same round:\n\n")
		tw = tabwriter.NewWriter(&b.out, 0, 0, 2, ' ', tabwriter.Debug)
		fmt.Fprintln(tw, "| ratio\t median [min–max]\t")
		fmt.Fprintln(tw, "|---\t---\t")
		for _, p := range peers {
			if res[p] == nil {
				continue
			}
			fmt.Fprintf(tw, "| obsproxy ÷ %s\t %s\t\n", p, spread(ratios(res["obsproxy"], res[p]), "%.3f"))
		}
		if res["obsproxy-h2c"] != nil {
			fmt.Fprintf(tw, "| obsproxy h2c upstream ÷ obsproxy HTTP/1.1 upstream\t %s\t\n", spread(ratios(res["obsproxy-h2c"], res["obsproxy"]), "%.3f"))
		}
		if res["obsproxy-supervised"] != nil {
			fmt.Fprintf(tw, "| obsproxy supervising its upstream ÷ obsproxy static\t %s\t\n", spread(ratios(res["obsproxy-supervised"], res["obsproxy"]), "%.3f"))
		}
		if res["obsproxy-variant"] != nil {
			fmt.Fprintf(tw, "| obsproxy with %s ÷ obsproxy\t %s\t\n", strings.Join(b.s.variantEnv, " "), spread(ratios(res["obsproxy-variant"], res["obsproxy"]), "%.3f"))
		}
		tw.Flush()
		fixTable(&b.out)
	}

	res := results[2]
	b.printf("\n### Latency at concurrency 1 (wrk -c1 -t1, 100-byte body, %d rounds × %s)\n\n", b.s.rounds, b.s.duration)
	tw := tabwriter.NewWriter(&b.out, 0, 0, 2, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| target\t p50 µs, median [min–max]\t added p50 over direct, ms, median [min–max]\t added − bare's added, ms, median [min–max]\t req/s median\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t")
	added := func(name string) []float64 {
		var out []float64
		for i := range min(len(res[name]), len(res["direct"])) {
			out = append(out, (res[name][i].p50-res["direct"][i].p50)/1000)
		}
		return out
	}
	bareAdded := added("bare")
	for _, t := range b.targets {
		var p50, rps []float64
		for _, r := range res[t.name] {
			p50, rps = append(p50, r.p50), append(rps, r.rps)
		}
		a := added(t.name)
		var vsBare []float64
		for i := range min(len(a), len(bareAdded)) {
			vsBare = append(vsBare, a[i]-bareAdded[i])
		}
		fmt.Fprintf(tw, "| %s\t %s\t %s\t %s\t %.0f\t\n", t.name, spread(p50, "%.0f"), spread(a, "%.3f"), spread(vsBare, "%+.3f"), median(rps))
	}
	tw.Flush()
	fixTable(&b.out)
}

// fixTable turns tabwriter's Debug bars ("|" between cells) into a
// Markdown table: each line ends with "|" already.
func fixTable(sb *strings.Builder) {
	s := sb.String()
	i := strings.LastIndex(strings.TrimRight(s, "\n"), "\n\n")
	if i < 0 {
		return
	}
	head, table := s[:i+2], s[i+2:]
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		l = strings.TrimRight(l, " ")
		if strings.HasPrefix(l, "|---") || strings.HasPrefix(l, "|-") {
			n := strings.Count(l, "|")
			l = "|" + strings.Repeat("---|", n-1)
		}
		lines = append(lines, l)
	}
	sb.Reset()
	sb.WriteString(head + strings.Join(lines, "\n") + "\n")
}

// checkObservability scrapes obsproxy's admin /metrics after the rounds
// and reports how many requests it counted: proof that observability was on.
func (b *bench) checkObservability() {
	t := b.target("obsproxy")
	if t == nil {
		return
	}
	b.printf("\nobsproxy's own count after the rounds: %s\n", b.countedRequests(t.p))
}

func (b *bench) countedRequests(p *proc) string {
	env := p.cmd.Env
	admin := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "OBSPROXY_ADMIN_ADDR="); ok {
			admin = v
		}
	}
	res, err := probeClient.Get("http://" + admin + "/metrics")
	if err != nil {
		return "scrape failed: " + err.Error()
	}
	defer res.Body.Close()
	var total float64
	series := 0
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "obsproxy_requests_total{") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
		if !strings.HasPrefix(line, "#") {
			series++
		}
	}
	return fmt.Sprintf("obsproxy_requests_total = %.0f (%d series in the scrape)", total, series)
}

// --- stuck worker ---------------------------------------------------------------------------

// stuckResult is one benchclient load run: raw latencies of every request.
type stuckResult struct {
	rps                    float64
	p50, p95, p99, max     float64 // µs
	requests, errors, slow int64
}

// load runs benchclient load (a closed loop, raw percentiles) against url.
func (b *bench) load(url string) (stuckResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.s.stuckDuration+90*time.Second)
	defer cancel()
	cmd := b.loadCommand(ctx, b.s.benchclient, "load", "-url", url,
		"-c", strconv.Itoa(b.s.stuckConns), "-duration", b.s.stuckDuration.String(), "-timeout", "60s")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := runAux(cmd)
	out := buf.Bytes()
	if err != nil {
		return stuckResult{}, fmt.Errorf("benchclient load %s: %v\n%s", url, err, out)
	}
	kv := map[string]float64{}
	for _, f := range strings.Fields(strings.TrimPrefix(strings.TrimSpace(string(out)), "load ")) {
		k, v, _ := strings.Cut(f, "=")
		kv[k], _ = strconv.ParseFloat(v, 64)
	}
	return stuckResult{rps: kv["rps"], p50: kv["p50_us"], p95: kv["p95_us"], p99: kv["p99_us"], max: kv["max_us"],
		requests: int64(kv["requests"]), errors: int64(kv["errors"]), slow: int64(kv["slow"])}, nil
}

// stuckPhase runs three real uvicorn workers of examples/app and compares
// fast requests' latency through obsproxy (least_inflight, probes), nginx
// (round-robin) and HAProxy (leastconn, the same active checks as
// obsproxy's probes), with no worker blocked and with w1 kept blocked by
// back-to-back GET /block?seconds=N sent to it directly (a synchronous
// sleep in an async handler: its event loop stops). "onset": the block
// starts 0.5 s before the fast load, so requests already on their way to
// w1 are caught; "steady": the block started 4 s earlier (probe interval
// plus timeout plus 1 s) with no fast traffic meanwhile.
func (b *bench) stuckPhase() error {
	dir := b.s.tmp
	var workers []string
	for i := 1; i <= 3; i++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		name := fmt.Sprintf("uvicorn-w%d", i)
		p, err := start(dir, name, b.s.serverCPU, []string{"WORKER_NAME=" + name}, b.s.python, "-m", "uvicorn", "app:app",
			"--app-dir", filepath.Join(b.s.repo, "examples/app"), "--host", "127.0.0.1", "--port", strconv.Itoa(port),
			"--log-level", "warning", "--no-access-log")
		if err != nil {
			return err
		}
		defer p.stop()
		if err := waitOK(p, "http://"+addr+"/health"); err != nil {
			return err
		}
		workers = append(workers, addr)
	}
	first := workers[0]
	var ups []string
	for i, w := range workers {
		ups = append(ups, fmt.Sprintf("w%d=http://%s", i+1, w))
	}
	type peer struct {
		name, label string
		startFn     func(port int) (*proc, error)
	}
	peers := []peer{
		{"obsproxy", "obsproxy least_inflight", func(port int) (*proc, error) {
			return b.startObsproxy("stuck-obsproxy", port, strings.Join(ups, ","), "least_inflight")
		}},
		{"nginx", "nginx round-robin", func(port int) (*proc, error) { return b.startNginx("stuck-nginx", port, workers) }},
		{"haproxy", "HAProxy leastconn + checks", func(port int) (*proc, error) {
			return b.startHAProxy("stuck-haproxy", port, workers, "leastconn", true)
		}},
	}
	scenarios := []struct {
		name string
		lead time.Duration // blocker start before the load; 0: no blocker
	}{{"free", 0}, {"onset", 500 * time.Millisecond}, {"steady", 4 * time.Second}}
	type row struct {
		label, scenario string
		r               []stuckResult
		err             error
	}
	var rows []row
	for _, pe := range peers {
		port, err := freePort()
		if err != nil {
			return err
		}
		p, err := pe.startFn(port)
		url := fmt.Sprintf("http://127.0.0.1:%d/", port)
		if err == nil {
			err = waitOK(p, url)
		}
		if err != nil {
			b.logf("stuck: leaving out %s: %v", pe.name, err)
			rows = append(rows, row{label: pe.label, scenario: "all", err: err})
			if p != nil {
				p.stop()
			}
			continue
		}
		time.Sleep(3 * time.Second) // every worker probed up (obsproxy, HAProxy)
		peerRows := make([]row, len(scenarios))
		for round := 0; round < b.s.stuckRounds; round++ {
			for i, sc := range scenarios {
				peerRows[i].label, peerRows[i].scenario = pe.label, sc.name
				var r stuckResult
				var err error
				if sc.lead == 0 {
					r, err = b.load(url)
				} else {
					r, err = b.withBlockedWorker(first, sc.lead, func() (stuckResult, error) { return b.load(url) })
					// w1 has finished its blocks: let the probes see it up again.
					time.Sleep(3500 * time.Millisecond)
				}
				if err != nil {
					peerRows[i].err = err
					b.logf("stuck %s %s: %v", pe.label, sc.name, err)
					continue
				}
				b.logf("stuck %-28s %-6s %6.0f req/s p50 %7.1f ms p95 %7.1f ms p99 %7.1f ms max %7.0f ms, %d over 1 s, %d errors",
					pe.label, sc.name, r.rps, r.p50/1000, r.p95/1000, r.p99/1000, r.max/1000, r.slow, r.errors)
				peerRows[i].r = append(peerRows[i].r, r)
			}
		}
		if pe.name == "obsproxy" {
			b.printf("\nstuck-worker obsproxy's own count: %s\n", b.countedRequests(p))
		}
		p.stop()
		rows = append(rows, peerRows...)
	}
	b.printf("\n### Stuck worker: 3 uvicorn workers of examples/app, fast GET / at c=%d for %s (%d round(s)); w1 kept blocked by GET /block?seconds=%d sent to it directly, 2 at a time\n\n",
		b.s.stuckConns, b.s.stuckDuration, b.s.stuckRounds, b.s.blockSeconds)
	b.printf("free: no worker blocked. onset: the block starts 0.5 s before the load. steady: the block started 4 s before the load.\n")
	b.printf("Latencies are every request's own (benchclient load, closed loop, no coordinated-omission correction), medians over rounds.\n\n")
	tw := tabwriter.NewWriter(&b.out, 0, 0, 2, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| proxy\t w1\t req/s\t p50 ms\t p95 ms\t p99 ms\t max ms\t requests over 1 s\t errors\t p95 ÷ same proxy free\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	free := map[string]float64{}
	for _, r := range rows {
		if r.scenario == "free" && len(r.r) > 0 {
			free[r.label] = medianOfStuck(r.r, func(x stuckResult) float64 { return x.p95 })
		}
	}
	for _, r := range rows {
		if len(r.r) == 0 {
			msg := "no result"
			if r.err != nil {
				msg = firstLine(r.err.Error())
			}
			fmt.Fprintf(tw, "| %s\t %s\t %s\t\t\t\t\t\t\t\t\n", r.label, r.scenario, msg)
			continue
		}
		var slow, errs int64
		for _, x := range r.r {
			slow, errs = slow+x.slow, errs+x.errors
		}
		m := func(f func(stuckResult) float64) float64 { return medianOfStuck(r.r, f) }
		p95 := m(func(x stuckResult) float64 { return x.p95 })
		fmt.Fprintf(tw, "| %s\t %s\t %.0f\t %.1f\t %.1f\t %.1f\t %.0f\t %d\t %d\t %.2f×\t\n", r.label, r.scenario,
			m(func(x stuckResult) float64 { return x.rps }), m(func(x stuckResult) float64 { return x.p50 })/1000, p95/1000,
			m(func(x stuckResult) float64 { return x.p99 })/1000, m(func(x stuckResult) float64 { return x.max })/1000,
			slow, errs, p95/free[r.label])
	}
	tw.Flush()
	fixTable(&b.out)
	return nil
}

func medianOfStuck(rs []stuckResult, f func(stuckResult) float64) float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, f(r))
	}
	return median(v)
}

// withBlockedWorker keeps the worker at addr blocked from lead before fn
// runs until fn has run: two GET /block requests in flight, back to back,
// sent to it directly. It returns once the blocker has finished (w1 has
// answered every block).
func (b *bench) withBlockedWorker(addr string, lead time.Duration, fn func() (stuckResult, error)) (stuckResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lead+b.s.stuckDuration+time.Duration(3*b.s.blockSeconds)*time.Second+60*time.Second)
	defer cancel()
	cmd := b.loadCommand(ctx, b.s.benchclient, "block",
		"-url", fmt.Sprintf("http://%s/block?seconds=%d", addr, b.s.blockSeconds),
		"-concurrency", "2", "-duration", (lead + b.s.stuckDuration + time.Second).String())
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := startAux(cmd); err != nil {
		return stuckResult{}, err
	}
	time.Sleep(lead)
	r, err := fn()
	werr := waitAux(cmd)
	if werr != nil && err == nil {
		err = fmt.Errorf("blocker: %v: %s", werr, out.String())
	}
	b.logf("  blocker: %s", strings.TrimSpace(out.String()))
	return r, err
}
