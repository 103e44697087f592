package admin

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/obsproxy/obsproxy/admission"
	"github.com/obsproxy/obsproxy/connstate"
	"github.com/obsproxy/obsproxy/healthgate"
	"github.com/obsproxy/obsproxy/lifecycle"
	"github.com/obsproxy/obsproxy/proxy"
)

// TestQueueIsShown holds the only slot of a capped worker, queues a second
// request behind it, and reads the queue from the snapshot and /diag.
func TestQueueIsShown(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	pool, err := lifecycle.NewPool(lifecycle.Config{
		Workers:      []lifecycle.WorkerConfig{{Name: "w1", Network: "tcp", Address: strings.TrimPrefix(up.URL, "http://")}},
		InitialState: lifecycle.StateUp,
	})
	require.NoError(t, err)
	q, err := admission.New(admission.Config{Pool: pool, MaxInFlight: 1, Size: 8, Timeout: time.Minute})
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	px, err := proxy.New(proxy.Config{Pool: pool, Logger: logger, Admission: q})
	require.NoError(t, err)
	gate, err := healthgate.NewGate(healthgate.GateConfig{Pool: pool, Probes: probesDone{}, Version: "test", Started: time.Now()})
	require.NoError(t, err)
	public := httptest.NewServer(px)
	t.Cleanup(public.Close)
	srv, err := New(Config{
		Gatherer: prometheus.NewRegistry(), Logger: logger,
		Sources:     &Sources{Pool: pool, Proxy: px, Conns: connstate.New(), Gate: gate, Queue: q, Started: time.Now(), Version: "test"},
		DiagEnabled: true, DiagAccess: Access{Allow: mustPrefixes("127.0.0.0/8")},
	})
	require.NoError(t, err)
	adm := httptest.NewServer(srv)
	t.Cleanup(adm.Close)

	done := make(chan struct{}, 2)
	for range 2 {
		go func() {
			if resp, err := http.Get(public.URL + "/x"); err == nil {
				resp.Body.Close()
			}
			done <- struct{}{}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for q.Depth() != 1 || q.InUse(0) != 1 {
		require.True(t, time.Now().Before(deadline), "the second request never queued")
		time.Sleep(2 * time.Millisecond)
	}

	var snap Snapshot
	getJSON(t, adm.URL+"/admin/api/observability", &snap)
	assert.Equal(t, 1, snap.Queue.MaxInFlight)
	assert.EqualValues(t, 1, snap.Queue.Depth)
	assert.GreaterOrEqual(t, snap.Queue.OldestWaitSeconds, 0.0)
	require.Len(t, snap.Workers, 1)
	require.NotNil(t, snap.Workers[0].CapUsage)
	assert.Equal(t, 1.0, *snap.Workers[0].CapUsage)

	var d Diag
	resp := getJSON(t, adm.URL+"/diag", &d)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.EqualValues(t, 1, d.Queue.QueueDepth)
	assert.Equal(t, 1, d.Queue.MaxInFlight)

	close(release)
	<-done
	<-done
	getJSON(t, adm.URL+"/admin/api/observability", &snap)
	assert.EqualValues(t, 0, snap.Queue.Depth)
	assert.Equal(t, 0.0, *snap.Workers[0].CapUsage)
}

func TestNoCapShowsNoUsage(t *testing.T) {
	p := newPlane(t, Config{})
	var snap Snapshot
	getJSON(t, p.adm.URL+"/admin/api/observability", &snap)
	assert.Equal(t, QueueView{}, snap.Queue)
	assert.Nil(t, snap.Workers[0].CapUsage)
}
