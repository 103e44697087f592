package e2e

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// restartProbe reads the dashboard's restart button, its status line, the
// transitions of its disabled state recorded by restartWatch, each row's
// pid and the event log.
const restartProbe = `(() => {
  const box = document.getElementById("restart"), btn = document.getElementById("restart-button"), st = document.getElementById("restart-status");
  const rows = Array.from(document.querySelectorAll("#workers tr")).map((tr) => {
    const td = tr.querySelector('[data-col="pid"]'); return { worker: tr.dataset.worker, state: tr.dataset.state, pid: td ? td.dataset.value : "" }; });
  const events = Array.from(document.querySelectorAll("#events li")).map((li) => ({ worker: li.dataset.worker, kind: li.dataset.kind, text: li.textContent }));
  return JSON.stringify({ live: document.body.dataset.live, shown: !box.hidden, disabled: btn.disabled, state: st.dataset.state,
    status: st.textContent, flips: window.restartFlips || [], rows, events });
})()`

// restartWatch records every change of the button's disabled state in
// window.restartFlips.
const restartWatch = `(() => {
  const btn = document.getElementById("restart-button");
  window.restartFlips = [];
  new MutationObserver(() => window.restartFlips.push(btn.disabled)).observe(btn, { attributes: true, attributeFilter: ["disabled"] });
  return "watching";
})()`

// restartClick clicks the button from a timer, so that the evaluation
// returns before confirm() blocks the page.
const restartClick = `setTimeout(() => document.getElementById("restart-button").click(), 0), "clicked"`

type restartPage struct {
	Live     string
	Shown    bool
	Disabled bool
	State    string
	Status   string
	Flips    []bool
	Rows     []struct{ Worker, State, PID string }
	Events   []struct{ Worker, Kind, Text string }
}

// restartPage polls restartProbe until cond holds, for at most d and not
// past the browser's deadline.
func (b *browser) restartPage(t *testing.T, d time.Duration, what string, cond func(restartPage) bool) restartPage {
	t.Helper()
	return pollPage(t, b, restartProbe, d, what, cond)
}

// evaluate runs a script in the page that must not throw.
func (b *browser) evaluate(t *testing.T, script string) {
	t.Helper()
	var res struct {
		ExceptionDetails any `json:"exceptionDetails"`
	}
	b.call(t, "Runtime.evaluate", map[string]any{"expression": script}, &res)
	require.Nil(t, res.ExceptionDetails, "evaluating %s", script)
}

// answerDialog accepts or dismisses the page's open dialog, waiting for it
// to open.
func (b *browser) answerDialog(t *testing.T, accept bool) {
	t.Helper()
	eventually(t, 15*time.Second, func() bool {
		return b.do("Page.handleJavaScriptDialog", map[string]any{"accept": accept}, nil) == nil
	}, "a dialog to answer")
}

// TestDashboardRestartButton drives the dashboard's "Restart workers"
// button in headless Chromium while obsproxy supervises three uvicorn
// workers behind OBSPROXY_ADMIN_TOKEN, with GETs flowing: the browser
// holds the token only as the Basic credentials an operator types once
// (the page never sees it). Dismissing the confirm dialog sends nothing;
// accepting it disables the button until the answer, shows "restart
// started", a second click during the roll shows "already running", and
// the roll's end shows as "restart succeeded in …".
// The roll then replaces every worker's pid (in the table and in
// obsproxy_worker_pid), the new processes' start events show in the log,
// obsproxy_reloads_total{result="success"} becomes 1, and no GET fails.
func TestDashboardRestartButton(t *testing.T) {
	const token = "dashboard-restart-token-2b9e4"
	in := launchSupervisor(t, []string{"OBSPROXY_WORKERS=3", "OBSPROXY_SAMPLE_INTERVAL=250ms", "OBSPROXY_ADMIN_TOKEN=" + token},
		uvicornArgv()...)
	before := awaitRestartUp(t, in, token, 3)
	load := startGetLoad(t, in, 4)

	b := startBrowser(t, time.Now().Add(300*time.Second))
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}, nil)
	// The credentials once in the address, as the operator would type them
	// into the browser's password dialog: Chromium keeps them in its HTTP
	// auth cache and sends them with the page's own requests after that.
	// (The dashboard itself is not opened at such an address: a page whose
	// address holds credentials cannot fetch relative URLs.)
	b.call(t, "Page.navigate", map[string]any{"url": strings.Replace(in.admin, "http://", "http://operator:"+token+"@", 1) +
		"/admin/api/observability"}, nil)
	eventually(t, 30*time.Second, func() bool {
		var res struct {
			Result struct {
				Value bool `json:"value"`
			} `json:"result"`
		}
		return b.do("Runtime.evaluate", map[string]any{"returnByValue": true,
			"expression": `document.readyState === "complete" && document.body.textContent.includes('"supervised":true')`}, &res) == nil &&
			res.Result.Value
	}, "the snapshot opened with the token")
	b.call(t, "Page.navigate", map[string]any{"url": in.admin + "/admin/"}, nil)
	p := b.restartPage(t, 60*time.Second, "the restart button and three rows with pids", func(p restartPage) bool {
		if p.Live != "1" || !p.Shown || len(p.Rows) != 3 {
			return false
		}
		for _, r := range p.Rows {
			if r.PID != strconv.Itoa(before.pids[r.Worker]) {
				return false
			}
		}
		return true
	})
	assert.False(t, p.Disabled)
	assert.Empty(t, p.Status)
	b.evaluate(t, restartWatch)

	// Dismissed: nothing is sent.
	b.evaluate(t, restartClick)
	b.answerDialog(t, false)
	p = b.restartPage(t, 10*time.Second, "the page after the dismissed dialog", func(p restartPage) bool { return true })
	assert.Empty(t, p.Status, "a dismissed confirm sends nothing")
	assert.Empty(t, p.Flips, "a dismissed confirm does not disable the button")

	// Accepted: the roll starts.
	b.evaluate(t, restartClick)
	b.answerDialog(t, true)
	p = b.restartPage(t, 30*time.Second, "the restart's answer", func(p restartPage) bool { return p.State != "" && p.State != "pending" })
	require.Equal(t, "started", p.State, "status line: %q (a refused request would say why)", p.Status)
	assert.Contains(t, p.Status, "restart started")
	assert.Equal(t, []bool{true, false}, p.Flips, "disabled while the answer was pending, then enabled")
	assert.False(t, p.Disabled)
	require.Len(t, b.dialogs, 2)
	assert.Contains(t, b.dialogs[1], "Restart every worker process?")

	// A second click while the roll runs.
	b.evaluate(t, restartClick)
	b.answerDialog(t, true)
	p = b.restartPage(t, 30*time.Second, "the second answer", func(p restartPage) bool { return p.State != "started" && p.State != "pending" })
	assert.Equal(t, "running", p.State, "status line: %q", p.Status)
	assert.Equal(t, "a restart is already running", p.Status)

	after := awaitRolled(t, in, token, before)
	p = b.restartPage(t, 30*time.Second, "every row with its new pid, the starts in the log and the roll's outcome", func(p restartPage) bool {
		if p.State != "done" {
			return false
		}
		for _, r := range p.Rows {
			if r.PID != strconv.Itoa(after.pids[r.Worker]) {
				return false
			}
		}
		for name, pid := range after.pids {
			found := false
			for _, e := range p.Events {
				found = found || (e.Worker == name && e.Kind == "started" && strings.Contains(e.Text, "pid "+strconv.Itoa(pid)))
			}
			if !found {
				return false
			}
		}
		return true
	})
	assert.Contains(t, p.Status, "restart succeeded", "the status line tells the roll's outcome")
	assert.Equal(t, 1.0, after.success, "obsproxy_reloads_total{result=\"success\"}")
	assert.Zero(t, after.failure)
	assert.Equal(t, before.started+3, after.started, "one roll: one new process per worker")
	ok, failed, firstErr := load.end()
	assert.Zero(t, failed, "requests failed during the roll (first: %s)", firstErr)
	b.screenshot(t, filepath.Join(dashboardOutDir(t), "dashboard-restart.png"))
	for _, pr := range b.problems {
		// Chromium logs the second click's 409 as a failed load, and the
		// JSON page opened for the credentials asks for /favicon.ico (the
		// dashboard has its own, inline).
		if !strings.Contains(pr, "status of 409") && !strings.HasSuffix(pr, "/favicon.ico") {
			t.Errorf("the page reported an error: %s", pr)
		}
	}
	t.Logf("dashboard roll of 3 workers: %d GETs, %d failed; events seen: %d", ok, failed, len(p.Events))
}

// TestDashboardRestartButtonUnderLoad is issue 14's zero-loss roll started
// by the dashboard's button in headless Chromium: four uvicorn workers
// under the steady load of rollUnderLoad (8 clients of GETs, a POST with a
// body every 100 ms, an SSE stream and a WebSocket that end on their own);
// the click, once confirmed, answers "restart started", and the roll ends
// with zero failed requests, every pid replaced and reaped, the streams
// complete and reloads_total{result="success"} 1, which the status line
// then reports.
func TestDashboardRestartButtonUnderLoad(t *testing.T) {
	in := launchSupervisor(t, []string{"OBSPROXY_WORKERS=4", "OBSPROXY_WORKER_STOP_TIMEOUT=15s", "OBSPROXY_SAMPLE_INTERVAL=250ms"},
		uvicornArgv()...)
	b := startBrowser(t, time.Now().Add(300*time.Second))
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}, nil)
	b.call(t, "Page.navigate", map[string]any{"url": in.admin + "/admin/"}, nil)
	b.restartPage(t, 60*time.Second, "the restart button", func(p restartPage) bool { return p.Live == "1" && p.Shown })

	rollUnderLoad(t, in, 4, func() {
		b.evaluate(t, restartClick)
		b.answerDialog(t, true)
		p := b.restartPage(t, 30*time.Second, "the restart's answer", func(p restartPage) bool { return p.State != "" && p.State != "pending" })
		require.Equal(t, "started", p.State, "status line: %q", p.Status)
	})
	p := b.restartPage(t, 30*time.Second, "the roll's outcome", func(p restartPage) bool { return p.State != "started" })
	assert.Equal(t, "done", p.State)
	assert.Contains(t, p.Status, "restart succeeded")
	b.screenshot(t, filepath.Join(dashboardOutDir(t), "dashboard-restart-load.png"))
	assert.Empty(t, b.problems, "the page reported errors")
}
