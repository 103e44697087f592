package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The overload phase (PHASES=overload, issue 16): three real uvicorn
// workers of examples/app's GET /burn?ms=5 (about 5 ms of CPU each), and an
// open-loop load (benchclient open: constant arrivals) at OVERLOAD_FACTOR
// (2) times their measured capacity for OVERLOAD_DURATION (30s), through
// obsproxy without a cap, obsproxy with a cap and its queue, HAProxy with
// the same per-server maxconn and timeout queue, and nginx (no queue in
// nginx OSS). Every target, and the capacity measurement, gets three fresh
// workers. The two targets with a queue run OVERLOAD_ROUNDS (2) times in
// alternating order (obsproxy first in odd rounds, HAProxy first in even
// ones), so that neither always has the first or the later turn; the table
// gives their medians and the per-round ratio. Settings: OVERLOAD_DURATION
// (30s), OVERLOAD_FACTOR (2), OVERLOAD_RATE (unset: measured), OVERLOAD_CAP
// (2), OVERLOAD_QUEUE_TIMEOUT (1s), OVERLOAD_BURN_MS (5), OVERLOAD_ROUNDS
// (2).

// openResult is one benchclient open run.
type openResult struct {
	sent, ok, s503, other, errors, dropped int64
	goodput, share503                      float64
	p50, p90, p99, max                     float64 // µs, of the 2xx answers
}

func (b *bench) open(url string, rate float64, d time.Duration) (openResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+120*time.Second)
	defer cancel()
	cmd := b.loadCommand(ctx, b.s.benchclient, "open", "-url", url, "-rate", strconv.FormatFloat(rate, 'f', 1, 64),
		"-duration", d.String(), "-timeout", "30s")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := runAux(cmd); err != nil {
		return openResult{}, fmt.Errorf("benchclient open %s: %v\n%s", url, err, buf.Bytes())
	}
	kv := map[string]float64{}
	for _, f := range strings.Fields(strings.TrimPrefix(strings.TrimSpace(buf.String()), "open ")) {
		k, v, _ := strings.Cut(f, "=")
		kv[k], _ = strconv.ParseFloat(v, 64)
	}
	return openResult{
		sent: int64(kv["sent"]), ok: int64(kv["ok"]), s503: int64(kv["s503"]), other: int64(kv["other"]),
		errors: int64(kv["errors"]), dropped: int64(kv["dropped"]), goodput: kv["goodput"], share503: kv["share503"],
		p50: kv["p50_us"], p90: kv["p90_us"], p99: kv["p99_us"], max: kv["max_us"],
	}, nil
}

// burnWorkers starts three fresh uvicorn workers of examples/app for one
// target of the overload phase, pinned like the servers, and waits until
// each answers; stop ends them (their backlog with them).
func (b *bench) burnWorkers(target string) (addrs []string, stop func(), err error) {
	var procs []*proc
	stop = func() {
		for _, p := range procs {
			p.stop()
		}
	}
	for i := 1; i <= 3; i++ {
		port, err := freePort()
		if err != nil {
			stop()
			return nil, nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		name := fmt.Sprintf("overload-%s-w%d", target, i)
		p, err := start(b.s.tmp, name, b.s.serverCPU, []string{"WORKER_NAME=" + name}, b.s.python, "-m", "uvicorn", "app:app",
			"--app-dir", filepath.Join(b.s.repo, "examples/app"), "--host", "127.0.0.1", "--port", strconv.Itoa(port),
			"--log-level", "warning", "--no-access-log", "--backlog", "4096")
		if err != nil {
			stop()
			return nil, nil, err
		}
		procs = append(procs, p)
		if err := waitOK(p, "http://"+addr+"/health"); err != nil {
			stop()
			return nil, nil, err
		}
		addrs = append(addrs, addr)
	}
	return addrs, stop, nil
}

func (b *bench) overloadPhase() error {
	duration := envDuration("OVERLOAD_DURATION", 30*time.Second)
	factor := 2.0
	if v, err := strconv.ParseFloat(os.Getenv("OVERLOAD_FACTOR"), 64); err == nil && v > 0 {
		factor = v
	}
	capN := envInt("OVERLOAD_CAP", 2)
	queueTimeout := envDuration("OVERLOAD_QUEUE_TIMEOUT", time.Second)
	burn := envInt("OVERLOAD_BURN_MS", 5)
	path := fmt.Sprintf("/burn?ms=%d", burn)

	capEnv := []string{"OBSPROXY_WORKER_MAX_IN_FLIGHT=" + strconv.Itoa(capN), "OBSPROXY_QUEUE_SIZE=1024",
		"OBSPROXY_QUEUE_TIMEOUT=" + queueTimeout.String()}
	upstreams := func(workers []string) string {
		var ups []string
		for i, w := range workers {
			ups = append(ups, fmt.Sprintf("w%d=http://%s", i+1, w))
		}
		return strings.Join(ups, ",")
	}
	type peer struct {
		name, label string
		startFn     func(port int, workers []string) (*proc, error)
	}
	// The targets without a limit run last: they leave a backlog in the
	// workers' event loops (requests whose clients timed out) that takes
	// a while to drain. Each target gets three fresh workers, so that none
	// inherits another's backlog or a warmer (or more fragmented) process.
	peers := []peer{
		{"obsproxy-cap", fmt.Sprintf("obsproxy, cap %d + queue (timeout %s)", capN, queueTimeout), func(port int, ws []string) (*proc, error) {
			return b.startObsproxy("overload-obsproxy-cap", port, upstreams(ws), "least_inflight", capEnv...)
		}},
		{"haproxy", fmt.Sprintf("HAProxy, maxconn %d + timeout queue %s", capN, queueTimeout), func(port int, ws []string) (*proc, error) {
			return b.startHAProxyWith("overload-haproxy", port, ws, haproxyOptions{balance: "leastconn", checks: true, maxconn: capN, queueTimeout: queueTimeout})
		}},
		{"obsproxy-nocap", "obsproxy, no cap", func(port int, ws []string) (*proc, error) {
			return b.startObsproxy("overload-obsproxy-nocap", port, upstreams(ws), "least_inflight")
		}},
		{"nginx", "nginx round-robin (no queue)", func(port int, ws []string) (*proc, error) {
			return b.startNginx("overload-nginx", port, ws)
		}},
	}

	rate := 0.0
	if v, err := strconv.ParseFloat(os.Getenv("OVERLOAD_RATE"), 64); err == nil && v > 0 {
		rate = v
	}
	type row struct {
		label string
		runs  []openResult // one per round
		err   error
		note  string
	}
	rows := make([]row, len(peers))
	for i, pe := range peers {
		rows[i].label = pe.label
	}
	rounds := max(1, envInt("OVERLOAD_ROUNDS", 2))
	capacity := 0.0
	// start runs pe on three fresh workers and waits until it serves;
	// stop ends both.
	start := func(pe peer) (base string, p *proc, stop func(), err error) {
		workers, stopWorkers, err := b.burnWorkers(pe.name)
		if err != nil {
			return "", nil, nil, err
		}
		port, err := freePort()
		if err != nil {
			stopWorkers()
			return "", nil, nil, err
		}
		p, err = pe.startFn(port, workers)
		base = fmt.Sprintf("http://127.0.0.1:%d", port)
		if err == nil {
			err = waitOK(p, base+"/health")
		}
		stop = func() {
			if p != nil {
				p.stop()
			}
			stopWorkers()
		}
		if err != nil {
			stop()
			return "", nil, nil, err
		}
		time.Sleep(3 * time.Second) // every worker probed up (obsproxy, HAProxy)
		return base, p, stop, nil
	}
	if rate == 0 {
		// Capacity: a closed loop keeping every worker busy (two requests
		// each) through the first target (obsproxy with its cap: the same
		// six in flight), for 10 s, on workers of its own.
		base, _, stop, err := start(peers[0])
		if err != nil {
			return fmt.Errorf("measuring capacity: %w", err)
		}
		saved := b.s.stuckConns
		savedD := b.s.stuckDuration
		b.s.stuckConns, b.s.stuckDuration = 6, 10*time.Second
		r, err := b.load(base + path)
		b.s.stuckConns, b.s.stuckDuration = saved, savedD
		stop()
		if err != nil {
			return fmt.Errorf("measuring capacity: %w", err)
		}
		capacity = r.rps
		rate = factor * capacity
		b.logf("overload: capacity %.0f req/s (closed loop, c=6, p50 %.1f ms); offering %.0f req/s", capacity, r.p50/1000, rate)
	}
	// The order of turns: the two queued targets alternate over the
	// rounds; the unlimited ones (which leave a backlog) run once, last.
	var order []int
	for r := range rounds {
		if r%2 == 0 {
			order = append(order, 0, 1)
		} else {
			order = append(order, 1, 0)
		}
	}
	order = append(order, 2, 3)
	for _, i := range order {
		pe, rw := peers[i], &rows[i]
		if rw.err != nil {
			continue
		}
		base, p, stop, err := start(pe)
		if err != nil {
			b.logf("overload: leaving out %s: %v", pe.name, err)
			rw.err = err
			continue
		}
		la := loadavg()
		b.loads = append(b.loads, la)
		r, err := b.open(base+path, rate, duration)
		note := ""
		if err == nil && pe.name == "obsproxy-cap" {
			note = b.queueCounts(p)
		}
		stop()
		if err != nil {
			b.logf("overload %s: %v", pe.name, err)
			rw.err = err
			continue
		}
		b.logf("overload %-40s goodput %6.1f/s p50 %8.1f ms p99 %8.1f ms 503 %5.1f%% errors %d (load %s) %s",
			pe.label, r.goodput, r.p50/1000, r.p99/1000, 100*r.share503, r.errors, la, note)
		rw.runs = append(rw.runs, r)
		if note != "" {
			rw.note = note // the last round's
		}
	}

	b.printf("\n### Overload: 3 uvicorn workers of GET %s (about %d ms of CPU each), open-loop arrivals at %.0f req/s (%.1f× the measured capacity of %.0f req/s) for %s\n\n",
		path, burn, rate, factor, capacity, duration)
	b.printf("benchclient open: constant arrival rate, latency from each request's scheduled start, 30 s client timeout. Goodput is 2xx per second from the first arrival to the last answer. The two targets with a queue ran %d times each, in alternating order; their figures are medians over those runs, and goodput ÷ HAProxy is the median of the ratios of runs in the same round. The targets without a limit ran once, last. Ratios are within this run.\n\n", rounds)
	var ref, capRow *row
	for i := range rows {
		switch {
		case strings.HasPrefix(rows[i].label, "HAProxy"):
			ref = &rows[i]
		case strings.HasPrefix(rows[i].label, "obsproxy, cap"):
			capRow = &rows[i]
		}
	}
	// med is the median of f over a row's runs.
	med := func(rw *row, f func(openResult) float64) float64 {
		var v []float64
		for _, r := range rw.runs {
			v = append(v, f(r))
		}
		return median(v)
	}
	goodput := func(r openResult) float64 { return r.goodput }
	p99 := func(r openResult) float64 { return r.p99 }
	ok := func(rw *row) bool { return rw != nil && rw.err == nil && len(rw.runs) > 0 }
	tw := tabwriter.NewWriter(&b.out, 0, 0, 2, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| proxy\t runs\t goodput 2xx/s\t p50 ms (2xx)\t p99 ms (2xx)\t 503 share\t errors (timeouts)\t goodput ÷ HAProxy\t p99 ÷ obsproxy capped\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for i := range rows {
		rw := &rows[i]
		if !ok(rw) {
			msg := "no run"
			if rw.err != nil {
				msg = firstLine(rw.err.Error())
			}
			fmt.Fprintf(tw, "| %s\t\t %s\t\t\t\t\t\t\t\n", rw.label, msg)
			continue
		}
		g, p := "–", "–"
		if ok(ref) {
			if rw == capRow && len(ref.runs) == len(rw.runs) {
				var ratios []float64
				for j := range rw.runs {
					ratios = append(ratios, rw.runs[j].goodput/ref.runs[j].goodput)
				}
				g = fmt.Sprintf("%.2f×", median(ratios))
			} else if ref := med(ref, goodput); ref > 0 {
				g = fmt.Sprintf("%.2f×", med(rw, goodput)/ref)
			}
		}
		if ok(capRow) {
			if c := med(capRow, p99); c > 0 {
				p = fmt.Sprintf("%.1f×", med(rw, p99)/c)
			}
		}
		errs := int64(0)
		for _, r := range rw.runs {
			errs += r.errors
		}
		fmt.Fprintf(tw, "| %s\t %d\t %.1f\t %.1f\t %.1f\t %.1f%%\t %d\t %s\t %s\t\n", rw.label, len(rw.runs), med(rw, goodput),
			med(rw, func(r openResult) float64 { return r.p50 })/1000, med(rw, p99)/1000,
			100*med(rw, func(r openResult) float64 { return r.share503 }), errs, g, p)
	}
	tw.Flush()
	fixTable(&b.out)
	if ok(capRow) && ok(ref) && len(capRow.runs) > 1 {
		b.printf("\nPer round, obsproxy capped ÷ HAProxy:")
		for j := range min(len(capRow.runs), len(ref.runs)) {
			c, h := capRow.runs[j], ref.runs[j]
			b.printf(" round %d goodput %.1f / %.1f = %.2f×, p99 %.1f / %.1f ms;", j+1, c.goodput, h.goodput, c.goodput/h.goodput, c.p99/1000, h.p99/1000)
		}
		b.printf("\n")
	}
	if capRow != nil && capRow.note != "" {
		b.printf("\nobsproxy capped, its own count (its last run): %s\n", capRow.note)
	}
	return nil
}

// queueCounts reads obsproxy's admission metrics from its admin listener.
func (b *bench) queueCounts(p *proc) string {
	addr := ""
	for _, e := range p.cmd.Env {
		if v, ok := strings.CutPrefix(e, "OBSPROXY_ADMIN_ADDR="); ok {
			addr = v
		}
	}
	if addr == "" {
		return ""
	}
	res, err := probeClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "obsproxy_queue_rejected_total") || strings.HasPrefix(line, "obsproxy_queue_wait_seconds_count") ||
			strings.HasPrefix(line, "obsproxy_queue_wait_seconds_sum") {
			out = append(out, line)
		}
	}
	return strings.Join(out, ", ")
}
