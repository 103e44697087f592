package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The recycling and stuck-worker settings (spec section 8) are checked
// before anything listens, and the ones set above 0 are reported as not
// enforced, so serve can warn about each.
func TestLoadConfigRecycle(t *testing.T) {
	invalid := []struct{ env, want string }{
		{"OBSPROXY_WORKER_MAX_REQUESTS=-1", `invalid OBSPROXY_WORKER_MAX_REQUESTS="-1": want an integer >= 0`},
		{"OBSPROXY_WORKER_MAX_REQUESTS=lots", `invalid OBSPROXY_WORKER_MAX_REQUESTS="lots": want an integer >= 0`},
		{"OBSPROXY_WORKER_MAX_RSS=-5MiB", `invalid OBSPROXY_WORKER_MAX_RSS="-5MiB": want 0, a byte count or a number with a unit, e.g. 512MiB, 1GiB, 500MB`},
		{"OBSPROXY_WORKER_MAX_RSS=big", `invalid OBSPROXY_WORKER_MAX_RSS="big": want 0, a byte count or a number with a unit, e.g. 512MiB, 1GiB, 500MB`},
		{"OBSPROXY_WORKER_MAX_LIFETIME=-1s", `invalid OBSPROXY_WORKER_MAX_LIFETIME="-1s": want a Go duration >= 0 such as 0s, 1h`},
		{"OBSPROXY_WORKER_RECYCLE_JITTER=1.5", `invalid OBSPROXY_WORKER_RECYCLE_JITTER="1.5": want a number from 0 to 1`},
		{"OBSPROXY_WORKER_RECYCLE_JITTER=-0.1", `invalid OBSPROXY_WORKER_RECYCLE_JITTER="-0.1": want a number from 0 to 1`},
		{"OBSPROXY_WORKER_RECYCLE_JITTER=NaN", `invalid OBSPROXY_WORKER_RECYCLE_JITTER="NaN": want a number from 0 to 1`},
		{"OBSPROXY_WORKER_STUCK_TIMEOUT=-3s", `invalid OBSPROXY_WORKER_STUCK_TIMEOUT="-3s": want a Go duration >= 0 such as 0s, 30s`},
	}
	for _, tc := range invalid {
		t.Run(tc.env, func(t *testing.T) {
			_, err := loadConfig(nil, []string{tc.env})
			require.Error(t, err)
			assert.Equal(t, tc.want, err.Error())
		})
	}

	cfg, err := loadConfig(nil, nil)
	require.NoError(t, err)
	assert.Zero(t, cfg.WorkerMaxRequests, "off by default")
	assert.Zero(t, cfg.WorkerMaxRSS)
	assert.Zero(t, cfg.WorkerMaxLifetime)
	assert.Zero(t, cfg.WorkerStuckTimeout)
	assert.Equal(t, 0.1, cfg.WorkerRecycleJitter)

	cfg, err = loadConfig(nil, []string{
		"OBSPROXY_WORKER_MAX_REQUESTS=500", "OBSPROXY_WORKER_MAX_RSS=512MiB",
		"OBSPROXY_WORKER_MAX_LIFETIME=1h", "OBSPROXY_WORKER_STUCK_TIMEOUT=30s", "OBSPROXY_WORKER_RECYCLE_JITTER=0",
	})
	require.NoError(t, err)
	assert.Equal(t, 500, cfg.WorkerMaxRequests)
	assert.Equal(t, byteSize(512<<20), cfg.WorkerMaxRSS)
	assert.Equal(t, time.Hour, cfg.WorkerMaxLifetime)
	assert.Equal(t, 30*time.Second, cfg.WorkerStuckTimeout)
	assert.Equal(t, 0.0, cfg.WorkerRecycleJitter)
}
