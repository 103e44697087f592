package admin

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Supervisor mode adds process figures to each worker row and the pool's
// total memory; static mode leaves them null (issue 13).
func TestSnapshotProcessFigures(t *testing.T) {
	p := newPlane(t, Config{})
	var static map[string]any
	getJSON(t, p.adm.URL+"/admin/api/observability", &static)
	row := static["workers"].([]any)[0].(map[string]any)
	for _, k := range []string{"rss_bytes", "cpu_seconds", "cpu_percent", "exits", "last_exit_reason", "backoff_seconds"} {
		v, ok := row[k]
		assert.True(t, ok, "%s present", k)
		assert.Nil(t, v, "%s null in static mode", k)
	}
	assert.Nil(t, static["pool"].(map[string]any)["rss_bytes"])

	p.src.Processes = func() []ProcessFigures {
		return []ProcessFigures{
			{PID: 101, HasFigures: true, RSSBytes: 100 << 20, CPUSeconds: 1.5, CPUPercent: 12.5, Exits: 2, LastExitReason: "killed by SIGKILL"},
			{PID: 0, Exits: 3, LastExitReason: "exit code 1", Backoff: 800 * time.Millisecond},
		}
	}
	var snap Snapshot
	resp := getJSON(t, p.adm.URL+"/admin/api/observability", &snap)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	w1, w2 := snap.Workers[0], snap.Workers[1]
	assert.Equal(t, 101, w1.PID, "the supervisor's pid")
	require.NotNil(t, w1.RSSBytes)
	assert.Equal(t, uint64(100<<20), *w1.RSSBytes)
	assert.Equal(t, 1.5, *w1.CPUSeconds)
	assert.Equal(t, 12.5, *w1.CPUPercent)
	assert.Equal(t, uint64(2), *w1.Exits)
	assert.Equal(t, "killed by SIGKILL", *w1.LastExitReason)
	assert.Equal(t, 0.0, *w1.BackoffSeconds)
	assert.Equal(t, 0, w2.PID, "no process")
	assert.Nil(t, w2.RSSBytes, "no process: no memory")
	assert.Equal(t, 0.8, *w2.BackoffSeconds)
	assert.Equal(t, "exit code 1", *w2.LastExitReason)
	require.NotNil(t, snap.Pool.RSSBytes)
	assert.Equal(t, uint64(100<<20), *snap.Pool.RSSBytes, "the pool's total worker memory")
}
