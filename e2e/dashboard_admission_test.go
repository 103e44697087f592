package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestDashboardShowsTheQueue opens the dashboard in headless Chromium in
// front of one uvicorn worker capped at 1 in flight, queues requests behind
// it, and checks what the page shows: the queue card (depth, cap,
// rejections), the worker's cap usage, and the queued line on the in-flight
// chart.
func TestDashboardShowsTheQueue(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the dashboard test needs Debian's chromium (make deps): %v", err)
	}
	began := time.Now()
	w1 := startUvicorn(t, "w1")
	waitReady(t, w1)
	in := startObsproxy(t, []*worker{w1}, "OBSPROXY_SAMPLE_INTERVAL=250ms", "OBSPROXY_WORKER_MAX_IN_FLIGHT=1",
		"OBSPROXY_QUEUE_SIZE=3", "OBSPROXY_QUEUE_TIMEOUT=30s")

	b := startBrowser(t, began.Add(40*time.Second))
	b.call(t, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false}, nil)
	b.call(t, "Page.navigate", map[string]any{"url": in.admin + "/admin/"}, nil)
	p := b.waitPage(t, "the first live update", func(p dashboardPage) bool { return p.Live == "1" && p.Received >= 1 })
	assert.Equal(t, "1", p.Cards["queue"]["cap"])
	assert.Equal(t, "0", p.Cards["queue"]["value"])

	// 1 at the worker, 3 waiting, 1 rejected at once (queue full).
	done := make(chan []answer, 1)
	go func() { done <- in.fire(5, "/slow?seconds=3") }()
	p = b.waitPage(t, "3 queued and one rejection", func(p dashboardPage) bool {
		return p.Cards["queue"]["value"] == "3" && p.Cards["queue"]["rejected"] == "1" && strings.Contains(p.row("w1").Text, "100%")
	})
	b.screenshot(t, filepath.Join(dashboardOutDir(t), "dashboard-queue.png"))
	assert.Equal(t, "3", p.Cards["queue"]["text"])
	assert.Contains(t, p.Cards["queue"]["sub"], "cap 1/worker")
	assert.Contains(t, p.Cards["queue"]["sub"], "1 rejected")
	assert.Equal(t, "warn", p.Cards["queue"]["level"])
	assert.Zero(t, p.Overflow, "the page scrolls sideways at 1280x800; table columns: %v", p.Cols)

	// The in-flight chart carries the queue: its legend names it and shows
	// the latest depth.
	var res struct {
		Result struct {
			Value string `json:"value"`
		} `json:"result"`
	}
	b.call(t, "Runtime.evaluate", map[string]any{"returnByValue": true,
		"expression": `document.querySelector('figure[data-chart="inflight"] .legend').textContent`}, &res)
	assert.Contains(t, res.Result.Value, "queued 3")

	got := <-done
	var ok, overloaded int
	for _, a := range got {
		switch a.code {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			overloaded++
		}
	}
	assert.Equal(t, 4, ok, "the one at the worker and the three queued")
	assert.Equal(t, 1, overloaded, "the one that found the queue full")
	p = b.waitPage(t, "the queue empty again", func(p dashboardPage) bool { return p.Cards["queue"]["value"] == "0" })
	assert.Equal(t, "", p.Cards["queue"]["level"])
	assert.Empty(t, b.problems, "the page reported errors")
	raw, _ := json.Marshal(p.Cards["queue"])
	t.Logf("queue card at the end: %s", raw)
}
