package e2e

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// supervisorProbe reads the supervisor-mode parts of the dashboard: the
// process columns of each row, the worker-memory card and the event log.
const supervisorProbe = `(() => {
  const val = (tr, col) => { const td = tr.querySelector('[data-col="' + col + '"]'); return td ? { v: td.dataset.value, t: td.textContent } : null; };
  const rows = Array.from(document.querySelectorAll("#workers tr")).map((tr) => ({
    worker: tr.dataset.worker, state: tr.dataset.state, pid: val(tr, "pid"), memory: val(tr, "memory"), cpu: val(tr, "cpu"),
    exits: val(tr, "exits"), backoff: val(tr, "backoff") }));
  const card = document.querySelector('[data-stat="worker-memory"]');
  const heads = Array.from(document.querySelectorAll("#workers-table th.sup")).filter((th) => !th.hidden).length;
  const events = Array.from(document.querySelectorAll("#events li")).map((li) => ({ worker: li.dataset.worker, kind: li.dataset.kind, text: li.textContent }));
  const table = document.querySelector(".workers");
  return JSON.stringify({ rows, heads, events, live: document.body.dataset.live,
    card: { hidden: card.hidden, value: card.dataset.value, text: card.querySelector(".value").textContent },
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth + table.scrollWidth - table.clientWidth });
})()`

type supCell struct{ V, T string }

type supPage struct {
	Rows []struct {
		Worker, State                    string
		PID, Memory, CPU, Exits, Backoff *supCell
	}
	Heads  int
	Events []struct{ Worker, Kind, Text string }
	Live   string
	Card   struct {
		Hidden      bool
		Value, Text string
	}
	Overflow int
}

func (b *browser) supPage(t *testing.T, what string, cond func(supPage) bool) supPage {
	t.Helper()
	return pollPage(t, b, supervisorProbe, 60*time.Second, what, cond)
}

// pollPage evaluates probe (a script returning JSON) in the page until its
// answer, decoded as T, satisfies cond, for at most d and not past the
// browser's deadline; then it fails the test with the last state.
func pollPage[T any](t *testing.T, b *browser, probe string, d time.Duration, what string, cond func(T) bool) T {
	t.Helper()
	var p T
	deadline := time.Now().Add(d)
	if b.deadline.Before(deadline) {
		deadline = b.deadline
	}
	for {
		var res struct {
			Result struct {
				Value string `json:"value"`
			} `json:"result"`
		}
		if err := b.do("Runtime.evaluate", map[string]any{"expression": probe, "returnByValue": true}, &res); err == nil &&
			json.Unmarshal([]byte(res.Result.Value), &p) == nil && cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("dashboard: no %s in time; last page state: %+v; page problems: %q", what, p, b.problems)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDashboardSupervisor opens /admin/ in headless Chromium while obsproxy
// supervises three uvicorn workers, and reads what an operator sees: each
// row's pid, memory, CPU, exits and backoff, the pool's total worker memory
// in a card; then kill -9 of one worker shows in its row (an exit naming
// SIGKILL, a new pid) and in the event log (a stop naming SIGKILL and a
// start). Screenshots land beside TestDashboardInBrowser's.
func TestDashboardSupervisor(t *testing.T) {
	began := time.Now()
	in := launchSupervisor(t, []string{"OBSPROXY_WORKERS=3", "OBSPROXY_SAMPLE_INTERVAL=250ms"},
		python, "-m", "uvicorn", "app:app", "--app-dir", "examples/app", "--uds", "{socket}", "--log-level", "warning")
	in.awaitUp(t, 3)
	pids := in.workerPIDs(t, 3)

	b := startBrowser(t, time.Now().Add(90*time.Second))
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}, nil)
	b.call(t, "Page.navigate", map[string]any{"url": in.admin + "/admin/"}, nil)
	p := b.supPage(t, "process figures in every row", func(p supPage) bool {
		if len(p.Rows) != 3 || p.Heads != 3 || p.Card.Hidden {
			return false
		}
		for _, r := range p.Rows {
			if r.Memory == nil || r.Memory.V == "" || r.Memory.V == "0" || r.CPU == nil || r.CPU.V == "" {
				return false
			}
		}
		return true
	})
	var sum uint64
	for _, r := range p.Rows {
		assert.Equal(t, strconv.Itoa(pids[r.Worker]), r.PID.V, "row %s shows obsproxy_worker_pid", r.Worker)
		assert.Contains(t, r.Memory.T, "MiB")
		assert.Contains(t, r.CPU.T, "%")
		assert.Equal(t, "0", r.Exits.V)
		assert.Equal(t, "0", r.Backoff.V, "no backoff while a process runs")
		n, _ := strconv.ParseUint(r.Memory.V, 10, 64)
		sum += n
	}
	card, _ := strconv.ParseUint(p.Card.Value, 10, 64)
	assert.InDelta(t, float64(sum), float64(card), float64(sum)/5, "the card is the pool's total worker memory (sampled at nearly the same time)")
	assert.Contains(t, p.Card.Text, "MiB")
	b.screenshot(t, filepath.Join(dashboardOutDir(t), "dashboard-supervisor.png"))

	require.NoError(t, syscall.Kill(pids["w2"], syscall.SIGKILL))
	p = b.supPage(t, "w2's exit and new process", func(p supPage) bool {
		for _, r := range p.Rows {
			if r.Worker == "w2" {
				return r.Exits != nil && r.Exits.V == "1" && r.PID.V != "0" && r.PID.V != strconv.Itoa(pids["w2"])
			}
		}
		return false
	})
	for _, r := range p.Rows {
		if r.Worker == "w2" {
			assert.Contains(t, r.Exits.T, "killed by SIGKILL", "the last exit's reason")
		}
	}
	var stopped, started bool
	for _, e := range p.Events {
		if e.Worker == "w2" && e.Kind == "stopped" && strings.Contains(e.Text, "SIGKILL") {
			stopped = true
		}
		if e.Worker == "w2" && e.Kind == "started" && strings.Contains(e.Text, "pid ") {
			started = true
		}
	}
	assert.True(t, stopped, "the event log shows the exit: %+v", p.Events)
	assert.True(t, started, "the event log shows the spawn: %+v", p.Events)
	b.screenshot(t, filepath.Join(dashboardOutDir(t), "dashboard-supervisor-kill.png"))
	assert.Zero(t, p.Overflow, "the page scrolls sideways at 1280x800")
	assert.Empty(t, b.problems, "the page reported errors")
	t.Logf("supervisor dashboard test took %v", time.Since(began).Round(time.Millisecond))
}
