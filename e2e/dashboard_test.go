package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/websocket"
)

// chromiumPath is Debian's chromium package (scripts/deps.sh installs it).
const chromiumPath = "/usr/bin/chromium"

// dashboardOutDir is where TestDashboardInBrowser leaves its screenshots:
// $OBSPROXY_E2E_OUT when set, else e2e/testdata/output (ignored by git).
func dashboardOutDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("OBSPROXY_E2E_OUT")
	if dir == "" {
		dir = filepath.Join(repoRoot, "e2e", "testdata", "output")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// TestDashboardInBrowser opens /admin/ in headless Chromium in front of two
// uvicorn workers and one on a closed port, and reads what a person would
// see: 2/3 workers up, the dead worker's row marked down, the request
// counts that were sent, its "down" event in the log; then it holds a
// blocking request on one worker until that worker's row says stuck. It
// saves a screenshot of each state.
func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the dashboard test needs Debian's chromium (make deps): %v", err)
	}
	began := time.Now()
	w1, w2 := startUvicorn(t, "w1"), startUvicorn(t, "w2")
	waitReady(t, w1, w2)
	dead := &worker{upstream: fmt.Sprintf("w3=http://127.0.0.1:%d", freePort(t))}
	in := startObsproxy(t, []*worker{w1, w2, dead}, "OBSPROXY_SAMPLE_INTERVAL=250ms", "OBSPROXY_HEALTH_INTERVAL=500ms",
		"OBSPROXY_WORKER_METRICS_PATH=/metrics")
	in.awaitHealth(t, "degraded", "worker down")
	// A scrape fetches the workers' own metrics: the rows show whether it worked.
	in.metrics(t)

	// Traffic before the page opens reaches it through the chart history,
	// traffic after it through the live stream.
	sent := 0
	send := func(n int, pause time.Duration) {
		for i := 0; i < n; i++ {
			code, _ := in.get(t, "/slow?seconds=0.01")
			require.Equal(t, http.StatusOK, code)
			sent++
			time.Sleep(pause)
		}
	}
	send(20, 0)

	b := startBrowser(t, began.Add(28*time.Second))
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}, nil)
	b.call(t, "Page.navigate", map[string]any{"url": in.admin + "/admin/"}, nil)
	b.waitPage(t, "the first live update", func(p dashboardPage) bool { return p.Live == "1" && p.Received >= 1 })

	send(40, 40*time.Millisecond)
	p := b.waitPage(t, fmt.Sprintf("%d requests in the page", sent), func(p dashboardPage) bool {
		return p.Cards["requests-per-second"]["total"] == fmt.Sprint(sent) && p.rowRequests("w1")+p.rowRequests("w2") == uint64(sent)
	})
	// A few more samples, so that the charts show the traffic.
	p = b.waitPage(t, "chart points", func(p dashboardPage) bool { return p.Points >= 12 })
	b.screenshot(t, filepath.Join(dashboardOutDir(t), "dashboard.png"))

	assert.Equal(t, "live", p.Stream)
	assert.False(t, p.RestartShown, "static mode offers no restart button")
	assert.Zero(t, p.Overflow, "the page scrolls sideways at 1280x800; table columns: %v", p.Cols)
	assert.Equal(t, "degraded", p.Health)
	assert.Contains(t, p.HealthText, "worker down")
	assert.Equal(t, "2/3", p.Cards["workers-up"]["text"])
	assert.Equal(t, "2", p.Cards["workers-up"]["up"])
	assert.Equal(t, "3", p.Cards["workers-up"]["total"])
	assert.NotEqual(t, "–", p.Cards["uptime"]["text"])
	assert.NotEqual(t, "–", p.Cards["pool-uptime"]["text"])
	for _, stat := range []string{"connections", "in-flight", "requests-per-second", "streams"} {
		assert.NotEqual(t, "–", p.Cards[stat]["text"], stat)
	}
	require.Len(t, p.Rows, 3)
	assert.Equal(t, "up", p.row("w1").State)
	assert.Equal(t, "up", p.row("w2").State)
	down := p.row("w3")
	assert.Equal(t, "down", down.State)
	assert.Equal(t, "unhealthy", down.Health)
	assert.Contains(t, down.Text, "connection refused")
	assert.Equal(t, "false", down.MetricsUp)
	assert.Contains(t, down.Text, "no metrics")
	assert.Equal(t, "true", p.row("w1").MetricsUp)
	assert.Equal(t, uint64(0), p.rowRequests("w3"))
	assert.Greater(t, p.rowRequests("w1"), uint64(0), "least_inflight spreads sequential requests")
	assert.Greater(t, p.rowRequests("w2"), uint64(0), "least_inflight spreads sequential requests")
	assert.True(t, p.hasEvent("w3", "down"), "events: %+v", p.Events)
	assert.True(t, p.hasEvent("", "pool_up"), "events: %+v", p.Events)

	// A handler that blocks its event loop: the request stays in flight,
	// and the row of the worker that holds it must say so.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/block?seconds=20", nil)
		if resp, err := in.client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	p = b.waitPage(t, "a stuck worker", func(p dashboardPage) bool {
		for _, r := range p.Rows {
			if r.Stuck == "1" {
				return true
			}
		}
		return false
	})
	b.screenshot(t, filepath.Join(dashboardOutDir(t), "dashboard-stuck.png"))
	var stuck []string
	for _, r := range p.Rows {
		if r.Stuck == "1" {
			stuck = append(stuck, r.Worker)
			assert.Contains(t, r.Oldest, "stuck")
		}
	}
	require.Len(t, stuck, 1)
	assert.Contains(t, []string{"w1", "w2"}, stuck[0])
	assert.Contains(t, p.Cards["workers-up"]["sub"], "1 stuck")
	assert.Zero(t, p.Overflow, "the page scrolls sideways at 1280x800; table columns: %v", p.Cols)
	assert.Empty(t, b.problems, "the page reported errors")
	t.Logf("dashboard test took %v; screenshots in %s", time.Since(began).Round(time.Millisecond), dashboardOutDir(t))
}

// dashboardPage is what pageProbe reads from the dashboard's DOM.
type dashboardPage struct {
	Live       string                       `json:"live"`
	Stream     string                       `json:"stream"`
	Received   int                          `json:"received"`
	Health     string                       `json:"health"`
	HealthText string                       `json:"healthText"`
	Cards      map[string]map[string]string `json:"cards"`
	Rows       []dashboardRow               `json:"rows"`
	Events     []struct {
		Worker, Kind, Text string
	} `json:"events"`
	Points int `json:"points"`
	// Overflow is how many pixels the page and the workers table are
	// wider than the window: 0 when nothing needs a horizontal scroll.
	Overflow int   `json:"overflow"`
	Cols     []int `json:"cols"`
	// RestartShown is whether the "Restart workers" button shows
	// (supervisor mode only).
	RestartShown bool `json:"restartShown"`
}

type dashboardRow struct {
	Worker   string `json:"worker"`
	State    string `json:"state"`
	Health   string `json:"health"`
	Stuck    string `json:"stuck"`
	Requests string `json:"requests"`
	Oldest   string `json:"oldest"`
	Text     string `json:"text"`
	// MetricsUp is "true" or "false" (the last fetch of the worker's own
	// metrics), "" before one.
	MetricsUp string `json:"metricsUp"`
}

func (p dashboardPage) row(name string) dashboardRow {
	for _, r := range p.Rows {
		if r.Worker == name {
			return r
		}
	}
	return dashboardRow{}
}

func (p dashboardPage) rowRequests(name string) uint64 {
	var n uint64
	fmt.Sscan(p.row(name).Requests, &n)
	return n
}

func (p dashboardPage) hasEvent(worker, kind string) bool {
	for _, e := range p.Events {
		if e.Worker == worker && e.Kind == kind {
			return true
		}
	}
	return false
}

// pageProbe reads the dashboard's state through the data-* attributes the
// page puts on its cards, rows and events.
const pageProbe = `(() => {
  const q = (s) => document.querySelector(s);
  const cards = {};
  document.querySelectorAll("[data-stat]").forEach((c) => {
    cards[c.dataset.stat] = Object.assign({}, c.dataset, {
      text: c.querySelector(".value").textContent, sub: c.querySelector(".sub").textContent });
  });
  const cell = (tr, col) => { const td = tr.querySelector('[data-col="' + col + '"]'); return td ? td : null; };
  const rows = Array.from(document.querySelectorAll("#workers tr")).map((tr) => ({
    worker: tr.dataset.worker, state: tr.dataset.state, health: tr.dataset.health, stuck: tr.dataset.stuck, metricsUp: tr.dataset.metricsUp,
    requests: cell(tr, "requests").dataset.value, oldest: cell(tr, "oldest").textContent, text: tr.textContent }));
  const events = Array.from(document.querySelectorAll("#events li")).map((li) => ({
    Worker: li.dataset.worker, Kind: li.dataset.kind, Text: li.textContent }));
  const fig = q("figure.chart");
  const table = q(".workers");
  return JSON.stringify({ live: document.body.dataset.live, stream: document.body.dataset.stream,
    received: Number(document.body.dataset.received || 0), health: q("#health").dataset.status,
    healthText: q("#health").textContent, cards, rows, events, points: Number((fig && fig.dataset.points) || 0), restartShown: !q("#restart").hidden,
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth + table.scrollWidth - table.clientWidth,
    cols: Array.from(document.querySelectorAll("#workers-table th")).map((th) => Math.round(th.getBoundingClientRect().width)) });
})()`

// browser is a headless Chromium driven over the Chrome DevTools Protocol
// (one page target, one call at a time).
type browser struct {
	conn *websocket.Conn
	next int
	// deadline bounds every wait, so that the test ends in bounded time.
	deadline time.Time
	// problems are the page's uncaught exceptions and console or network
	// errors (a script refused by the Content-Security-Policy included).
	problems []string
	// dialogs are the messages of the page's alert, confirm and prompt
	// dialogs, in order (answer them with Page.handleJavaScriptDialog).
	dialogs []string
}

// startBrowser starts Chromium on loopback with a fresh profile, connects
// to its first page and enables the page, runtime and log events. Waits
// end at deadline. The harness ends Chromium, with the processes it forks,
// by its process group.
func startBrowser(t *testing.T, deadline time.Time) *browser {
	t.Helper()
	profile := t.TempDir()
	start(t, nil, chromiumPath, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir="+profile, "--window-size=1280,800",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"--remote-allow-origins=http://127.0.0.1", "about:blank")

	// Chromium writes the port it chose, and the browser target's path,
	// to DevToolsActivePort in the profile.
	var port string
	eventually(t, 15*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		if err != nil {
			return false
		}
		port, _, _ = strings.Cut(string(b), "\n")
		return port != ""
	}, "chromium's DevToolsActivePort")

	var pageURL string
	eventually(t, 10*time.Second, func() bool {
		resp, err := noKeepAlive.Get("http://127.0.0.1:" + port + "/json/list")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var targets []struct{ Type, WebSocketDebuggerURL string }
		if json.NewDecoder(resp.Body).Decode(&targets) != nil {
			return false
		}
		for _, tg := range targets {
			if tg.Type == "page" && tg.WebSocketDebuggerURL != "" {
				pageURL = tg.WebSocketDebuggerURL
				return true
			}
		}
		return false
	}, "a page target")
	cfg, err := websocket.NewConfig(pageURL, "http://127.0.0.1")
	require.NoError(t, err)
	conn, err := websocket.DialConfig(cfg)
	require.NoError(t, err, "connecting to chromium's page target")
	conn.MaxPayloadBytes = 64 << 20
	t.Cleanup(func() { conn.Close() })
	b := &browser{conn: conn, deadline: deadline}
	for _, domain := range []string{"Page", "Runtime", "Log"} {
		b.call(t, domain+".enable", nil, nil)
	}
	return b
}

// cdpError is an error answer to a CDP command.
type cdpError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *cdpError) Error() string { return fmt.Sprintf("cdp error %d: %s", e.Code, e.Message) }

// do sends one CDP command and decodes its result into out (when non-nil).
// Events that arrive meanwhile are read, and kept when they report a
// problem of the page.
func (b *browser) do(method string, params any, out any) error {
	b.next++
	id := b.next
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	b.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := websocket.JSON.Send(b.conn, msg); err != nil {
		return fmt.Errorf("sending %s: %w", method, err)
	}
	for {
		var resp struct {
			ID     int             `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			Result json.RawMessage `json:"result"`
			Error  *cdpError       `json:"error"`
		}
		if err := websocket.JSON.Receive(b.conn, &resp); err != nil {
			return fmt.Errorf("waiting for the answer to %s: %w", method, err)
		}
		if resp.Method != "" {
			b.noteEvent(resp.Method, resp.Params)
			continue
		}
		if resp.ID != id {
			continue
		}
		if resp.Error != nil {
			return fmt.Errorf("%s: %w", method, resp.Error)
		}
		if out != nil {
			return json.Unmarshal(resp.Result, out)
		}
		return nil
	}
}

// call is do for the commands that must succeed.
func (b *browser) call(t *testing.T, method string, params any, out any) {
	t.Helper()
	require.NoError(t, b.do(method, params, out))
}

// noteEvent keeps the events that report an uncaught exception, or a
// console or log entry of level error, and the dialogs the page opens.
func (b *browser) noteEvent(method string, params json.RawMessage) {
	switch method {
	case "Page.javascriptDialogOpening":
		var ev struct {
			Message string `json:"message"`
		}
		json.Unmarshal(params, &ev)
		b.dialogs = append(b.dialogs, ev.Message)
	case "Runtime.exceptionThrown":
		var ev struct {
			ExceptionDetails struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		json.Unmarshal(params, &ev)
		b.problems = append(b.problems, "exception: "+ev.ExceptionDetails.Text+" "+ev.ExceptionDetails.Exception.Description)
	case "Log.entryAdded":
		var ev struct {
			Entry struct{ Level, Source, Text, URL string } `json:"entry"`
		}
		json.Unmarshal(params, &ev)
		if ev.Entry.Level == "error" {
			b.problems = append(b.problems, fmt.Sprintf("%s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
		}
	case "Runtime.consoleAPICalled":
		var ev struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		json.Unmarshal(params, &ev)
		if ev.Type == "error" || ev.Type == "assert" {
			b.problems = append(b.problems, fmt.Sprintf("console.%s: %+v", ev.Type, ev.Args))
		}
	}
}

// page evaluates pageProbe; ok is false while the page cannot answer it
// (not loaded yet, or navigating).
func (b *browser) page() (p dashboardPage, ok bool) {
	var res struct {
		Result struct {
			Value string `json:"value"`
		} `json:"result"`
		ExceptionDetails any `json:"exceptionDetails"`
	}
	if err := b.do("Runtime.evaluate", map[string]any{"expression": pageProbe, "returnByValue": true}, &res); err != nil {
		return p, false
	}
	if res.ExceptionDetails != nil || json.Unmarshal([]byte(res.Result.Value), &p) != nil {
		return p, false
	}
	return p, true
}

// waitPage polls the page until cond holds, for at most 10 seconds and
// not past the browser's deadline.
func (b *browser) waitPage(t *testing.T, what string, cond func(dashboardPage) bool) dashboardPage {
	t.Helper()
	var p dashboardPage
	deadline := time.Now().Add(10 * time.Second)
	if b.deadline.Before(deadline) {
		deadline = b.deadline
	}
	for {
		var ok bool
		if p, ok = b.page(); ok && cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("dashboard: no %s in time; last page state: %+v; page problems: %q", what, p, b.problems)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// screenshot saves the viewport as a PNG at path.
func (b *browser) screenshot(t *testing.T, path string) {
	t.Helper()
	var res struct {
		Data string `json:"data"`
	}
	b.call(t, "Page.captureScreenshot", map[string]any{"format": "png"}, &res)
	png, err := base64.StdEncoding.DecodeString(res.Data)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s", path)
}
